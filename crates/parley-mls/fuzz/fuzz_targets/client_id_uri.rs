//! Client-ID URIs (the basic credential's identifier): whatever reads writes
//! back to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_mls::DeviceIdentity;

fuzz_target!(|bytes: &[u8]| {
    if let Some(device) = DeviceIdentity::parse(bytes) {
        assert_eq!(device.credential_identifier(), bytes);
    }
});
