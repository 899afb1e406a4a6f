//! One device's end-to-end encryption: its Proteus identity and prekeys, one
//! session per remote device, the identity key pinned for each remote device,
//! and the queue cursor. The server sees only ciphertext.
//!
//! Every method that changes state is synchronous and does no I/O: the account
//! runs it inside one transaction of the device's database and commits before
//! anything it produced leaves the device (write-ahead). Network work (claiming
//! prekeys, posting) is the caller's, between transactions.
//!
//! **Pinning.** The identity key of a remote device is pinned the first time it
//! is seen (from a prekey bundle, a prekey message or a checked signature) and is
//! never replaced: a bundle or message with another key is refused and reported,
//! so a server cannot swap in its own key by handing out a new bundle.
//!
//! **Refusals change nothing.** A message that cannot be decrypted leaves every
//! session and prekey as it was; a duplicate (one already decrypted, such as a
//! re-post after a lost reply) is dropped without a trace.
//!
//! The parts: `keys` holds this device's identity and prekeys, `mls` its MLS
//! keys and groups, `sessions` the
//! sessions with remote devices and their pinned identities, `send` encrypts,
//! `receive` decrypts what the queue delivers, and `saved` is the rows the
//! device is stored as.
//!
//! This module never knows what the bytes mean or who is verified.

mod keys;
mod mls;
mod receive;
mod saved;
mod send;
mod sessions;

use std::collections::HashMap;

use base64::Engine as _;
use getrandom::SysRng;
use parley_api::{ClientId, ClientMap, UserId};
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyId, Session};
use rand_core::UnwrapErr;

use crate::ClientError;

pub(crate) use keys::INITIAL_PREKEYS;
pub(crate) use mls::{KEY_PACKAGE_LIFETIME, KEY_PACKAGES, KEY_PACKAGES_LOW};
pub(crate) use receive::{Failure, Incoming, Received};
pub(crate) use sessions::{ChangedIdentity, NewDevice};

/// A registered device with its keys and sessions.
pub(crate) struct Device {
    user: UserId,
    client: ClientId,
    identity: IdentityKeyPair,
    prekeys: HashMap<PreKeyId, PreKey>,
    sessions: HashMap<(UserId, ClientId), Session>,
    pins: HashMap<(UserId, ClientId), [u8; 32]>,
    cursor: Option<u64>,
    /// The id the next new prekey gets (ids wrap below the last-resort id).
    next_prekey: u16,
    /// How many times this device has encrypted (one per outgoing batch); the
    /// server keeps the highest it has seen, so an old copy notices.
    generation: u64,
    /// Its MLS keys, groups and key packages.
    mls: mls::MlsSide,
    rng: UnwrapErr<SysRng>,
}

/// Keys are secrets: `Debug` shows ids and the public fingerprint only.
impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("user", &self.user)
            .field("client", &self.client)
            .field("fingerprint", &self.fingerprint())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, ClientError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| ClientError::Decode(format!("not base64: {e}")))
}

/// Every device of a `domain → user → devices` map.
pub(crate) fn flatten(map: &ClientMap) -> impl Iterator<Item = (UserId, ClientId)> + '_ {
    map.values()
        .flat_map(|users| users.iter())
        .flat_map(|(user, clients)| clients.iter().map(move |c| (*user, *c)))
}

#[cfg(test)]
mod tests;
