//! One person's Parley on one device: the place clients and bots start.
//!
//! An [`Account`] ties together the typed [`Api`], this device's Proteus
//! [`Device`], the encrypted [`LocalStore`], the user's root key and the local
//! state a person sees: conversations with their history, unread counts and
//! verification states, and what is known of every peer's devices.
//!
//! Everything is saved as one record of the local store after each change, so a
//! crash leaves the account as it was before the change or after it: a message is
//! never shown and then forgotten, and a session is never half-advanced. The
//! device's queue cursor moves only in that same record, so what was fetched but
//! not saved is fetched again.
//!
//! Message content is [`crate::content`]; verification rules are
//! [`crate::verification`]; this module applies them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine as _;
use parley_api::{
    ClientId, ConnectionStatus, Conversation, ConversationKind, EventPayload, Login,
    NewConversation, OffsetDateTime, Qualified, Register, UserId, Uuid,
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize as _, Zeroizing};

use crate::ClientError;
use crate::api::{Api, LoginState};
use crate::content::{self, Body, Envelope, ReceiptKind};
use crate::device::{Device, Incoming, NewDevice, Received, To};
use crate::local_store::LocalStore;
use crate::trust::{self, RootKey, Signature};
use crate::verification::{self, Verification};

/// The local store record holding the whole account.
const ACCOUNT_RECORD: &str = "account";

/// A conversation as this device knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConversationView {
    /// Its id.
    pub id: Qualified<Uuid>,
    /// Group or 1:1.
    pub kind: ConversationKind,
    /// The group's name; for a 1:1, the peer's name.
    pub name: String,
    /// Members, this user included.
    pub members: Vec<UserId>,
    /// The conversation's self-deleting timer in milliseconds.
    pub message_timer: Option<u64>,
    /// Read receipts: 0 off, 1 on.
    pub receipt_mode: u8,
    /// Verified, non-verified or degraded.
    pub verification: Verification,
    /// Messages received and not yet shown.
    pub unread: usize,
    /// The history, oldest first.
    pub messages: Vec<Message>,
}

/// What a history entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MessageKind {
    /// A text.
    Text,
    /// A knock.
    Knock,
    /// An asset (its name).
    Asset {
        /// The file's name.
        name: String,
    },
    /// A message that could not be decrypted: shown as such, never dropped.
    Undecryptable {
        /// Why.
        reason: String,
    },
    /// Something the app says (members joined, messages may be missing...).
    System,
    /// Content of a kind this version cannot show.
    Unsupported,
}

/// One history entry.
#[derive(Clone, Serialize, Deserialize)]
pub struct Message {
    /// The content's message id (local ids for system entries).
    pub id: String,
    /// Who sent it.
    pub from: UserId,
    /// From which device.
    pub sender: ClientId,
    /// When the server accepted it (Unix seconds).
    pub time: i64,
    /// What it is.
    #[serde(flatten)]
    pub kind: MessageKind,
    /// The text (empty when deleted).
    pub text: String,
    /// Sent by this user.
    pub mine: bool,
    /// Edited after sending.
    pub edited: bool,
    /// Deleted for everyone.
    pub deleted: bool,
    /// Reactions by user.
    pub reactions: BTreeMap<UserId, String>,
    /// Who has it (for this user's messages).
    pub delivered_to: BTreeSet<UserId>,
    /// Who has read it (for this user's messages, with read receipts on).
    pub read_by: BTreeSet<UserId>,
    /// Self-deleting after this many milliseconds once shown.
    pub expires_after_ms: Option<u64>,
    /// When it disappears (Unix milliseconds), once the timer started.
    pub expires_at: Option<i64>,
    /// Whether this device's user has seen it.
    pub shown: bool,
    /// Users mentioned in the text.
    #[serde(default)]
    pub mentions: Vec<UserId>,
    /// Previews of links in the text, as the sender made them.
    #[serde(default)]
    pub link_previews: Vec<LinkPreview>,
}

/// A link preview as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPreview {
    /// The URL.
    pub url: String,
    /// The page's title.
    pub title: String,
    /// Its summary.
    pub summary: String,
}

fn annotations(t: &content::Text) -> (Vec<UserId>, Vec<LinkPreview>) {
    (
        t.mentions
            .iter()
            .filter_map(|m| Uuid::parse_str(&m.user_id).ok())
            .collect(),
        t.link_previews
            .iter()
            .map(|p| LinkPreview {
                url: p.url.clone(),
                title: p.title.clone(),
                summary: p.summary.clone(),
            })
            .collect(),
    )
}

impl Message {
    /// A new entry with no reactions, receipts or timer.
    fn entry(
        id: String,
        (from, sender): (UserId, ClientId),
        time: i64,
        kind: MessageKind,
        text: String,
        shown: bool,
    ) -> Self {
        Self {
            id,
            from,
            sender,
            time,
            kind,
            text,
            mine: false,
            edited: false,
            deleted: false,
            reactions: BTreeMap::new(),
            delivered_to: BTreeSet::new(),
            read_by: BTreeSet::new(),
            expires_after_ms: None,
            expires_at: None,
            shown,
            mentions: Vec::new(),
            link_previews: Vec::new(),
        }
    }

    /// What to show for it: the text, or what stands for it.
    pub fn body(&self) -> String {
        match &self.kind {
            MessageKind::Text if self.deleted => "(deleted)".to_owned(),
            MessageKind::Knock => "knocks".into(),
            MessageKind::Asset { name } => format!("[file {name}]"),
            MessageKind::Text
            | MessageKind::Undecryptable { .. }
            | MessageKind::System
            | MessageKind::Unsupported => self.text.clone(),
        }
    }

    /// Said by the app rather than a person.
    pub fn is_notice(&self) -> bool {
        matches!(
            self.kind,
            MessageKind::System | MessageKind::Undecryptable { .. } | MessageKind::Unsupported
        )
    }
}

/// Message content is private: `Debug` shows the envelope, not the words.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("from", &self.from)
            .field("kind", &self.kind)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish_non_exhaustive()
    }
}

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
}

/// What this device knows of one user.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Peer {
    /// The root key this user verified for them, hex.
    pinned_root: Option<String>,
    devices: BTreeMap<ClientId, KnownDevice>,
    /// The device list was fetched at least once.
    listed: bool,
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
    /// Its published signature is invalid: do not trust it.
    pub flagged: bool,
    /// This device.
    pub this_device: bool,
}

/// What changed during a sync, for the user interface.
#[derive(Clone, Debug)]
pub enum Update {
    /// A new history entry.
    Message {
        /// Where.
        conversation: Qualified<Uuid>,
        /// Its id.
        id: String,
    },
    /// A message was edited, deleted, reacted to or receipted.
    Changed {
        /// Where.
        conversation: Qualified<Uuid>,
        /// Which.
        id: String,
    },
    /// A conversation appeared or changed (members, name, settings).
    Conversation(Qualified<Uuid>),
    /// Someone is typing (or stopped).
    Typing {
        /// Where.
        conversation: Qualified<Uuid>,
        /// Who.
        from: UserId,
        /// Started (true) or stopped.
        started: bool,
    },
    /// Events were lost while this device was away: conversations were
    /// resynchronised, and messages sent meanwhile may be missing.
    NotificationsLost,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    server: String,
    /// The backend's domain (the `@domain` of this user's id).
    domain: String,
    login: Option<LoginState>,
    /// Base64 of the root key's secret: only while the record is written or
    /// read (see [`Account::write`]); `None` in memory.
    root: Option<String>,
    conversations: BTreeMap<Uuid, ConversationView>,
    peers: BTreeMap<UserId, Peer>,
    /// Names of users, for display.
    names: BTreeMap<UserId, String>,
}

#[derive(Serialize, Deserialize)]
struct Backup {
    user: UserId,
    conversations: Vec<ConversationView>,
    names: BTreeMap<UserId, String>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    /// Base64 of [`Device::export`].
    device: String,
    state: State,
}

/// One user's account on this device.
pub struct Account {
    api: Api,
    device: Device,
    store: LocalStore,
    root: Option<RootKey>,
    state: State,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("api", &self.api)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn find<'a>(c: &'a mut ConversationView, id: &str) -> Option<&'a mut Message> {
    c.messages.iter_mut().find(|m| m.id == id)
}

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .expect("milliseconds since 1970 fit in i64")
}

fn normalise(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

impl Account {
    /// Creates the account on the server (the e-mail `code` came from
    /// [`Api::send_activation_code`]), enrols the user (a new root key, saved to
    /// the server in a recovery bundle sealed with `passphrase`) and registers this
    /// device in `dir`, whose local store `passphrase` also protects.
    pub async fn register(
        dir: &Path,
        passphrase: &str,
        server: &str,
        register: &Register,
    ) -> Result<Self, ClientError> {
        let store = Self::fresh_store(dir, passphrase)?;
        let api = Api::new(server)?;
        api.register(register).await?;
        Self::enrol(api, store, passphrase, &register.password).await
    }

    /// Logs in and registers this device in `dir`. The root key comes from the
    /// recovery bundle (opened with `passphrase`); a user without one is enrolled
    /// now.
    pub async fn login(
        dir: &Path,
        passphrase: &str,
        server: &str,
        email: &str,
        password: &str,
    ) -> Result<Self, ClientError> {
        let store = Self::fresh_store(dir, passphrase)?;
        let api = Api::new(server)?;
        api.login(&Login {
            email: Some(email.to_owned()),
            password: password.to_owned(),
            label: Some("parley".into()),
            persist: true,
            ..Login::default()
        })
        .await?;
        Self::enrol(api, store, passphrase, password).await
    }

    fn fresh_store(dir: &Path, passphrase: &str) -> Result<LocalStore, ClientError> {
        let store = LocalStore::open(dir, passphrase)?;
        if store.get(ACCOUNT_RECORD)?.is_some() {
            return Err(ClientError::Storage(format!(
                "{} already holds a device: use it, or choose another directory",
                dir.display()
            )));
        }
        Ok(store)
    }

    async fn enrol(
        api: Api,
        store: LocalStore,
        passphrase: &str,
        password: &str,
    ) -> Result<Self, ClientError> {
        let root = match api.recovery_bundle().await? {
            Some(bundle) => RootKey::open_recovery_bundle(&bundle, passphrase)?,
            None => {
                let root = RootKey::generate()?;
                api.put_recovery_bundle(&root.seal_recovery_bundle(passphrase)?)
                    .await?;
                root
            }
        };
        let device = Device::register(&api, password, Some(&root)).await?;
        let domain = api.self_profile().await?.qualified_id.domain;
        let mut account = Self {
            state: State {
                server: api.base().to_owned(),
                domain,
                ..State::default()
            },
            api,
            device,
            store,
            root: Some(root),
        };
        account.refresh_conversations().await?;
        // This user's own devices count for every conversation's verification.
        let me = account.user();
        account.refresh_devices(&[me]).await?;
        account.save()?;
        Ok(account)
    }

    /// Opens the account saved in `dir`.
    pub async fn open(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let store = LocalStore::open(dir, passphrase)?;
        let bytes = store.get(ACCOUNT_RECORD)?.ok_or_else(|| {
            ClientError::Storage(format!(
                "no account in {}: register or log in first",
                dir.display()
            ))
        })?;
        let mut record: Record = serde_json::from_slice(&bytes)
            .map_err(|_| ClientError::Storage("the saved account is damaged".into()))?;
        let device_bytes = Zeroizing::new(
            b64()
                .decode(&record.device)
                .map_err(|_| ClientError::Storage("the saved device is damaged".into()))?,
        );
        record.device.zeroize();
        let device = Device::import(&device_bytes)?;
        let mut root_text = record.state.root.take();
        let root = root_text
            .as_deref()
            .and_then(|r| b64().decode(r).ok())
            .map(Zeroizing::new)
            .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
            .map(|r| RootKey::from_secret(&Zeroizing::new(r)));
        root_text.zeroize();
        let api = Api::new(&record.state.server)?;
        let login = record.state.login.clone().ok_or(ClientError::NotLoggedIn)?;
        api.resume(&login);
        Ok(Self {
            api,
            device,
            store,
            root,
            state: record.state,
        })
    }

    /// Writes the whole account (device, sessions, cursor, history) as one record.
    pub fn save(&mut self) -> Result<(), ClientError> {
        self.state.login = self.api.login_state().or(self.state.login.take());
        self.write()
    }

    /// Writes the record. The device's and the root key's secrets exist as text
    /// only inside this call, and are wiped before it returns.
    fn write(&mut self) -> Result<(), ClientError> {
        let mut record = Record {
            device: b64().encode(self.device.export().as_slice()),
            state: std::mem::take(&mut self.state),
        };
        record.state.root = self
            .root
            .as_ref()
            .map(|r| b64().encode(r.secret().as_ref()));
        let json = Zeroizing::new(serde_json::to_vec(&record).expect("an account serializes"));
        record.device.zeroize();
        record.state.root.zeroize();
        record.state.root = None;
        self.state = record.state;
        self.store.put(ACCOUNT_RECORD, &json)
    }

    /// Logs out: the server forgets the login cookie, and this device must log in
    /// again. Keys, sessions and history stay in the local store.
    pub async fn logout(mut self) -> Result<(), ClientError> {
        let result = self.api.logout().await;
        self.state.login = None;
        self.write()?;
        result
    }

    /// The typed API, for calls this type does not wrap.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The user.
    pub fn user(&self) -> UserId {
        self.device.user()
    }

    /// This device's id.
    pub fn device_id(&self) -> ClientId {
        self.device.id()
    }

    /// This device's fingerprint in groups of four.
    pub fn fingerprint(&self) -> String {
        trust::fingerprint(&self.device.identity_key())
    }

    /// The user's root key fingerprint, which peers verify once.
    pub fn root_fingerprint(&self) -> Option<String> {
        self.root.as_ref().map(|r| trust::fingerprint(r.public()))
    }

    /// A user of this user's backend.
    pub fn qualified(&self, id: Uuid) -> Qualified<Uuid> {
        Qualified {
            id,
            domain: self.domain(),
        }
    }

    /// This user's backend domain.
    pub fn domain(&self) -> String {
        self.state.domain.clone()
    }

    // --- people and connections ------------------------------------------------

    /// Finds a user by handle (with or without `@`).
    pub async fn find(&mut self, handle: &str) -> Result<Qualified<Uuid>, ClientError> {
        let profile = self
            .api
            .user_by_handle(handle.trim_start_matches('@'))
            .await?;
        self.state
            .names
            .insert(profile.qualified_id.id, profile.name.clone());
        Ok(profile.qualified_id)
    }

    /// Sets this user's handle.
    pub async fn set_handle(&self, handle: &str) -> Result<(), ClientError> {
        self.api.set_handle(handle).await
    }

    /// The name shown for a user.
    pub fn name_of(&self, user: UserId) -> String {
        self.state
            .names
            .get(&user)
            .cloned()
            .unwrap_or_else(|| user.to_string()[..8].to_owned())
    }

    async fn learn_name(&mut self, user: UserId) {
        if self.state.names.contains_key(&user) {
            return;
        }
        if let Ok(p) = self.api.user_profile(&self.qualified(user)).await {
            self.state.names.insert(user, p.name);
        }
    }

    /// Asks to connect with a user.
    pub async fn connect_to(&mut self, user: &Qualified<Uuid>) -> Result<(), ClientError> {
        self.api.request_connection(user).await?;
        Ok(())
    }

    /// Connection requests waiting for this user's answer.
    pub async fn requests(&mut self) -> Result<Vec<(UserId, String)>, ClientError> {
        let pending: Vec<UserId> = self
            .api
            .connections()
            .await?
            .into_iter()
            .filter(|c| c.status == ConnectionStatus::Pending)
            .map(|c| c.to.id)
            .collect();
        let mut out = Vec::new();
        for user in pending {
            self.learn_name(user).await;
            out.push((user, self.name_of(user)));
        }
        Ok(out)
    }

    /// Accepts a connection request; the 1:1 conversation appears.
    pub async fn accept(&mut self, user: &Qualified<Uuid>) -> Result<Qualified<Uuid>, ClientError> {
        let connection = self
            .api
            .update_connection(user, ConnectionStatus::Accepted)
            .await?;
        self.refresh_conversations().await?;
        self.save()?;
        connection.conversation.ok_or_else(|| {
            ClientError::Decode("the accepted connection has no conversation".into())
        })
    }

    // --- devices ------------------------------------------------------------------

    /// This user's devices, this one marked.
    pub async fn devices(&mut self) -> Result<Vec<DeviceView>, ClientError> {
        let me = self.user();
        self.refresh_devices(&[me]).await?;
        self.save()?;
        Ok(self.device_views(me))
    }

    /// Removes another of this user's devices.
    pub async fn remove_device(
        &mut self,
        client: ClientId,
        password: &str,
    ) -> Result<(), ClientError> {
        if client == self.device_id() {
            return Err(ClientError::Storage(
                "this is the device you are using: log out instead".into(),
            ));
        }
        self.api.remove_client(client, password).await?;
        let me = self.user();
        if let Some(peer) = self.state.peers.get_mut(&me) {
            peer.devices.remove(&client);
        }
        self.device.reset_session(me, client);
        self.save()
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
                    .filter(|(c, d)| d.identity_key.is_none() && **c != self.device_id())
                    .map(|(c, _)| *c)
                    .collect()
            })
            .unwrap_or_default();
        if !unknown.is_empty() {
            let opened = self
                .device
                .ensure_sessions(&self.api, &self.domain(), user, &unknown)
                .await?;
            self.learn_devices(&opened);
        }
        self.recompute_all();
        self.save()?;
        Ok(self.device_views(user))
    }

    fn device_views(&self, user: UserId) -> Vec<DeviceView> {
        let Some(peer) = self.state.peers.get(&user) else {
            return Vec::new();
        };
        peer.devices
            .iter()
            .map(|(client, d)| DeviceView {
                user,
                client: *client,
                fingerprint: d
                    .identity_key
                    .as_deref()
                    .and_then(|k| hex::decode(k).ok())
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .map(|k| trust::fingerprint(&k)),
                verified: self.is_verified(user, *client),
                signed_by: d.signed_by.as_deref().and_then(|r| {
                    hex::decode(r)
                        .ok()
                        .and_then(|k| <[u8; 32]>::try_from(k).ok())
                        .map(|k| trust::fingerprint(&k))
                }),
                flagged: d.bad_signature,
                this_device: user == self.user() && *client == self.device_id(),
            })
            .collect()
    }

    /// Fetches users' device lists and checks the signatures they publish.
    async fn refresh_devices(&mut self, users: &[UserId]) -> Result<(), ClientError> {
        for user in users {
            let listed = self.api.user_clients(&self.qualified(*user)).await?;
            let peer = self.state.peers.entry(*user).or_default();
            peer.listed = true;
            let live: BTreeSet<ClientId> = listed.iter().map(|c| c.id).collect();
            peer.devices.retain(|c, _| live.contains(c));
            for c in listed {
                let known = peer.devices.entry(c.id).or_default();
                match trust::check_device(*user, c.trust.as_ref()) {
                    Signature::Valid {
                        root_key,
                        identity_key,
                    } => {
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
            for gone in self
                .device
                .sessions_of(*user)
                .into_iter()
                .filter(|c| !live.contains(c))
            {
                self.device.reset_session(*user, gone);
            }
        }
        self.fill_identities_from_sessions();
        self.recompute_all();
        Ok(())
    }

    fn fill_identities_from_sessions(&mut self) {
        for (user, peer) in &mut self.state.peers {
            for (client, d) in &mut peer.devices {
                if let Some(k) = self.device.session_identity(*user, *client) {
                    let k = hex::encode(k);
                    match &d.identity_key {
                        None => d.identity_key = Some(k),
                        Some(known) if *known != k => d.bad_signature = true,
                        Some(_) => {}
                    }
                }
            }
        }
    }

    fn learn_devices(&mut self, opened: &[NewDevice]) {
        for n in opened {
            let peer = self.state.peers.entry(n.user).or_default();
            let d = peer.devices.entry(n.client).or_default();
            let k = hex::encode(n.identity_key);
            match &d.identity_key {
                None => d.identity_key = Some(k),
                Some(known) if *known != k => d.bad_signature = true,
                Some(_) => {}
            }
        }
    }

    fn is_verified(&self, user: UserId, client: ClientId) -> bool {
        if user == self.user() && client == self.device_id() {
            return true;
        }
        let Some(peer) = self.state.peers.get(&user) else {
            return false;
        };
        let Some(d) = peer.devices.get(&client) else {
            return false;
        };
        if d.bad_signature {
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
    /// the one its owner sees. `fingerprint` must be what they compared.
    pub async fn verify_device(
        &mut self,
        user: UserId,
        client: ClientId,
        fingerprint: &str,
    ) -> Result<(), ClientError> {
        self.peer_devices(user).await?;
        let d = self
            .state
            .peers
            .get_mut(&user)
            .and_then(|p| p.devices.get_mut(&client))
            .ok_or_else(|| ClientError::Storage(format!("{user} has no device {client}")))?;
        if d.identity_key.as_deref() != Some(normalise(fingerprint).as_str()) {
            return Err(ClientError::Crypto(
                "that fingerprint is not this device's: do not verify it".into(),
            ));
        }
        d.verified = true;
        self.recompute_all();
        self.save()
    }

    /// Pins a user's root key after the person compared its fingerprint: every
    /// device it signs is trusted from now on, without another check (Wickr).
    pub async fn verify_user(
        &mut self,
        user: UserId,
        root_fingerprint: &str,
    ) -> Result<(), ClientError> {
        self.refresh_devices(&[user]).await?;
        let wanted = normalise(root_fingerprint);
        let peer = self.state.peers.entry(user).or_default();
        if !peer
            .devices
            .values()
            .any(|d| d.signed_by.as_deref() == Some(wanted.as_str()))
        {
            return Err(ClientError::Crypto(
                "no device of this user is signed by that root key: do not verify it".into(),
            ));
        }
        peer.pinned_root = Some(wanted);
        self.recompute_all();
        self.save()
    }

    /// Forgets the session with one device; the next message starts a new one.
    pub fn reset_session(&mut self, user: UserId, client: ClientId) -> Result<bool, ClientError> {
        let had = self.device.reset_session(user, client);
        self.save()?;
        Ok(had)
    }

    fn recompute_all(&mut self) {
        let ids: Vec<Uuid> = self.state.conversations.keys().copied().collect();
        for id in ids {
            self.recompute(id);
        }
    }

    /// Applies the whitepaper's verification rules to one conversation.
    fn recompute(&mut self, id: Uuid) {
        let Some(conv) = self.state.conversations.get(&id) else {
            return;
        };
        let all_verified = conv.members.iter().all(|user| {
            let Some(peer) = self.state.peers.get(user) else {
                return false;
            };
            (peer.listed || *user == self.user())
                && peer
                    .devices
                    .keys()
                    .all(|client| self.is_verified(*user, *client))
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
    pub fn accept_degraded(&mut self, conversation: &Qualified<Uuid>) -> Result<(), ClientError> {
        if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
            c.verification = verification::accept_degraded(c.verification);
        }
        self.save()
    }

    // --- conversations ---------------------------------------------------------

    /// Re-reads every conversation's members and settings from the server.
    pub async fn refresh_conversations(&mut self) -> Result<(), ClientError> {
        let all = self.api.conversations().await?;
        for c in all {
            self.absorb(c).await;
        }
        Ok(())
    }

    async fn absorb(&mut self, c: Conversation) {
        let me = self.user();
        for m in &c.members {
            self.learn_name(m.id.id).await;
        }
        let members: Vec<UserId> = c.members.iter().map(|m| m.id.id).collect();
        let name = match (&c.kind, &c.name) {
            (ConversationKind::Group, Some(n)) => n.clone(),
            _ => members
                .iter()
                .find(|u| **u != me)
                .map(|u| self.name_of(*u))
                .unwrap_or_else(|| "(just you)".into()),
        };
        let entry = self
            .state
            .conversations
            .entry(c.id.id)
            .or_insert_with(|| ConversationView {
                id: c.id.clone(),
                kind: c.kind,
                name: name.clone(),
                members: Vec::new(),
                message_timer: None,
                receipt_mode: 0,
                verification: Verification::NonVerified,
                unread: 0,
                messages: Vec::new(),
            });
        entry.name = name;
        entry.members = members;
        entry.message_timer = c.message_timer;
        entry.receipt_mode = c.receipt_mode;
        self.recompute(c.id.id);
    }

    /// Conversations, most recent activity first.
    pub fn conversations(&mut self) -> Vec<&ConversationView> {
        self.purge_expired();
        let mut all: Vec<&ConversationView> = self.state.conversations.values().collect();
        all.sort_by_key(|c| std::cmp::Reverse(c.messages.last().map(|m| m.time).unwrap_or(0)));
        all
    }

    /// Finds a conversation by id, id prefix or name (case-insensitive).
    pub fn find_conversation(&self, what: &str) -> Result<Qualified<Uuid>, ClientError> {
        let what_lower = what.to_lowercase();
        let matches: Vec<&ConversationView> = self
            .state
            .conversations
            .values()
            .filter(|c| {
                c.id.id.to_string().starts_with(&what_lower) || c.name.to_lowercase() == what_lower
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(ClientError::Storage(format!(
                "no conversation called {what:?}: `parley convs` lists them"
            ))),
            _ => Err(ClientError::Storage(format!(
                "{what:?} names {} conversations: use more of the id",
                matches.len()
            ))),
        }
    }

    /// One conversation.
    pub fn conversation(&self, id: &Qualified<Uuid>) -> Option<&ConversationView> {
        self.state.conversations.get(&id.id)
    }

    /// Creates a group with these members.
    pub async fn create_group(
        &mut self,
        name: &str,
        users: Vec<Qualified<Uuid>>,
        receipts: bool,
    ) -> Result<Qualified<Uuid>, ClientError> {
        let c = self
            .api
            .create_conversation(&NewConversation {
                name: name.to_owned(),
                users,
                message_timer: None,
                receipt_mode: u8::from(receipts),
            })
            .await?;
        let id = c.id.clone();
        self.absorb(c).await;
        self.save()?;
        Ok(id)
    }

    /// Adds a member to a group.
    pub async fn add_member(
        &mut self,
        conversation: &Qualified<Uuid>,
        user: Qualified<Uuid>,
    ) -> Result<(), ClientError> {
        self.api.add_members(conversation, vec![user]).await?;
        let c = self.api.conversation(conversation).await?;
        self.absorb(c).await;
        self.save()
    }

    /// Removes a member from a group.
    pub async fn remove_member(
        &mut self,
        conversation: &Qualified<Uuid>,
        user: &Qualified<Uuid>,
    ) -> Result<(), ClientError> {
        self.api.remove_member(conversation, user).await?;
        let c = self.api.conversation(conversation).await?;
        self.absorb(c).await;
        self.save()
    }

    fn system(&mut self, id: Uuid, text: &str) {
        let me = self.user();
        if let Some(c) = self.state.conversations.get_mut(&id) {
            c.messages.push(Message::entry(
                Uuid::new_v4().to_string(),
                (me, ClientId(0)),
                OffsetDateTime::now_utc().unix_timestamp(),
                MessageKind::System,
                text.to_owned(),
                true,
            ));
        }
    }

    // --- sending -----------------------------------------------------------------

    async fn send_envelope(
        &mut self,
        conversation: &Qualified<Uuid>,
        envelope: &Envelope,
        confirm: bool,
    ) -> Result<(), ClientError> {
        let conv = self
            .state
            .conversations
            .get(&conversation.id)
            .ok_or_else(|| ClientError::Storage("unknown conversation: sync first".into()))?;
        let (members, degraded) = (
            conv.members.clone(),
            conv.verification == Verification::Degraded,
        );
        if degraded {
            if !confirm {
                return Err(ClientError::Degraded);
            }
            self.accept_degraded(conversation)?;
        }
        let plaintext = Zeroizing::new(envelope.to_bytes());
        // Large content goes once, as the shared blob; each device gets its key.
        let (plaintext, data) = if plaintext.len() > content::EXTERNAL_THRESHOLD {
            let (small, blob) = content::seal_external(envelope)?;
            (Zeroizing::new(small.to_bytes()), Some(blob))
        } else {
            (plaintext, None)
        };
        for _ in 0..2 {
            let verified = self
                .state
                .conversations
                .get(&conversation.id)
                .is_some_and(|c| c.verification == Verification::Verified);
            let sent = self
                .send_through(
                    conversation,
                    To::Members(&members),
                    &plaintext,
                    data.as_deref(),
                    verified,
                )
                .await;
            match sent {
                Ok(_) => {
                    // Learn what the members' devices publish, once per member.
                    let unlisted: Vec<UserId> = members
                        .iter()
                        .filter(|u| !self.state.peers.get(u).is_some_and(|p| p.listed))
                        .copied()
                        .collect();
                    if !unlisted.is_empty() {
                        self.refresh_devices(&unlisted).await?;
                    }
                    return Ok(());
                }
                Err(ClientError::NewDevices(opened)) => {
                    // A verified conversation met new devices: trusted ones (signed
                    // by a pinned root) keep it verified; any other degrades it.
                    let users: BTreeSet<UserId> = opened.iter().map(|n| n.user).collect();
                    self.refresh_devices(&users.into_iter().collect::<Vec<_>>())
                        .await?;
                    self.save()?;
                    let still = self
                        .state
                        .conversations
                        .get(&conversation.id)
                        .is_some_and(|c| c.verification == Verification::Verified);
                    if !still {
                        return Err(ClientError::Degraded);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Unsettled)
    }

    /// Sends through the device and learns every device it opened a session
    /// with, so no device is ever written to without the verification state
    /// knowing of it. With `strict`, new devices are not approved: nothing is
    /// sent and the answer is [`ClientError::NewDevices`].
    async fn send_through(
        &mut self,
        conversation: &Qualified<Uuid>,
        to: To<'_>,
        plaintext: &[u8],
        data: Option<&[u8]>,
        strict: bool,
    ) -> Result<parley_api::MessageSent, ClientError> {
        let mut opened = Vec::new();
        let mut approve = |new: &[NewDevice]| {
            opened.extend_from_slice(new);
            !strict
        };
        let result = self
            .device
            .send(&self.api, conversation, to, plaintext, data, &mut approve)
            .await;
        self.learn_devices(&opened);
        if let Ok(sent) = &result {
            for users in sent.deleted.values() {
                for (user, clients) in users {
                    if let Some(peer) = self.state.peers.get_mut(user) {
                        for c in clients {
                            peer.devices.remove(c);
                        }
                    }
                }
            }
        }
        self.fill_identities_from_sessions();
        self.recompute_all();
        result
    }

    /// A device a message came from: known from now on, so a new one changes
    /// the verification state before anything is sent to it.
    fn note_device(&mut self, user: UserId, client: ClientId) {
        if user == self.user() && client == self.device_id() {
            return;
        }
        let identity = self.device.session_identity(user, client);
        let known = self
            .state
            .peers
            .entry(user)
            .or_default()
            .devices
            .entry(client)
            .or_default();
        if known.identity_key.is_none() {
            known.identity_key = identity.map(hex::encode);
        }
    }

    fn record_own(&mut self, conversation: &Qualified<Uuid>, envelope: &Envelope) {
        let me = self.user();
        let sender = self.device_id();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.apply(conversation, me, sender, now, envelope, true);
    }

    /// Sends a text. In a degraded conversation `confirm` must be set (the person
    /// was asked), which also marks the conversation non-verified.
    pub async fn send_text(
        &mut self,
        conversation: &Qualified<Uuid>,
        text: &str,
        confirm: bool,
    ) -> Result<String, ClientError> {
        self.send_rich(conversation, content::Text::plain(text), confirm)
            .await
    }

    /// Sends a text with mentions and link previews (which the sender makes:
    /// recipients never fetch links). [`Account::mention`] helps build one.
    pub async fn send_rich(
        &mut self,
        conversation: &Qualified<Uuid>,
        text: content::Text,
        confirm: bool,
    ) -> Result<String, ClientError> {
        let mut envelope = Envelope::new(Body::Text(text));
        envelope.expires_after_ms = self
            .state
            .conversations
            .get(&conversation.id)
            .and_then(|c| c.message_timer);
        // What a peer would refuse is refused here first.
        Envelope::parse(&envelope.to_bytes())?;
        self.send_and_record(conversation, envelope, confirm).await
    }

    /// A text mentioning `users`: each `@name` in `content` (their display
    /// name or handle as typed) becomes a mention of that user.
    pub fn mention(content: &str, users: &[(UserId, &str)]) -> content::Text {
        let mut text = content::Text::plain(content);
        for (user, name) in users {
            let needle = format!("@{name}");
            for (start, _) in content.match_indices(&needle) {
                text.mentions.push(content::Mention {
                    start: u32::try_from(start).unwrap_or(u32::MAX),
                    length: u32::try_from(needle.len()).unwrap_or(u32::MAX),
                    user_id: user.to_string(),
                });
            }
        }
        text
    }

    /// Sends a self-deleting text: it disappears `after_ms` after the recipient
    /// first sees it (and from this device once sent).
    pub async fn send_ephemeral(
        &mut self,
        conversation: &Qualified<Uuid>,
        text: &str,
        after_ms: u64,
        confirm: bool,
    ) -> Result<String, ClientError> {
        let mut envelope = Envelope::text(text);
        envelope.expires_after_ms = Some(after_ms);
        self.send_and_record(conversation, envelope, confirm).await
    }

    /// Edits one of this user's texts.
    pub async fn edit(
        &mut self,
        conversation: &Qualified<Uuid>,
        message: &str,
        text: &str,
    ) -> Result<String, ClientError> {
        let envelope = Envelope::new(Body::Edit(content::Edit {
            replacing_message_id: message.to_owned(),
            text: Some(content::Text::plain(text)),
        }));
        self.send_and_record(conversation, envelope, false).await
    }

    /// Deletes a message for everyone (only this user's own) or only for this
    /// user (on all of their devices).
    pub async fn delete(
        &mut self,
        conversation: &Qualified<Uuid>,
        message: &str,
        for_everyone: bool,
    ) -> Result<(), ClientError> {
        let envelope = Envelope::new(Body::Delete(content::Delete {
            message_id: message.to_owned(),
            for_everyone,
        }));
        if for_everyone {
            self.send_and_record(conversation, envelope, false).await?;
        } else {
            // For me: the user's own other devices only.
            let me = self.user();
            self.send_through(
                conversation,
                To::OnlyUsers(&[me]),
                &envelope.to_bytes(),
                None,
                false,
            )
            .await?;
            self.record_own(conversation, &envelope);
            self.save()?;
        }
        Ok(())
    }

    /// Reacts to a message (an empty emoji takes the reaction back).
    pub async fn react(
        &mut self,
        conversation: &Qualified<Uuid>,
        message: &str,
        emoji: &str,
    ) -> Result<(), ClientError> {
        let envelope = Envelope::new(Body::Reaction(content::Reaction {
            message_id: message.to_owned(),
            emoji: emoji.to_owned(),
        }));
        self.send_and_record(conversation, envelope, false).await?;
        Ok(())
    }

    /// Knocks.
    pub async fn knock(&mut self, conversation: &Qualified<Uuid>) -> Result<String, ClientError> {
        let envelope = Envelope::new(Body::Knock(content::Knock { hot: false }));
        self.send_and_record(conversation, envelope, false).await
    }

    async fn send_and_record(
        &mut self,
        conversation: &Qualified<Uuid>,
        envelope: Envelope,
        confirm: bool,
    ) -> Result<String, ClientError> {
        self.send_envelope(conversation, &envelope, confirm).await?;
        self.record_own(conversation, &envelope);
        self.save()?;
        Ok(envelope.message_id)
    }

    /// Shows a conversation: its unread messages count as read, self-deleting
    /// timers start, and read receipts go out when the conversation has them on.
    pub async fn open_conversation(
        &mut self,
        conversation: &Qualified<Uuid>,
    ) -> Result<Vec<Message>, ClientError> {
        self.purge_expired();
        let now = now_ms();
        let mut newly_read = Vec::new();
        let receipts = {
            let Some(c) = self.state.conversations.get_mut(&conversation.id) else {
                return Err(ClientError::Storage("unknown conversation".into()));
            };
            c.unread = 0;
            for m in &mut c.messages {
                if !m.shown {
                    m.shown = true;
                    if let Some(after) = m.expires_after_ms {
                        m.expires_at =
                            Some(now.saturating_add(i64::try_from(after).unwrap_or(i64::MAX)));
                    }
                    if !m.mine
                        && matches!(
                            m.kind,
                            MessageKind::Text | MessageKind::Knock | MessageKind::Asset { .. }
                        )
                    {
                        newly_read.push(m.id.clone());
                    }
                }
            }
            c.receipt_mode == 1
        };
        self.save()?;
        if receipts && !newly_read.is_empty() {
            self.send_receipt(conversation, ReceiptKind::Read, newly_read)
                .await?;
        }
        Ok(self
            .state
            .conversations
            .get(&conversation.id)
            .map(|c| c.messages.clone())
            .unwrap_or_default())
    }

    /// The history without marking anything read.
    pub fn history(&mut self, conversation: &Qualified<Uuid>) -> Vec<Message> {
        self.purge_expired();
        self.state
            .conversations
            .get(&conversation.id)
            .map(|c| c.messages.clone())
            .unwrap_or_default()
    }

    /// Receipts go to the author of each message only. They carry no content,
    /// so they need no confirmation, but a device they reach for the first time
    /// still counts for verification.
    async fn send_receipt(
        &mut self,
        conversation: &Qualified<Uuid>,
        kind: ReceiptKind,
        ids: Vec<String>,
    ) -> Result<(), ClientError> {
        let mut by_author: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
        if let Some(c) = self.state.conversations.get(&conversation.id) {
            for id in ids {
                if let Some(m) = c.messages.iter().find(|m| m.id == id) {
                    by_author.entry(m.from).or_default().push(id);
                }
            }
        }
        for (author, message_ids) in by_author {
            let envelope = Envelope::new(Body::Receipt(content::Receipt {
                kind: kind as i32,
                message_ids,
            }));
            self.send_through(
                conversation,
                To::OnlyUsers(&[author]),
                &envelope.to_bytes(),
                None,
                false,
            )
            .await?;
        }
        self.save()
    }

    /// Removes self-deleting messages whose time is up.
    fn purge_expired(&mut self) {
        let now = now_ms();
        for c in self.state.conversations.values_mut() {
            c.messages
                .retain(|m| m.expires_at.is_none_or(|at| at > now));
        }
    }

    // --- backups ------------------------------------------------------------------

    /// The conversation history, sealed under a dedicated backup password
    /// ([`crate::backup`]): only this user can import it.
    pub fn export_backup(&mut self, password: &str) -> Result<Vec<u8>, ClientError> {
        self.purge_expired();
        let history = Backup {
            user: self.user(),
            conversations: self.state.conversations.values().cloned().collect(),
            names: self.state.names.clone(),
        };
        let json = Zeroizing::new(serde_json::to_vec(&history).expect("history serializes"));
        crate::backup::seal(self.user(), password, &json)
    }

    /// Imports a backup made by this user: conversations and messages this
    /// device lacks are added; nothing here is overwritten. Returns how many
    /// messages were added.
    pub fn import_backup(&mut self, bytes: &[u8], password: &str) -> Result<usize, ClientError> {
        let json = crate::backup::open(bytes, password, self.user())?;
        let backup: Backup = serde_json::from_slice(&json)
            .map_err(|_| ClientError::Decode("the backup's history is damaged".into()))?;
        if backup.user != self.user() {
            return Err(ClientError::Crypto(
                "this backup belongs to another user".into(),
            ));
        }
        let mut added = 0;
        for conv in backup.conversations {
            let here = self
                .state
                .conversations
                .entry(conv.id.id)
                .or_insert_with(|| ConversationView {
                    messages: Vec::new(),
                    unread: 0,
                    ..conv.clone()
                });
            for m in conv.messages {
                if !here.messages.iter().any(|h| h.id == m.id) {
                    here.messages.push(m);
                    added += 1;
                }
            }
            here.messages.sort_by_key(|m| m.time);
        }
        for (user, name) in backup.names {
            self.state.names.entry(user).or_insert(name);
        }
        self.save()?;
        Ok(added)
    }

    // --- receiving ---------------------------------------------------------------

    /// Fetches everything new from the server's queue, applies it and saves.
    pub async fn sync(&mut self) -> Result<Vec<Update>, ClientError> {
        let held = self.device.prekeys_held();
        let incoming = self.device.sync(&self.api).await?;
        self.absorb_incoming(incoming, held).await
    }

    /// Opens the live socket from this device's cursor, topping up the server's
    /// pool of this device's prekeys first.
    pub async fn connect(&mut self) -> Result<crate::api::LiveSocket, ClientError> {
        if self.device.top_up_prekeys(&self.api).await? > 0 {
            self.save()?;
        }
        self.device.connect(&self.api).await
    }

    /// Handles one frame of the live socket (see [`Account::connect`]).
    pub async fn handle(
        &mut self,
        frame: &parley_api::LiveFrame,
    ) -> Result<Vec<Update>, ClientError> {
        let held = self.device.prekeys_held();
        let incoming: Vec<Incoming> = self.device.handle(frame).into_iter().collect();
        self.absorb_incoming(incoming, held).await
    }

    /// Sends a typing indicator.
    pub async fn typing(
        &self,
        conversation: &Qualified<Uuid>,
        started: bool,
    ) -> Result<(), ClientError> {
        self.api.typing(conversation, started).await
    }

    /// Applies what the device received. `prekeys_held` is the device's count
    /// before it decrypted these: if a peer used one, a fresh one goes up.
    async fn absorb_incoming(
        &mut self,
        incoming: Vec<Incoming>,
        prekeys_held: usize,
    ) -> Result<Vec<Update>, ClientError> {
        let mut updates = Vec::new();
        let mut delivery: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
        for item in incoming {
            match item {
                Incoming::Message(r) => {
                    self.note_device(r.from, r.sender);
                    if let Some((update, receipt)) = self.absorb_message(&r) {
                        if let Some(id) = receipt {
                            delivery.entry(r.conversation.id).or_default().push(id);
                        }
                        updates.push(update);
                    }
                }
                Incoming::Undecryptable {
                    conversation,
                    from,
                    sender,
                    reason,
                } => {
                    self.note_device(from, sender);
                    let id = Uuid::new_v4().to_string();
                    self.ensure_conversation(&conversation).await;
                    let text = format!(
                        "A message from device {sender} could not be decrypted. \
                         Its sessions start afresh with the next message."
                    );
                    self.push(
                        &conversation,
                        Message::entry(
                            id.clone(),
                            (from, sender),
                            OffsetDateTime::now_utc().unix_timestamp(),
                            MessageKind::Undecryptable { reason },
                            text,
                            false,
                        ),
                    );
                    // The sender's session with us is broken: drop ours, so our
                    // next message starts a fresh one (Wire's TOO_DISTANT_FUTURE /
                    // Status's partitioned devices).
                    self.device.reset_session(from, sender);
                    updates.push(Update::Message { conversation, id });
                }
                Incoming::NotificationsLost => {
                    self.refresh_conversations().await?;
                    let ids: Vec<Uuid> = self.state.conversations.keys().copied().collect();
                    for id in ids {
                        self.system(
                            id,
                            "This device was offline too long: messages sent meanwhile may be missing.",
                        );
                    }
                    updates.push(Update::NotificationsLost);
                }
                Incoming::Event(event) => updates.extend(self.absorb_event(&event.payload).await?),
            }
        }
        // A device met for the first time changes verification now, before
        // anything is sent back to it.
        self.recompute_all();
        if self.device.prekeys_held() < prekeys_held {
            self.device.top_up_prekeys(&self.api).await?;
        }
        self.save()?;
        for (conv, ids) in delivery {
            let conversation = self.qualified(conv);
            self.send_receipt(&conversation, ReceiptKind::Delivered, ids)
                .await?;
        }
        Ok(updates)
    }

    async fn ensure_conversation(&mut self, conversation: &Qualified<Uuid>) {
        if !self.state.conversations.contains_key(&conversation.id)
            && let Ok(c) = self.api.conversation(conversation).await
        {
            self.absorb(c).await;
        }
    }

    async fn absorb_event(&mut self, payload: &EventPayload) -> Result<Vec<Update>, ClientError> {
        let mut updates = Vec::new();
        match payload {
            EventPayload::ConversationCreate { conversation } => {
                self.absorb(conversation.clone()).await;
                updates.push(Update::Conversation(conversation.id.clone()));
            }
            EventPayload::MemberJoin { conversation, .. }
            | EventPayload::MemberLeave { conversation, .. }
            | EventPayload::Rename { conversation, .. }
            | EventPayload::MessageTimerUpdate { conversation, .. }
            | EventPayload::ReceiptModeUpdate { conversation, .. } => {
                match self.api.conversation(conversation).await {
                    Ok(c) => self.absorb(c).await,
                    // Removed from it: keep the history, stop sending.
                    Err(ClientError::Api {
                        status: 403 | 404, ..
                    }) => {
                        if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
                            c.members.clear();
                        }
                    }
                    Err(e) => return Err(e),
                }
                let text = match payload {
                    EventPayload::MemberJoin { members, .. } => format!(
                        "{} joined.",
                        members
                            .iter()
                            .map(|m| self.name_of(m.id.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    EventPayload::MemberLeave { users, .. } => format!(
                        "{} left.",
                        users
                            .iter()
                            .map(|u| self.name_of(u.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    EventPayload::Rename { name, .. } => format!("Renamed to {name}."),
                    EventPayload::MessageTimerUpdate { message_timer, .. } => match message_timer {
                        Some(ms) => format!(
                            "Messages now disappear {} s after they are read.",
                            ms / 1000
                        ),
                        None => "Messages no longer disappear.".into(),
                    },
                    _ => "Read receipts changed.".into(),
                };
                self.system(conversation.id, &text);
                updates.push(Update::Conversation(conversation.clone()));
            }
            EventPayload::Connection { connection } => {
                if let Some(conversation) = &connection.conversation
                    && connection.status == ConnectionStatus::Accepted
                {
                    if let Ok(c) = self.api.conversation(conversation).await {
                        self.absorb(c).await;
                    }
                    updates.push(Update::Conversation(conversation.clone()));
                }
            }
            EventPayload::ClientAdd { .. } | EventPayload::ClientRemove { .. } => {
                let me = self.user();
                self.refresh_devices(&[me]).await?;
            }
            EventPayload::Typing {
                conversation,
                from,
                status,
            } => updates.push(Update::Typing {
                conversation: conversation.clone(),
                from: *from,
                started: *status == parley_api::TypingStatus::Started,
            }),
            _ => {}
        }
        Ok(updates)
    }

    fn push(&mut self, conversation: &Qualified<Uuid>, message: Message) {
        if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
            if !message.shown {
                c.unread += 1;
            }
            c.messages.push(message);
        }
    }

    /// Applies a decrypted message. Returns the update and, for a text in a 1:1,
    /// the id to send a delivery receipt for.
    fn absorb_message(&mut self, r: &Received) -> Option<(Update, Option<String>)> {
        let conversation = r.conversation.clone();
        let envelope = Envelope::parse(&r.plaintext).and_then(|e| match &e.body {
            Some(Body::External(external)) => content::open_external(
                external,
                r.data.as_deref().ok_or_else(|| {
                    ClientError::Decode("a large message arrived without its shared blob".into())
                })?,
            ),
            _ => Ok(e),
        });
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => {
                let id = Uuid::new_v4().to_string();
                self.push(
                    &conversation,
                    Message::entry(
                        id.clone(),
                        (r.from, r.sender),
                        r.time.unix_timestamp(),
                        MessageKind::Undecryptable {
                            reason: e.to_string(),
                        },
                        "A message arrived that this app cannot read.".into(),
                        false,
                    ),
                );
                return Some((Update::Message { conversation, id }, None));
            }
        };
        let mine = r.from == self.user();
        let one2one = self
            .state
            .conversations
            .get(&conversation.id)
            .is_some_and(|c| c.kind == ConversationKind::One2one);
        let update = self.apply(
            &conversation,
            r.from,
            r.sender,
            r.time.unix_timestamp(),
            &envelope,
            mine,
        )?;
        let receipt = (one2one
            && !mine
            && matches!(
                envelope.body,
                Some(Body::Text(_) | Body::Knock(_) | Body::Asset(_))
            ))
        .then(|| envelope.message_id.clone());
        Some((update, receipt))
    }

    /// Applies content (received, or sent by this device) to the history.
    fn apply(
        &mut self,
        conversation: &Qualified<Uuid>,
        from: UserId,
        sender: ClientId,
        time: i64,
        envelope: &Envelope,
        mine: bool,
    ) -> Option<Update> {
        let sent_here = mine && sender == self.device_id();
        let c = self.state.conversations.get_mut(&conversation.id)?;
        let changed = |id: &str| Update::Changed {
            conversation: conversation.clone(),
            id: id.to_owned(),
        };
        let new_entry = |kind: MessageKind, text: String| Message {
            mine,
            expires_after_ms: envelope.expires_after_ms,
            // The sender's own copy counts down from sending.
            expires_at: envelope
                .expires_after_ms
                .filter(|_| sent_here)
                .map(|ms| now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))),
            ..Message::entry(
                envelope.message_id.clone(),
                (from, sender),
                time,
                kind,
                text,
                sent_here,
            )
        };
        let entry = match envelope.body.as_ref() {
            Some(Body::Text(t)) => {
                let (mentions, link_previews) = annotations(t);
                Some(Message {
                    mentions,
                    link_previews,
                    ..new_entry(MessageKind::Text, t.content.clone())
                })
            }
            Some(Body::Knock(_)) => Some(new_entry(MessageKind::Knock, String::new())),
            Some(Body::Asset(a)) => Some(new_entry(
                MessageKind::Asset {
                    name: a.name.clone(),
                },
                format!("{} ({} bytes)", a.name, a.size),
            )),
            None => Some(new_entry(
                MessageKind::Unsupported,
                "This message needs a newer app.".into(),
            )),
            // Unwrapped before it gets here; a nested one is refused.
            Some(Body::External(_)) => return None,
            Some(Body::Edit(e)) => {
                let target = find(c, &e.replacing_message_id)?;
                // Only the author edits, and only texts.
                if target.from != from || target.kind != MessageKind::Text || target.deleted {
                    return None;
                }
                let text = e.text.as_ref()?;
                target.text = text.content.clone();
                (target.mentions, target.link_previews) = annotations(text);
                target.edited = true;
                return Some(changed(&e.replacing_message_id));
            }
            Some(Body::Delete(d)) => {
                if d.for_everyone {
                    let target = find(c, &d.message_id)?;
                    if target.from != from {
                        return None;
                    }
                    target.deleted = true;
                    target.text.clear();
                    target.reactions.clear();
                } else {
                    // For me: only the user's own devices send this.
                    if !mine {
                        return None;
                    }
                    c.messages.retain(|m| m.id != d.message_id);
                }
                return Some(changed(&d.message_id));
            }
            Some(Body::Reaction(r)) => {
                let target = find(c, &r.message_id)?;
                if r.emoji.is_empty() {
                    target.reactions.remove(&from);
                } else {
                    target.reactions.insert(from, r.emoji.clone());
                }
                return Some(changed(&r.message_id));
            }
            Some(Body::Receipt(r)) => {
                let kind = ReceiptKind::try_from(r.kind).ok()?;
                for id in &r.message_ids {
                    if let Some(target) = find(c, id).filter(|m| m.mine) {
                        match kind {
                            ReceiptKind::Delivered => target.delivered_to.insert(from),
                            ReceiptKind::Read => {
                                target.delivered_to.insert(from);
                                target.read_by.insert(from)
                            }
                        };
                    }
                }
                return r.message_ids.first().map(|id| changed(id));
            }
        }?;
        if c.messages.iter().any(|m| m.id == entry.id) {
            return None; // A duplicate: already in the history.
        }
        let id = entry.id.clone();
        if !entry.shown {
            c.unread += 1;
        }
        c.messages.push(entry);
        Some(Update::Message {
            conversation: conversation.clone(),
            id,
        })
    }
}
