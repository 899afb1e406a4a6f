//! The reference model of the store traits: every table of the SQL schema as a
//! map in memory, behind one lock.
//!
//! Owns: [`MemoryStore`], which answers every operation of [`AccountStore`],
//! [`DeviceStore`], [`QueueStore`], [`ConnectionStore`] and [`ConversationStore`]
//! exactly as the SQLite backend does: the same orders (as its `ORDER BY`s, a
//! row's insertion order standing in for its `rowid`), the same errors, the same
//! event ids (each device's queue counts 1, 2, 3, …, with the head's `next_id`
//! and `purged_before`), the same fan-outs, and the cascades of the schema's
//! `ON DELETE CASCADE`. Fast tests run on it, and the model-based test
//! ([`crate::conformance::model`]) holds every real backend against it. Not for
//! production: nothing is persisted.
//!
//! Every operation takes the one [`Mutex`] and does all its work under it,
//! synchronously (never across an `.await`), so each is atomic. A change checks
//! everything that could refuse it before it writes anything, so a refused
//! change leaves nothing behind, as a rolled-back transaction would.
//!
//! [`AccountStore`]: crate::AccountStore
//! [`DeviceStore`]: crate::DeviceStore
//! [`QueueStore`]: crate::QueueStore
//! [`ConnectionStore`]: crate::ConnectionStore
//! [`ConversationStore`]: crate::ConversationStore

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use parley_api::{ClientId, ClientType, ConversationId, Role, UserId};

use crate::{
    ClientRecord, CodeKind, ConnectionRecord, ConversationRecord, Cookie, KeyPackageRecord, Notify,
    OneTimeCode, QueuedEvent, Roster, StoreError, StoreResult, User,
};

mod accounts;
mod conversations;
mod devices;
mod groups;
mod mls;

/// The id of a device's last-resort prekey, never handed out as a one-time one.
const LAST_RESORT: u16 = 65535;

/// The in-memory store: the reference model of the store traits (see the
/// [module](self)).
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl crate::Store for MemoryStore {}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` under the lock: one atomic operation.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> StoreResult<T>) -> StoreResult<T> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| StoreError::Backend("the memory store's lock is poisoned".into()))?;
        f(&mut state)
    }
}

/// Counts only: the store holds password and code hashes.
impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("MemoryStore");
        match self.state.try_lock() {
            Ok(s) => {
                let events: usize = s.clients.values().map(|c| c.queue.events.len()).sum();
                d.field("users", &s.users.len())
                    .field("cookies", &s.cookies.len())
                    .field("clients", &s.clients.len())
                    .field("events", &events)
                    .field("connections", &s.connections.len())
                    .field("conversations", &s.conversations.len());
            }
            Err(_) => {
                d.field("state", &"<in use>");
            }
        }
        d.finish()
    }
}

/// Every table. Rows that the schema deletes with their parent (`ON DELETE
/// CASCADE`) live inside it where they can: a device's prekeys, push endpoint
/// and queue inside the device, a conversation's members inside it.
#[derive(Default)]
struct State {
    /// The last insertion number given: rows listed "in insertion order" (SQLite's
    /// `rowid`, PostgreSQL's `seq`) are ordered by it. A new row always gets a
    /// number above every live row's, as a new `rowid` is above every live one.
    seq: u64,
    /// One-time codes by kind and key (the two tables, side by side).
    codes: BTreeMap<(CodeKind, String), OneTimeCode>,
    users: BTreeMap<UserId, UserRow>,
    cookies: BTreeMap<(UserId, String), CookieRow>,
    clients: BTreeMap<(UserId, ClientId), ClientRow>,
    connections: BTreeMap<(UserId, UserId), ConnectionRecord>,
    conversations: BTreeMap<ConversationId, ConversationRow>,
    /// The key package directory by reference (its device's row must exist).
    key_packages: BTreeMap<Vec<u8>, KeyPackageRecord>,
    /// MLS groups: conversations' own (each beside its conversation) and
    /// their subconversations'.
    groups: BTreeMap<crate::GroupKey, crate::MlsGroupRecord>,
    /// Each group's state, once its creator committed.
    group_states: BTreeMap<crate::GroupKey, crate::GroupState>,
    /// The devices in each group.
    group_devices: BTreeMap<crate::GroupKey, std::collections::BTreeSet<(UserId, ClientId)>>,
    /// The backend's removal keys by scheme (secret, public).
    removal_keys: BTreeMap<u16, (Vec<u8>, Vec<u8>)>,
    /// The token signing seed the nodes share.
    token_seed: Option<Vec<u8>>,
}

struct UserRow {
    user: User,
    recovery_bundle: Option<Vec<u8>>,
}

struct CookieRow {
    cookie: Cookie,
    seq: u64,
}

struct ClientRow {
    record: ClientRecord,
    seq: u64,
    /// Kept signed, as the SQL column is.
    generation: i64,
    prekeys: BTreeMap<u16, String>,
    push_endpoint: Option<String>,
    queue: Queue,
    /// MLS signature keys by scheme.
    mls_keys: BTreeMap<u16, Vec<u8>>,
}

/// A device's queue: its head (`queue_heads`) and its events (`notifications`).
struct Queue {
    /// The id the next event gets.
    next_id: i64,
    /// Past the newest event any purge took (events below it may be gone).
    purged_before: i64,
    events: BTreeMap<i64, QueuedEvent>,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            next_id: 1,
            purged_before: 1,
            events: BTreeMap::new(),
        }
    }
}

struct ConversationRow {
    record: ConversationRecord,
    /// Keyed by user id. A [`uuid::Uuid`]'s order is the order of its hyphenated
    /// lower-case text (its bytes, written as hex at fixed places), which is
    /// what the SQL backends sort their `TEXT` ids by.
    members: BTreeMap<UserId, Role>,
}

/// The error SQLite gives when a row names a user or device that does not exist.
fn missing_parent() -> StoreError {
    StoreError::Backend("FOREIGN KEY constraint failed".into())
}

/// A conversation as the SQL backends store it: the timer in a signed 64-bit
/// column, so a larger one reads back as `i64::MAX`.
fn stored_conversation(c: &ConversationRecord) -> ConversationRecord {
    ConversationRecord {
        message_timer: stored_timer(c.message_timer),
        ..c.clone()
    }
}

fn stored_timer(ms: Option<u64>) -> Option<u64> {
    ms.map(|v| v.min(i64::MAX.unsigned_abs()))
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn user_exists(&self, id: UserId) -> bool {
        self.users.contains_key(&id)
    }

    /// A user's devices, in id order.
    fn device_ids(&self, user: UserId) -> Vec<ClientId> {
        self.clients
            .keys()
            .filter(|(u, _)| *u == user)
            .map(|(_, c)| *c)
            .collect()
    }

    /// The user's temporary device, if any (there is at most one).
    fn temporary_device(&self, user: UserId) -> Option<ClientId> {
        self.clients
            .iter()
            .find(|((u, _), row)| *u == user && row.record.kind == ClientType::Temporary)
            .map(|((_, c), _)| *c)
    }

    /// Appends an event to one device's queue; `None` if the device is gone.
    fn enqueue(&mut self, user: UserId, client: ClientId, payload: &str, at: i64) -> Option<u64> {
        let queue = &mut self.clients.get_mut(&(user, client))?.queue;
        let id = queue.next_id;
        queue.next_id += 1;
        let event = QueuedEvent {
            id: u64::try_from(id).unwrap_or_default(),
            payload: payload.to_owned(),
            created_at: at,
        };
        let event_id = event.id;
        queue.events.insert(id, event);
        Some(event_id)
    }

    /// Appends an event to every device of a user but `except` (each device's
    /// queue counts on its own, so the order devices are served in is no matter).
    fn enqueue_for_user(&mut self, user: UserId, except: Option<ClientId>, notify: Notify<'_>) {
        for client in self.device_ids(user) {
            if Some(client) != except {
                self.enqueue(user, client, notify.payload, notify.at);
            }
        }
    }

    /// Deletes a device with its prekeys, push endpoint and queue, and the user's
    /// cookies with its cookie label. False if there was no such device.
    fn remove_client(&mut self, user: UserId, id: ClientId) -> bool {
        let Some(row) = self.clients.remove(&(user, id)) else {
            return false;
        };
        self.key_packages
            .retain(|_, p| (p.user, p.client) != (user, id));
        if let Some(label) = row.record.cookie_label {
            self.cookies.retain(|(u, _), c| {
                !(*u == user && c.cookie.label.as_deref() == Some(label.as_str()))
            });
        }
        true
    }

    /// The members of a conversation, in user order (none if it does not exist).
    fn member_ids(&self, conversation: ConversationId) -> Vec<UserId> {
        self.conversations
            .get(&conversation)
            .map(|c| c.members.keys().copied().collect::<Vec<_>>())
            .unwrap_or_default()
    }

    /// The devices of a conversation's members: members in user order, each
    /// one's devices in the order of their signed 64-bit column.
    fn roster(&self, conversation: ConversationId) -> Roster {
        let members = self
            .member_ids(conversation)
            .into_iter()
            .map(|user| {
                let mut devices = self.device_ids(user);
                // As the SQL column keeps it: 64 bits, signed.
                devices.sort_by_key(|c| i64::from_ne_bytes(c.0.to_ne_bytes()));
                (user, devices)
            })
            .collect();
        Roster { members }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    /// The model keeps ids in `Uuid` order where the SQL backends sort their
    /// text: the two orders must be one.
    #[test]
    fn uuid_order_is_text_order() {
        let mut ids: Vec<Uuid> = (0..64).map(|_| Uuid::new_v4()).collect();
        ids.extend([Uuid::nil(), Uuid::max(), Uuid::from_u128(0xa0 << 120)]);
        let mut by_text = ids.clone();
        by_text.sort_by_key(ToString::to_string);
        ids.sort();
        assert_eq!(ids, by_text);
    }
}
