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

use aes_gcm::Aes256Gcm;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use parley_api::{DeviceTrust, UserId, device_signature_message};
use zeroize::Zeroizing;

use crate::ClientError;

/// Format version of recovery bundles written now.
const BUNDLE_VERSION: u8 = 2;
/// Argon2id cost of format 2, fixed by the client: 128 MiB, 3 passes, 1 lane.
const ARGON2_M_KIB: u32 = 128 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;
/// Format of hardened bundles: the bundle key stays with the user.
const HARDENED_VERSION: u8 = 3;
/// Format 2 header: version, salt.
const HEADER_V2: usize = 1 + 16;
/// scrypt cost of format 1 (read only): N = 2^15, r = 8, p = 1.
const LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// Format 1 header: version, log_n, r, p, salt.
const HEADER_V1: usize = 1 + 1 + 4 + 4 + 16;
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

    /// Seals the root key into a recovery bundle that `passphrase` opens
    /// (format 2: Argon2id with this client's fixed settings).
    pub async fn seal_recovery_bundle(&self, passphrase: &str) -> Result<Vec<u8>, ClientError> {
        let salt = random::<16>()?;
        let mut header = Vec::with_capacity(HEADER_V2);
        header.push(BUNDLE_VERSION);
        header.extend_from_slice(salt.as_ref());
        let wrap_key = blocking_kdf(Kdf::Argon2id, passphrase, salt.to_vec()).await?;
        let bundle_key = random::<32>()?;
        let mut out = header.clone();
        out.extend(seal(&wrap_key, &header, bundle_key.as_ref())?);
        out.extend(seal(&bundle_key, &header, self.secret().as_ref())?);
        Ok(out)
    }

    /// Opens a recovery bundle. A wrong passphrase is [`ClientError::WrongPassphrase`].
    ///
    /// The server stores the bundle, so it could rewrite its header: the key
    /// derivation's settings are this client's, never the header's. Format 2
    /// carries only a salt; format 1 (scrypt) is read only with the exact
    /// settings this client wrote, and anything else is refused.
    pub async fn open_recovery_bundle(
        bundle: &[u8], passphrase: &str,
    ) -> Result<Self, ClientError> {
        let damaged = || ClientError::Decode("the recovery bundle is damaged".into());
        let refused = || {
            ClientError::Crypto(
                "the recovery bundle's key-derivation settings are not this client's: refused"
                    .into(),
            )
        };
        let (kdf, header_len) = match bundle.first() {
            Some(&HARDENED_VERSION) => return Self::open_hardened(bundle, passphrase),
            Some(&BUNDLE_VERSION) => (Kdf::Argon2id, HEADER_V2),
            Some(1) => {
                if bundle.len() < HEADER_V1 {
                    return Err(damaged());
                }
                let log_n = bundle[1];
                let r = u32::from_be_bytes(bundle[2..6].try_into().expect("four bytes"));
                let p = u32::from_be_bytes(bundle[6..10].try_into().expect("four bytes"));
                if (log_n, r, p) != (LOG_N, SCRYPT_R, SCRYPT_P) {
                    return Err(refused());
                }
                (Kdf::Scrypt, HEADER_V1)
            }
            _ => return Err(damaged()),
        };
        if bundle.len() < header_len + WRAPPED + 12 + 32 + 16 {
            return Err(damaged());
        }
        let (header, rest) = bundle.split_at(header_len);
        let salt = header[header_len - 16..].to_vec();
        let wrap_key = blocking_kdf(kdf, passphrase, salt).await?;
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

impl RootKey {
    /// Seals the root key for Wickr's hardened mode: the bundle key that opens
    /// it never goes to the server; the user keeps it as the returned recovery
    /// code, without which the bundle is useless.
    pub fn seal_hardened_bundle(&self) -> Result<(Vec<u8>, RecoveryCode), ClientError> {
        let key = random::<32>()?;
        let header = [HARDENED_VERSION];
        let mut out = header.to_vec();
        out.extend(seal(&key, &header, self.secret().as_ref())?);
        Ok((out, RecoveryCode(key)))
    }

    fn open_hardened(bundle: &[u8], code: &str) -> Result<Self, ClientError> {
        let damaged = || ClientError::Decode("the recovery bundle is damaged".into());
        let key = RecoveryCode::parse(code)?;
        let (header, sealed_root) = bundle.split_at_checked(1).ok_or_else(damaged)?;
        let secret = open(&key.0, header, sealed_root).ok_or(ClientError::WrongPassphrase)?;
        let secret: Zeroizing<[u8; 32]> =
            Zeroizing::new(secret.as_slice().try_into().map_err(|_| damaged())?);
        Ok(Self::from_secret(&secret))
    }
}

/// The key of a hardened recovery bundle, as the user keeps it: 64 hex digits
/// in groups of four. Wiped when dropped, never shown by `Debug`.
pub struct RecoveryCode(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

impl RecoveryCode {
    /// The code to write down.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(fingerprint(&self.0))
    }

    /// A code as the user types it (spaces and case do not matter).
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let digits: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect(),
        );
        let bytes = Zeroizing::new(
            hex::decode(digits.as_bytes()).map_err(|_| ClientError::WrongPassphrase)?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::WrongPassphrase)?;
        Ok(Self(Zeroizing::new(key)))
    }
}

/// Refuses a recovery passphrase that is easy to guess: the server holds the
/// bundle, so the passphrase is all that stands between it and the root key.
pub fn check_passphrase_strength(passphrase: &str) -> Result<(), ClientError> {
    let estimate = zxcvbn::zxcvbn(passphrase, &[]);
    if estimate.score() < zxcvbn::Score::Three {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| format!(" ({w})")))
            .unwrap_or_default();
        return Err(ClientError::WeakPassphrase(format!(
            "the recovery passphrase is too easy to guess{hint}: use four or more unrelated words"
        )));
    }
    Ok(())
}

/// Which key derivation a bundle uses.
#[derive(Clone, Copy)]
enum Kdf {
    /// Format 2.
    Argon2id,
    /// Format 1, read only.
    Scrypt,
}

/// The passphrase key, off the async runtime (it is slow by design).
async fn blocking_kdf(
    kdf: Kdf, passphrase: &str, salt: Vec<u8>,
) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    match kdf {
        Kdf::Argon2id => {
            crate::store::passphrase_key(passphrase, salt, ARGON2_M_KIB, ARGON2_T, ARGON2_P).await
        }
        Kdf::Scrypt => {
            let passphrase = Zeroizing::new(passphrase.to_owned());
            tokio::task::spawn_blocking(move || {
                let mut key = Zeroizing::new([0u8; 32]);
                let params = scrypt::Params::new(LOG_N, SCRYPT_R, SCRYPT_P)
                    .map_err(|_| ClientError::Crypto("scrypt settings".into()))?;
                scrypt::scrypt(passphrase.as_bytes(), &salt, &params, key.as_mut())
                    .map_err(|_| ClientError::Crypto("scrypt failed".into()))?;
                Ok(key)
            })
            .await
            .map_err(|_| ClientError::Crypto("the key derivation was interrupted".into()))?
        }
    }
}

/// `nonce(12) ‖ AES-256-GCM(key, plaintext, aad)`.
fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
    crate::sealed::seal::<Aes256Gcm>(key, aad, plaintext)
        .ok_or_else(|| ClientError::Crypto("sealing failed".into()))
}

fn open(key: &[u8; 32], aad: &[u8], bytes: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    crate::sealed::open::<Aes256Gcm>(key, aad, bytes)
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

    #[tokio::test]
    async fn a_recovery_bundle_opens_with_its_passphrase_only() {
        let root = RootKey::generate().expect("root");
        let bundle = root
            .seal_recovery_bundle("correct horse")
            .await
            .expect("seal");
        let back = RootKey::open_recovery_bundle(&bundle, "correct horse")
            .await
            .expect("open");
        assert_eq!(back.public(), root.public());
        assert!(matches!(
            RootKey::open_recovery_bundle(&bundle, "wrong horse").await,
            Err(ClientError::WrongPassphrase)
        ));
        for i in [0, 1, HEADER_V2 + 3, bundle.len() - 1] {
            let mut bad = bundle.clone();
            bad[i] ^= 1;
            assert!(
                RootKey::open_recovery_bundle(&bad, "correct horse")
                    .await
                    .is_err(),
                "byte {i} is protected"
            );
        }
        assert!(
            RootKey::open_recovery_bundle(&bundle[..40], "correct horse")
                .await
                .is_err()
        );
    }

    /// A format 1 bundle as the previous client wrote it, with the scrypt cost
    /// in its header.
    fn v1_header(log_n: u8, r: u32, p: u32) -> Vec<u8> {
        let mut h = vec![1, log_n];
        h.extend_from_slice(&r.to_be_bytes());
        h.extend_from_slice(&p.to_be_bytes());
        h.extend_from_slice(&[7; 16]);
        h.extend_from_slice(&[0; WRAPPED + 12 + 32 + 16]);
        h
    }

    #[tokio::test]
    async fn a_hostile_bundle_header_cannot_choose_the_key_derivation() {
        // 2^20 × 8 × 128 bytes = 1 GiB of scrypt memory, or p = 4 billion: the
        // previous client would have tried; this one refuses before deriving.
        for (log_n, r, p) in [(20, 8, 1), (15, 32, 4), (15, 8, u32::MAX), (14, 8, 1)] {
            let e = RootKey::open_recovery_bundle(&v1_header(log_n, r, p), "pw")
                .await
                .expect_err("refused");
            assert!(e.to_string().contains("not this client's"), "{e}");
        }
        // The settings it wrote itself still open (and fail on the MAC here).
        assert!(matches!(
            RootKey::open_recovery_bundle(&v1_header(LOG_N, SCRYPT_R, SCRYPT_P), "pw").await,
            Err(ClientError::WrongPassphrase)
        ));
        assert!(
            RootKey::open_recovery_bundle(&[9; 200], "pw")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_hardened_bundle_opens_with_its_recovery_code_only() {
        let root = RootKey::generate().expect("root");
        let (bundle, code) = root.seal_hardened_bundle().expect("sealed");
        assert_eq!(
            bundle.len(),
            1 + 12 + 32 + 16,
            "only the sealed root, no wrapped key"
        );
        let text = code.to_text();
        let back = RootKey::open_recovery_bundle(&bundle, &text.to_uppercase())
            .await
            .expect("opens");
        assert_eq!(back.public(), root.public());
        let (_, other) = root.seal_hardened_bundle().expect("sealed");
        for wrong in [
            other.to_text().to_string(),
            "correct horse".into(),
            String::new(),
        ] {
            assert!(matches!(
                RootKey::open_recovery_bundle(&bundle, &wrong).await,
                Err(ClientError::WrongPassphrase)
            ));
        }
        assert!(!format!("{code:?}").contains(&text[..4]));
    }

    #[test]
    fn weak_recovery_passphrases_are_refused() {
        for weak in ["password", "Secret-123!", "ann", "qwertyuiop"] {
            assert!(
                matches!(
                    check_passphrase_strength(weak),
                    Err(ClientError::WeakPassphrase(_))
                ),
                "{weak}"
            );
        }
        check_passphrase_strength("wobbly lantern orbits the quiet marsh").expect("strong");
    }

    #[test]
    fn device_signatures_bind_the_user_and_the_key() {
        let root = RootKey::generate().expect("root");
        let (user, other) = (UserId::random(), UserId::random());
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
