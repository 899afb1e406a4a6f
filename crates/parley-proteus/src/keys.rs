//! Proteus key material: key pairs, identities, prekeys and prekey bundles.
//!
//! Owns: every key is an Ed25519 key pair; for Diffie-Hellman the secret becomes an
//! X25519 scalar (first 32 bytes of SHA-512 of the seed, clamped) and the public key
//! its Montgomery form, as libsodium's `crypto_sign_ed25519_*_to_curve25519` do. The
//! X25519 result is computed on the Edwards point we already hold: `u([k]P)` equals
//! `X25519(k, u(P))` for every point P on the curve, and dalek's constant-time Edwards
//! multiplication (vectorised where the CPU allows) is faster here than the Montgomery
//! ladder; a test checks the two agree byte for byte. Also
//! the storage encodings of identity key pairs and prekeys (Wire's layout), bundles on
//! the wire, and fingerprints. Knows nothing about sessions or chains.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use minicbor::{Decoder, data::Type};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::cbor::{self, Enc, EncResult};
use crate::error::{DecodeError, ProteusError};

/// An Ed25519 public key, checked to be a valid curve point.
#[derive(Clone)]
pub struct PublicKey {
    ed: VerifyingKey,
}

impl PublicKey {
    /// Parses the 32-byte Ed25519 point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, DecodeError> {
        let ed = VerifyingKey::from_bytes(bytes).map_err(|_| DecodeError::InvalidPublicKey)?;
        Ok(Self::from_verifying(ed))
    }

    fn from_verifying(ed: VerifyingKey) -> Self {
        Self { ed }
    }

    /// The 32-byte Ed25519 point.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.ed.as_bytes()
    }

    /// Lowercase hex of the key.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.ed.verify_strict(message, signature).is_ok()
    }

    /// `{0: bytes(32)}`
    pub(crate) fn encode(&self, e: &mut Enc<'_>) -> EncResult {
        cbor::write_wrapped(e, self.as_bytes())
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Self::from_bytes(&cbor::wrapped_array::<32>(d, "PublicKey")?)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// An Ed25519 key pair used for signing and, converted, for X25519.
/// Zeroized on drop; `Debug` shows only the public half.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
    /// The unclamped X25519 scalar: the first half of SHA-512 of the seed.
    dh: Zeroizing<[u8; 32]>,
    public: PublicKey,
}

impl KeyPair {
    /// The key pair of a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing(SigningKey::from_bytes(seed))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let dh = Zeroizing::new(signing.to_scalar_bytes());
        let public = PublicKey::from_verifying(signing.verifying_key());
        Self {
            signing,
            dh,
            public,
        }
    }

    /// A fresh key pair from 32 bytes of `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// X25519 with the converted keys; an all-zero result is refused.
    pub(crate) fn dh(&self, theirs: &PublicKey) -> Result<Zeroizing<[u8; 32]>, ProteusError> {
        let mut point = theirs.ed.to_edwards().mul_clamped(*self.dh);
        let mut u = point.to_montgomery();
        let shared = Zeroizing::new(u.to_bytes());
        point.zeroize();
        u.zeroize();
        if bool::from(shared.ct_eq(&[0u8; 32])) {
            return Err(ProteusError::DegenerateKey);
        }
        Ok(shared)
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// libsodium's 64-byte secret key: seed followed by the public key.
    pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        Zeroizing::new(self.signing.to_keypair_bytes())
    }

    pub(crate) fn from_secret_bytes(bytes: &[u8; 64]) -> Result<Self, DecodeError> {
        SigningKey::from_keypair_bytes(bytes)
            .map(Self::from_signing)
            .map_err(|_| DecodeError::KeyPairMismatch)
    }

    /// `{0: SecretKey {0: bytes(64)}, 1: PublicKey}`
    pub(crate) fn encode(&self, e: &mut Enc<'_>) -> EncResult {
        e.map(2)?.u8(0)?;
        cbor::write_wrapped(e, self.secret_bytes().as_ref())?;
        e.u8(1)?;
        self.public.encode(e)
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        const S: &str = "KeyPair";
        let (mut secret, mut public) = (None, None);
        cbor::read_map(d, S, |key, d| {
            match key {
                0 => secret = Some(Zeroizing::new(cbor::wrapped_array::<64>(d, "SecretKey")?)),
                1 => public = Some(PublicKey::decode(d)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let pair = Self::from_secret_bytes(&*cbor::required(secret, S, 0)?)?;
        if pair.public != cbor::required(public, S, 1)? {
            return Err(DecodeError::KeyPairMismatch);
        }
        Ok(pair)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A device's long-term public identity key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IdentityKey(PublicKey);

impl IdentityKey {
    /// Wraps a public key.
    pub fn new(key: PublicKey) -> Self {
        Self(key)
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.0
    }

    /// The fingerprint: lowercase hex of the 32-byte public key.
    pub fn fingerprint(&self) -> String {
        self.0.to_hex()
    }

    /// The fingerprint in groups of four characters, for people to compare aloud.
    pub fn fingerprint_human(&self) -> String {
        let hex = self.fingerprint();
        let mut out = String::with_capacity(hex.len() + hex.len() / 4);
        for (i, c) in hex.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }

    /// `{0: PublicKey}`
    pub(crate) fn encode(&self, e: &mut Enc<'_>) -> EncResult {
        e.map(1)?.u8(0)?;
        self.0.encode(e)
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let mut key = None;
        cbor::read_map(d, "IdentityKey", |k, d| {
            Ok(match k {
                0 => {
                    key = Some(PublicKey::decode(d)?);
                    true
                }
                _ => false,
            })
        })?;
        Ok(Self(cbor::required(key, "IdentityKey", 0)?))
    }
}

/// A device's long-term identity key pair.
#[derive(Clone, Debug)]
pub struct IdentityKeyPair {
    pair: KeyPair,
    public: IdentityKey,
}

impl IdentityKeyPair {
    /// A fresh identity from 32 bytes of `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_key_pair(KeyPair::generate(rng))
    }

    /// The identity of a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_key_pair(KeyPair::from_seed(seed))
    }

    fn from_key_pair(pair: KeyPair) -> Self {
        let public = IdentityKey(pair.public.clone());
        Self { pair, public }
    }

    /// The public identity key.
    pub fn public_key(&self) -> &IdentityKey {
        &self.public
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    /// Storage encoding, Wire's layout:
    /// `{0: version 1, 1: SecretKey {0: bytes(64)}, 2: IdentityKey}`.
    /// The result holds the secret key and is zeroized when dropped.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(cbor::encode_to_vec(128, |e| {
            e.map(3)?.u8(0)?.u8(1)?.u8(1)?;
            cbor::write_wrapped(e, self.pair.secret_bytes().as_ref())?;
            e.u8(2)?;
            self.public.encode(e)
        }))
    }

    /// Reads [`IdentityKeyPair::serialize`]'s encoding, checking the halves match.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DecodeError> {
        const S: &str = "IdentityKeyPair";
        cbor::decode_all(bytes, |d| {
            let (mut version, mut secret, mut public) = (None, None, None);
            cbor::read_map(d, S, |key, d| {
                match key {
                    0 => version = Some(cbor::version(d, S, 1)?),
                    1 => secret = Some(Zeroizing::new(cbor::wrapped_array::<64>(d, "SecretKey")?)),
                    2 => public = Some(IdentityKey::decode(d)?),
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            cbor::required(version, S, 0)?;
            let pair = KeyPair::from_secret_bytes(&*cbor::required(secret, S, 1)?)?;
            if pair.public != cbor::required(public, S, 2)?.0 {
                return Err(DecodeError::KeyPairMismatch);
            }
            Ok(Self::from_key_pair(pair))
        })
    }
}

/// A prekey id. `0..=65534` are one-time prekeys; [`PreKeyId::LAST_RESORT`] is never
/// removed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PreKeyId(pub u16);

impl PreKeyId {
    /// The last-resort prekey's id.
    pub const LAST_RESORT: PreKeyId = PreKeyId(u16::MAX);

    /// Whether this is the last-resort prekey.
    pub fn is_last_resort(self) -> bool {
        self == Self::LAST_RESORT
    }
}

impl fmt::Display for PreKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A prekey: an id and a key pair.
#[derive(Clone, Debug)]
pub struct PreKey {
    id: PreKeyId,
    pair: KeyPair,
}

impl PreKey {
    /// A fresh prekey with the given id.
    pub fn generate<R: CryptoRng + ?Sized>(id: PreKeyId, rng: &mut R) -> Self {
        Self {
            id,
            pair: KeyPair::generate(rng),
        }
    }

    /// A prekey from a known seed (for tests and known-answer vectors).
    pub fn from_seed(id: PreKeyId, seed: &[u8; 32]) -> Self {
        Self {
            id,
            pair: KeyPair::from_seed(seed),
        }
    }

    /// A fresh last-resort prekey (id 65535).
    pub fn last_resort<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::generate(PreKeyId::LAST_RESORT, rng)
    }

    /// `count` fresh prekeys with ids continuing from `start`, wrapping within
    /// `0..=65534` so the last-resort id is never produced.
    pub fn generate_batch<R: CryptoRng + ?Sized>(start: u16, count: u16, rng: &mut R) -> Vec<Self> {
        (0..count)
            .map(|i| {
                let id = ((u32::from(start) + u32::from(i)) % u32::from(u16::MAX)) as u16;
                Self::generate(PreKeyId(id), rng)
            })
            .collect()
    }

    /// The prekey's id.
    pub fn id(&self) -> PreKeyId {
        self.id
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.pair.public
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    /// Storage encoding, Wire's layout: `{0: version 1, 1: id, 2: KeyPair}`.
    /// The result holds the secret key and is zeroized when dropped.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(cbor::encode_to_vec(128, |e| {
            e.map(3)?.u8(0)?.u8(1)?.u8(1)?.u16(self.id.0)?.u8(2)?;
            self.pair.encode(e)
        }))
    }

    /// Reads [`PreKey::serialize`]'s encoding.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DecodeError> {
        const S: &str = "PreKey";
        cbor::decode_all(bytes, |d| {
            let (mut version, mut id, mut pair) = (None, None, None);
            cbor::read_map(d, S, |key, d| {
                match key {
                    0 => version = Some(cbor::version(d, S, 1)?),
                    1 => id = Some(PreKeyId(d.u16()?)),
                    2 => pair = Some(KeyPair::decode(d)?),
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            cbor::required(version, S, 0)?;
            Ok(Self {
                id: cbor::required(id, S, 1)?,
                pair: cbor::required(pair, S, 2)?,
            })
        })
    }
}

/// What a bundle's optional identity signature says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BundleSignature {
    /// No signature (bundles from other implementations normally have none).
    Absent,
    /// The identity key signed this prekey.
    Valid,
    /// A signature is present and does not verify: do not use the bundle.
    Invalid,
}

/// What a device publishes so others can open a session with it while it is offline:
/// a prekey's id and public key, the identity key, and optionally the identity's
/// signature over the prekey's public key (Wickr's signed ephemeral keys).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PreKeyBundle {
    prekey_id: PreKeyId,
    public_key: PublicKey,
    identity_key: IdentityKey,
    signature: Option<[u8; 64]>,
}

impl PreKeyBundle {
    /// An unsigned bundle, as other implementations exchange them.
    pub fn new(identity: &IdentityKey, prekey: &PreKey) -> Self {
        Self {
            prekey_id: prekey.id,
            public_key: prekey.public_key().clone(),
            identity_key: identity.clone(),
            signature: None,
        }
    }

    /// A bundle whose prekey is signed by the identity key.
    pub fn signed(identity: &IdentityKeyPair, prekey: &PreKey) -> Self {
        let signature = identity
            .pair
            .sign(prekey.public_key().as_bytes())
            .to_bytes();
        Self {
            signature: Some(signature),
            ..Self::new(identity.public_key(), prekey)
        }
    }

    /// The prekey's id.
    pub fn prekey_id(&self) -> PreKeyId {
        self.prekey_id
    }

    /// The prekey's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The identity key of the device that published the bundle.
    pub fn identity_key(&self) -> &IdentityKey {
        &self.identity_key
    }

    /// Checks the optional signature.
    pub fn verify(&self) -> BundleSignature {
        match &self.signature {
            None => BundleSignature::Absent,
            Some(sig) => {
                let sig = Signature::from_bytes(sig);
                if self.identity_key.0.verify(self.public_key.as_bytes(), &sig) {
                    BundleSignature::Valid
                } else {
                    BundleSignature::Invalid
                }
            }
        }
    }

    /// Wire encoding:
    /// `{0: version 1, 1: prekey id, 2: PublicKey, 3: IdentityKey, 4: Signature or null}`.
    pub fn serialize(&self) -> Vec<u8> {
        cbor::encode_to_vec(192, |e| {
            e.map(5)?
                .u8(0)?
                .u8(1)?
                .u8(1)?
                .u16(self.prekey_id.0)?
                .u8(2)?;
            self.public_key.encode(e)?;
            e.u8(3)?;
            self.identity_key.encode(e)?;
            e.u8(4)?;
            match &self.signature {
                Some(sig) => cbor::write_wrapped(e, sig),
                None => e.null().map(|_| ()),
            }
        })
    }

    /// Reads a bundle. The signature may be `{0: bytes(64)}`, bare `bytes(64)` (as
    /// some implementations write it) or null. Does not verify it: see
    /// [`PreKeyBundle::verify`].
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DecodeError> {
        const S: &str = "PreKeyBundle";
        cbor::decode_all(bytes, |d| {
            let (mut version, mut id, mut public, mut identity) = (None, None, None, None);
            let mut signature = None;
            cbor::read_map(d, S, |key, d| {
                match key {
                    0 => version = Some(cbor::version(d, S, 1)?),
                    1 => id = Some(PreKeyId(d.u16()?)),
                    2 => public = Some(PublicKey::decode(d)?),
                    3 => identity = Some(IdentityKey::decode(d)?),
                    4 => {
                        signature = match d.datatype()? {
                            Type::Null | Type::Undefined => {
                                d.skip()?;
                                None
                            }
                            Type::Bytes => Some(cbor::array::<64>(d, "Signature")?),
                            _ => Some(cbor::wrapped_array::<64>(d, "Signature")?),
                        }
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            cbor::required(version, S, 0)?;
            Ok(Self {
                prekey_id: cbor::required(id, S, 1)?,
                public_key: cbor::required(public, S, 2)?,
                identity_key: cbor::required(identity, S, 3)?,
                signature,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our Edwards-form X25519 is libsodium's `ed25519 → curve25519` conversion
    /// followed by the X25519 Montgomery ladder, byte for byte.
    #[test]
    fn dh_equals_the_montgomery_ladder_on_converted_keys() {
        for i in 0..64u8 {
            let ours = KeyPair::from_seed(&[i; 32]);
            let theirs = KeyPair::from_seed(&[i.wrapping_mul(7).wrapping_add(1); 32]);
            let ladder = x25519_dalek::StaticSecret::from(ours.signing.to_scalar_bytes())
                .diffie_hellman(&x25519_dalek::PublicKey::from(
                    theirs.public.ed.to_montgomery().to_bytes(),
                ));
            let edwards = ours.dh(&theirs.public).expect("not degenerate");
            assert_eq!(edwards.as_ref(), ladder.as_bytes(), "seed {i}");
            assert_eq!(*edwards, *theirs.dh(&ours.public).expect("symmetric"));
        }
    }
}
