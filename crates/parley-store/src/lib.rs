//! The server's storage, in domain operations.
//!
//! Owns: the [`Store`] trait (what the services may ask of storage, each operation
//! atomic), its records, [`StoreError`], [`conformance`], the one test story
//! every backend must pass (with its model-based test), and [`memory`], the
//! in-memory reference model every backend must agree with (for tests, not for
//! production). Knows nothing about SQL, HTTP, passwords or tokens: secrets
//! arrive already hashed, times as Unix seconds chosen by the caller.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use parley_api::{
    ClientClass, ClientId, ClientType, ConnectionStatus, ConversationId, ConversationKind,
    CookieKind, Role, UserId,
};

pub mod conformance;
mod groups;
pub mod memory;

pub use groups::{
    GroupCommit, GroupKey, GroupProposals, GroupState, GroupStore, GroupWrite, MlsGroupRecord,
    SharedMessage, SubconversationLeave, with_data,
};

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was broken (what is named).
    #[error("already exists: {0}")]
    Conflict(&'static str),
    /// The thing to change does not exist.
    #[error("not found")]
    NotFound,
    /// The user already has the most permanent devices allowed.
    #[error("too many clients")]
    TooManyClients,
    /// The change would pass a limit (what is named).
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The database failed.
    #[error("storage backend: {0}")]
    Backend(String),
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// What a one-time code is for. Each kind has its own table and its own rule for
/// a second request; reading, counting a try and forgetting are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CodeKind {
    /// An e-mail address's activation code, keyed by the address (lower case).
    Activation,
    /// A password reset, keyed by the base64 SHA-256 of the user id (one per
    /// account).
    PasswordReset,
}

/// A pending one-time code (stored hashed): an e-mail activation code or a
/// password reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimeCode {
    /// The address (activation) or the hashed user id (reset).
    pub key: String,
    /// Whose password a reset changes; `None` for an activation code.
    pub user: Option<UserId>,
    /// SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// Unix seconds.
    pub expires_at: i64,
    /// Tries so far.
    pub tries: u32,
}

impl OneTimeCode {
    /// The account a password reset is for: a reset without one is a caller's
    /// mistake, refused before anything is written.
    pub fn reset_user(&self) -> StoreResult<UserId> {
        self.user
            .ok_or_else(|| StoreError::Backend("a password reset names its account".into()))
    }
}

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Random UUID v4.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// E-mail (lower case), unique.
    pub email: String,
    /// Handle, unique once set.
    pub handle: Option<String>,
    /// `log2(N)|r|p|salt|hash` (scrypt) or a PHC string (argon2id).
    pub password_hash: String,
    /// Accent colour.
    pub accent_id: i32,
    /// Locale.
    pub locale: String,
    /// Picture asset reference.
    pub picture: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ProfileUpdate {
    /// Display name.
    pub name: Option<String>,
    /// Accent colour.
    pub accent_id: Option<i32>,
    /// Locale.
    pub locale: Option<String>,
    /// Picture (`Some(None)` clears it).
    pub picture: Option<Option<String>>,
}

/// A login: the server side of a user token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookie {
    /// Random id, carried in the user token.
    pub id: String,
    /// The owner.
    pub user: UserId,
    /// The label the login gave.
    pub label: Option<String>,
    /// Persistent or session.
    pub kind: CookieKind,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    /// The owner.
    pub user: UserId,
    /// Random 64-bit id.
    pub id: ClientId,
    /// Permanent or temporary.
    pub kind: ClientType,
    /// Device class.
    pub class: ClientClass,
    /// Device model.
    pub model: Option<String>,
    /// User's label.
    pub label: Option<String>,
    /// Label of the cookie it logged in with.
    pub cookie_label: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// The device's identity key signed by the user's root key (JSON of
    /// `parley_api::DeviceTrust`), if the device published one.
    pub trust: Option<String>,
}

/// A prekey as stored: id and the opaque key the device uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyRecord {
    /// `0..=65535`.
    pub id: u16,
    /// Opaque (base64 of the device's prekey bundle).
    pub key: String,
}

/// An event for one device, as stored in its queue: an opaque JSON payload the
/// services write and the device reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Orders the event within its device's queue (1, 2, 3, …).
    pub id: u64,
    /// The event, as JSON.
    pub payload: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A page of a device's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPage {
    /// Events after the cursor, oldest first.
    pub events: Vec<QueuedEvent>,
    /// More events follow this page.
    pub has_more: bool,
    /// Events after the cursor were purged (or the cursor is not this queue's): the
    /// device must resynchronise.
    pub lost: bool,
}

/// Where a page of a queue starts, and whether the device missed events: the
/// one rule every backend applies to a cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePosition {
    /// The page holds events with ids above this: the cursor itself, or 0
    /// when the cursor is not this queue's (beyond it) and the device starts
    /// over from what is left.
    pub after: i64,
    /// Events after the cursor were purged, or the cursor is beyond the queue.
    pub lost: bool,
}

impl QueuePosition {
    /// For a read after `since` (none: from the start), given the queue's head:
    /// `next` is the id the next event gets and `purged_before` the id before
    /// which events may have been purged (every event below it that the purge
    /// took). Any `since` gives an answer: a cursor beyond what a queue can
    /// hold is lost, never an overflow. A cursor before a purged event is
    /// lost too, but keeps its place: the device is not sent again what it
    /// already has.
    pub fn of(since: Option<u64>, purged_before: i64, next: i64) -> Self {
        let Some(since) = since else {
            return Self {
                after: 0,
                lost: false,
            };
        };
        let after = i64::try_from(since).unwrap_or(i64::MAX);
        let beyond = after >= next;
        let missed = after
            .checked_add(1)
            .is_none_or(|first| first < purged_before);
        Self {
            after: if beyond { 0 } else { after },
            lost: beyond || missed,
        }
    }
}

#[cfg(test)]
mod position_tests {
    use super::QueuePosition;

    #[test]
    fn every_cursor_has_an_answer() {
        // Events 5..10 are kept (next is 10).
        let at = |since| QueuePosition::of(since, 5, 10);
        assert_eq!(
            at(None),
            QueuePosition {
                after: 0,
                lost: false
            }
        );
        assert_eq!(
            at(Some(4)),
            QueuePosition {
                after: 4,
                lost: false
            }
        );
        assert_eq!(
            at(Some(9)),
            QueuePosition {
                after: 9,
                lost: false
            }
        );
        assert_eq!(
            at(Some(3)),
            QueuePosition {
                after: 3,
                lost: true
            },
            "event 4 was purged: lost, but what the device has is not sent again"
        );
        assert!(at(Some(10)).lost, "beyond the queue");
        for since in [i64::MAX as u64 - 1, i64::MAX as u64, u64::MAX - 1, u64::MAX] {
            assert_eq!(
                at(Some(since)),
                QueuePosition {
                    after: 0,
                    lost: true
                }
            );
        }
    }
}

/// An event to store with a change, in the same transaction.
#[derive(Clone, Copy, Debug)]
pub struct Notify<'a> {
    /// The event, as JSON.
    pub payload: &'a str,
    /// Unix seconds.
    pub at: i64,
}

/// What adding a device changed besides adding it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AddedClient {
    /// The temporary device this one replaced.
    pub replaced: Option<ClientId>,
}

/// One side of a connection between two users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The owner of this side.
    pub from: UserId,
    /// The other user.
    pub to: UserId,
    /// Where `from` stands with `to`.
    pub status: ConnectionStatus,
    /// The 1:1 conversation, once there is one.
    pub conversation: Option<ConversationId>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A change to a connection, applied only if nothing changed since it was read.
#[derive(Clone, Debug)]
pub struct ConnectionChange {
    /// Sides to write, each with the status it must still have (`None`: must not
    /// exist yet). Otherwise nothing is written and the answer is
    /// `Conflict("connection")`.
    pub sides: Vec<(ConnectionRecord, Option<ConnectionStatus>)>,
    /// A conversation to create with the change (the 1:1 of an accepted request).
    pub conversation: Option<(ConversationRecord, Vec<MemberRecord>)>,
    /// Events for every device of a user, stored in the same transaction.
    pub notify: Vec<(UserId, String)>,
    /// Unix seconds, for the events.
    pub at: i64,
}

/// A conversation's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRecord {
    /// Random UUID v4.
    pub id: ConversationId,
    /// Group or 1:1.
    pub kind: ConversationKind,
    /// The group's name.
    pub name: Option<String>,
    /// Who created it.
    pub creator: UserId,
    /// Self-deleting timer, milliseconds.
    pub message_timer: Option<u64>,
    /// 0 off, 1 on.
    pub receipt_mode: u8,
    /// Unix seconds.
    pub created_at: i64,
}

/// A member and their role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// Who.
    pub user: UserId,
    /// Their rights.
    pub role: Role,
}

/// A change to a conversation. Its event goes to every device of every member
/// before or after the change (so removed members learn they were removed).
#[derive(Clone, Debug)]
pub enum ConversationChange {
    /// Adds members (those already in keep their role). `Limit("members")` if the
    /// conversation would have more than `max`.
    AddMembers {
        /// Who, with which role.
        members: Vec<MemberRecord>,
        /// The member limit.
        max: usize,
    },
    /// Removes a member. `NotFound` if they are not one.
    RemoveMember(UserId),
    /// Changes a member's role. `NotFound` if they are not one.
    SetRole(MemberRecord),
    /// Renames.
    Rename(String),
    /// Sets the self-deleting timer.
    MessageTimer(Option<u64>),
    /// Sets the receipt mode.
    ReceiptMode(u8),
}

/// The devices of a conversation's members at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Roster {
    /// Each member with their devices, in user order.
    pub members: Vec<(UserId, Vec<ClientId>)>,
}

/// One event for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The device's owner.
    pub user: UserId,
    /// The device.
    pub client: ClientId,
    /// The event, as JSON.
    pub payload: String,
}

/// Decides, given the roster inside the delivery's transaction, what to deliver
/// (`None`: deliver nothing). Shared and `'static` so a backend may hand it to the
/// task that commits several deliveries together.
pub type DeliveryPlan = std::sync::Arc<dyn Fn(&Roster) -> Option<Vec<Outgoing>> + Send + Sync>;

/// An event stored in a device's queue by a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The device's owner.
    pub user: UserId,
    /// The device.
    pub client: ClientId,
    /// The event's id in the device's queue.
    pub id: u64,
    /// The event, as JSON: shared by every device a group message went to.
    pub payload: std::sync::Arc<str>,
}

/// What a delivery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The roster the plan was given.
    pub roster: Roster,
    /// The events stored (`None`: the plan refused). A device that disappeared
    /// meanwhile gets none.
    pub delivered: Option<Vec<Delivered>>,
}

/// An MLS key package in the directory, as its device uploaded it (already
/// checked: `parley_mls::KeyPackageIn::validate`).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPackageRecord {
    /// Its reference (RFC 9420 §5.2), unique.
    pub reference: Vec<u8>,
    /// Whose device.
    pub user: UserId,
    /// Which device.
    pub client: ClientId,
    /// Its cipher suite.
    pub suite: u16,
    /// The MLS message, handed out as it is.
    pub data: Vec<u8>,
    /// The end of its lifetime, in Unix seconds.
    pub not_after: i64,
    /// A last-resort key package: handed out again when the device has no
    /// other, never used up; a device has at most one per suite (a new one
    /// replaces it), and it is not counted.
    pub last_resort: bool,
}

impl std::fmt::Debug for KeyPackageRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyPackageRecord({}/{}, suite {}, {} bytes)",
            self.user,
            self.client,
            self.suite,
            self.data.len()
        )
    }
}

/// The server's storage: one trait per concept, each owned by one service
/// (ARCHITECTURE.md says which). Every operation is atomic: it happens
/// entirely or not at all, whatever runs concurrently. A backend implements
/// them all and says so (`impl Store for … {}`); `Store` is their sum, for
/// wiring and for the conformance story.
pub trait Store:
    AccountStore
    + DeviceStore
    + QueueStore
    + ConnectionStore
    + ConversationStore
    + MlsStore
    + GroupStore
{
}

/// Accounts: activation codes, users and profiles, login cookies, password
/// resets and the recovery bundle. Owned by the accounts service.
#[async_trait]
pub trait AccountStore: Send + Sync + std::fmt::Debug + 'static {
    /// The seed every node on this database signs tokens with: the stored
    /// one, or `candidate` stored now (the first node's).
    async fn token_signing_seed(&self, candidate: &[u8]) -> StoreResult<Vec<u8>>;
    /// Stores an activation code for its address (`key`), replacing any earlier
    /// one.
    async fn put_activation_code(&self, code: &OneTimeCode) -> StoreResult<()>;
    /// The pending code of this kind with this key.
    async fn one_time_code(&self, kind: CodeKind, key: &str) -> StoreResult<Option<OneTimeCode>>;
    /// Counts one try (before it is compared, so concurrent guesses cannot
    /// share a try); returns the tries so far, this one included. `NotFound`
    /// if there is no such code.
    async fn count_code_try(&self, kind: CodeKind, key: &str) -> StoreResult<u32>;
    /// Forgets a code.
    async fn delete_code(&self, kind: CodeKind, key: &str) -> StoreResult<()>;
    /// Creates a user and consumes the address's activation code.
    /// `Conflict("email")` if the address is taken.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// A user by id.
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// A user by e-mail (lower case).
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// A user by handle.
    async fn user_by_handle(&self, handle: &str) -> StoreResult<Option<User>>;
    /// Changes profile fields and queues `notify` for every device of the user.
    /// `NotFound` for an unknown user.
    async fn update_profile(
        &self, id: UserId, update: &ProfileUpdate, notify: Notify<'_>,
    ) -> StoreResult<()>;
    /// Sets the handle. `Conflict("handle")` if another user has it.
    async fn set_handle(&self, id: UserId, handle: &str) -> StoreResult<()>;
    /// Replaces the password hash.
    async fn set_password(&self, id: UserId, password_hash: &str) -> StoreResult<()>;
    /// Sets a new password and ends every login (all cookies go), in one
    /// transaction: whoever knew the old password is out.
    async fn change_password(&self, id: UserId, password_hash: &str) -> StoreResult<()>;
    /// Deletes a user with their devices, prekeys, cookies and pending reset.
    async fn delete_user(&self, id: UserId) -> StoreResult<()>;
    /// Adds a cookie; beyond `max_per_kind` of its kind the oldest are dropped.
    async fn add_cookie(&self, cookie: &Cookie, max_per_kind: usize) -> StoreResult<()>;
    /// One cookie.
    async fn cookie(&self, user: UserId, id: &str) -> StoreResult<Option<Cookie>>;
    /// All of a user's cookies, newest first.
    async fn cookies(&self, user: UserId) -> StoreResult<Vec<Cookie>>;
    /// Removes one cookie.
    async fn remove_cookie(&self, user: UserId, id: &str) -> StoreResult<()>;
    /// Removes the cookies with these labels; returns how many.
    async fn remove_cookies_by_label(&self, user: UserId, labels: &[String]) -> StoreResult<u64>;
    /// Stores a reset (its `user` required) unless one with the same key is
    /// still live (unexpired at `now`, with fewer than `max_tries` tries): a
    /// second request must not replace a pending code or give it fresh tries.
    /// One statement, so two requests at once cannot both start one. True if
    /// stored.
    async fn start_password_reset(
        &self, reset: &OneTimeCode, now: i64, max_tries: u32,
    ) -> StoreResult<bool>;
    /// Sets the new password, deletes the reset and every cookie of the user.
    async fn complete_password_reset(
        &self, key: &str, user: UserId, password_hash: &str,
    ) -> StoreResult<()>;
    /// Replaces (or with `None` removes) the user's recovery bundle, an opaque
    /// encrypted blob. `NotFound` for an unknown user.
    async fn set_recovery_bundle(&self, user: UserId, bundle: Option<&[u8]>) -> StoreResult<()>;
    /// The user's recovery bundle.
    async fn recovery_bundle(&self, user: UserId) -> StoreResult<Option<Vec<u8>>>;
}

/// Devices: registration and removal, prekeys, the send generation and push
/// endpoints. Owned by the devices (clients) service.
#[async_trait]
pub trait DeviceStore: Send + Sync + std::fmt::Debug + 'static {
    /// Registers a device with its prekeys and an empty event queue, and queues
    /// `notify` for the user's other devices. A temporary device replaces the user's
    /// previous temporary one; a permanent one beyond `max_permanent` is refused with
    /// `TooManyClients`.
    async fn add_client(
        &self, client: &ClientRecord, prekeys: &[PrekeyRecord], max_permanent: usize,
        notify: Notify<'_>,
    ) -> StoreResult<AddedClient>;
    /// A user's devices, oldest first.
    async fn clients(&self, user: UserId) -> StoreResult<Vec<ClientRecord>>;
    /// One device.
    async fn client(&self, user: UserId, id: ClientId) -> StoreResult<Option<ClientRecord>>;
    /// Deletes a device, its prekeys, its queue and the cookies with its cookie
    /// label, and queues `notify` for the user's remaining devices. `NotFound` if it
    /// does not exist.
    async fn delete_client(
        &self, user: UserId, id: ClientId, notify: Notify<'_>,
    ) -> StoreResult<()>;
    /// Adds prekeys to a device (an existing id is replaced). `NotFound` for an
    /// unknown device.
    async fn add_prekeys(
        &self, user: UserId, client: ClientId, prekeys: &[PrekeyRecord],
    ) -> StoreResult<()>;
    /// Unused one-time prekeys of a device (the last-resort one not counted).
    async fn count_prekeys(&self, user: UserId, client: ClientId) -> StoreResult<u64>;
    /// Raises a device's send generation to at least `generation` (never
    /// lowers it) and returns it; `None` for an unknown device.
    async fn raise_generation(
        &self, user: UserId, client: ClientId, generation: u64,
    ) -> StoreResult<Option<u64>>;
    /// Claims one prekey of a device: a one-time prekey, deleted in the same step so
    /// no two claims get the same one, or the last-resort prekey when none is left
    /// or `one_time` is false (a claimer past its limit). `None` for an unknown
    /// device.
    async fn claim_prekey(
        &self, user: UserId, client: ClientId, one_time: bool,
    ) -> StoreResult<Option<PrekeyRecord>>;
    /// Sets (or with `None` removes) a device's push endpoint. `NotFound` for an
    /// unknown device.
    async fn set_push_endpoint(
        &self, user: UserId, client: ClientId, url: Option<&str>,
    ) -> StoreResult<()>;
    /// The push endpoints of those of `devices` that have one, in the order
    /// given: one read for a whole fan-out's offline devices.
    async fn push_endpoints(
        &self, devices: &[(UserId, ClientId)],
    ) -> StoreResult<Vec<(UserId, ClientId, String)>>;
}

/// Each device's event queue, read and purged (events are written by the
/// other stores, in the transaction of the change they report). Owned by the
/// notifications service.
#[async_trait]
pub trait QueueStore: Send + Sync + std::fmt::Debug + 'static {
    /// Up to `limit` events of a device's queue after `since` (from the start when
    /// `None`). `None` for an unknown device.
    async fn events(
        &self, user: UserId, client: ClientId, since: Option<u64>, limit: usize,
    ) -> StoreResult<Option<EventPage>>;
    /// The newest event of a device's queue.
    async fn last_event(&self, user: UserId, client: ClientId) -> StoreResult<Option<QueuedEvent>>;
    /// Deletes every event created before `before`; returns how many. A
    /// queue that lost events is marked as purged up to the newest one it lost
    /// (see [`QueuePosition`]) in the same transaction as its deletion; a
    /// backend may commit queue by queue or in batches of queues.
    async fn purge_events(&self, before: i64) -> StoreResult<u64>;
    /// Whether the database answers (for a load balancer's readiness check).
    async fn ping(&self) -> StoreResult<()>;
}

/// Connections between users, and who may reach whom (blocks, shared
/// conversations). Owned by the connections service.
#[async_trait]
pub trait ConnectionStore: Send + Sync + std::fmt::Debug + 'static {
    /// `from`'s side of the connection with `to`.
    async fn connection(&self, from: UserId, to: UserId) -> StoreResult<Option<ConnectionRecord>>;
    /// Every side a user owns, most recently changed first.
    async fn connections(&self, from: UserId) -> StoreResult<Vec<ConnectionRecord>>;
    /// The users between whom and `user` a block stands, whoever blocked.
    async fn blocks_involving(&self, user: UserId) -> StoreResult<Vec<UserId>>;
    /// Whether two users are members of one conversation.
    async fn share_conversation(&self, a: UserId, b: UserId) -> StoreResult<bool>;
    /// Applies a connection change atomically (see [`ConnectionChange`]).
    async fn change_connection(&self, change: &ConnectionChange) -> StoreResult<()>;
}

/// Conversations, their members and message delivery. Owned by the
/// conversations and messages services.
#[async_trait]
pub trait ConversationStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a conversation with its members and queues `notify` for every
    /// member's devices.
    async fn create_conversation(
        &self, conversation: &ConversationRecord, members: &[MemberRecord], notify: Notify<'_>,
    ) -> StoreResult<()>;
    /// A conversation.
    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>>;
    /// A conversation's members, in user order.
    async fn members(&self, id: ConversationId) -> StoreResult<Vec<MemberRecord>>;
    /// Up to `limit` of a user's conversations with ids after `after`, in id order.
    async fn conversations_of(
        &self, user: UserId, after: Option<ConversationId>, limit: usize,
    ) -> StoreResult<Vec<ConversationRecord>>;
    /// Changes a conversation and queues `notify` (see [`ConversationChange`]).
    /// `NotFound` for an unknown conversation.
    async fn change_conversation(
        &self, id: ConversationId, change: &ConversationChange, notify: Notify<'_>,
    ) -> StoreResult<()>;
    /// The devices of a conversation's members now. `None` for an unknown
    /// conversation.
    async fn roster(&self, id: ConversationId) -> StoreResult<Option<Roster>>;
    /// Delivers a message atomically: reads the roster, asks `plan` what to deliver
    /// and stores each event in its device's queue (at `at`), all or nothing.
    /// Deliveries to one conversation are serialised, so every device sees them in
    /// one order. A backend may commit concurrent deliveries together.
    /// `None` for an unknown conversation.
    async fn post(
        &self, id: ConversationId, at: i64, plan: DeliveryPlan,
    ) -> StoreResult<Option<Posted>>;
}

/// MLS: each device's signature keys and the key package directory. Owned by
/// the MLS service. A device's keys and key packages go with the device.
#[async_trait]
pub trait MlsStore: Send + Sync + std::fmt::Debug + 'static {
    /// Records a device's MLS signature keys, by scheme, all or none. Set
    /// once: the same key again changes nothing, another one is
    /// `Conflict("mls-public-key")` and nothing is stored. `NotFound` for an
    /// unknown device.
    async fn set_mls_public_keys(
        &self, user: UserId, client: ClientId, keys: &[(u16, Vec<u8>)],
    ) -> StoreResult<()>;
    /// A device's signature keys, by scheme.
    async fn mls_public_keys(
        &self, user: UserId, client: ClientId,
    ) -> StoreResult<Vec<(u16, Vec<u8>)>>;
    /// Adds key packages, all or none, after deleting the expired ones (at
    /// `now`) of their devices; a last-resort one replaces the device's last
    /// one on its suite. `NotFound` when one's device is unknown,
    /// `Conflict("key-package")` for a reference already stored,
    /// `Limit("key-packages")` when a device would hold more than
    /// `max_per_suite` valid ones on a suite: counted in the same transaction,
    /// so uploads at once cannot pass it together.
    async fn add_key_packages(
        &self, packages: &[KeyPackageRecord], now: i64, max_per_suite: u64,
    ) -> StoreResult<()>;
    /// Deletes every key package expired at `now`; how many went.
    async fn purge_key_packages(&self, now: i64) -> StoreResult<u64>;
    /// How many key packages a device has on a suite that are still valid at
    /// `now` (its last-resort one not counted).
    async fn count_key_packages(
        &self, user: UserId, client: ClientId, suite: u16, now: i64,
    ) -> StoreResult<u64>;
    /// Claims one key package valid at `now` on `suite` for each of `user`'s
    /// devices but `except`, in device order; each is handed out once (gone
    /// from the directory as it is claimed), the one expiring first first. A
    /// device with none left gives its last-resort one, which stays; a device
    /// with neither is left out.
    async fn claim_key_packages(
        &self, user: UserId, suite: u16, except: Option<ClientId>, now: i64,
    ) -> StoreResult<Vec<KeyPackageRecord>>;
    /// Deletes a device's key packages with these references; how many went.
    async fn delete_key_packages(
        &self, user: UserId, client: ClientId, references: &[Vec<u8>],
    ) -> StoreResult<u64>;
    /// The backend's removal key for a signature scheme, as (secret,
    /// public): the one stored, or else `candidate`, stored now. Every node
    /// of a backend reads the same key, whichever stored it.
    async fn mls_removal_key(
        &self, scheme: u16, candidate: (&[u8], &[u8]),
    ) -> StoreResult<(Vec<u8>, Vec<u8>)>;
}
