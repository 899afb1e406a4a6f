//! Access and user tokens, signed by the backend with Ed25519.
//!
//! A token is `v1.<key id>.<payload>.<signature>` with the payload and signature
//! base64url; the signature covers `v1.<key id>.<payload>`. The payload names the
//! kind (access or user), the user, the expiry, a connection id, and the client (access
//! tokens) or cookie (user tokens). Checking a token is a signature check and a clock
//! comparison: no database. Keys live in `<data>/keys/*.seed`; every key there
//! verifies, the newest signs, so a key can be rotated by adding one. Several
//! nodes (`nats_url`) sign with one seed kept in the database, the first
//! node's newest key ([`TokenKeys::sign_with`]).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use parley_api::{ClientId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Short-lived bearer token for API requests.
    #[serde(rename = "a")]
    Access,
    /// Long-lived token in the cookie, exchanged for access tokens.
    #[serde(rename = "u")]
    User,
}

/// A token's verified contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Kind.
    #[serde(rename = "t")]
    pub kind: Kind,
    /// The user.
    #[serde(rename = "u")]
    pub user: UserId,
    /// Expiry, Unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
    /// Connection id: one per login or refresh.
    #[serde(rename = "n")]
    pub connection: u64,
    /// The device an access token is bound to.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientId>,
    /// The cookie a user token stands for.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// Why a token was refused (deliberately vague towards clients).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, unknown key or bad signature.
    #[error("invalid token")]
    Invalid,
    /// Well-formed and authentic, but expired.
    #[error("expired token")]
    Expired,
}

/// The backend's signing keys.
pub struct TokenKeys {
    signing: SigningKey,
    signing_id: String,
    verifying: HashMap<String, VerifyingKey>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_id", &self.signing_id)
            .finish_non_exhaustive()
    }
}

fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..6])
}

impl TokenKeys {
    /// Loads every `*.seed` in `dir` (creating one if there is none); the newest signs.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut seeds = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "seed") {
                let modified = std::fs::metadata(&path)?.modified()?;
                let hex_seed = Zeroizing::new(std::fs::read_to_string(&path)?);
                let mut seed = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(hex_seed.trim(), seed.as_mut()).map_err(|_| {
                    std::io::Error::other(format!("{} is not a 32-byte hex seed", path.display()))
                })?;
                seeds.push((modified, path.clone(), SigningKey::from_bytes(&seed)));
            }
        }
        if seeds.is_empty() {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut()).map_err(std::io::Error::other)?;
            let key = SigningKey::from_bytes(&seed);
            let path = dir.join(format!("{}.seed", key_id(&key.verifying_key())));
            write_private(&path, &hex::encode(seed.as_ref()))?;
            seeds.push((std::fs::metadata(&path)?.modified()?, path, key));
        }
        seeds.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let verifying = seeds
            .iter()
            .map(|(_, _, k)| (key_id(&k.verifying_key()), k.verifying_key()))
            .collect();
        let (_, _, signing) = seeds.pop().expect("at least one key");
        let signing_id = key_id(&signing.verifying_key());
        Ok(Self {
            signing,
            signing_id,
            verifying,
        })
    }

    /// The seed of the key that signs (to offer as the nodes' shared one).
    pub fn signing_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Signs with the nodes' shared key from now on (every key loaded
    /// still verifies).
    pub fn sign_with(&mut self, seed: &[u8; 32]) {
        let key = SigningKey::from_bytes(seed);
        let id = key_id(&key.verifying_key());
        self.verifying.insert(id.clone(), key.verifying_key());
        self.signing = key;
        self.signing_id = id;
    }

    /// Signs claims into a token.
    pub fn issue(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).expect("claims serialize");
        let signed = format!("v1.{}.{}", self.signing_id, B64.encode(payload));
        let signature = self.signing.sign(signed.as_bytes());
        format!("{signed}.{}", B64.encode(signature.to_bytes()))
    }

    /// Verifies a token of `kind` at time `now`.
    pub fn verify(&self, token: &str, kind: Kind, now: i64) -> Result<Claims, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let mut parts = signed.splitn(3, '.');
        let (Some("v1"), Some(kid), Some(payload)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let key = self.verifying.get(kid).ok_or(TokenError::Invalid)?;
        let signature: [u8; 64] = B64
            .decode(signature)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(TokenError::Invalid)?;
        key.verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| TokenError::Invalid)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
        if claims.kind != kind {
            return Err(TokenError::Invalid);
        }
        if claims.expires <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Writes a secret file readable only by its owner (where the platform allows).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(kind: Kind, expires: i64) -> Claims {
        Claims {
            kind,
            user: parley_api::UserId::random(),
            expires,
            connection: 7,
            client: Some(ClientId(42)),
            cookie: None,
        }
    }

    #[test]
    fn tokens_verify_expire_and_refuse_tampering() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = TokenKeys::load_or_create(dir.path()).expect("keys");
        let c = claims(Kind::Access, 1000);
        let t = keys.issue(&c);
        assert_eq!(keys.verify(&t, Kind::Access, 999), Ok(c));
        assert_eq!(
            keys.verify(&t, Kind::Access, 1000),
            Err(TokenError::Expired)
        );
        assert_eq!(keys.verify(&t, Kind::User, 999), Err(TokenError::Invalid));
        for i in 0..t.len() {
            let mut bad = t.clone().into_bytes();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(bad).expect("ascii");
            assert!(keys.verify(&bad, Kind::Access, 0).is_err(), "byte {i}");
        }
    }

    #[test]
    fn keys_persist_and_rotate() {
        let dir = tempfile::tempdir().expect("dir");
        let first = TokenKeys::load_or_create(dir.path()).expect("keys");
        let old = first.issue(&claims(Kind::User, 10));
        let again = TokenKeys::load_or_create(dir.path()).expect("reload");
        assert!(
            again.verify(&old, Kind::User, 0).is_ok(),
            "same key after restart"
        );
        // Rotation: a newer key signs, the old one still verifies.
        #[expect(
            clippy::disallowed_methods,
            reason = "a plain test: the newer key file needs a later modification time"
        )]
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_private(&dir.path().join("new.seed"), &hex::encode([9u8; 32])).expect("write");
        let rotated = TokenKeys::load_or_create(dir.path()).expect("reload");
        assert_ne!(rotated.signing_id, first.signing_id);
        assert!(rotated.verify(&old, Kind::User, 0).is_ok());
        let fresh = rotated.issue(&claims(Kind::User, 10));
        assert!(
            first.verify(&fresh, Kind::User, 0).is_err(),
            "old set does not know new key"
        );
    }

    #[test]
    fn nodes_with_one_shared_seed_accept_each_others_tokens() {
        let (one, two) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let mut a = TokenKeys::load_or_create(one.path()).expect("keys");
        let mut b = TokenKeys::load_or_create(two.path()).expect("keys");
        let before = a.issue(&claims(Kind::Access, 100));
        assert!(
            b.verify(&before, Kind::Access, 10).is_err(),
            "keys of their own"
        );
        let shared = a.signing_seed();
        a.sign_with(&shared);
        b.sign_with(&shared);
        let token = b.issue(&claims(Kind::Access, 100));
        assert!(a.verify(&token, Kind::Access, 10).is_ok());
        // What a signed before still verifies there.
        assert!(a.verify(&before, Kind::Access, 10).is_ok());
    }
}
