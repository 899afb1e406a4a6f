//! The server's storage, in domain operations.
//!
//! Owns: the [`Store`] trait (what the services may ask of storage, each operation
//! atomic), its records, [`StoreError`], and [`conformance`], the one test story
//! every backend must pass. Knows nothing about SQL, HTTP, passwords or tokens:
//! secrets arrive already hashed, times as Unix seconds chosen by the caller.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use parley_api::{ClientClass, ClientId, ClientType, CookieKind, UserId};

pub mod conformance;

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
    /// The database failed.
    #[error("storage backend: {0}")]
    Backend(String),
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A pending e-mail verification code (stored hashed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationCode {
    /// Where it was sent (normalised to lower case).
    pub email: String,
    /// SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// Unix seconds.
    pub expires_at: i64,
    /// Wrong attempts so far.
    pub tries: u32,
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

/// A pending password reset (one per account: the key is derived from the user id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordReset {
    /// SHA-256 of the user id, base64.
    pub key: String,
    /// Whose password.
    pub user: UserId,
    /// SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// Unix seconds.
    pub expires_at: i64,
    /// Wrong attempts so far.
    pub tries: u32,
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

/// The server's storage. Every operation is atomic: it happens entirely or not at
/// all, whatever runs concurrently.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a code for an address, replacing any earlier one.
    async fn put_activation_code(&self, code: &ActivationCode) -> StoreResult<()>;
    /// The pending code for an address.
    async fn activation_code(&self, email: &str) -> StoreResult<Option<ActivationCode>>;
    /// Counts a wrong attempt; returns the tries so far.
    async fn record_activation_failure(&self, email: &str) -> StoreResult<u32>;
    /// Forgets the code for an address.
    async fn delete_activation_code(&self, email: &str) -> StoreResult<()>;

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
        &self,
        id: UserId,
        update: &ProfileUpdate,
        notify: Notify<'_>,
    ) -> StoreResult<()>;
    /// Sets the handle. `Conflict("handle")` if another user has it.
    async fn set_handle(&self, id: UserId, handle: &str) -> StoreResult<()>;
    /// Replaces the password hash.
    async fn set_password(&self, id: UserId, password_hash: &str) -> StoreResult<()>;
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

    /// Stores a reset, replacing any pending one with the same key.
    async fn put_password_reset(&self, reset: &PasswordReset) -> StoreResult<()>;
    /// The pending reset with this key.
    async fn password_reset(&self, key: &str) -> StoreResult<Option<PasswordReset>>;
    /// Counts a wrong attempt; returns the tries so far.
    async fn record_password_reset_failure(&self, key: &str) -> StoreResult<u32>;
    /// Forgets a reset.
    async fn delete_password_reset(&self, key: &str) -> StoreResult<()>;
    /// Sets the new password, deletes the reset and every cookie of the user.
    async fn complete_password_reset(
        &self,
        key: &str,
        user: UserId,
        password_hash: &str,
    ) -> StoreResult<()>;

    /// Registers a device with its prekeys and an empty event queue, and queues
    /// `notify` for the user's other devices. A temporary device replaces the user's
    /// previous temporary one; a permanent one beyond `max_permanent` is refused with
    /// `TooManyClients`.
    async fn add_client(
        &self,
        client: &ClientRecord,
        prekeys: &[PrekeyRecord],
        max_permanent: usize,
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
        &self,
        user: UserId,
        id: ClientId,
        notify: Notify<'_>,
    ) -> StoreResult<()>;

    /// Adds prekeys to a device (an existing id is replaced). `NotFound` for an
    /// unknown device.
    async fn add_prekeys(
        &self,
        user: UserId,
        client: ClientId,
        prekeys: &[PrekeyRecord],
    ) -> StoreResult<()>;
    /// Unused one-time prekeys of a device (the last-resort one not counted).
    async fn count_prekeys(&self, user: UserId, client: ClientId) -> StoreResult<u64>;
    /// Claims one prekey of a device: a one-time prekey, deleted in the same step so
    /// no two claims get the same one, or the last-resort prekey when none is left.
    /// `None` for an unknown device.
    async fn claim_prekey(
        &self,
        user: UserId,
        client: ClientId,
    ) -> StoreResult<Option<PrekeyRecord>>;

    /// Up to `limit` events of a device's queue after `since` (from the start when
    /// `None`). `None` for an unknown device.
    async fn events(
        &self,
        user: UserId,
        client: ClientId,
        since: Option<u64>,
        limit: usize,
    ) -> StoreResult<Option<EventPage>>;
    /// The newest event of a device's queue.
    async fn last_event(&self, user: UserId, client: ClientId) -> StoreResult<Option<QueuedEvent>>;
    /// Deletes every event created before `before`; returns how many.
    async fn purge_events(&self, before: i64) -> StoreResult<u64>;
}

/// How records' enums are written in SQL columns, shared by every backend so they
/// cannot disagree.
pub mod columns {
    use parley_api::{ClientClass, ClientType};

    use crate::{StoreError, StoreResult};

    /// `permanent` / `temporary`.
    pub fn client_type(kind: ClientType) -> &'static str {
        match kind {
            ClientType::Permanent => "permanent",
            ClientType::Temporary => "temporary",
        }
    }

    /// Reads [`client_type`]'s form.
    pub fn parse_client_type(s: &str) -> StoreResult<ClientType> {
        match s {
            "permanent" => Ok(ClientType::Permanent),
            "temporary" => Ok(ClientType::Temporary),
            _ => Err(StoreError::Backend(format!(
                "unknown client type {s:?} in storage"
            ))),
        }
    }

    /// `phone` / `tablet` / `desktop` / `legalhold`.
    pub fn client_class(class: ClientClass) -> &'static str {
        match class {
            ClientClass::Phone => "phone",
            ClientClass::Tablet => "tablet",
            ClientClass::Desktop => "desktop",
            ClientClass::Legalhold => "legalhold",
        }
    }

    /// Reads [`client_class`]'s form.
    pub fn parse_client_class(s: &str) -> StoreResult<ClientClass> {
        match s {
            "phone" => Ok(ClientClass::Phone),
            "tablet" => Ok(ClientClass::Tablet),
            "desktop" => Ok(ClientClass::Desktop),
            "legalhold" => Ok(ClientClass::Legalhold),
            _ => Err(StoreError::Backend(format!(
                "unknown client class {s:?} in storage"
            ))),
        }
    }

    /// Client ids are 64 random bits, kept in a signed 64-bit column bit for bit.
    pub fn client_id(id: parley_api::ClientId) -> i64 {
        i64::from_ne_bytes(id.0.to_ne_bytes())
    }

    /// Reads [`client_id`]'s form.
    pub fn parse_client_id(v: i64) -> parley_api::ClientId {
        parley_api::ClientId(u64::from_ne_bytes(v.to_ne_bytes()))
    }

    /// User ids are kept as their hyphenated text.
    pub fn parse_user_id(s: &str) -> StoreResult<uuid::Uuid> {
        s.parse()
            .map_err(|_| StoreError::Backend(format!("bad user id {s:?} in storage")))
    }
}
