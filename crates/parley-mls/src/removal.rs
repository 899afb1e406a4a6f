//! The backend as an *external sender* (RFC 9420 §12.1.8.1): the one party
//! outside a group allowed to propose in it, and only to remove.
//!
//! When a device or an account is deleted, or a user leaves, nobody in the
//! group would otherwise take their devices out: a member cannot commit its
//! own removal, and a deleted device commits nothing. So every group a
//! device creates names the backend's removal key for the group's signature
//! scheme in its `external_senders` extension; the backend signs a Remove
//! proposal with it, and the next commit must include it.
//!
//! This module owns the key ([`RemovalKey`], one per signature scheme,
//! published at `GET /v1/mls/public-keys`) and what a group names
//! ([`ServerSender`]). What it may propose is the server's policy; making
//! and checking proposals is [`crate::delivery`]'s. The backend can remove
//! devices but never add one: an added device needs a member's commit.

use std::fmt;

use mls_rs::crypto::{SignaturePublicKey, SignatureSecretKey};
use mls_rs::group::Sender;
use mls_rs::group::proposal::Proposal;
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::BasicCredential;
use mls_rs::{CipherSuiteProvider as _, CryptoProvider as _};
use mls_rs_crypto_openssl::OpensslCryptoProvider;
use zeroize::Zeroizing;

use crate::suite::{CipherSuite, SignatureScheme};

/// Why a removal key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("MLS removal key: {0}")]
pub struct RemovalKeyError(String);

/// What a group names as the backend's external sender: the backend's
/// domain (its basic credential) and its removal key for the group's
/// signature scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSender {
    /// The backend's domain.
    pub domain: String,
    /// The public removal key.
    pub key: Vec<u8>,
}

impl ServerSender {
    pub(crate) fn signing_identity(&self) -> SigningIdentity {
        SigningIdentity::new(
            BasicCredential::new(self.domain.as_bytes().to_vec()).into_credential(),
            SignaturePublicKey::new_slice(&self.key),
        )
    }
}

/// The backend's signing key for removal proposals on one signature scheme.
/// Its `Debug` shows the scheme only.
#[derive(Clone)]
pub struct RemovalKey {
    scheme: SignatureScheme,
    secret: SignatureSecretKey,
    public: SignaturePublicKey,
}

impl fmt::Debug for RemovalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemovalKey({})", self.scheme.name)
    }
}

/// A suite signing with `scheme` (the key is the scheme's, whatever suite).
fn suite_for(scheme: SignatureScheme) -> CipherSuite {
    CipherSuite::SELECTABLE
        .into_iter()
        .find(|s| s.signature_scheme() == Some(scheme))
        .expect("every scheme has a selectable suite")
}

impl RemovalKey {
    /// A new key for `scheme`.
    pub fn generate(scheme: SignatureScheme) -> Result<Self, RemovalKeyError> {
        let provider = OpensslCryptoProvider::new()
            .cipher_suite_provider(suite_for(scheme).to_mls())
            .ok_or_else(|| RemovalKeyError(format!("{} is not available", scheme.name)))?;
        let (secret, public) = provider
            .signature_key_generate()
            .map_err(|e| RemovalKeyError(e.to_string()))?;
        Ok(Self {
            scheme,
            secret,
            public,
        })
    }

    /// A key read back from storage ([`RemovalKey::secret_bytes`] and
    /// [`RemovalKey::public_key`]); its public key must have the scheme's
    /// length.
    pub fn restore(
        scheme: SignatureScheme, secret: &[u8], public: &[u8],
    ) -> Result<Self, RemovalKeyError> {
        if public.len() != scheme.key_len || secret.is_empty() {
            return Err(RemovalKeyError(format!(
                "a stored {} key has the wrong length",
                scheme.name
            )));
        }
        Ok(Self {
            scheme,
            secret: SignatureSecretKey::new_slice(secret),
            public: SignaturePublicKey::new_slice(public),
        })
    }

    /// Its scheme.
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// The public key, as published.
    pub fn public_key(&self) -> &[u8] {
        self.public.as_bytes()
    }

    /// The private key's bytes, for the backend's storage.
    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.secret.as_bytes().to_vec())
    }

    /// What a group names for this key on `domain`.
    pub fn sender(&self, domain: &str) -> ServerSender {
        ServerSender {
            domain: domain.to_owned(),
            key: self.public_key().to_vec(),
        }
    }

    pub(crate) fn secret(&self) -> &SignatureSecretKey {
        &self.secret
    }
}

/// The leaves removed by the external sender's Remove proposals among
/// `proposals` (sender and proposal, as mls-rs reports them): the backend's
/// removals, the only external proposals Parley's groups take.
pub(crate) fn external_removals<'a>(
    proposals: impl IntoIterator<Item = (&'a Sender, &'a Proposal)>,
) -> Vec<u32> {
    proposals
        .into_iter()
        .filter(|(sender, _)| matches!(sender, Sender::External(_)))
        .filter_map(|(_, proposal)| match proposal {
            Proposal::Remove(r) => Some(r.to_remove()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_scheme_read_back() {
        for scheme in SignatureScheme::ALL {
            let key = RemovalKey::generate(scheme).expect("made");
            assert_eq!(key.public_key().len(), scheme.key_len, "{}", scheme.name);
            let back = RemovalKey::restore(scheme, &key.secret_bytes(), key.public_key())
                .expect("restored");
            assert_eq!(back.public_key(), key.public_key());
            assert!(!format!("{back:?}").contains(&format!("{:?}", &*key.secret_bytes())));
            assert!(RemovalKey::restore(scheme, &key.secret_bytes(), &[1, 2]).is_err());
        }
    }
}
