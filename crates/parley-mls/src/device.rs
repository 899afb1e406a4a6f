//! A device's MLS side, as far as it goes yet: its signature key on a cipher
//! suite (one per signature scheme, registered with the server once) and the
//! key packages it publishes. The private parts stay in [`DeviceKeys`], which
//! never prints them. Group state comes with the client's MLS conversations.

use std::fmt;
use std::time::Duration;

use mls_rs::client_builder::MlsConfig;
use mls_rs::crypto::{SignaturePublicKey, SignatureSecretKey};
use mls_rs::extension::ExtensionType;
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::{BasicCredential, BasicIdentityProvider};
use mls_rs::mls_rules::{CommitOptions, DefaultMlsRules};
use mls_rs::{CipherSuiteProvider as _, Client, CryptoProvider as _};
use mls_rs_crypto_openssl::OpensslCryptoProvider;

use crate::identity::DeviceIdentity;
use crate::member::{Member, MemberState};
use crate::suite::CipherSuite;
use zeroize::Zeroizing;

/// Why a device's MLS keys could not be made or used.
#[derive(Debug, thiserror::Error)]
#[error("MLS: {0}")]
pub struct DeviceError(String);

/// A device's signature key on one suite, with the identity it signs as.
#[derive(Clone)]
pub struct DeviceKeys {
    identity: DeviceIdentity,
    suite: CipherSuite,
    secret: SignatureSecretKey,
    public: SignaturePublicKey,
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKeys({}, {})", self.identity, self.suite)
    }
}

impl DeviceKeys {
    /// A new signature key for `identity` on `suite`.
    pub fn generate(identity: DeviceIdentity, suite: CipherSuite) -> Result<Self, DeviceError> {
        let provider = OpensslCryptoProvider::new()
            .cipher_suite_provider(suite.to_mls())
            .ok_or_else(|| DeviceError(format!("cipher suite {suite} is not available")))?;
        let (secret, public) = provider
            .signature_key_generate()
            .map_err(|e| DeviceError(e.to_string()))?;
        Ok(Self {
            identity,
            suite,
            secret,
            public,
        })
    }

    /// The public signature key, as registered with the server.
    pub fn public_key(&self) -> &[u8] {
        self.public.as_bytes()
    }

    /// The device the key signs for.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// The private key's bytes, to be kept in the device's encrypted store.
    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.secret.as_bytes().to_vec())
    }

    /// Keys read back from the device's store ([`DeviceKeys::secret_bytes`]
    /// and [`DeviceKeys::public_key`]).
    pub fn restore(
        identity: DeviceIdentity, suite: CipherSuite, secret: &[u8], public: &[u8],
    ) -> Self {
        Self {
            identity,
            suite,
            secret: SignatureSecretKey::new_slice(secret),
            public: SignaturePublicKey::new_slice(public),
        }
    }

    /// The suite the key is for.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// `count` key packages valid from `now` (Unix seconds) for `lifetime`,
    /// each an encoded MLS message, whose private parts are dropped: for a
    /// directory that is only checked, never joined through (tests, load
    /// generators). A device keeps them: [`Member::key_packages`].
    pub fn key_packages(
        &self, count: usize, now: u64, lifetime: Duration,
    ) -> Result<Vec<Vec<u8>>, DeviceError> {
        Member::new(self.clone(), MemberState::default(), lifetime)
            .key_packages(count, now)
            .map_err(|e| DeviceError(e.to_string()))
    }

    /// A last-resort key package, its private parts dropped (as
    /// [`DeviceKeys::key_packages`]; a device keeps them:
    /// [`Member::last_resort_key_package`]).
    pub fn last_resort_key_package(
        &self, now: u64, lifetime: Duration,
    ) -> Result<Vec<u8>, DeviceError> {
        Member::new(self.clone(), MemberState::default(), lifetime)
            .last_resort_key_package(now)
            .map_err(|e| DeviceError(e.to_string()))
    }

    /// An mls-rs client signing as this device, with Parley's group rules:
    /// handshake messages public (the server checks every commit), the
    /// ratchet tree in every group info, external joins allowed, one welcome
    /// per commit. Its group state and key packages live in memory; a device
    /// that keeps groups across restarts stores them (the client's MLS
    /// conversations, to come).
    pub fn member(&self, lifetime: Duration) -> Client<impl MlsConfig + use<>> {
        self.member_with(MemberState::default(), lifetime)
    }

    /// The same client over `state`, which holds its groups and key
    /// packages ([`crate::member`]).
    pub(crate) fn member_with(
        &self, state: MemberState, lifetime: Duration,
    ) -> Client<impl MlsConfig + use<>> {
        let signer = SigningIdentity::new(
            BasicCredential::new(self.identity.credential_identifier()).into_credential(),
            self.public.clone(),
        );
        let rules = DefaultMlsRules::new().with_commit_options(
            CommitOptions::new()
                .with_ratchet_tree_extension(true)
                .with_allow_external_commit(true)
                .with_single_welcome_message(true),
        );
        Client::builder()
            .crypto_provider(OpensslCryptoProvider::new())
            .identity_provider(BasicIdentityProvider)
            .extension_type(ExtensionType::LAST_RESORT_KEY_PACKAGE)
            .mls_rules(rules)
            .group_state_storage(state.clone())
            .key_package_repo(state)
            .signing_identity(signer, self.secret.clone(), self.suite.to_mls())
            .key_package_lifetime(lifetime)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use parley_api::{ClientId, UserId};

    use super::*;
    use crate::key_package::{KeyPackageCheck, KeyPackageIn};

    #[test]
    fn a_devices_key_packages_pass_the_directorys_check_on_every_suite() {
        let me = DeviceIdentity {
            user: UserId(uuid::Uuid::from_u128(42)),
            client: ClientId(0xabc),
            domain: "example.com".into(),
        };
        for suite in CipherSuite::SELECTABLE {
            let keys = DeviceKeys::generate(me.clone(), suite).expect("keys");
            let scheme = suite.signature_scheme().expect("a scheme");
            assert_eq!(keys.public_key().len(), scheme.key_len, "{suite}");
            let check = |bytes: Vec<u8>| {
                KeyPackageIn(bytes)
                    .validate(&KeyPackageCheck {
                        device: &me,
                        signature_key: Some(keys.public_key()),
                        allowed: &CipherSuite::SELECTABLE,
                        now: 1_800_000_000,
                        max_lifetime: 90 * 24 * 3600,
                    })
                    .expect("valid")
            };
            let lifetime = Duration::from_secs(30 * 24 * 3600);
            for p in keys.key_packages(2, 1_800_000_000, lifetime).expect("made") {
                assert_eq!(KeyPackageIn(p.clone()).device().as_ref(), Some(&me));
                let valid = check(p);
                assert_eq!((valid.suite, valid.last_resort), (suite, false));
            }
            let valid = check(
                keys.last_resort_key_package(1_800_000_000, lifetime)
                    .expect("made"),
            );
            assert!(valid.last_resort, "{suite}");
        }
    }
}
