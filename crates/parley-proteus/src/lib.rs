//! Proteus: X3DH and the double ratchet between two devices, byte-compatible with the
//! Proteus that Wire's clients run (see `proteus-wire-format.md` in the shared docs).
//!
//! The public API is small: [`IdentityKeyPair`], [`PreKey`] and [`PreKeyBundle`] for key
//! material; [`Session`] to encrypt and decrypt; [`Envelope`] to inspect untrusted bytes;
//! [`ProteusError`] for every failure. Everything is pure: no I/O, no clock, no global
//! randomness. Prekey storage is the caller's [`PreKeyStore`] and randomness an `rng`
//! argument, so tests are deterministic. Secrets are zeroized when dropped and never
//! appear in `Debug` output.
//!
//! Module map (each module's documentation says what it owns):
//! `keys` (key pairs, identities, prekeys, bundles, fingerprints), `key_schedule`
//! (X3DH and every KDF step), `message` (the wire encoding), `state` (one double
//! ratchet), `session` (states, prekey messages, which state encrypts), `cbor`
//! (shared encoding habits), `error`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cbor;
mod error;
mod key_schedule;
mod keys;
mod message;
mod session;
mod state;

pub use error::{DecodeError, ProteusError};
pub use keys::{
    BundleSignature, IdentityKey, IdentityKeyPair, KeyPair, PreKey, PreKeyBundle, PreKeyId,
    PublicKey,
};
pub use message::{Envelope, SessionTag};
pub use session::{MAX_SESSION_STATES, PreKeyStore, Session};
pub use state::{MAX_COUNTER_GAP, MAX_RECV_CHAINS, MAX_SKIPPED_KEYS};

#[cfg(feature = "kat")]
pub mod kat;
