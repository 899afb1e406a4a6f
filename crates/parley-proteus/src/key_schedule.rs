//! The Proteus key schedule: X3DH, root keys, chain keys and message keys.
//!
//! Owns: every derivation of the wire-format page, byte for byte — the 96-byte X3DH
//! master secret in the deployed order, `HKDF("handshake")`, `HKDF("dh_ratchet")`,
//! the chain step `HMAC(ck, "0")` / `HMAC(ck, "1")`, `HKDF("hash_ratchet")`, and the
//! per-message ChaCha20 (original 64-bit nonce) and HMAC-SHA256. Every secret here is
//! zeroized when dropped. Knows nothing about message encoding or session bookkeeping.

use chacha20::ChaCha20Legacy;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use std::sync::LazyLock;

use hkdf::{Hkdf, HkdfExtract};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::ProteusError;
use crate::keys::{IdentityKeyPair, KeyPair, PreKey, PreKeyBundle, PublicKey};

type HmacSha256 = Hmac<Sha256>;

/// HKDF-SHA256 with 64 bytes of output, split in two 32-byte halves.
fn hkdf_split(salt: &[u8], ikm: &[u8], info: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut okm = Zeroizing::new([0u8; 64]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm.as_mut())
        .expect("64 bytes is within HKDF-SHA256's 8160-byte limit");
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a.copy_from_slice(&okm[..32]);
    b.copy_from_slice(&okm[32..]);
    (a, b)
}

fn hmac(key: &[u8; 32]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The 96-byte X3DH master secret, as the initiator (Alice) computes it:
/// `DH(IA, PB) || DH(BA, IB) || DH(BA, PB)`.
pub(crate) fn master_secret_initiator(
    alice: &IdentityKeyPair, alice_base: &KeyPair, bob: &PreKeyBundle,
) -> Result<Zeroizing<[u8; 96]>, ProteusError> {
    let mut master = Zeroizing::new([0u8; 96]);
    let bob_identity = bob.identity_key().public_key();
    master[..32].copy_from_slice(alice.key_pair().dh(bob.public_key())?.as_ref());
    master[32..64].copy_from_slice(alice_base.dh(bob_identity)?.as_ref());
    master[64..].copy_from_slice(alice_base.dh(bob.public_key())?.as_ref());
    Ok(master)
}

/// The same secret as the responder (Bob) computes it:
/// `DH(PB, IA) || DH(IB, BA) || DH(PB, BA)`.
pub(crate) fn master_secret_responder(
    bob: &IdentityKeyPair, bob_prekey: &PreKey, alice_identity: &PublicKey, alice_base: &PublicKey,
) -> Result<Zeroizing<[u8; 96]>, ProteusError> {
    let mut master = Zeroizing::new([0u8; 96]);
    master[..32].copy_from_slice(bob_prekey.key_pair().dh(alice_identity)?.as_ref());
    master[32..64].copy_from_slice(bob.key_pair().dh(alice_base)?.as_ref());
    master[64..].copy_from_slice(bob_prekey.key_pair().dh(alice_base)?.as_ref());
    Ok(master)
}

/// `root_key || chain_key = HKDF(master, salt = "", info = "handshake")`.
pub(crate) fn handshake(master: &[u8; 96]) -> (RootKey, ChainKey) {
    let (root, chain) = hkdf_split(&[], master, b"handshake");
    (RootKey(root), ChainKey::new(chain, 0))
}

/// A root key: the salt of the next DH ratchet step.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RootKey(pub(crate) [u8; 32]);

impl RootKey {
    /// `root' || chain = HKDF(DH(ours, theirs), salt = root, info = "dh_ratchet")`.
    pub(crate) fn dh_ratchet(
        &self, ours: &KeyPair, theirs: &PublicKey,
    ) -> Result<(RootKey, ChainKey), ProteusError> {
        let shared = ours.dh(theirs)?;
        let (root, chain) = hkdf_split(&self.0, shared.as_ref(), b"dh_ratchet");
        Ok((RootKey(root), ChainKey::new(chain, 0)))
    }
}

/// A chain key and the counter of the next message key it yields.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChainKey {
    key: [u8; 32],
    idx: u32,
}

impl ChainKey {
    pub(crate) fn new(key: [u8; 32], idx: u32) -> Self {
        Self { key, idx }
    }

    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The counter of the message key this chain key yields.
    pub(crate) fn idx(&self) -> u32 {
        self.idx
    }

    /// One step of the chain: this counter's message keys (`HMAC(ck, "0")` expanded
    /// with `HKDF(info = "hash_ratchet")`) and the next chain key (`HMAC(ck, "1")`),
    /// from one keyed HMAC. Counters wrap after 2^32 messages, which no chain reaches
    /// (the DH ratchet replaces chains long before).
    pub(crate) fn step(&self) -> (MessageKeys, ChainKey) {
        let keyed = hmac(&self.key);
        let mut zero = keyed.clone();
        zero.update(b"0");
        let mut one = keyed;
        one.update(b"1");
        let message_key = Zeroizing::new(<[u8; 32]>::from(zero.finalize().into_bytes()));
        let next = ChainKey::new(one.finalize().into_bytes().into(), self.idx.wrapping_add(1));
        (MessageKeys::derive(&message_key, self.idx), next)
    }
}

/// The keys of one message: a ChaCha20 key and an HMAC-SHA256 key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKeys {
    cipher: [u8; 32],
    mac: [u8; 32],
    counter: u32,
}

/// HKDF's extract step keyed with the empty salt, keyed once and cloned per message.
static EMPTY_SALT: LazyLock<HkdfExtract<Sha256>> = LazyLock::new(|| HkdfExtract::new(Some(&[])));

impl MessageKeys {
    /// `cipher_key || mac_key = HKDF(message_key, salt = "", info = "hash_ratchet")`.
    fn derive(message_key: &[u8; 32], counter: u32) -> Self {
        let mut extract = EMPTY_SALT.clone();
        extract.input_ikm(message_key);
        let (_, hkdf) = extract.finalize();
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf.expand(b"hash_ratchet", okm.as_mut())
            .expect("64 bytes is within HKDF-SHA256's 8160-byte limit");
        let mut keys = MessageKeys {
            cipher: [0; 32],
            mac: [0; 32],
            counter,
        };
        keys.cipher.copy_from_slice(&okm[..32]);
        keys.mac.copy_from_slice(&okm[32..]);
        keys
    }

    pub(crate) fn from_parts(cipher: [u8; 32], mac: [u8; 32], counter: u32) -> Self {
        Self {
            cipher,
            mac,
            counter,
        }
    }

    pub(crate) fn counter(&self) -> u32 {
        self.counter
    }

    pub(crate) fn cipher_key(&self) -> &[u8; 32] {
        &self.cipher
    }

    pub(crate) fn mac_key(&self) -> &[u8; 32] {
        &self.mac
    }

    /// Encrypts or decrypts in place: ChaCha20 (64-bit nonce) with the nonce the
    /// counter as 4 big-endian bytes followed by 4 zero bytes.
    pub(crate) fn apply_keystream(&self, data: &mut [u8]) {
        let mut nonce = [0u8; 8];
        nonce[..4].copy_from_slice(&self.counter.to_be_bytes());
        let mut cipher = ChaCha20Legacy::new(&self.cipher.into(), &nonce.into());
        cipher.apply_keystream(data);
    }

    /// `HMAC-SHA256(mac_key, message bytes)`.
    pub(crate) fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = hmac(&self.mac);
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Checks a MAC in constant time.
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8; 32]) -> bool {
        let mut mac = hmac(&self.mac);
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }
}
