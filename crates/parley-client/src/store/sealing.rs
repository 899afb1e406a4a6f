//! How a value is sealed at rest: the sealing and lookup keys HKDF derives
//! from the storage key, and the sealed format (a version byte, a random
//! 24-byte nonce, XChaCha20-Poly1305 over the value with the caller's
//! associated data).
//!
//! This module never knows the passphrase, the tables or the database: it
//! seals and opens bytes under a key it is given.

use chacha20poly1305::XChaCha20Poly1305;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ClientError;

/// Format version of sealed values.
const VALUE_VERSION: u8 = 1;

/// The sealing and lookup keys, wiped when dropped.
pub(super) struct Keys {
    pub(super) seal: Zeroizing<[u8; 32]>,
    pub(super) lookup: Zeroizing<[u8; 32]>,
}

impl Keys {
    pub(super) fn from_storage_key(storage: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(None, storage);
        let mut seal = Zeroizing::new([0u8; 32]);
        let mut lookup = Zeroizing::new([0u8; 32]);
        hk.expand(b"parley device store seal v1", seal.as_mut())
            .expect("32 bytes is a valid HKDF length");
        hk.expand(b"parley device store lookup v1", lookup.as_mut())
            .expect("32 bytes is a valid HKDF length");
        Self { seal, lookup }
    }
}

pub(super) fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, ClientError> {
    let mut b = Zeroizing::new([0u8; N]);
    getrandom::fill(b.as_mut()).map_err(|e| ClientError::Storage(format!("no randomness: {e}")))?;
    Ok(b)
}

/// `version ‖ nonce(24) ‖ XChaCha20-Poly1305(key, plaintext, aad)`.
pub(super) fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
    let sealed = crate::sealed::seal::<XChaCha20Poly1305>(key, aad, plaintext)
        .ok_or_else(|| ClientError::Storage("sealing failed".into()))?;
    let mut out = Vec::with_capacity(1 + sealed.len());
    out.push(VALUE_VERSION);
    out.extend(sealed);
    Ok(out)
}

pub(super) fn open(key: &[u8; 32], aad: &[u8], bytes: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (&version, rest) = bytes.split_first()?;
    if version != VALUE_VERSION {
        return None;
    }
    crate::sealed::open::<XChaCha20Poly1305>(key, aad, rest)
}
