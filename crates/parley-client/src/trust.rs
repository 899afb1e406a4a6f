//! The user trust chain (Wickr's) on the device: the user's root identity key,
//! the signatures it makes over this user's devices, the recovery bundle that
//! carries it to a new device, and checking the signatures peers publish.
//!
//! The root key never leaves the device unencrypted. The recovery bundle is
//! `AES-256-GCM(Krbk, contents)` with a random bundle key `Krbk`, and `Krbk` itself
//! is wrapped with AES-256-GCM under a key derived from the user's passphrase with
//! scrypt, exactly as Wickr's whitepaper describes. The server stores the result as
//! an opaque blob.
//!
//! This module knows nothing of sessions or conversations: `verification` decides
//! what a checked signature means for a conversation.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use parley_api::{DeviceTrust, UserId, device_signature_message};
use zeroize::Zeroizing;

use crate::ClientError;

/// Format version of recovery bundles.
const BUNDLE_VERSION: u8 = 1;
/// scrypt cost for the passphrase key: N = 2^15, r = 8, p = 1.
const LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// version, log_n, r, p, salt.
const HEADER: usize = 1 + 1 + 4 + 4 + 16;
/// Nonce, wrapped key and tag.
const WRAPPED: usize = 12 + 32 + 16;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, ClientError> {
    let mut b = Zeroizing::new([0u8; N]);
    getrandom::fill(b.as_mut()).map_err(|e| ClientError::Crypto(format!("no randomness: {e}")))?;
    Ok(b)
}

/// The user's root identity key. Wiped when dropped, never shown by `Debug`.
pub struct RootKey(SigningKey);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RootKey")
            .field(&fingerprint(self.public()))
            .finish()
    }
}

/// Lowercase hex in groups of four, for people to compare aloud.
pub fn fingerprint(key: &[u8; 32]) -> String {
    hex::encode(key)
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl RootKey {
    /// A fresh root key (at user enrolment, on the first device).
    pub fn generate() -> Result<Self, ClientError> {
        Ok(Self(SigningKey::from_bytes(&*random::<32>()?)))
    }

    /// The secret, for this device's encrypted local store only.
    pub(crate) fn secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// From [`RootKey::secret`].
    pub(crate) fn from_secret(secret: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(secret))
    }

    /// The public root key, which peers pin.
    pub fn public(&self) -> &[u8; 32] {
        self.0.as_ref().as_bytes()
    }

    /// Signs one of this user's devices' identity key.
    pub fn sign_device(&self, user: UserId, identity_key: &[u8; 32]) -> DeviceTrust {
        let signature = self.0.sign(&device_signature_message(user, identity_key));
        DeviceTrust {
            identity_key: b64().encode(identity_key),
            root_key: b64().encode(self.public()),
            signature: b64().encode(signature.to_bytes()),
        }
    }

    /// Seals the root key into a recovery bundle that `passphrase` opens.
    pub fn seal_recovery_bundle(&self, passphrase: &str) -> Result<Vec<u8>, ClientError> {
        let salt = random::<16>()?;
        let mut header = Vec::with_capacity(HEADER);
        header.push(BUNDLE_VERSION);
        header.push(LOG_N);
        header.extend_from_slice(&SCRYPT_R.to_be_bytes());
        header.extend_from_slice(&SCRYPT_P.to_be_bytes());
        header.extend_from_slice(salt.as_ref());
        let wrap_key = passphrase_key(passphrase, salt.as_ref(), LOG_N, SCRYPT_R, SCRYPT_P)?;
        let bundle_key = random::<32>()?;
        let mut out = header.clone();
        out.extend(seal(&wrap_key, &header, bundle_key.as_ref())?);
        out.extend(seal(&bundle_key, &header, self.secret().as_ref())?);
        Ok(out)
    }

    /// Opens a recovery bundle. A wrong passphrase is [`ClientError::WrongPassphrase`].
    pub fn open_recovery_bundle(bundle: &[u8], passphrase: &str) -> Result<Self, ClientError> {
        let damaged = || ClientError::Decode("the recovery bundle is damaged".into());
        if bundle.len() < HEADER + WRAPPED + 12 + 32 + 16 || bundle[0] != BUNDLE_VERSION {
            return Err(damaged());
        }
        let (header, rest) = bundle.split_at(HEADER);
        let log_n = header[1];
        let r = u32::from_be_bytes(header[2..6].try_into().expect("four bytes"));
        let p = u32::from_be_bytes(header[6..10].try_into().expect("four bytes"));
        // Refuse costs a hostile server could use to exhaust the device.
        if !(10..=20).contains(&log_n) || r > 32 || p > 4 {
            return Err(damaged());
        }
        let wrap_key = passphrase_key(passphrase, &header[10..], log_n, r, p)?;
        let (wrapped, sealed_root) = rest.split_at(WRAPPED);
        let bundle_key = open(&wrap_key, header, wrapped).ok_or(ClientError::WrongPassphrase)?;
        let bundle_key: Zeroizing<[u8; 32]> =
            Zeroizing::new(bundle_key.as_slice().try_into().map_err(|_| damaged())?);
        let secret = open(&bundle_key, header, sealed_root).ok_or_else(damaged)?;
        let secret: Zeroizing<[u8; 32]> =
            Zeroizing::new(secret.as_slice().try_into().map_err(|_| damaged())?);
        Ok(Self::from_secret(&secret))
    }
}

fn passphrase_key(
    passphrase: &str,
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    let params = scrypt::Params::new(log_n, r, p)
        .map_err(|_| ClientError::Decode("invalid scrypt parameters".into()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.as_bytes(), salt, &params, key.as_mut())
        .map_err(|_| ClientError::Crypto("scrypt failed".into()))?;
    Ok(key)
}

/// `nonce(12) ‖ AES-256-GCM(key, plaintext, aad)`.
fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
    let nonce = random::<12>()?;
    let ciphertext = Aes256Gcm::new(key.into())
        .encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| ClientError::Crypto("sealing failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend(ciphertext);
    Ok(out)
}

fn open(key: &[u8; 32], aad: &[u8], bytes: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ciphertext) = bytes.split_at_checked(12)?;
    let nonce = Nonce::try_from(nonce).ok()?;
    Aes256Gcm::new(key.into())
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// What a peer's published device signature says, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signature {
    /// The device published no signature.
    Unsigned,
    /// The root key signed this identity key for this user.
    Valid {
        /// The signing root key.
        root_key: [u8; 32],
        /// The device's identity key it vouches for.
        identity_key: [u8; 32],
    },
    /// A signature that does not check out: the device is flagged.
    Invalid,
}

/// Checks a device signature published for `user`.
pub fn check_device(user: UserId, trust: Option<&DeviceTrust>) -> Signature {
    let Some(trust) = trust else {
        return Signature::Unsigned;
    };
    let bytes = |s: &str| b64().decode(s).ok();
    let checked = (|| {
        let identity_key: [u8; 32] = bytes(&trust.identity_key)?.try_into().ok()?;
        let root_key: [u8; 32] = bytes(&trust.root_key)?.try_into().ok()?;
        let signature: [u8; 64] = bytes(&trust.signature)?.try_into().ok()?;
        VerifyingKey::from_bytes(&root_key)
            .ok()?
            .verify_strict(
                &device_signature_message(user, &identity_key),
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .ok()?;
        Some(Signature::Valid {
            root_key,
            identity_key,
        })
    })();
    checked.unwrap_or(Signature::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovery_bundle_opens_with_its_passphrase_only() {
        let root = RootKey::generate().expect("root");
        let bundle = root.seal_recovery_bundle("correct horse").expect("seal");
        let back = RootKey::open_recovery_bundle(&bundle, "correct horse").expect("open");
        assert_eq!(back.public(), root.public());
        assert!(matches!(
            RootKey::open_recovery_bundle(&bundle, "wrong horse"),
            Err(ClientError::WrongPassphrase)
        ));
        for i in [0, 1, HEADER + 3, bundle.len() - 1] {
            let mut bad = bundle.clone();
            bad[i] ^= 1;
            assert!(
                RootKey::open_recovery_bundle(&bad, "correct horse").is_err(),
                "byte {i} is protected"
            );
        }
        assert!(RootKey::open_recovery_bundle(&bundle[..40], "correct horse").is_err());
    }

    #[test]
    fn device_signatures_bind_the_user_and_the_key() {
        let root = RootKey::generate().expect("root");
        let (user, other) = (UserId::new_v4(), UserId::new_v4());
        let trust = root.sign_device(user, &[5; 32]);
        assert_eq!(
            check_device(user, Some(&trust)),
            Signature::Valid {
                root_key: *root.public(),
                identity_key: [5; 32]
            }
        );
        assert_eq!(check_device(other, Some(&trust)), Signature::Invalid);
        let swapped = DeviceTrust {
            identity_key: b64().encode([6; 32]),
            ..trust
        };
        assert_eq!(check_device(user, Some(&swapped)), Signature::Invalid);
        assert_eq!(check_device(user, None), Signature::Unsigned);
        assert!(!format!("{root:?}").contains(&hex::encode(root.secret().as_ref())));
    }
}
