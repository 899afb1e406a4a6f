//! `nonce ‖ ciphertext` under a RustCrypto AEAD with a 256-bit key: the one way
//! this crate seals a secret at rest, whatever the cipher (XChaCha20-Poly1305
//! for the device store, AES-256-GCM for the recovery bundle). It owns fresh
//! nonces and the split on opening; it never knows what it seals or where the
//! key came from.

use chacha20poly1305::aead::array::typenum::Unsigned as _;
use chacha20poly1305::aead::{Aead, KeyInit, Nonce, Payload};
use zeroize::Zeroizing;

/// `nonce ‖ C(key, plaintext, aad)` with a random nonce. `None` only when the
/// system has no randomness or the cipher refuses the input (too long).
pub(crate) fn seal<C: Aead + KeyInit>(
    key: &[u8; 32], aad: &[u8], plaintext: &[u8],
) -> Option<Vec<u8>> {
    let mut nonce = Nonce::<C>::default();
    getrandom::fill(nonce.as_mut()).ok()?;
    let ciphertext = C::new_from_slice(key)
        .ok()?
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .ok()?;
    let mut out = Vec::with_capacity(nonce.len() + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend(ciphertext);
    Some(out)
}

/// The plaintext of `nonce ‖ ciphertext`; `None` when it is too short or does
/// not authenticate under `key` and `aad`.
pub(crate) fn open<C: Aead + KeyInit>(
    key: &[u8; 32], aad: &[u8], bytes: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ciphertext) = bytes.split_at_checked(C::NonceSize::USIZE)?;
    let nonce = Nonce::<C>::try_from(nonce).ok()?;
    C::new_from_slice(key)
        .ok()?
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
