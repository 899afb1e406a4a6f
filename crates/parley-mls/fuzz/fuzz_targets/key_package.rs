//! Key package bytes from a device, as the directory checks them: any input is
//! refused or accepted without a panic, and what is accepted names the device.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_api::{ClientId, UserId};
use parley_mls::{CipherSuite, DeviceIdentity, KeyPackageCheck, KeyPackageIn};

fuzz_target!(|bytes: &[u8]| {
    let device = DeviceIdentity {
        user: UserId(uuid::Uuid::from_u128(7)),
        client: ClientId(7),
        domain: "example.com".into(),
    };
    let check = KeyPackageCheck {
        device: &device,
        signature_key: None,
        allowed: &CipherSuite::SELECTABLE,
        now: 1_800_000_000,
        max_lifetime: 90 * 24 * 3600,
    };
    if let Ok(valid) = KeyPackageIn(bytes.to_vec()).validate(&check) {
        assert!(valid.suite.is_selectable());
        assert_eq!(valid.bytes, bytes);
    }
});
