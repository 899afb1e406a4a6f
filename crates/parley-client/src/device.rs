//! One device's end-to-end encryption: its Proteus identity and prekeys, one
//! session per remote device, sending to every device of a conversation and
//! decrypting what arrives. The server sees only ciphertext.
//!
//! Sending follows the server's answer: the message goes to the devices this
//! device has sessions with; when the server answers that devices are missing, their
//! prekeys are claimed, sessions opened and the message sent again. Sessions of
//! devices the server reports deleted are dropped.
//!
//! [`Device::export`] serializes the whole device (identity, prekeys, sessions,
//! queue cursor); the account saves it with the rest of its state as one record
//! of the encrypted local store, so after a crash the device is as it was at one
//! save or the next, never between.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use getrandom::SysRng;
use parley_api::{
    ClientClass, ClientId, ClientMap, ClientType, ConversationId, Event, EventPayload, MessageSent,
    NewClient, NewProteusMessage, Prekey, Qualified, ReportMissing, UserId,
};
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId, Session};
use rand_core::UnwrapErr;

use crate::ClientError;
use crate::api::{Api, Delivery};

/// A device as saved: every secret as base64 of its Proteus serialization.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    user: UserId,
    client: ClientId,
    cursor: Option<u64>,
    next_prekey: u16,
    identity: String,
    prekeys: Vec<String>,
    sessions: Vec<(UserId, ClientId, String)>,
}

/// One-time prekeys a new device uploads.
pub const INITIAL_PREKEYS: u16 = 100;

/// How many times a send follows "devices missing" before giving up.
const SEND_ATTEMPTS: usize = 4;

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

/// What arrived for this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message, decrypted.
    Message(Received),
    /// A message that could not be decrypted: shown as such, with who sent it, so
    /// nothing is lost silently. The session recovers when the sender starts a new
    /// one (a prekey message) or the user resets it.
    Undecryptable {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// The sending user.
        from: UserId,
        /// The sending device.
        sender: ClientId,
        /// Why.
        reason: String,
    },
    /// Events after this device's cursor were purged before it fetched them
    /// (it was offline longer than the retention period). The device has moved on
    /// to what is still there; the user must be told that messages may be missing.
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

/// Whom a message goes to.
#[derive(Clone, Copy, Debug)]
pub enum To<'a> {
    /// Every device of the conversation's members (the server names any this
    /// device missed, members it did not know of included).
    Members(&'a [UserId]),
    /// Only these users' devices (for example "delete for me", which goes to
    /// this user's own devices).
    OnlyUsers(&'a [UserId]),
}

/// A device this device just opened a session with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDevice {
    /// The owner.
    pub user: UserId,
    /// The device.
    pub client: ClientId,
    /// Its identity key, from the prekey bundle the server handed out.
    pub identity_key: [u8; 32],
}

/// A registered device with its keys and sessions.
pub struct Device {
    user: UserId,
    client: ClientId,
    identity: IdentityKeyPair,
    prekeys: HashMap<PreKeyId, PreKey>,
    sessions: HashMap<(UserId, ClientId), Session>,
    cursor: Option<u64>,
    /// The id the next new prekey gets (ids wrap below the last-resort id).
    next_prekey: u16,
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

fn flatten(map: &ClientMap) -> impl Iterator<Item = (UserId, ClientId)> + '_ {
    map.values()
        .flat_map(|users| users.iter())
        .flat_map(|(user, clients)| clients.iter().map(move |c| (*user, *c)))
}

impl Device {
    /// Creates this device's keys and registers it (the account's password is
    /// required) with its prekeys and last-resort prekey.
    /// With the user's root key, the device's identity key is signed and the
    /// signature published with it (the trust chain).
    pub async fn register(
        api: &Api,
        password: &str,
        root: Option<&crate::trust::RootKey>,
    ) -> Result<Self, ClientError> {
        let user = api.user().ok_or(ClientError::NotLoggedIn)?;
        let mut rng = UnwrapErr(SysRng);
        let identity = IdentityKeyPair::generate(&mut rng);
        let mut prekeys: HashMap<PreKeyId, PreKey> =
            PreKey::generate_batch(0, INITIAL_PREKEYS, &mut rng)
                .into_iter()
                .map(|p| (p.id(), p))
                .collect();
        let last = PreKey::last_resort(&mut rng);
        let public = |p: &PreKey| Prekey {
            id: p.id().0,
            key: b64(&PreKeyBundle::signed(&identity, p).serialize()),
        };
        let mut uploads: Vec<Prekey> = prekeys.values().map(public).collect();
        uploads.sort_by_key(|p| p.id);
        let request = NewClient {
            kind: ClientType::Permanent,
            class: ClientClass::Desktop,
            model: Some("parley-client".into()),
            label: None,
            cookie_label: None,
            password: Some(password.to_owned()),
            prekeys: uploads,
            last_prekey: public(&last),
            trust: root.map(|r| r.sign_device(user, identity.public_key().public_key().as_bytes())),
        };
        let client = api.add_client(&request).await?;
        prekeys.insert(last.id(), last);
        Ok(Self {
            user,
            client: client.id,
            identity,
            prekeys,
            sessions: HashMap::new(),
            cursor: None,
            next_prekey: INITIAL_PREKEYS,
            rng,
        })
    }

    /// The whole device (every secret) serialized, for a caller that stores it
    /// together with more state in one record.
    pub fn export(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let saved = Saved {
            user: self.user,
            client: self.client,
            cursor: self.cursor,
            next_prekey: self.next_prekey,
            identity: b64(&self.identity.serialize()),
            prekeys: self.prekeys.values().map(|p| b64(&p.serialize())).collect(),
            sessions: self
                .sessions
                .iter()
                .map(|((u, c), s)| (*u, *c, b64(&s.serialize())))
                .collect(),
        };
        zeroize::Zeroizing::new(serde_json::to_vec(&saved).expect("a device serializes"))
    }

    /// A device from [`Device::export`].
    pub fn import(bytes: &[u8]) -> Result<Self, ClientError> {
        let damaged =
            |what: &str| ClientError::Storage(format!("the saved device's {what} is damaged"));
        let saved: Saved = serde_json::from_slice(bytes).map_err(|_| damaged("record"))?;
        let identity = IdentityKeyPair::deserialize(&unb64(&saved.identity)?)
            .map_err(|_| damaged("identity"))?;
        let mut prekeys = HashMap::new();
        for p in &saved.prekeys {
            let prekey = PreKey::deserialize(&unb64(p)?).map_err(|_| damaged("prekey"))?;
            prekeys.insert(prekey.id(), prekey);
        }
        let mut sessions = HashMap::new();
        for (user, client, s) in &saved.sessions {
            let session = Session::deserialize(&unb64(s)?).map_err(|_| damaged("session"))?;
            sessions.insert((*user, *client), session);
        }
        Ok(Self {
            user: saved.user,
            client: saved.client,
            identity,
            prekeys,
            sessions,
            cursor: saved.cursor,
            next_prekey: saved.next_prekey,
            rng: UnwrapErr(SysRng),
        })
    }

    /// Tops the server's pool of this device's one-time prekeys back up to
    /// [`INITIAL_PREKEYS`]; returns how many were added. The account calls it on
    /// connecting and whenever [`Device::prekeys_held`] falls (a peer started a
    /// session with one).
    pub async fn top_up_prekeys(&mut self, api: &Api) -> Result<u64, ClientError> {
        let count = api.prekey_count(self.client).await?;
        let wanted = u64::from(INITIAL_PREKEYS).saturating_sub(count);
        if wanted == 0 {
            return Ok(0);
        }
        let mut fresh = Vec::new();
        for _ in 0..wanted {
            let id = PreKeyId(self.next_prekey);
            self.next_prekey = (self.next_prekey + 1) % parley_api::limits::LAST_RESORT_PREKEY;
            fresh.push(PreKey::generate(id, &mut self.rng));
        }
        let uploads = fresh
            .iter()
            .map(|p| Prekey {
                id: p.id().0,
                key: b64(&PreKeyBundle::signed(&self.identity, p).serialize()),
            })
            .collect();
        api.upload_prekeys(self.client, uploads).await?;
        for p in fresh {
            self.prekeys.insert(p.id(), p);
        }
        Ok(wanted)
    }

    /// How many of this device's prekeys (one-time and last-resort) it still
    /// holds; it falls when a peer starts a session with one.
    pub fn prekeys_held(&self) -> usize {
        self.prekeys.len()
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

    /// The identity key of a remote device this device has a session with.
    pub fn session_identity(&self, user: UserId, client: ClientId) -> Option<[u8; 32]> {
        self.sessions
            .get(&(user, client))
            .map(|s| *s.remote_identity().public_key().as_bytes())
    }

    /// Forgets the session with a remote device: the next message to it claims a
    /// fresh prekey and starts a new session, which the other side takes over
    /// when the first message arrives.
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

    /// Opens sessions with these devices of `user` (claiming a prekey of each)
    /// where there is none yet, so their identity keys are known.
    pub async fn ensure_sessions(
        &mut self,
        api: &Api,
        domain: &str,
        user: UserId,
        clients: &[ClientId],
    ) -> Result<Vec<NewDevice>, ClientError> {
        let wanted: Vec<ClientId> = clients
            .iter()
            .filter(|c| !self.has_session(user, **c) && (user, **c) != (self.user, self.client))
            .copied()
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let map = BTreeMap::from([(domain.to_owned(), BTreeMap::from([(user, wanted)]))]);
        self.open_sessions(api, &map).await
    }

    /// Whether this device has a session with a remote device.
    pub fn has_session(&self, user: UserId, client: ClientId) -> bool {
        self.sessions.contains_key(&(user, client))
    }

    /// Opens sessions with devices from claimed prekeys.
    async fn open_sessions(
        &mut self,
        api: &Api,
        missing: &ClientMap,
    ) -> Result<Vec<NewDevice>, ClientError> {
        let mut opened = Vec::new();
        let claimed = api.claim_prekeys(missing).await?;
        for users in claimed.values() {
            for (user, clients) in users {
                for (client, prekey) in clients {
                    // `None`: the device is gone; the next answer says so.
                    let Some(prekey) = prekey else { continue };
                    let bundle = PreKeyBundle::deserialize(&unb64(&prekey.key)?).map_err(|e| {
                        ClientError::Crypto(format!(
                            "device {client} of {user} sent a bad prekey: {e}"
                        ))
                    })?;
                    let session = Session::init_from_bundle(&self.identity, &bundle, &mut self.rng)
                        .map_err(|e| {
                            ClientError::Crypto(format!("device {client} of {user}: {e}"))
                        })?;
                    opened.push(NewDevice {
                        user: *user,
                        client: *client,
                        identity_key: *bundle.identity_key().public_key().as_bytes(),
                    });
                    self.sessions.insert((*user, *client), session);
                }
            }
        }
        Ok(opened)
    }

    /// Encrypts `plaintext` for every other device of `to` (this user's other
    /// devices included) and sends it.
    ///
    /// When the server names devices this device has no session with, their
    /// prekeys are claimed and `approve` is asked about them before anything is
    /// encrypted to them. If it says no, nothing is sent and the answer is
    /// [`ClientError::NewDevices`] (the sessions stay, for a later confirmed send).
    pub async fn send(
        &mut self,
        api: &Api,
        conversation: &Qualified<ConversationId>,
        to: To<'_>,
        plaintext: &[u8],
        data: Option<&[u8]>,
        approve: &mut (dyn FnMut(&[NewDevice]) -> bool + Send),
    ) -> Result<MessageSent, ClientError> {
        let (mut members, report_missing) = match to {
            To::Members(users) => (users.to_vec(), ReportMissing::All),
            To::OnlyUsers(users) => (
                users.to_vec(),
                ReportMissing::Only {
                    users: users.to_vec(),
                },
            ),
        };
        for _ in 0..SEND_ATTEMPTS {
            let mut recipients: BTreeMap<UserId, BTreeMap<ClientId, String>> = BTreeMap::new();
            for ((user, client), session) in &mut self.sessions {
                if members.contains(user) && (*user, *client) != (self.user, self.client) {
                    let envelope = session.encrypt(plaintext);
                    recipients
                        .entry(*user)
                        .or_default()
                        .insert(*client, b64(&envelope));
                }
            }
            let message = NewProteusMessage {
                sender: self.client,
                recipients: BTreeMap::from([(conversation.domain.clone(), recipients)]),
                data: data.map(b64),
                transient: false,
                report_missing: report_missing.clone(),
            };
            match api.post_proteus(conversation, &message).await? {
                Delivery::Sent(sent) => {
                    for gone in flatten(&sent.deleted) {
                        self.sessions.remove(&gone);
                    }
                    return Ok(sent);
                }
                Delivery::Missing(answer) => {
                    for gone in flatten(&answer.deleted) {
                        self.sessions.remove(&gone);
                    }
                    // The server's roster is the authority: a member this
                    // device did not know of yet gets the message too.
                    for (user, _) in flatten(&answer.missing) {
                        if !members.contains(&user) {
                            members.push(user);
                        }
                    }
                    let opened = self.open_sessions(api, &answer.missing).await?;
                    if !opened.is_empty() && !approve(&opened) {
                        return Err(ClientError::NewDevices(opened));
                    }
                }
            }
        }
        Err(ClientError::Unsettled)
    }

    /// Decrypts an event if it is a message for this device.
    pub fn receive(&mut self, event: &Event) -> Result<Option<Received>, ClientError> {
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
        let envelope = unb64(&data.text)?;
        let failed = |e: parley_proteus::ProteusError| {
            ClientError::Crypto(format!(
                "cannot decrypt a message from device {} of {from}: {e}",
                data.sender
            ))
        };
        let key = (*from, data.sender);
        let plaintext = match self.sessions.get_mut(&key) {
            Some(session) => session
                .decrypt(&self.identity, &mut self.prekeys, &mut self.rng, &envelope)
                .map_err(failed)?,
            None => {
                let (session, plaintext) = Session::init_from_message(
                    &self.identity,
                    &mut self.prekeys,
                    &mut self.rng,
                    &envelope,
                )
                .map_err(failed)?;
                self.sessions.insert(key, session);
                plaintext
            }
        };
        Ok(Some(Received {
            conversation: conversation.clone(),
            from: *from,
            sender: data.sender,
            time: event.time,
            data: data.data.as_deref().map(unb64).transpose()?,
            plaintext,
        }))
    }

    /// Opens this device's live socket from where it left off: what it missed
    /// arrives first, in order, then live events.
    pub async fn connect(&self, api: &Api) -> Result<crate::api::LiveSocket, ClientError> {
        api.connect_live(self.client, Some(self.cursor.unwrap_or(0)))
            .await
    }

    /// Handles one frame of the live socket: a stored event is decrypted and
    /// advances the cursor (one already seen, after a reconnect, is dropped); a
    /// transient one is decrypted and leaves the cursor alone.
    pub fn handle(&mut self, frame: &parley_api::LiveFrame) -> Option<Incoming> {
        let event = match frame {
            parley_api::LiveFrame::Stored(event) => {
                if self.cursor.is_some_and(|c| event.id <= c) {
                    return None;
                }
                self.cursor = Some(event.id);
                event.clone()
            }
            parley_api::LiveFrame::Transient(t) => Event {
                id: 0,
                time: t.time,
                payload: t.payload.clone(),
            },
        };
        self.incoming(&event)
    }

    /// A decrypted message, an undecryptable one, or the event itself.
    fn incoming(&mut self, event: &Event) -> Option<Incoming> {
        match self.receive(event) {
            Ok(Some(message)) => Some(Incoming::Message(message)),
            Ok(None) if matches!(event.payload, EventPayload::OtrMessageAdd { .. }) => None,
            Ok(None) => Some(Incoming::Event(event.clone())),
            Err(e) => match &event.payload {
                EventPayload::OtrMessageAdd {
                    conversation,
                    from,
                    data,
                    ..
                } => Some(Incoming::Undecryptable {
                    conversation: conversation.clone(),
                    from: *from,
                    sender: data.sender,
                    reason: e.to_string(),
                }),
                _ => None,
            },
        }
    }

    /// Fetches this device's queue from where it left off and decrypts the
    /// messages in it, in order. A message that cannot be decrypted is returned as
    /// [`Incoming::Undecryptable`] and the sync goes on past it.
    pub async fn sync(&mut self, api: &Api) -> Result<Vec<Incoming>, ClientError> {
        let mut received = Vec::new();
        loop {
            let page = match api.notifications(self.client, self.cursor).await {
                Err(ClientError::Api { label, .. })
                    if label == "notifications-lost" && self.cursor.is_some() =>
                {
                    // What is left is all newer than what was lost: start from it.
                    received.push(Incoming::NotificationsLost);
                    self.cursor = None;
                    continue;
                }
                other => other?,
            };
            for event in &page.notifications {
                received.extend(self.incoming(event));
                self.cursor = Some(event.id);
            }
            if !page.has_more {
                return Ok(received);
            }
        }
    }
}
