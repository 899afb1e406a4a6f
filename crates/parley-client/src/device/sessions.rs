//! Sessions with remote devices and the identity key pinned for each: opening
//! sessions from claimed prekey bundles (refusing a bundle whose key is not
//! the pinned one), pinning, repinning after the person verified, and
//! forgetting or resetting sessions.
//!
//! This module never encrypts or decrypts a message, and never knows who is
//! verified: a repin is the caller's decision.

use parley_api::{ClientId, PrekeyMap, UserId};
use parley_proteus::{PreKeyBundle, Session};

use super::{Device, unb64};
use crate::ClientError;

/// A device this device just opened a session with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewDevice {
    /// The owner.
    pub user: UserId,
    /// The device.
    pub client: ClientId,
    /// Its identity key, from the prekey bundle the server handed out.
    pub identity_key: [u8; 32],
}

/// A remote device whose bundle or message carried another identity key than
/// the one pinned for it: refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChangedIdentity {
    /// The owner.
    pub user: UserId,
    /// The device.
    pub client: ClientId,
    /// The key it offered.
    pub offered: [u8; 32],
}

/// What opening sessions from claimed bundles did.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    /// Sessions opened.
    pub new: Vec<NewDevice>,
    /// Bundles refused because their identity key is not the pinned one.
    pub changed: Vec<ChangedIdentity>,
    /// Bundles that are malformed or badly signed: no session.
    pub bad: Vec<(UserId, ClientId)>,
}

impl Device {
    /// The identity key pinned for a remote device.
    pub(crate) fn pinned_identity(&self, user: UserId, client: ClientId) -> Option<[u8; 32]> {
        self.pins.get(&(user, client)).copied()
    }

    /// Pins a remote device's identity key if none is pinned yet; `false` when
    /// another key is pinned (the caller refuses and reports it).
    pub(crate) fn pin(&mut self, user: UserId, client: ClientId, key: [u8; 32]) -> bool {
        *self.pins.entry((user, client)).or_insert(key) == key
    }

    /// Replaces a device's pinned key after the person verified the new one; its
    /// old session goes.
    pub(crate) fn repin(&mut self, user: UserId, client: ClientId, key: [u8; 32]) {
        self.pins.insert((user, client), key);
        self.sessions.remove(&(user, client));
    }

    /// Forgets a removed device's session. Its pinned identity stays: a device
    /// id that comes back with another key is a changed identity, whatever the
    /// server said in between.
    pub(crate) fn forget(&mut self, user: UserId, client: ClientId) {
        self.sessions.remove(&(user, client));
    }

    /// Drops every session (a device restored from an old copy must not
    /// encrypt from chain positions it may already have used); pins stay.
    pub(crate) fn drop_all_sessions(&mut self) -> usize {
        let n = self.sessions.len();
        self.sessions.clear();
        n
    }

    /// Forgets the session with a remote device: the next message to it claims a
    /// fresh prekey and starts a new session (with the same pinned identity).
    pub(crate) fn reset_session(&mut self, user: UserId, client: ClientId) -> bool {
        self.sessions.remove(&(user, client)).is_some()
    }

    /// The devices of `user` this device has sessions with.
    pub(crate) fn sessions_of(&self, user: UserId) -> Vec<ClientId> {
        self.sessions
            .keys()
            .filter(|(u, _)| *u == user)
            .map(|(_, c)| *c)
            .collect()
    }

    /// Whether this device has a session with a remote device.
    #[cfg(test)]
    pub(crate) fn has_session(&self, user: UserId, client: ClientId) -> bool {
        self.sessions.contains_key(&(user, client))
    }

    /// Opens sessions from claimed prekey bundles. A bundle whose identity key
    /// is not the one pinned for its device is refused.
    pub(crate) fn open_sessions(&mut self, claimed: &PrekeyMap) -> Result<Opened, ClientError> {
        let mut opened = Opened::default();
        for users in claimed.values() {
            for (user, clients) in users {
                for (client, prekey) in clients {
                    // `None`: the device is gone; the next answer says so.
                    let Some(prekey) = prekey else { continue };
                    if (*user, *client) == (self.user, self.client)
                        || self.sessions.contains_key(&(*user, *client))
                    {
                        continue;
                    }
                    // A bad bundle (any member can upload one) costs that
                    // device its message, never the send to everyone else.
                    let Some(bundle) = unb64(&prekey.key)
                        .ok()
                        .and_then(|b| PreKeyBundle::deserialize(&b).ok())
                    else {
                        opened.bad.push((*user, *client));
                        continue;
                    };
                    let key = *bundle.identity_key().public_key().as_bytes();
                    if !self.pin(*user, *client, key) {
                        opened.changed.push(ChangedIdentity {
                            user: *user,
                            client: *client,
                            offered: key,
                        });
                        continue;
                    }
                    let Ok(session) =
                        Session::init_from_bundle(&self.identity, &bundle, &mut self.rng)
                    else {
                        opened.bad.push((*user, *client));
                        continue;
                    };
                    opened.new.push(NewDevice {
                        user: *user,
                        client: *client,
                        identity_key: key,
                    });
                    self.sessions.insert((*user, *client), session);
                }
            }
        }
        Ok(opened)
    }
}
