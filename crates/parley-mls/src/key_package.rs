//! Key packages as the directory (the server's Delivery Service) accepts them.
//!
//! A device uploads key packages for others to add it to groups. The bytes are
//! untrusted: a [`KeyPackageIn`] becomes a [`ValidKeyPackage`] only through
//! [`KeyPackageIn::validate`], which checks, in this order:
//! 1. it is an MLS message holding a key package (`malformed`);
//! 2. its cipher suite is one the backend allows (`suite-not-allowed`);
//! 3. its credential is a basic credential naming the uploading device, and its
//!    signature key is the one the device registered for that scheme, if it did
//!    (`identity-mismatch`), before any signature is checked;
//! 4. mls-rs's own validation: version, signatures of the key package and of
//!    its leaf node, leaf node contents, lifetime covering `now` (`invalid`);
//! 5. its lifetime ends at most `max_lifetime` after `now` (`lifetime`).

use std::fmt;

use mls_rs::crypto::SignaturePublicKey;
use mls_rs::extension::ExtensionType;
use mls_rs::external_client::ExternalClient;
use mls_rs::identity::Credential;
use mls_rs::identity::basic::BasicIdentityProvider;
use mls_rs::time::MlsTime;
use mls_rs::{CryptoProvider as _, MlsMessage};
use mls_rs_crypto_openssl::OpensslCryptoProvider;

use crate::identity::DeviceIdentity;
use crate::suite::CipherSuite;

/// Why a key package was refused. Each has a stable [`label`](Self::label).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPackageError {
    /// Not an MLS message holding a key package.
    #[error("not an MLS key package")]
    Malformed,
    /// A suite the backend does not allow.
    #[error("cipher suite {0} is not allowed on this backend")]
    SuiteNotAllowed(CipherSuite),
    /// Fails MLS's own checks (signatures, leaf node, lifetime at `now`).
    #[error("the key package is not valid: {0}")]
    Invalid(String),
    /// Names another device, or a signature key other than the registered one.
    #[error("the key package's credential or signature key is not this device's")]
    IdentityMismatch,
    /// Valid for longer than the backend accepts.
    #[error("the key package is valid for longer than {max} s")]
    Lifetime {
        /// The longest lifetime accepted, in seconds from now.
        max: u64,
    },
}

impl KeyPackageError {
    /// A stable label for the refusal (Wire's where Wire has one).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed => "mls-protocol-error",
            Self::SuiteNotAllowed(_) => "mls-unsupported-cipher-suite",
            Self::Invalid(_) => "mls-invalid-key-package",
            Self::IdentityMismatch => "mls-identity-mismatch",
            Self::Lifetime { .. } => "mls-key-package-lifetime",
        }
    }
}

/// Key package bytes as a device sent them: nothing about them is known yet.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPackageIn(pub Vec<u8>);

impl fmt::Debug for KeyPackageIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPackageIn({} bytes)", self.0.len())
    }
}

/// What a key package must be for the directory to take it.
#[derive(Clone, Debug)]
pub struct KeyPackageCheck<'a> {
    /// The device uploading it.
    pub device: &'a DeviceIdentity,
    /// The signature key the device registered for this suite's signature
    /// scheme, if it registered one.
    pub signature_key: Option<&'a [u8]>,
    /// The suites the backend allows.
    pub allowed: &'a [CipherSuite],
    /// Now, in Unix seconds.
    pub now: u64,
    /// The longest lifetime accepted, in seconds from `now`.
    pub max_lifetime: u64,
}

/// A key package the directory accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidKeyPackage {
    /// Its cipher suite.
    pub suite: CipherSuite,
    /// Its reference (RFC 9420 §5.2): how commits and claims name it.
    pub reference: Vec<u8>,
    /// Its leaf's signature key.
    pub signature_key: Vec<u8>,
    /// The end of its lifetime, in Unix seconds.
    pub not_after: u64,
    /// It carries the last-resort extension (RFC 9420 §16.8): handed out
    /// again when the device has no other, never used up.
    pub last_resort: bool,
    /// The MLS message as uploaded, handed out as it is.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for ValidKeyPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ValidKeyPackage({}, {} bytes)",
            self.suite,
            self.bytes.len()
        )
    }
}

impl KeyPackageIn {
    /// The device the bytes' credential names, if they decode as a key
    /// package with a device's basic credential. Nothing is verified here
    /// (mls-rs checks the signature when the key package goes into a
    /// commit): a member uses it to refuse a key package handed out for one
    /// user that names another's device.
    pub fn device(&self) -> Option<DeviceIdentity> {
        let message = MlsMessage::from_bytes(&self.0).ok()?;
        let key_package = message.into_key_package()?;
        match &key_package.signing_identity().credential {
            Credential::Basic(b) => DeviceIdentity::parse(&b.identifier),
            _ => None,
        }
    }

    /// The cipher suite the bytes claim, if they decode as a key package:
    /// nothing is checked, so it only chooses which registered key to check
    /// against.
    pub fn suite(&self) -> Option<CipherSuite> {
        let message = MlsMessage::from_bytes(&self.0).ok()?;
        let key_package = message.into_key_package()?;
        Some(CipherSuite(key_package.cipher_suite().into()))
    }

    /// Checks the key package (see the module's documentation); the checked
    /// value, or why it was refused.
    pub fn validate(
        &self, check: &KeyPackageCheck<'_>,
    ) -> Result<ValidKeyPackage, KeyPackageError> {
        let suite = self.suite().ok_or(KeyPackageError::Malformed)?;
        let message = MlsMessage::from_bytes(&self.0).map_err(|_| KeyPackageError::Malformed)?;
        if !check.allowed.contains(&suite) {
            return Err(KeyPackageError::SuiteNotAllowed(suite));
        }
        // Whose it says it is, first: cheap, and a package of another device
        // costs no signature check.
        let claimed = message
            .clone()
            .into_key_package()
            .ok_or(KeyPackageError::Malformed)?;
        let signer = claimed.signing_identity();
        let names_device = match &signer.credential {
            Credential::Basic(basic) => {
                DeviceIdentity::parse(basic.identifier()).as_ref() == Some(check.device)
            }
            _ => false,
        };
        let registered = check
            .signature_key
            .is_none_or(|key| key == signer.signature_key.as_bytes());
        if !names_device || !registered {
            return Err(KeyPackageError::IdentityMismatch);
        }
        let crypto = OpensslCryptoProvider::new();
        let observer = ExternalClient::builder()
            .crypto_provider(crypto.clone())
            .identity_provider(BasicIdentityProvider)
            .build();
        let key_package = observer
            .validate_key_package(message, Some(MlsTime::from(check.now)))
            .map_err(|e| KeyPackageError::Invalid(e.to_string()))?;
        let signer = key_package.signing_identity();
        let not_after = key_package
            .expiration()
            .map_err(|e| KeyPackageError::Invalid(e.to_string()))?
            .seconds_since_epoch();
        if not_after > check.now.saturating_add(check.max_lifetime) {
            return Err(KeyPackageError::Lifetime {
                max: check.max_lifetime,
            });
        }
        let provider = crypto
            .cipher_suite_provider(suite.to_mls())
            .ok_or(KeyPackageError::SuiteNotAllowed(suite))?;
        let reference = key_package
            .to_reference(&provider)
            .map_err(|e| KeyPackageError::Invalid(e.to_string()))?;
        Ok(ValidKeyPackage {
            suite,
            reference: reference.to_vec(),
            signature_key: SignaturePublicKey::as_bytes(&signer.signature_key).to_vec(),
            not_after,
            last_resort: key_package
                .extensions
                .has_extension(ExtensionType::LAST_RESORT_KEY_PACKAGE),
            bytes: self.0.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
