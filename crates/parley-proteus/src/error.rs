//! The one error type of this crate, named after what went wrong in the protocol.
//!
//! Owns: [`ProteusError`] and [`DecodeError`], and the numeric codes other Proteus
//! implementations show (so people moving between apps see the same number for the
//! same failure). Never carries key material or plaintext.

use crate::keys::PreKeyId;

/// Why a Proteus operation failed.
///
/// A failed decryption leaves the session exactly as it was: no key is consumed, no
/// randomness is drawn and the prekey store is not touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProteusError {
    /// A Diffie-Hellman result was all zeros: the peer sent a low-order public key.
    #[error("degenerate public key: the key agreement produced an all-zero secret")]
    DegenerateKey,
    /// A prekey message names a prekey the prekey store no longer has.
    #[error("prekey {0} not found: it was already used or never existed")]
    PreKeyNotFound(PreKeyId),
    /// A prekey message carries an identity other than this session's peer.
    #[error("the remote identity key changed")]
    RemoteIdentityChanged,
    /// A message authentication code or a prekey bundle's signature did not verify.
    #[error("invalid signature or message authentication code")]
    InvalidSignature,
    /// A message refers to a session state (session tag) that this session lacks,
    /// or the message is of a kind this operation cannot start from.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// The message is older than every message key this session still keeps.
    #[error("outdated message: its key was dropped long ago")]
    OutdatedMessage,
    /// The message was already decrypted; its key is gone.
    #[error("duplicate message")]
    DuplicateMessage,
    /// The message skips more than [`crate::MAX_COUNTER_GAP`] keys in its chain.
    #[error("too distant future: the message skips more than 1000 messages")]
    TooDistantFuture,
    /// The identity key pair passed in is not the one this session was made with.
    #[error("the local identity key pair does not belong to this session")]
    LocalIdentityMismatch,
    /// Bytes that are not a well-formed Proteus structure.
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    /// The caller's prekey store failed.
    #[error("prekey store: {0}")]
    PreKeyStore(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ProteusError {
    /// The numeric code Wire's clients show for the same failure.
    pub fn code(&self) -> u16 {
        match self {
            Self::DegenerateKey => 100,
            Self::PreKeyNotFound(_) => 101,
            Self::RemoteIdentityChanged => 204,
            Self::InvalidSignature => 206,
            Self::InvalidMessage(_) => 207,
            Self::OutdatedMessage => 208,
            Self::DuplicateMessage => 209,
            Self::TooDistantFuture => 212,
            Self::LocalIdentityMismatch => 300,
            Self::Decode(_) => 3,
            Self::PreKeyStore(_) => 500,
        }
    }

    /// A stable name for the failure (the variant's name).
    pub fn name(&self) -> &'static str {
        match self {
            Self::DegenerateKey => "DegenerateKey",
            Self::PreKeyNotFound(_) => "PreKeyNotFound",
            Self::RemoteIdentityChanged => "RemoteIdentityChanged",
            Self::InvalidSignature => "InvalidSignature",
            Self::InvalidMessage(_) => "InvalidMessage",
            Self::OutdatedMessage => "OutdatedMessage",
            Self::DuplicateMessage => "DuplicateMessage",
            Self::TooDistantFuture => "TooDistantFuture",
            Self::LocalIdentityMismatch => "LocalIdentityMismatch",
            Self::Decode(_) => "DecodeError",
            Self::PreKeyStore(_) => "PreKeyStoreError",
        }
    }
}

/// Why bytes could not be decoded. Decoders never panic; every malformed input ends
/// here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not well-formed CBOR, or an item of the wrong type or range.
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    /// A required field is absent.
    #[error("{structure}: missing field {key}")]
    MissingField {
        /// The structure being decoded.
        structure: &'static str,
        /// The missing map key.
        key: u8,
    },
    /// A map key occurs twice.
    #[error("{structure}: duplicate field {key}")]
    DuplicateField {
        /// The structure being decoded.
        structure: &'static str,
        /// The repeated map key.
        key: u64,
    },
    /// Bytes remain after the structure ended.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A version this implementation does not know.
    #[error("{structure}: unsupported version {version}")]
    UnsupportedVersion {
        /// The structure being decoded.
        structure: &'static str,
        /// The version found.
        version: u64,
    },
    /// A byte string of the wrong length.
    #[error("{structure}: expected {expected} bytes, found {found}")]
    InvalidLength {
        /// The structure being decoded.
        structure: &'static str,
        /// The length required.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// More entries or bytes than this decoder accepts.
    #[error("{0}: exceeds the decoder's limits")]
    TooLarge(&'static str),
    /// Indefinite-length maps, arrays and strings are not used by Proteus.
    #[error("{0}: indefinite-length items are not accepted")]
    IndefiniteLength(&'static str),
    /// Bytes that are not a valid Ed25519 public key.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A message type other than 1 (cipher message) or 2 (prekey message).
    #[error("unknown message type {0}")]
    UnknownMessageType(u64),
    /// A stored key pair whose secret does not produce its public key.
    #[error("secret key does not match its public key")]
    KeyPairMismatch,
    /// A stored structure whose parts contradict each other.
    #[error("inconsistent {0}")]
    Inconsistent(&'static str),
}

impl From<minicbor::decode::Error> for DecodeError {
    fn from(e: minicbor::decode::Error) -> Self {
        DecodeError::Cbor(e.to_string())
    }
}
