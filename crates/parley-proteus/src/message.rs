//! Proteus messages on the wire: envelopes, cipher messages and prekey messages.
//!
//! Owns: the CBOR layout of the wire-format page, written exactly (keys in order,
//! shortest lengths) and read generously (unknown keys skipped) within bounds.
//! Untrusted bytes become an [`Envelope`] only through [`Envelope::decode`], which
//! checks structure, not authenticity: the MAC is checked by the session that owns
//! the message keys. Knows nothing about keys beyond their encodings.

use std::fmt;

use minicbor::Decoder;
use rand_core::CryptoRng;

use crate::cbor::{self, Enc, EncResult};
use crate::error::DecodeError;
use crate::keys::{IdentityKey, PreKeyId, PublicKey};

/// The 16 random bytes, chosen by the initiator, that name one session state.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionTag(pub [u8; 16]);

impl SessionTag {
    /// A fresh tag from 16 bytes of `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut tag = [0u8; 16];
        rng.fill_bytes(&mut tag);
        Self(tag)
    }
}

impl fmt::Debug for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionTag({})", hex::encode(self.0))
    }
}

/// `{0: session tag, 1: counter, 2: prev_counter, 3: ratchet key, 4: ciphertext}`
///
/// The ratchet key stays raw bytes: a known key is matched by its bytes, and only a
/// new one is checked to be a curve point, when it drives a DH ratchet step. That
/// keeps a point decompression off every message.
#[derive(Clone, Debug)]
pub(crate) struct CipherMessage<'a> {
    pub(crate) session_tag: SessionTag,
    pub(crate) counter: u32,
    pub(crate) prev_counter: u32,
    pub(crate) ratchet_key: [u8; 32],
    pub(crate) ciphertext: &'a [u8],
}

impl CipherMessage<'_> {
    fn encode(&self, e: &mut Enc<'_>) -> EncResult {
        e.map(5)?.u8(0)?.bytes(&self.session_tag.0)?;
        e.u8(1)?
            .u32(self.counter)?
            .u8(2)?
            .u32(self.prev_counter)?
            .u8(3)?;
        cbor::write_wrapped(e, &self.ratchet_key)?;
        e.u8(4)?.bytes(self.ciphertext)?;
        Ok(())
    }
}

fn decode_cipher_message<'b>(d: &mut Decoder<'b>) -> Result<CipherMessage<'b>, DecodeError> {
    const S: &str = "CipherMessage";
    let (mut tag, mut counter, mut prev, mut ratchet, mut ciphertext) =
        (None, None, None, None, None);
    cbor::read_map(d, S, |key, d| {
        match key {
            0 => tag = Some(SessionTag(cbor::array::<16>(d, S)?)),
            1 => counter = Some(d.u32()?),
            2 => prev = Some(d.u32()?),
            3 => ratchet = Some(cbor::wrapped_array::<32>(d, "PublicKey")?),
            4 => ciphertext = Some(cbor::bytes(d, S)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(CipherMessage {
        session_tag: cbor::required(tag, S, 0)?,
        counter: cbor::required(counter, S, 1)?,
        prev_counter: cbor::required(prev, S, 2)?,
        ratchet_key: cbor::required(ratchet, S, 3)?,
        ciphertext: cbor::required(ciphertext, S, 4)?,
    })
}

/// `{0: prekey id, 1: base key, 2: identity key, 3: CipherMessage}`
#[derive(Clone, Debug)]
pub(crate) struct PreKeyMessage<'a> {
    pub(crate) prekey_id: PreKeyId,
    pub(crate) base_key: PublicKey,
    pub(crate) identity_key: IdentityKey,
    pub(crate) message: CipherMessage<'a>,
}

fn decode_prekey_message<'b>(d: &mut Decoder<'b>) -> Result<PreKeyMessage<'b>, DecodeError> {
    const S: &str = "PreKeyMessage";
    let (mut id, mut base, mut identity, mut message) = (None, None, None, None);
    cbor::read_map(d, S, |key, d| {
        match key {
            0 => id = Some(PreKeyId(d.u16()?)),
            1 => base = Some(PublicKey::decode(d)?),
            2 => identity = Some(IdentityKey::decode(d)?),
            3 => message = Some(decode_cipher_message(d)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(PreKeyMessage {
        prekey_id: cbor::required(id, S, 0)?,
        base_key: cbor::required(base, S, 1)?,
        identity_key: cbor::required(identity, S, 2)?,
        message: cbor::required(message, S, 3)?,
    })
}

/// A plain cipher message, or the prekey message an initiator sends until the first
/// reply arrives.
#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one encrypt or decrypt call; boxing would allocate per message"
)]
pub(crate) enum Message<'a> {
    Plain(CipherMessage<'a>),
    Keyed(PreKeyMessage<'a>),
}

impl<'a> Message<'a> {
    pub(crate) fn cipher_message(&self) -> &CipherMessage<'a> {
        match self {
            Message::Plain(m) => m,
            Message::Keyed(m) => &m.message,
        }
    }

    /// `1` then a CipherMessage, or `2` then a PreKeyMessage: two items back to back.
    /// The ciphertext is always the last thing written.
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) {
        cbor::encode_into(buf, |e| match self {
            Message::Plain(m) => {
                e.u8(1)?;
                m.encode(e)
            }
            Message::Keyed(m) => {
                e.u8(2)?.map(4)?.u8(0)?.u16(m.prekey_id.0)?.u8(1)?;
                m.base_key.encode(e)?;
                e.u8(2)?;
                m.identity_key.encode(e)?;
                e.u8(3)?;
                m.message.encode(e)
            }
        })
    }

    fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        cbor::decode_all(bytes, |d| match d.u64()? {
            1 => Ok(Message::Plain(decode_cipher_message(d)?)),
            2 => Ok(Message::Keyed(decode_prekey_message(d)?)),
            other => Err(DecodeError::UnknownMessageType(other)),
        })
    }
}

/// A received Proteus envelope, structurally valid but not yet authenticated.
///
/// `{0: version 1, 1: Mac {0: bytes(32)}, 2: bytes(encoded Message)}`
#[derive(Clone, Debug)]
pub struct Envelope<'a> {
    pub(crate) mac: [u8; 32],
    /// The message exactly as received: the MAC covers these bytes.
    pub(crate) message_bytes: &'a [u8],
    pub(crate) message: Message<'a>,
}

impl<'a> Envelope<'a> {
    /// Parses untrusted bytes. Refuses truncations, trailing bytes, duplicate and
    /// missing fields, unknown versions and over-large items; never panics.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        const S: &str = "Envelope";
        let (mac, message_bytes) = cbor::decode_all(bytes, |d| {
            let (mut version, mut mac, mut message) = (None, None, None);
            cbor::read_map(d, S, |key, d| {
                match key {
                    0 => version = Some(cbor::version(d, S, 1)?),
                    1 => mac = Some(cbor::wrapped_array::<32>(d, "Mac")?),
                    2 => message = Some(cbor::bytes(d, S)?),
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            cbor::required(version, S, 0)?;
            Ok((cbor::required(mac, S, 1)?, cbor::required(message, S, 2)?))
        })?;
        Ok(Self {
            mac,
            message_bytes,
            message: Message::decode(message_bytes)?,
        })
    }

    /// Writes an envelope around already-encoded message bytes.
    pub(crate) fn encode(mac: &[u8; 32], message_bytes: &[u8]) -> Vec<u8> {
        cbor::encode_to_vec(message_bytes.len() + 48, |e| {
            e.map(3)?.u8(0)?.u8(1)?.u8(1)?;
            cbor::write_wrapped(e, mac)?;
            e.u8(2)?.bytes(message_bytes)?;
            Ok(())
        })
    }

    /// Whether this is a prekey message (one that can start a session).
    pub fn is_prekey_message(&self) -> bool {
        matches!(self.message, Message::Keyed(_))
    }

    /// The sender's identity key, which only prekey messages carry.
    pub fn identity_key(&self) -> Option<&IdentityKey> {
        match &self.message {
            Message::Keyed(m) => Some(&m.identity_key),
            Message::Plain(_) => None,
        }
    }

    /// The session state the message belongs to.
    pub fn session_tag(&self) -> SessionTag {
        self.message.cipher_message().session_tag
    }

    /// The identity key a prekey message claims for its sender (not yet
    /// authenticated: only decryption proves it); `None` for other messages.
    pub fn sender_identity(&self) -> Option<&IdentityKey> {
        match &self.message {
            Message::Keyed(pm) => Some(&pm.identity_key),
            _ => None,
        }
    }
}
