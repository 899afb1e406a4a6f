//! What this device knows of people's devices and how far it trusts them: the
//! signatures they publish (checked against root keys), fingerprints compared by
//! hand, pinned identities that changed, and the verification state of every
//! conversation that follows from them.

use std::collections::{BTreeMap, BTreeSet};

use parley_api::{ClientId, ConversationId, PublicClient, UserId};
use serde::{Deserialize, Serialize};

use super::{Account, normalise};
use crate::ClientError;
use crate::device::{ChangedIdentity, NewDevice};
use crate::store::Tx;
use crate::trust::{self, Signature};
use crate::verification::{self, Verification};

/// A device as this device knows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KnownDevice {
    /// Its identity key, hex, once known (from its signature or a session).
    pub identity_key: Option<String>,
    /// The root key that validly signed it, hex.
    pub signed_by: Option<String>,
    /// It published a signature that does not check out: flagged.
    pub bad_signature: bool,
    /// The person compared its fingerprint and marked it verified.
    pub verified: bool,
    /// It offered another identity key than the pinned one (hex of the offered
    /// key): refused until the person verifies the new key.
    #[serde(default)]
    pub identity_changed: Option<String>,
    /// Met in a message before its published signature was checked: it counts
    /// for verification once checked (right after the change commits).
    #[serde(default)]
    pub unchecked: bool,
    /// Messages from it that failed to decrypt in a row.
    #[serde(default)]
    pub failures: u32,
}

/// What this device knows of one user.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Peer {
    pub(super) user: UserId,
    /// The root key this user verified for them, hex.
    pub(super) pinned_root: Option<String>,
    pub(super) devices: BTreeMap<ClientId, KnownDevice>,
    /// The device list was fetched at least once.
    pub(super) listed: bool,
    /// The device list changed on the server: fetch it again.
    #[serde(default)]
    pub(super) refresh: bool,
}

/// A device as shown to a person.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceView {
    /// The owner.
    pub user: UserId,
    /// The device.
    pub client: ClientId,
    /// Its fingerprint in groups of four, if known.
    pub fingerprint: Option<String>,
    /// Verified by hand, or signed by a root key this user verified.
    pub verified: bool,
    /// Signed by its user's root key (hex fingerprint of the root key).
    pub signed_by: Option<String>,
    /// Its published signature is invalid, or its identity key changed: do not
    /// trust it.
    pub flagged: bool,
    /// The identity key it now offers, when that is not the pinned one.
    pub changed_to: Option<String>,
    /// This device.
    pub this_device: bool,
}

/// What a person compares with another to trust them ([`Account::identity_of`]).
#[derive(Clone, Debug, Serialize)]
pub struct PersonIdentity {
    /// Their root key, in groups of four; `None` while no device of theirs is
    /// signed (or devices disagree on the key).
    pub root_fingerprint: Option<String>,
    /// Whether this user verified that root key.
    pub root_verified: bool,
    /// Six groups of five digits from both root keys: the two people see the
    /// same number, and read it to each other.
    pub safety_number: Option<String>,
    /// Their devices.
    pub devices: Vec<DeviceView>,
}

/// The safety number of two root keys: SHA-512 over a label and both keys in
/// sorted order, read as six five-digit groups (each from five bytes, modulo
/// 100000), so both sides get the same digits.
pub fn safety_number(a: &[u8; 32], b: &[u8; 32]) -> String {
    use sha2::{Digest as _, Sha512};
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let digest = Sha512::new()
        .chain_update(b"parley safety number v1")
        .chain_update(first)
        .chain_update(second)
        .finalize();
    digest
        .chunks(5)
        .take(6)
        .map(|c| {
            let n = c.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn key_fingerprint(hex_key: &str) -> Option<String> {
    hex::decode(hex_key)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(|k| trust::fingerprint(&k))
}

impl Account {
    pub(super) fn peer_mut(&mut self, user: UserId) -> &mut Peer {
        self.state.peers.entry(user).or_insert_with(|| Peer {
            user,
            ..Peer::default()
        })
    }

    /// This user's devices, this one marked.
    pub async fn devices(&mut self) -> Result<Vec<DeviceView>, ClientError> {
        let me = self.user();
        self.refresh_devices(&[me]).await?;
        Ok(self.device_views(me))
    }

    /// Removes another of this user's devices.
    pub async fn remove_device(
        &mut self, client: ClientId, password: &str,
    ) -> Result<(), ClientError> {
        if client == self.device_id() {
            return Err(ClientError::Storage(
                "this is the device you are using: log out instead".into(),
            ));
        }
        self.api.remove_client(client, password).await?;
        let tx = self.begin().await?;
        let me = self.user();
        self.peer_mut(me).devices.remove(&client);
        self.device.forget(me, client);
        self.commit(tx).await
    }

    /// A user's devices with their fingerprints and trust. Devices without a
    /// session or signature get a session now (one of their prekeys is claimed) so
    /// their fingerprint can be shown.
    pub async fn peer_devices(&mut self, user: UserId) -> Result<Vec<DeviceView>, ClientError> {
        self.refresh_devices(&[user]).await?;
        let unknown: Vec<ClientId> = self
            .state
            .peers
            .get(&user)
            .map(|p| {
                p.devices
                    .iter()
                    .filter(|(c, d)| {
                        d.identity_key.is_none()
                            && !(user == self.user() && **c == self.device_id())
                    })
                    .map(|(c, _)| *c)
                    .collect()
            })
            .unwrap_or_default();
        if !unknown.is_empty() {
            let request = BTreeMap::from([(self.domain(), BTreeMap::from([(user, unknown)]))]);
            let claimed = self.api.claim_prekeys(&request).await?;
            let tx = self.begin().await?;
            let opened = self.device.open_sessions(&claimed)?;
            self.learn_devices(&opened.new);
            self.identities_changed(&opened.changed);
            self.recompute_all();
            self.commit(tx).await?;
        }
        Ok(self.device_views(user))
    }

    pub(super) fn device_views(&self, user: UserId) -> Vec<DeviceView> {
        let Some(peer) = self.state.peers.get(&user) else {
            return Vec::new();
        };
        peer.devices
            .iter()
            .map(|(client, d)| DeviceView {
                user,
                client: *client,
                fingerprint: d.identity_key.as_deref().and_then(key_fingerprint),
                verified: self.is_verified(user, *client),
                signed_by: d.signed_by.as_deref().and_then(key_fingerprint),
                flagged: d.bad_signature || d.identity_changed.is_some(),
                changed_to: d.identity_changed.as_deref().and_then(key_fingerprint),
                this_device: user == self.user() && *client == self.device_id(),
            })
            .collect()
    }

    /// Fetches users' device lists and checks the signatures they publish.
    pub(super) async fn refresh_devices(&mut self, users: &[UserId]) -> Result<(), ClientError> {
        let mut lists = Vec::new();
        for user in users {
            lists.push((*user, self.api.user_clients(&self.qualified(*user)).await?));
        }
        let tx = self.begin().await?;
        for (user, listed) in lists {
            self.absorb_devices(user, listed);
        }
        self.recompute_all();
        self.commit(tx).await
    }

    /// One user's published device list (inside a transaction).
    fn absorb_devices(&mut self, user: UserId, listed: Vec<PublicClient>) {
        let live: BTreeSet<ClientId> = listed.iter().map(|c| c.id).collect();
        let me = (self.user(), self.device_id());
        let name = self.name_of(user);
        let peer = self.peer_mut(user);
        peer.listed = true;
        peer.refresh = false;
        // A device that wrote here but is not in its owner's published list is
        // one the server hides: kept, and never trusted.
        let mut hidden = Vec::new();
        peer.devices.retain(|c, d| {
            if live.contains(c) {
                return true;
            }
            if d.unchecked {
                d.unchecked = false;
                d.bad_signature = true;
                hidden.push(*c);
                return true;
            }
            false
        });
        let mut changed = Vec::new();
        let mut pins = Vec::new();
        for c in listed {
            let known = peer.devices.entry(c.id).or_default();
            known.unchecked = false;
            match trust::check_device(user, c.trust.as_ref()) {
                Signature::Valid {
                    root_key,
                    identity_key,
                } => {
                    pins.push((c.id, identity_key));
                    let identity = hex::encode(identity_key);
                    if known.identity_key.as_ref().is_some_and(|k| *k != identity) {
                        // The published key is not the one the session uses.
                        known.bad_signature = true;
                    } else {
                        known.identity_key = Some(identity);
                        known.signed_by = Some(hex::encode(root_key));
                    }
                }
                Signature::Invalid => known.bad_signature = true,
                Signature::Unsigned => {}
            }
        }
        for (client, key) in pins {
            if (user, client) != me && !self.device.pin(user, client, key) {
                changed.push(ChangedIdentity {
                    user,
                    client,
                    offered: key,
                });
            }
        }
        for gone in self
            .device
            .sessions_of(user)
            .into_iter()
            .filter(|c| !live.contains(c))
        {
            self.device.forget(user, gone);
        }
        self.identities_changed(&changed);
        if !hidden.is_empty() {
            let ids: Vec<ConversationId> = self
                .state
                .conversations
                .values()
                .filter(|conv| conv.members.contains(&user))
                .map(|conv| conv.id.id)
                .collect();
            for client in hidden {
                for id in &ids {
                    self.system(
                        *id,
                        &format!(
                            "Device {client} wrote as {name} but is not among {name}'s devices: \
                             do not trust what it says."
                        ),
                    );
                }
            }
        }
    }

    /// Learns devices this device opened sessions with.
    pub(super) fn learn_devices(&mut self, opened: &[NewDevice]) {
        for n in opened {
            let d = self.peer_mut(n.user).devices.entry(n.client).or_default();
            let k = hex::encode(n.identity_key);
            match &d.identity_key {
                None => d.identity_key = Some(k),
                Some(known) if *known != k => d.bad_signature = true,
                Some(_) => {}
            }
        }
    }

    /// Devices that offered another identity key than the pinned one: flagged,
    /// and said in every conversation with their owner (once).
    pub(super) fn identities_changed(&mut self, changed: &[ChangedIdentity]) {
        for c in changed {
            let offered = hex::encode(c.offered);
            let d = self.peer_mut(c.user).devices.entry(c.client).or_default();
            if d.identity_changed.as_deref() == Some(offered.as_str()) {
                continue;
            }
            d.identity_changed = Some(offered);
            let text = format!(
                "The identity key of {}'s device {} changed. Nothing is sent to it or read from \
                 it until you compare its new fingerprint and verify it again.",
                self.name_of(c.user),
                c.client
            );
            let ids: Vec<ConversationId> = self
                .state
                .conversations
                .values()
                .filter(|conv| conv.members.contains(&c.user))
                .map(|conv| conv.id.id)
                .collect();
            for id in ids {
                self.system(id, &text);
            }
        }
    }

    /// A device a message came from: known from now on. A device of a user
    /// whose list was fetched before is checked (its signature) right after
    /// this change commits; until then it neither verifies nor degrades.
    pub(super) fn note_device(&mut self, user: UserId, client: ClientId) {
        if user == self.user() && client == self.device_id() {
            return;
        }
        let identity = self.device.pinned_identity(user, client);
        let peer = self.peer_mut(user);
        let known = peer.devices.entry(client).or_insert_with(|| KnownDevice {
            unchecked: true,
            ..KnownDevice::default()
        });
        if known.identity_key.is_none() {
            known.identity_key = identity.map(hex::encode);
        }
    }

    /// Users with devices whose signatures are still to check.
    pub(super) fn unchecked_users(&self) -> Vec<UserId> {
        self.state
            .peers
            .values()
            .filter(|p| p.devices.values().any(|d| d.unchecked))
            .map(|p| p.user)
            .collect()
    }

    pub(super) fn is_verified(&self, user: UserId, client: ClientId) -> bool {
        if user == self.user() && client == self.device_id() {
            return true;
        }
        let Some(peer) = self.state.peers.get(&user) else {
            return false;
        };
        let Some(d) = peer.devices.get(&client) else {
            return false;
        };
        if d.bad_signature || d.identity_changed.is_some() {
            return false;
        }
        let pinned = if user == self.user() {
            self.root.as_ref().map(|r| hex::encode(r.public()))
        } else {
            peer.pinned_root.clone()
        };
        d.verified || (d.signed_by.is_some() && d.signed_by == pinned)
    }

    /// Marks a device verified after the person compared its fingerprint with
    /// the one its owner sees. `fingerprint` must be what they compared. A
    /// device whose identity key changed is verified by its new key, which is
    /// pinned from then on.
    pub async fn verify_device(
        &mut self, user: UserId, client: ClientId, fingerprint: &str,
    ) -> Result<(), ClientError> {
        self.peer_devices(user).await?;
        let tx = self.begin().await?;
        let wanted = normalise(fingerprint);
        let d = self
            .state
            .peers
            .get_mut(&user)
            .and_then(|p| p.devices.get_mut(&client))
            .ok_or_else(|| ClientError::Refused {
                label: "no-such-device",
                message: format!("{user} has no device {client}: `parley fingerprint` lists them"),
            })?;
        if d.identity_changed.as_deref() == Some(wanted.as_str()) {
            let key: [u8; 32] = hex::decode(&wanted)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| ClientError::Crypto("not a fingerprint".into()))?;
            d.identity_changed = None;
            d.identity_key = Some(wanted);
            d.signed_by = None;
            d.bad_signature = false;
            d.verified = true;
            self.device.repin(user, client, key);
        } else if d.identity_key.as_deref() == Some(wanted.as_str()) {
            d.verified = true;
        } else {
            return Err(ClientError::Refused {
                label: "wrong-fingerprint",
                message: "that fingerprint is not this device's: do not verify it; compare it \
                          again with the other person"
                    .into(),
            });
        }
        self.recompute_all();
        self.commit(tx).await
    }

    /// What a person compares with another to trust them: the root key their
    /// devices are signed by (in groups of four), whether it is verified here,
    /// and a short safety number both of them see alike, made from both root
    /// keys. Fetches the user's devices first.
    pub async fn identity_of(&mut self, user: UserId) -> Result<PersonIdentity, ClientError> {
        let devices = self.peer_devices(user).await?;
        let mut roots: Vec<&str> = devices
            .iter()
            .filter(|d| !d.flagged)
            .filter_map(|d| d.signed_by.as_deref())
            .collect();
        roots.sort_unstable();
        roots.dedup();
        // Devices signed by two root keys: neither is shown as the person's.
        let root = match roots.as_slice() {
            // Shown in groups of four; the key is its hex without the spaces.
            [one] => hex::decode(one.replace(' ', ""))
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok()),
            _ => None,
        };
        let pinned = self
            .state
            .peers
            .get(&user)
            .and_then(|p| p.pinned_root.clone());
        let mine = self.root.as_ref().map(|r| *r.public());
        Ok(PersonIdentity {
            root_fingerprint: root.map(|k| crate::trust::fingerprint(&k)),
            root_verified: root.is_some_and(|k| pinned.as_deref() == Some(&hex::encode(k))),
            safety_number: root
                .zip(mine)
                .map(|(theirs, mine)| safety_number(&mine, &theirs)),
            devices,
        })
    }

    /// Pins a user's root key after the person compared its fingerprint: every
    /// device it signs is trusted from now on, without another check (Wickr).
    pub async fn verify_user(
        &mut self, user: UserId, root_fingerprint: &str,
    ) -> Result<(), ClientError> {
        self.refresh_devices(&[user]).await?;
        let tx = self.begin().await?;
        let wanted = normalise(root_fingerprint);
        let peer = self.peer_mut(user);
        if !peer
            .devices
            .values()
            .any(|d| d.signed_by.as_deref() == Some(wanted.as_str()))
        {
            return Err(ClientError::Refused {
                label: "wrong-fingerprint",
                message: "no device of this user is signed by that root key: do not verify it"
                    .into(),
            });
        }
        peer.pinned_root = Some(wanted);
        self.recompute_all();
        self.commit(tx).await
    }

    /// Forgets the session with one device; the next message starts a new one
    /// (with the same pinned identity key).
    pub async fn reset_session(
        &mut self, user: UserId, client: ClientId,
    ) -> Result<bool, ClientError> {
        let tx = self.begin().await?;
        let had = self.device.reset_session(user, client);
        if let Some(d) = self
            .state
            .peers
            .get_mut(&user)
            .and_then(|p| p.devices.get_mut(&client))
        {
            d.failures = 0;
        }
        self.commit(tx).await?;
        Ok(had)
    }

    pub(super) fn recompute_all(&mut self) {
        let ids: Vec<ConversationId> = self.state.conversations.keys().copied().collect();
        for id in ids {
            self.recompute(id);
        }
    }

    /// Applies the whitepaper's verification rules to one conversation.
    pub(super) fn recompute(&mut self, id: ConversationId) {
        let Some(conv) = self.state.conversations.get(&id) else {
            return;
        };
        // A conversation of this user alone (a group just made, before its
        // members come) has nobody to verify: it is not "verified", so the
        // members who join do not degrade it.
        let me = self.user();
        let all_verified = !conv.incomplete
            && conv.members.iter().any(|user| *user != me)
            && conv.members.iter().all(|user| {
                let Some(peer) = self.state.peers.get(user) else {
                    return false;
                };
                (peer.listed || *user == self.user())
                    && peer
                        .devices
                        .iter()
                        .filter(|(_, d)| !d.unchecked)
                        .all(|(client, _)| self.is_verified(*user, *client))
            });
        let before = conv.verification;
        let after = verification::next(before, all_verified);
        if before != after {
            let text = match after {
                Verification::Verified => "All devices are verified.",
                Verification::Degraded => {
                    "This conversation is no longer verified: a new or unverified device joined."
                }
                Verification::NonVerified => "This conversation is not verified.",
            };
            self.system(id, text);
        }
        if let Some(conv) = self.state.conversations.get_mut(&id) {
            conv.verification = after;
        }
    }

    /// Accepts a degraded conversation as non-verified, so messages can be sent.
    pub async fn accept_degraded(
        &mut self, conversation: &parley_api::Qualified<ConversationId>,
    ) -> Result<(), ClientError> {
        let tx = self.begin().await?;
        self.accept_degraded_in(&tx, conversation);
        self.commit(tx).await
    }

    pub(super) fn accept_degraded_in(
        &mut self, _tx: &Tx, conversation: &parley_api::Qualified<ConversationId>,
    ) {
        if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
            c.verification = verification::accept_degraded(c.verification);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_see_one_safety_number() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let n = safety_number(&a, &b);
        assert_eq!(n, safety_number(&b, &a));
        assert_eq!(n.len(), 6 * 5 + 5, "{n}");
        assert!(
            n.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
        );
        assert_ne!(
            n,
            safety_number(&a, &[3u8; 32]),
            "another key, another number"
        );
    }
}
