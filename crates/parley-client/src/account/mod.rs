//! One person's Parley on one device: the place clients and bots start.
//!
//! An [`Account`] ties together the typed [`Api`], this device's Proteus
//! [`Device`], the device's encrypted database ([`Store`]), the user's root key
//! and the local state a person sees: conversations with their history, unread
//! counts and verification states, and what is known of every peer's devices.
//!
//! **One transaction per change.** Every change runs inside one write
//! transaction of the database ([`Account::begin`] … [`Account::commit`]): the
//! small state (device, sessions, prekeys, pinned identities, peers,
//! conversations) is written where it changed, history entries and the outbox
//! row by row. Several processes may hold the same device: a transaction starts
//! by reloading what another process committed meanwhile, so two processes never
//! encrypt from the same ratchet state and never overwrite each other.
//!
//! **Write-ahead.** Nothing leaves the device before the state that produced it
//! is committed: a message is encrypted, committed with its outbox entry, then
//! posted ([`send`]); prekeys are committed, then uploaded. Receiving decrypts,
//! applies and moves the cursor in one transaction; what needs the network
//! afterwards (conversations to fetch, devices to check, prekeys to top up) runs
//! after the commit and is retried until done ([`receive`]).
//!
//! Message content is [`crate::content`]; verification rules are
//! [`crate::verification`]; this module applies them.

mod calls;
mod conversations;
mod enrol;
mod history;
mod mls;
mod peers;
mod people;
mod receive;
mod send;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use parley_api::{
    ClientId, ConnectionStatus, Conversation, ConversationId, ConversationKind, NewConversation,
    OffsetDateTime, Qualified, UserId,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::api::{Api, LoginState};
use crate::device::Device;
use crate::store::{RowKey, Store, Table, Tx};
use crate::trust::{self, RootKey};
use crate::verification::Verification;

pub use calls::{CONFERENCE, CallKey, CallView};
pub use history::{LinkPreview, MAX_SEARCH_HITS, Message, MessageKind};
pub use mls::Migration;
use peers::Peer;
pub use peers::{DeviceView, KnownDevice, PersonIdentity, safety_number};
pub use people::Request;

/// The meta row holding the account (server, login, root key).
const ACCOUNT_ROW: &[u8] = b"account";
/// The meta row holding users' display names.
const NAMES_ROW: &[u8] = b"names";

/// A conversation as this device knows it (its history is read with
/// [`Account::history`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConversationView {
    /// Its id.
    pub id: Qualified<ConversationId>,
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
    /// When the last history entry arrived (Unix seconds; 0 for none).
    #[serde(default)]
    pub last_activity: i64,
    /// Members and settings are not known yet (a message arrived before the
    /// conversation could be fetched); fetched again at the next sync.
    #[serde(default)]
    pub incomplete: bool,
    /// Muted on this device ([`Account::set_muted`]): an interface does not
    /// call attention to its messages.
    #[serde(default)]
    pub muted: bool,
    /// Proteus or MLS.
    #[serde(default)]
    pub protocol: parley_api::Protocol,
    /// An MLS conversation's cipher suite.
    #[serde(default)]
    pub cipher_suite: Option<u16>,
    /// An MLS conversation's epoch as this device's group state has it.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// This device lost track of the MLS group: it rejoins at the next sync.
    #[serde(default)]
    pub rejoin: bool,
    /// The conversation's call, while this device is in it.
    #[serde(default)]
    pub call: Option<CallView>,
    /// Running self-deleting timers: message id → when it goes (Unix ms).
    #[serde(default)]
    timers: BTreeMap<String, i64>,
}

/// What changed during a sync, for the user interface.
#[derive(Clone, Debug)]
pub enum Update {
    /// A new history entry.
    Message {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Its id.
        id: String,
    },
    /// A message was edited, deleted, reacted to or receipted.
    Changed {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Which.
        id: String,
    },
    /// A conversation appeared or changed (members, name, settings).
    Conversation(Qualified<ConversationId>),
    /// Someone is typing (or stopped).
    Typing {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who.
        from: UserId,
        /// Started (true) or stopped.
        started: bool,
    },
    /// Events were lost while this device was away: conversations were
    /// resynchronised, and messages sent meanwhile may be missing.
    NotificationsLost,
}

/// The account row: where, who, and the root key (base64 of its secret, only
/// while the row is written or read).
#[derive(Serialize, Deserialize)]
struct AccountRow {
    server: String,
    domain: String,
    login: Option<LoginState>,
    root: Option<String>,
    #[serde(default)]
    needs_conversations: bool,
}

#[derive(Default)]
struct State {
    server: String,
    /// The backend's domain (the `@domain` of this user's id).
    domain: String,
    login: Option<LoginState>,
    /// The conversations this account had before this device came are still
    /// to fetch.
    needs_conversations: bool,
    conversations: BTreeMap<ConversationId, ConversationView>,
    peers: BTreeMap<UserId, Peer>,
    /// Names of users, for display.
    names: BTreeMap<UserId, String>,
}

/// The clock: Unix milliseconds. Injected so tests move time without sleeping.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .expect("milliseconds since 1970 fit in i64")
    })
}

/// One user's account on this device.
pub struct Account {
    api: Api,
    device: Device,
    store: Store,
    root: Option<RootKey>,
    state: State,
    clock: Clock,
    /// Digest of every row of the small-state tables as last read or written,
    /// so a commit writes only what changed.
    written: HashMap<(Table, RowKey), [u8; 32]>,
    /// `data_version` when the state was last read: another process's commit
    /// changes it.
    seen_version: Option<i64>,
    /// The in-memory state may be ahead of the database (a change failed before
    /// its commit): reload at the next transaction.
    stale: bool,
    /// Notices for the history, written with the change's commit.
    notices: Vec<(ConversationId, String)>,
    /// A shred could not empty the log (another process was reading): tried
    /// again after the next commit.
    shred_due: bool,
    /// This process compared the device's send generation with the server's.
    generation_checked: bool,
    /// This process asked the server how many key packages it holds.
    key_packages_checked: bool,
    /// The backend's default MLS suite, once this process asked.
    mls_suite: Option<parley_mls::CipherSuite>,
    /// The cursor this process had when the server said events after it were
    /// lost: starting over from what is left, events up to it (which this
    /// device already applied, if a purge left them) are not applied again.
    lost_floor: Option<u64>,
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

fn normalise(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn json<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(value).expect("local state serializes"))
}

fn damaged(what: &str) -> ClientError {
    ClientError::Storage(format!("the saved {what} is damaged"))
}

impl Account {
    /// Opens the account saved in `dir`. Needs no server: everything local
    /// works offline.
    pub async fn open(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let account = Self::open_device(dir, passphrase).await?;
        let login = account
            .state
            .login
            .clone()
            .ok_or(ClientError::NotLoggedIn)?;
        account.api.resume(&login);
        Ok(account)
    }

    /// The device saved in `dir`, logged in or not.
    async fn open_device(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let store = Store::open(dir, passphrase).await?;
        let mut account = Self {
            api: Api::new("http://unset.invalid")?,
            device: Device::generate(UserId::default()),
            store,
            root: None,
            state: State::default(),
            clock: system_clock(),
            written: HashMap::new(),
            seen_version: None,
            stale: true,
            notices: Vec::new(),
            shred_due: false,
            generation_checked: false,
            key_packages_checked: false,
            mls_suite: None,
            lost_floor: None,
        };
        let mut tx = account.store.read().await?;
        if tx.get(Table::Meta, ACCOUNT_ROW).await?.is_none() {
            return Err(ClientError::Storage(format!(
                "no account in {}: register or log in first",
                dir.display()
            )));
        }
        account.reload(&mut tx).await?;
        drop(tx);
        if !account.device.is_registered() {
            return Err(ClientError::Storage(format!(
                "{} holds a device whose registration did not finish: remove the directory \
                 and log in again",
                dir.display()
            )));
        }
        account.api = Api::new(&account.state.server)?;
        // Logged in or logging in again: a restored copy never encrypts from
        // chain positions the original may have used.
        if account.store.is_copy() {
            account.restored_from_copy().await?;
        }
        Ok(account)
    }

    /// Before this process encrypts anything: is this device an old copy? The
    /// server keeps the highest send generation any copy of the device
    /// reported; ahead of ours means another copy used chain positions ours
    /// still holds, so every session is dropped first. With the server away
    /// the check waits for the next call (the file-identity check on opening
    /// covers restores to a new file meanwhile).
    pub(super) async fn check_generation(&mut self) -> Result<(), ClientError> {
        if self.generation_checked {
            return Ok(());
        }
        self.refresh().await?;
        let ours = self.device.generation();
        let theirs = match self.api.raise_generation(self.device_id(), ours).await {
            Ok(g) => g,
            Err(e) if e.is_away() => return Ok(()),
            Err(e) => return Err(e),
        };
        if theirs > ours {
            let tx = self.begin().await?;
            // Another process of this same device may have caught up already.
            if self.device.generation() < theirs {
                self.device.catch_up_generation(theirs);
                self.forget_all_sessions();
            }
            self.commit(tx).await?;
        }
        self.generation_checked = true;
        Ok(())
    }

    /// Drops every session (their chain positions may have been used by
    /// another copy of this device) and says so (inside a transaction).
    fn forget_all_sessions(&mut self) {
        self.device.drop_all_sessions();
        // An MLS group's keys may have been used by the original too: each
        // is rejoined with fresh keys before anything is sent to it.
        for c in self.state.conversations.values_mut() {
            c.rejoin |= c.protocol.has_group();
        }
        let ids: Vec<ConversationId> = self.state.conversations.keys().copied().collect();
        for id in ids {
            self.system(
                id,
                "This device was restored from a copy: its sessions start afresh, so no \
                 message key is used twice. Messages sent to it meanwhile may not be readable.",
            );
        }
    }

    /// Closes the device's database; the account is done with.
    pub async fn close(self) {
        self.store.close().await;
    }

    /// This device's database was restored from a copy: its sessions may stand
    /// at chain positions the original already used, so every one is dropped
    /// before anything is sent (the next message to each device opens a fresh
    /// session; pinned identities stay).
    async fn restored_from_copy(&mut self) -> Result<(), ClientError> {
        let tx = self.begin().await?;
        self.forget_all_sessions();
        self.commit(tx).await?;
        // Only once the sessions are gone is the copy this device's own file.
        self.store.adopt_file().await
    }

    /// Replaces the clock (tests move time without sleeping).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    // --- the transaction plumbing -------------------------------------------------

    /// Starts a change: takes the database's write lock and, if another process
    /// committed since this one last looked, reloads the state first.
    async fn begin(&mut self) -> Result<Tx, ClientError> {
        let mut tx = self.store.begin().await?;
        self.notices.clear();
        self.catch_up(&mut tx).await?;
        // Until the commit, memory may run ahead of the database.
        self.stale = true;
        Ok(tx)
    }

    /// Reloads what another process committed, if anything.
    async fn catch_up(&mut self, tx: &mut Tx) -> Result<(), ClientError> {
        let version = tx.data_version().await?;
        if self.stale || self.seen_version != Some(version) {
            self.reload(tx).await?;
            self.seen_version = Some(version);
        }
        Ok(())
    }

    /// Brings local state up to date with other processes, for reading.
    async fn refresh(&mut self) -> Result<(), ClientError> {
        let mut tx = self.store.read().await?;
        self.catch_up(&mut tx).await
    }

    /// Writes what changed and commits.
    async fn commit(&mut self, mut tx: Tx) -> Result<(), ClientError> {
        if let Some(login) = self.api.login_state() {
            self.state.login = Some(login);
        }
        self.write_notices(&mut tx).await?;
        let mut now = HashMap::new();
        for (table, name, value) in self.rows() {
            let key = tx.key(table, &name);
            let digest: [u8; 32] = Sha256::digest(value.as_slice()).into();
            if self.written.get(&(table, key)) != Some(&digest) {
                tx.put_by_key(table, &key, None, &value).await?;
            }
            now.insert((table, key), digest);
        }
        for (table, key) in self.written.keys() {
            if !now.contains_key(&(*table, *key)) {
                tx.delete_by_key(*table, key).await?;
            }
        }
        let shred = self.shred_due || tx.deleted_messages();
        tx.commit().await?;
        self.written = now;
        self.stale = false;
        if shred {
            // Deleted history entries are overwritten in the file; the log that
            // still holds them (and the outbox rows that carried them) is
            // emptied.
            self.shred_due = !self.store.shred().await?;
        }
        Ok(())
    }

    /// Every row of the small state.
    fn rows(&self) -> Vec<(Table, Vec<u8>, Zeroizing<Vec<u8>>)> {
        let mut rows = self.device.rows();
        let mut row = AccountRow {
            server: self.state.server.clone(),
            domain: self.state.domain.clone(),
            login: self.state.login.clone(),
            root: self
                .root
                .as_ref()
                .map(|r| b64().encode(r.secret().as_ref())),
            needs_conversations: self.state.needs_conversations,
        };
        rows.push((Table::Meta, ACCOUNT_ROW.to_vec(), json(&row)));
        zeroize::Zeroize::zeroize(&mut row.root);
        rows.push((Table::Meta, NAMES_ROW.to_vec(), json(&self.state.names)));
        for (id, c) in &self.state.conversations {
            rows.push((Table::Conversations, id.as_bytes().to_vec(), json(c)));
        }
        for (user, p) in &self.state.peers {
            rows.push((Table::Peers, user.as_bytes().to_vec(), json(p)));
        }
        rows
    }

    /// Reads the small state from the database.
    async fn reload(&mut self, tx: &mut Tx) -> Result<(), ClientError> {
        let mut written = HashMap::new();
        let digest = |v: &[u8]| -> [u8; 32] { Sha256::digest(v).into() };
        for table in Table::ALL.into_iter().filter(|t| t.held_in_memory()) {
            for (key, value) in tx.all(table).await? {
                written.insert((table, key), digest(&value));
            }
        }
        if let Some(device) = Device::load(tx).await? {
            self.device = device;
        }
        if let Some(bytes) = tx.get(Table::Meta, ACCOUNT_ROW).await? {
            let mut row: AccountRow =
                serde_json::from_slice(&bytes).map_err(|_| damaged("account"))?;
            self.root = match row.root.take() {
                Some(mut text) => {
                    let secret =
                        Zeroizing::new(b64().decode(&text).map_err(|_| damaged("root key"))?);
                    zeroize::Zeroize::zeroize(&mut text);
                    let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
                        secret
                            .as_slice()
                            .try_into()
                            .map_err(|_| damaged("root key"))?,
                    );
                    Some(RootKey::from_secret(&secret))
                }
                None => None,
            };
            self.state.server = row.server;
            self.state.domain = row.domain;
            self.state.login = row.login;
            self.state.needs_conversations = row.needs_conversations;
        }
        self.state.names = match tx.get(Table::Meta, NAMES_ROW).await? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| damaged("names"))?,
            None => BTreeMap::new(),
        };
        self.state.conversations = BTreeMap::new();
        for (_, bytes) in tx.all(Table::Conversations).await? {
            let c: ConversationView =
                serde_json::from_slice(&bytes).map_err(|_| damaged("conversation"))?;
            self.state.conversations.insert(c.id.id, c);
        }
        self.state.peers = BTreeMap::new();
        for (_, bytes) in tx.all(Table::Peers).await? {
            let p: Peer = serde_json::from_slice(&bytes).map_err(|_| damaged("peer"))?;
            self.state.peers.insert(p.user, p);
        }
        self.written = written;
        self.stale = false;
        Ok(())
    }

    /// Logs out: the server forgets the login cookie, and this device must log in
    /// again. Keys, sessions and history stay in the database.
    pub async fn logout(mut self) -> Result<(), ClientError> {
        let result = self.api.logout().await;
        let tx = self.begin().await?;
        self.state.login = None;
        self.commit(tx).await?;
        self.store.close().await;
        result
    }

    /// Changes the passphrase that protects this device's database: one key is
    /// rewrapped, nothing else is rewritten.
    pub async fn change_passphrase(&self, old: &str, new: &str) -> Result<(), ClientError> {
        self.store.change_passphrase(old, new).await
    }

    /// Checks a passphrase against the one that protects this device's
    /// database (an app lock asks for it), the way opening the database does:
    /// [`ClientError::WrongPassphrase`] when it is not the one. Slow by design
    /// (the key derivation); it only reads this device's open database.
    pub async fn check_passphrase(&self, passphrase: &str) -> Result<(), ClientError> {
        self.store.check_passphrase(passphrase).await
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
    pub fn qualified<T>(&self, id: T) -> Qualified<T> {
        Qualified {
            id,
            domain: self.domain(),
        }
    }

    /// This user's backend domain.
    pub fn domain(&self) -> String {
        self.state.domain.clone()
    }
}
