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
//! This module never knows what the bytes mean or who is verified.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use getrandom::SysRng;
use parley_api::{
    ClientClass, ClientId, ClientMap, ClientType, ConversationId, Event, EventPayload, NewClient,
    Prekey, PrekeyMap, Qualified, UserId,
};
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId, ProteusError, Session};
use rand_core::UnwrapErr;
use zeroize::Zeroizing;

use crate::ClientError;
use crate::api::Api;
use crate::store::{Table, Tx};

/// This device's own record (row `device` of the meta table).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedDevice {
    user: UserId,
    client: ClientId,
    cursor: Option<u64>,
    next_prekey: u16,
    identity: String,
    #[serde(default)]
    generation: u64,
}

/// A session row: whose, and the session (base64 of its Proteus encoding).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedSession {
    user: UserId,
    client: ClientId,
    session: String,
}

/// A pinned identity row.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedPin {
    user: UserId,
    client: ClientId,
    identity: String,
}

/// The meta row holding this device.
const DEVICE_ROW: &[u8] = b"device";

/// One row the device wants in the database: table, name, value.
pub(crate) type DeviceRow = (Table, Vec<u8>, Zeroizing<Vec<u8>>);

fn pair_name(user: UserId, client: ClientId) -> Vec<u8> {
    let mut name = user.as_bytes().to_vec();
    name.extend_from_slice(&client.0.to_be_bytes());
    name
}

/// One-time prekeys a device keeps on the server.
pub const INITIAL_PREKEYS: u16 = 100;

/// A decrypted message.
#[derive(Clone, PartialEq, Eq)]
pub struct Received {
    /// Where.
    pub conversation: Qualified<ConversationId>,
    /// The sending user.
    pub from: UserId,
    /// The sending device.
    pub sender: ClientId,
    /// When the server accepted it.
    pub time: parley_api::OffsetDateTime,
    /// The message's shared blob (sent once for every device), if any.
    pub data: Option<Vec<u8>>,
    /// What they wrote.
    pub plaintext: Vec<u8>,
}

/// Why a message could not be decrypted: what it means for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not a Proteus message at all (damaged, or injected by the server): says
    /// nothing about the session.
    Garbage,
    /// A well-formed message that does not decrypt with the session.
    Session,
    /// The sender's identity key is not the one pinned for that device (the
    /// key it offered, when the message carried one).
    IdentityChanged(Option<[u8; 32]>),
}

/// What arrived for this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message, decrypted.
    Message(Received),
    /// A message that could not be decrypted: shown as such, with who sent it, so
    /// nothing is lost silently. Nothing was changed by it.
    Undecryptable {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// The sending user.
        from: UserId,
        /// The sending device.
        sender: ClientId,
        /// What kind of failure.
        failure: Failure,
        /// Why.
        reason: String,
    },
    /// Events after this device's cursor were purged before it fetched them
    /// (it was offline longer than the retention period). The user must be told
    /// that messages may be missing.
    NotificationsLost,
    /// Any other stored event (conversation and device changes), for the caller's
    /// state.
    Event(Event),
}

/// Message content is private: `Debug` shows who and where, not what.
impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("conversation", &self.conversation)
            .field("from", &self.from)
            .field("sender", &self.sender)
            .field(
                "plaintext",
                &format_args!("<{} bytes>", self.plaintext.len()),
            )
            .finish()
    }
}

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
pub struct ChangedIdentity {
    /// The owner.
    pub user: UserId,
    /// The device.
    pub client: ClientId,
    /// The key it offered.
    pub offered: [u8; 32],
}

/// What opening sessions from claimed bundles did.
#[derive(Debug, Default)]
pub struct Opened {
    /// Sessions opened.
    pub new: Vec<NewDevice>,
    /// Bundles refused because their identity key is not the pinned one.
    pub changed: Vec<ChangedIdentity>,
    /// Bundles that are malformed or badly signed: no session.
    pub bad: Vec<(UserId, ClientId)>,
}

/// A registered device with its keys and sessions.
pub struct Device {
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

fn json<T: serde::Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(value).expect("a saved row serializes"))
}

fn damaged(what: &str) -> ClientError {
    ClientError::Storage(format!("the saved device's {what} is damaged"))
}

impl Device {
    /// New keys for a device that is not registered yet: an identity, a batch of
    /// one-time prekeys and the last-resort prekey. The caller saves them before
    /// [`Device::registration`] goes to the server, so no published key is ever
    /// one this device could lose.
    pub(crate) fn generate(user: UserId) -> Self {
        let mut rng = UnwrapErr(SysRng);
        let identity = IdentityKeyPair::generate(&mut rng);
        let mut prekeys: HashMap<PreKeyId, PreKey> =
            PreKey::generate_batch(0, INITIAL_PREKEYS, &mut rng)
                .into_iter()
                .map(|p| (p.id(), p))
                .collect();
        let last = PreKey::last_resort(&mut rng);
        prekeys.insert(last.id(), last);
        Self {
            user,
            client: ClientId(0),
            identity,
            prekeys,
            sessions: HashMap::new(),
            pins: HashMap::new(),
            cursor: None,
            next_prekey: INITIAL_PREKEYS,
            generation: 0,
            rng,
        }
    }

    fn public(&self, p: &PreKey) -> Prekey {
        Prekey {
            id: p.id().0,
            key: b64(&PreKeyBundle::signed(&self.identity, p).serialize()),
        }
    }

    /// The registration request for this device's keys (the account's password
    /// is required). With the user's root key, the identity key is signed.
    pub(crate) fn registration(
        &self,
        password: &str,
        root: Option<&crate::trust::RootKey>,
    ) -> NewClient {
        let mut uploads: Vec<Prekey> = self
            .prekeys
            .values()
            .filter(|p| !p.id().is_last_resort())
            .map(|p| self.public(p))
            .collect();
        uploads.sort_by_key(|p| p.id);
        let last = self
            .prekeys
            .get(&PreKeyId::LAST_RESORT)
            .expect("a generated device has its last-resort prekey");
        NewClient {
            kind: ClientType::Permanent,
            class: ClientClass::Desktop,
            model: Some("parley-client".into()),
            label: None,
            cookie_label: None,
            password: Some(password.to_owned()),
            prekeys: uploads,
            last_prekey: self.public(last),
            trust: root.map(|r| r.sign_device(self.user, &self.identity_key())),
        }
    }

    /// The id the server gave this device.
    pub(crate) fn set_id(&mut self, client: ClientId) {
        self.client = client;
    }

    /// Whether the server has given this device an id yet.
    pub(crate) fn is_registered(&self) -> bool {
        self.client != ClientId(0)
    }

    /// The rows this device is stored as (see the module doc of the account).
    pub(crate) fn rows(&self) -> Vec<DeviceRow> {
        let saved = SavedDevice {
            user: self.user,
            client: self.client,
            cursor: self.cursor,
            next_prekey: self.next_prekey,
            identity: b64(&self.identity.serialize()),
            generation: self.generation,
        };
        let mut rows = vec![(Table::Meta, DEVICE_ROW.to_vec(), json(&saved))];
        for p in self.prekeys.values() {
            rows.push((
                Table::Prekeys,
                p.id().0.to_be_bytes().to_vec(),
                Zeroizing::new(p.serialize().to_vec()),
            ));
        }
        for ((user, client), session) in &self.sessions {
            let saved = SavedSession {
                user: *user,
                client: *client,
                session: b64(&session.serialize()),
            };
            rows.push((Table::Sessions, pair_name(*user, *client), json(&saved)));
        }
        for ((user, client), key) in &self.pins {
            let saved = SavedPin {
                user: *user,
                client: *client,
                identity: b64(key),
            };
            rows.push((Table::Identities, pair_name(*user, *client), json(&saved)));
        }
        rows
    }

    /// The device stored in the database, if there is one.
    pub(crate) async fn load(tx: &mut Tx) -> Result<Option<Self>, ClientError> {
        let Some(bytes) = tx.get(Table::Meta, DEVICE_ROW).await? else {
            return Ok(None);
        };
        let mut saved: SavedDevice =
            serde_json::from_slice(&bytes).map_err(|_| damaged("record"))?;
        let identity_bytes = Zeroizing::new(unb64(&saved.identity)?);
        zeroize::Zeroize::zeroize(&mut saved.identity);
        let identity =
            IdentityKeyPair::deserialize(&identity_bytes).map_err(|_| damaged("identity"))?;
        let mut prekeys = HashMap::new();
        for (_, bytes) in tx.all(Table::Prekeys).await? {
            let prekey = PreKey::deserialize(&bytes).map_err(|_| damaged("prekey"))?;
            prekeys.insert(prekey.id(), prekey);
        }
        let mut sessions = HashMap::new();
        for (_, bytes) in tx.all(Table::Sessions).await? {
            let mut saved: SavedSession =
                serde_json::from_slice(&bytes).map_err(|_| damaged("session"))?;
            let raw = Zeroizing::new(unb64(&saved.session)?);
            zeroize::Zeroize::zeroize(&mut saved.session);
            let session = Session::deserialize(&raw).map_err(|_| damaged("session"))?;
            sessions.insert((saved.user, saved.client), session);
        }
        let mut pins = HashMap::new();
        for (_, bytes) in tx.all(Table::Identities).await? {
            let saved: SavedPin =
                serde_json::from_slice(&bytes).map_err(|_| damaged("pinned identity"))?;
            let key: [u8; 32] = unb64(&saved.identity)?
                .try_into()
                .map_err(|_| damaged("pinned identity"))?;
            pins.insert((saved.user, saved.client), key);
        }
        Ok(Some(Self {
            user: saved.user,
            client: saved.client,
            identity,
            prekeys,
            sessions,
            pins,
            cursor: saved.cursor,
            next_prekey: saved.next_prekey,
            generation: saved.generation,
            rng: UnwrapErr(SysRng),
        }))
    }

    /// New one-time prekeys so that this device holds `wanted` more; the caller
    /// commits them, then uploads what this returns.
    pub(crate) fn new_prekeys(&mut self, wanted: u64) -> Vec<Prekey> {
        let mut uploads = Vec::new();
        for _ in 0..wanted {
            let id = PreKeyId(self.next_prekey);
            self.next_prekey = (self.next_prekey + 1) % parley_api::limits::LAST_RESORT_PREKEY;
            let prekey = PreKey::generate(id, &mut self.rng);
            uploads.push(self.public(&prekey));
            self.prekeys.insert(id, prekey);
        }
        uploads
    }

    /// How many one-time prekeys this device holds (it falls when a peer starts
    /// a session with one).
    pub fn prekeys_held(&self) -> usize {
        self.prekeys.len().saturating_sub(1)
    }

    /// This device's id.
    pub fn id(&self) -> ClientId {
        self.client
    }

    /// This device's identity fingerprint (hex).
    pub fn fingerprint(&self) -> String {
        self.identity.public_key().fingerprint()
    }

    /// This device's identity key.
    pub fn identity_key(&self) -> [u8; 32] {
        *self.identity.public_key().public_key().as_bytes()
    }

    /// The owner.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The queue cursor: the last event applied.
    pub(crate) fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// Moves the cursor (only ever inside the transaction that applies what
    /// was received up to it).
    pub(crate) fn set_cursor(&mut self, cursor: Option<u64>) {
        self.cursor = cursor;
    }

    /// The identity key pinned for a remote device.
    pub fn pinned_identity(&self, user: UserId, client: ClientId) -> Option<[u8; 32]> {
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
    pub fn reset_session(&mut self, user: UserId, client: ClientId) -> bool {
        self.sessions.remove(&(user, client)).is_some()
    }

    /// The devices of `user` this device has sessions with.
    pub fn sessions_of(&self, user: UserId) -> Vec<ClientId> {
        self.sessions
            .keys()
            .filter(|(u, _)| *u == user)
            .map(|(_, c)| *c)
            .collect()
    }

    /// Whether this device has a session with a remote device.
    pub fn has_session(&self, user: UserId, client: ClientId) -> bool {
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

    /// This device's send generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Moves the send generation to at least `generation` (after learning
    /// that another copy of this device got that far).
    pub(crate) fn catch_up_generation(&mut self, generation: u64) {
        self.generation = self.generation.max(generation);
    }

    /// Encrypts `plaintext` for every device of `users` this device has a
    /// session with (not itself), skipping devices already in `done`; counts
    /// one more generation.
    pub(crate) fn encrypt_for(
        &mut self,
        users: &[UserId],
        plaintext: &[u8],
        done: &mut BTreeMap<UserId, BTreeMap<ClientId, String>>,
    ) -> u64 {
        // Saturating: the count comes back from the server too, which may lie.
        self.generation = self.generation.saturating_add(1);
        for ((user, client), session) in &mut self.sessions {
            if !users.contains(user) || (*user, *client) == (self.user, self.client) {
                continue;
            }
            let slot = done.entry(*user).or_default();
            if !slot.contains_key(client) {
                slot.insert(*client, b64(&session.encrypt(plaintext)));
            }
        }
        self.generation
    }

    /// Decrypts an event if it is a message for this device: `Ok(None)` for
    /// anything else and for a duplicate. On error nothing changed.
    fn receive(&mut self, event: &Event) -> Result<Option<Received>, (Failure, String)> {
        let EventPayload::OtrMessageAdd {
            conversation,
            from,
            data,
            ..
        } = &event.payload
        else {
            return Ok(None);
        };
        if data.recipient != self.client {
            return Ok(None);
        }
        let envelope = unb64(&data.text).map_err(|e| (Failure::Garbage, e.to_string()))?;
        // Bytes that are not even base64 are refused before a key is spent on
        // the message. (A well-formed but swapped blob still costs the key: the
        // blob's own key and hash are inside the plaintext.)
        let blob = data
            .data
            .as_deref()
            .map(unb64)
            .transpose()
            .map_err(|e| (Failure::Garbage, e.to_string()))?;
        let failed = |e: ProteusError| {
            let failure = match e {
                ProteusError::Decode(_) => Failure::Garbage,
                ProteusError::RemoteIdentityChanged => Failure::IdentityChanged(None),
                _ => Failure::Session,
            };
            (
                failure,
                format!(
                    "cannot decrypt a message from device {} of {from}: {e}",
                    data.sender
                ),
            )
        };
        let key = (*from, data.sender);
        let plaintext = match self.sessions.get_mut(&key) {
            Some(session) => {
                match session.decrypt(&self.identity, &mut self.prekeys, &mut self.rng, &envelope) {
                    Ok(p) => p,
                    Err(ProteusError::DuplicateMessage) => return Ok(None),
                    // The key such a message claims is not authenticated (the
                    // session refuses it before decrypting): it is reported,
                    // and pins nothing. Only a prekey message that decrypts
                    // proves a new key.
                    Err(e) => return Err(failed(e)),
                }
            }
            None => {
                // A refused message must not cost a prekey: work on a copy.
                let mut prekeys = self.prekeys.clone();
                let (session, plaintext) = Session::init_from_message(
                    &self.identity,
                    &mut prekeys,
                    &mut self.rng,
                    &envelope,
                )
                .map_err(failed)?;
                let offered = *session.remote_identity().public_key().as_bytes();
                if self.pins.get(&key).is_some_and(|pinned| *pinned != offered) {
                    return Err((
                        Failure::IdentityChanged(Some(offered)),
                        format!(
                            "device {} of {from} wrote with another identity key than the one pinned for it",
                            data.sender
                        ),
                    ));
                }
                self.pins.insert(key, offered);
                self.prekeys = prekeys;
                self.sessions.insert(key, session);
                plaintext
            }
        };
        Ok(Some(Received {
            conversation: conversation.clone(),
            from: *from,
            sender: data.sender,
            time: event.time,
            data: blob,
            plaintext,
        }))
    }

    /// A decrypted message, an undecryptable one, the event itself, or nothing
    /// (a duplicate, or a message for another device).
    pub(crate) fn incoming(&mut self, event: &Event) -> Option<Incoming> {
        match self.receive(event) {
            Ok(Some(message)) => Some(Incoming::Message(message)),
            Ok(None) if matches!(event.payload, EventPayload::OtrMessageAdd { .. }) => None,
            Ok(None) => Some(Incoming::Event(event.clone())),
            Err((failure, reason)) => match &event.payload {
                EventPayload::OtrMessageAdd {
                    conversation,
                    from,
                    data,
                    ..
                } => Some(Incoming::Undecryptable {
                    conversation: conversation.clone(),
                    from: *from,
                    sender: data.sender,
                    failure,
                    reason,
                }),
                _ => None,
            },
        }
    }

    /// Opens this device's live socket from where it left off: what it missed
    /// arrives first, in order, then live events.
    pub async fn connect(&self, api: &Api) -> Result<crate::api::LiveSocket, ClientError> {
        api.connect_live(self.client, Some(self.cursor.unwrap_or(0)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device with an id, as registration leaves it.
    fn device(client: u64) -> Device {
        let mut d = Device::generate(UserId::new_v4());
        d.set_id(ClientId(client));
        d
    }

    /// One fresh prekey bundle of `d`, as the server hands it out for
    /// `(user, client)` (which a lying server may choose).
    fn bundle(d: &mut Device, user: UserId, client: ClientId) -> PrekeyMap {
        let prekey = d.new_prekeys(1).pop().expect("one prekey");
        BTreeMap::from([(
            "example.com".to_owned(),
            BTreeMap::from([(user, BTreeMap::from([(client, Some(prekey))]))]),
        )])
    }

    fn message(from: &Device, to: &Device, text: String) -> Event {
        Event {
            id: 1,
            time: parley_api::OffsetDateTime::UNIX_EPOCH,
            payload: EventPayload::OtrMessageAdd {
                conversation: Qualified {
                    id: uuid::Uuid::nil(),
                    domain: "example.com".into(),
                },
                from: from.user,
                time: parley_api::OffsetDateTime::UNIX_EPOCH,
                data: parley_api::ProteusMessage {
                    sender: from.client,
                    recipient: to.client,
                    text,
                    data: None,
                },
            },
        }
    }

    fn encrypt(from: &mut Device, to: &Device, plaintext: &[u8]) -> String {
        let mut out = BTreeMap::new();
        from.encrypt_for(&[to.user], plaintext, &mut out);
        out[&to.user][&to.client].clone()
    }

    #[test]
    fn a_bundle_with_another_identity_for_a_pinned_device_is_refused() {
        let (mut alice, mut bob, mut mallory) = (device(1), device(2), device(3));
        let (bob_user, bob_client) = (bob.user, bob.client);
        let opened = alice
            .open_sessions(&bundle(&mut bob, bob_user, bob_client))
            .expect("opened");
        assert_eq!(opened.new.len(), 1);
        assert_eq!(
            alice.pinned_identity(bob_user, bob_client),
            Some(bob.identity_key())
        );
        // The session is reset; the server now hands out Mallory's bundle as
        // Bob's device.
        assert!(alice.reset_session(bob_user, bob_client));
        let opened = alice
            .open_sessions(&bundle(&mut mallory, bob_user, bob_client))
            .expect("answered");
        assert!(opened.new.is_empty(), "no session with the substitute");
        assert_eq!(
            opened.changed,
            vec![ChangedIdentity {
                user: bob_user,
                client: bob_client,
                offered: mallory.identity_key()
            }]
        );
        assert!(!alice.has_session(bob_user, bob_client));
        assert_eq!(
            alice.pinned_identity(bob_user, bob_client),
            Some(bob.identity_key())
        );
    }

    #[test]
    fn a_message_from_another_identity_for_a_pinned_device_is_refused_and_costs_nothing() {
        let (mut alice, bob, mut mallory) = (device(1), device(2), device(3));
        let (alice_user, alice_client) = (alice.user, alice.client);
        // Alice knows Bob's device.
        let (bob_user, bob_client) = (bob.user, bob.client);
        alice.pin(bob_user, bob_client, bob.identity_key());
        // Mallory starts a session with Alice and writes as Bob's device.
        mallory
            .open_sessions(&bundle(&mut alice, alice_user, alice_client))
            .expect("opened");
        let forged = encrypt(&mut mallory, &alice, b"it's me, bob");
        mallory.user = bob_user;
        mallory.client = bob_client;
        let held = alice.prekeys_held();
        let incoming = alice.incoming(&message(&mallory, &alice, forged));
        assert!(
            matches!(
                incoming,
                Some(Incoming::Undecryptable {
                    failure: Failure::IdentityChanged(Some(k)),
                    ..
                }) if k == mallory.identity_key()
            ),
            "{incoming:?}"
        );
        assert_eq!(
            alice.prekeys_held(),
            held,
            "the refused message used no prekey"
        );
        assert!(!alice.has_session(bob_user, bob_client));
    }

    #[test]
    fn duplicates_are_dropped_and_garbage_changes_nothing() {
        let (mut alice, mut bob) = (device(1), device(2));
        let (bob_user, bob_client) = (bob.user, bob.client);
        alice
            .open_sessions(&bundle(&mut bob, bob_user, bob_client))
            .expect("opened");
        let first = encrypt(&mut alice, &bob, b"first");
        let event = message(&alice, &bob, first.clone());
        assert!(matches!(bob.incoming(&event), Some(Incoming::Message(_))));
        assert_eq!(bob.incoming(&event), None, "a replay is dropped");
        let state = |d: &Device| {
            let mut rows: Vec<_> = d
                .rows()
                .into_iter()
                .map(|(_, n, v)| (n, v.to_vec()))
                .collect();
            rows.sort();
            rows
        };
        let before = state(&bob);
        for garbage in ["bm90IHByb3RldXM=".to_owned(), "%%%".to_owned()] {
            assert!(matches!(
                bob.incoming(&message(&alice, &bob, garbage)),
                Some(Incoming::Undecryptable {
                    failure: Failure::Garbage,
                    ..
                })
            ));
        }
        let after = state(&bob);
        assert!(before == after, "garbage changed no session or prekey");
        let second = encrypt(&mut alice, &bob, b"second");
        assert!(matches!(
            bob.incoming(&message(&alice, &bob, second)),
            Some(Incoming::Message(m)) if m.plaintext == b"second"
        ));
    }
}
