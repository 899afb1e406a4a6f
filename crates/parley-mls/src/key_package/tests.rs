//! Key packages made by mls-rs clients, as a device would make them, checked
//! as the directory checks them.

use std::time::Duration;

use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::BasicCredential;
use mls_rs::{CipherSuiteProvider as _, Client, ExtensionList};
use parley_api::{ClientId, UserId};

use super::*;

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 24 * 3600;

fn device(client: u64) -> DeviceIdentity {
    DeviceIdentity {
        user: UserId(uuid::Uuid::from_u128(
            0xd979_60a9_e9de_4f23_8f89_e7d3_a7a4_7e48,
        )),
        client: ClientId(client),
        domain: "example.com".into(),
    }
}

/// A key package of `identity` (credential identifier bytes) on `suite`,
/// valid for `lifetime` seconds from `NOW`; with its signature key.
fn made(identity: &[u8], suite: CipherSuite, lifetime: u64) -> (Vec<u8>, Vec<u8>) {
    let crypto = OpensslCryptoProvider::new();
    let provider = crypto
        .cipher_suite_provider(suite.to_mls())
        .expect("OpenSSL has every selectable suite");
    let (secret, public) = provider.signature_key_generate().expect("a signature key");
    let signer = SigningIdentity::new(
        BasicCredential::new(identity.to_vec()).into_credential(),
        public.clone(),
    );
    let client = Client::builder()
        .crypto_provider(crypto)
        .identity_provider(BasicIdentityProvider)
        .signing_identity(signer, secret, suite.to_mls())
        .key_package_lifetime(Duration::from_secs(lifetime))
        .build();
    let message = client
        .generate_key_package_message(
            ExtensionList::default(),
            ExtensionList::default(),
            Some(MlsTime::from(NOW)),
        )
        .expect("a key package");
    (
        message.to_bytes().expect("encodes"),
        public.as_bytes().to_vec(),
    )
}

fn check<'a>(device: &'a DeviceIdentity, key: Option<&'a [u8]>) -> KeyPackageCheck<'a> {
    KeyPackageCheck {
        device,
        signature_key: key,
        allowed: &CipherSuite::SELECTABLE,
        now: NOW,
        max_lifetime: 90 * DAY,
    }
}

#[test]
fn a_devices_own_key_package_is_taken_on_every_selectable_suite() {
    let me = device(0xce6a_f3fa_cf22_5073);
    for suite in CipherSuite::SELECTABLE {
        let (bytes, key) = made(&me.credential_identifier(), suite, 30 * DAY);
        let valid = KeyPackageIn(bytes.clone())
            .validate(&check(&me, Some(&key)))
            .unwrap_or_else(|e| panic!("{suite}: {e}"));
        assert_eq!(valid.suite, suite);
        assert_eq!(valid.signature_key, key);
        assert_eq!(valid.bytes, bytes);
        assert!(valid.not_after > NOW && valid.not_after <= NOW + 30 * DAY + 3600);
        assert!(valid.reference.len() >= 32, "{suite}: a hash reference");
        // Without a registered key, the credential alone decides.
        assert!(KeyPackageIn(bytes).validate(&check(&me, None)).is_ok());
    }
}

#[test]
fn two_key_packages_have_two_references() {
    let me = device(7);
    let id = me.credential_identifier();
    let one = KeyPackageIn(made(&id, CipherSuite::DEFAULT, DAY).0)
        .validate(&check(&me, None))
        .expect("valid");
    let two = KeyPackageIn(made(&id, CipherSuite::DEFAULT, DAY).0)
        .validate(&check(&me, None))
        .expect("valid");
    assert_ne!(one.reference, two.reference);
}

#[test]
fn what_is_not_a_key_package_is_malformed() {
    let me = device(7);
    let (bytes, _) = made(&me.credential_identifier(), CipherSuite::DEFAULT, DAY);
    for input in [
        Vec::new(),
        b"garbage".to_vec(),
        bytes[..bytes.len() - 1].to_vec(),
        {
            let mut longer = bytes.clone();
            longer.push(0);
            longer
        },
    ] {
        assert_eq!(
            KeyPackageIn(input).validate(&check(&me, None)),
            Err(KeyPackageError::Malformed)
        );
    }
}

#[test]
fn a_suite_the_backend_does_not_allow_is_refused() {
    let me = device(7);
    let (bytes, _) = made(&me.credential_identifier(), CipherSuite::X25519_AES128, DAY);
    let only_p256 = [CipherSuite::P256_AES128];
    let refused = KeyPackageIn(bytes).validate(&KeyPackageCheck {
        allowed: &only_p256,
        ..check(&me, None)
    });
    assert_eq!(
        refused,
        Err(KeyPackageError::SuiteNotAllowed(CipherSuite::X25519_AES128))
    );
    assert_eq!(
        refused.expect_err("refused").label(),
        "mls-unsupported-cipher-suite"
    );
}

#[test]
fn another_devices_credential_or_key_is_an_identity_mismatch() {
    let me = device(7);
    let other_client = device(8);
    let other_user = DeviceIdentity {
        user: UserId(uuid::Uuid::from_u128(1)),
        ..device(7)
    };
    let other_domain = DeviceIdentity {
        domain: "example.org".into(),
        ..device(7)
    };
    for them in [&other_client, &other_user, &other_domain] {
        let (bytes, _) = made(&them.credential_identifier(), CipherSuite::DEFAULT, DAY);
        assert_eq!(
            KeyPackageIn(bytes).validate(&check(&me, None)),
            Err(KeyPackageError::IdentityMismatch),
            "{them}"
        );
    }
    // Not a client-ID at all.
    let (bytes, _) = made(b"alice", CipherSuite::DEFAULT, DAY);
    assert_eq!(
        KeyPackageIn(bytes).validate(&check(&me, None)),
        Err(KeyPackageError::IdentityMismatch)
    );
    // The right name, but not the key this device registered.
    let (bytes, _) = made(&me.credential_identifier(), CipherSuite::DEFAULT, DAY);
    let (_, registered) = made(&me.credential_identifier(), CipherSuite::DEFAULT, DAY);
    let refused = KeyPackageIn(bytes).validate(&check(&me, Some(&registered)));
    assert_eq!(refused, Err(KeyPackageError::IdentityMismatch));
    assert_eq!(
        refused.expect_err("refused").label(),
        "mls-identity-mismatch"
    );
}

#[test]
fn a_tampered_key_package_is_invalid() {
    let me = device(7);
    let (bytes, _) = made(&me.credential_identifier(), CipherSuite::DEFAULT, DAY);
    // The last byte is in the key package's signature.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let refused = KeyPackageIn(tampered).validate(&check(&me, None));
    assert!(
        matches!(refused, Err(KeyPackageError::Invalid(_))),
        "{refused:?}"
    );
    // The identifier is in the signed leaf node: changed, it names another
    // device, which is refused before any signature is checked.
    let at = bytes
        .windows(b"example.com".len())
        .position(|w| w == b"example.com")
        .expect("present");
    let mut renamed = bytes.clone();
    renamed[at] ^= 1;
    assert_eq!(
        KeyPackageIn(renamed).validate(&check(&me, None)),
        Err(KeyPackageError::IdentityMismatch)
    );
}

#[test]
fn lifetimes_are_bounded_and_an_expired_key_package_is_invalid() {
    let me = device(7);
    let (long, _) = made(&me.credential_identifier(), CipherSuite::DEFAULT, 365 * DAY);
    assert_eq!(
        KeyPackageIn(long).validate(&check(&me, None)),
        Err(KeyPackageError::Lifetime { max: 90 * DAY })
    );
    let (short, _) = made(&me.credential_identifier(), CipherSuite::DEFAULT, DAY);
    let later = KeyPackageIn(short).validate(&KeyPackageCheck {
        now: NOW + 2 * DAY,
        ..check(&me, None)
    });
    assert!(
        matches!(later, Err(KeyPackageError::Invalid(_))),
        "{later:?}"
    );
}
