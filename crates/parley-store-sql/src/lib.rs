//! What both store backends share.
//!
//! Owns: the [`Dialect`] a backend implements (its pool and transactions, the
//! few statements whose text differs between databases, its bulk enqueue and
//! its message delivery), how rows are decoded and how enums are written in
//! columns ([`columns`]), and, in `ops/` beside `src/`, the store operations
//! themselves, written once: each backend compiles `ops/` as a module of its
//! own (`#[path = "../../parley-store-sql/ops/mod.rs"] mod ops;`) for its own
//! database, so the shared code is plain, concrete Rust rather than generic
//! over sqlx's `Database` with a wall of bounds. Knows nothing of which
//! database runs underneath; never holds a connection itself.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use parley_api::ConversationId;
use parley_store::{Delivered, DeliveryPlan, Outgoing, Posted, StoreError, StoreResult};
use sqlx::{Database, Pool, Transaction};

pub mod columns;

/// A transaction on a dialect's database.
pub type Tx<D> = Transaction<'static, <D as Dialect>::Db>;

/// What a backend brings to the shared operations: its database, how it opens
/// transactions, its bulk enqueue and delivery, and the statements whose text
/// differs between databases.
#[async_trait]
pub trait Dialect: Send + Sync + std::fmt::Debug + 'static {
    /// The sqlx database.
    type Db: Database;
    /// Held as long as a write transaction is open (SQLite queues its writers
    /// in process; PostgreSQL needs nothing).
    type Guard: Send;

    /// The connection pool.
    fn pool(&self) -> &Pool<Self::Db>;
    /// A database error as a store error (unique violations name the rule).
    fn error(e: sqlx::Error) -> StoreError;
    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;
    /// A change that must touch a row: `NotFound` if it touched none.
    fn touched(
        result: Result<<Self::Db as Database>::QueryResult, sqlx::Error>,
    ) -> StoreResult<()> {
        match result {
            Err(e) => Err(Self::error(e)),
            Ok(done) if Self::rows_affected(&done) == 0 => Err(StoreError::NotFound),
            Ok(_) => Ok(()),
        }
    }
    /// A transaction for a change.
    async fn write_tx(&self) -> StoreResult<(Self::Guard, Tx<Self>)>;
    /// Appends one event to each of many devices' queues (devices that are gone
    /// get none), locking queue heads in (user, device) order. `shared` is
    /// empty, or names for each event the `mls_messages` row it refers to.
    async fn enqueue_many(
        tx: &mut Tx<Self>, outgoing: Vec<Outgoing>, shared: &[Option<i64>], at: i64,
    ) -> StoreResult<Vec<Delivered>>;
    /// Delivers a message (`ConversationStore::post`).
    async fn deliver(
        &self, id: ConversationId, at: i64, plan: DeliveryPlan,
    ) -> StoreResult<Option<Posted>>;

    /// Locks a user's row for the rest of the transaction, if the database
    /// locks rows (`$1`: the user).
    const LOCK_USER: Option<&'static str>;
    /// Locks a user's queue heads in device order (`$1`: the user).
    const LOCK_HEADS: Option<&'static str>;
    /// Whether a conversation exists, locking it for the transaction where the
    /// database locks rows (`$1`: the conversation).
    const LOCK_CONVERSATION: &'static str;
    /// `(user_id, id)` of every device of the users named in `$1`, a JSON array
    /// of user ids.
    const DEVICES_OF: &'static str;
    /// A user's devices, oldest first (ties: in insertion order).
    const CLIENTS_OLDEST_FIRST: &'static str;
    /// A user's cookies, newest first (ties: the later inserted first).
    const COOKIES_NEWEST_FIRST: &'static str;
    /// Deletes all but the newest `$3` cookies of user `$1` with persistence `$2`.
    const EVICT_COOKIES: &'static str;
    /// Raises a device's generation to at least `$1`, returning it.
    const RAISE_GENERATION: &'static str;
    /// Deletes and returns `(id, key)` of the lowest one-time prekey of a
    /// device, never giving one row to two concurrent claims.
    const CLAIM_ONE_TIME_PREKEY: &'static str;
    /// Deletes and returns `(ref, data, not_after)` of the device's (`$1`,
    /// `$2`) key package on suite `$3` valid after `$4` that expires first,
    /// never giving one row to two concurrent claims.
    const CLAIM_KEY_PACKAGE: &'static str;
    /// `(user_id, client id)` rows of a conversation's members with their
    /// devices, ordered by user id (bytewise) then device.
    const ROSTER: &'static str;
    /// A conversation's member ids, ordered bytewise.
    const MEMBER_IDS: &'static str;
}

/// A database error as a store error. A unique violation becomes
/// `Conflict(label)` for the first `(constraint, label)` whose constraint
/// the database's message names, `Conflict("record")` for any other; every
/// other failure is `Backend`.
pub fn store_error(e: sqlx::Error, unique: &[(&str, &'static str)]) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let message = db.message();
            let label = unique
                .iter()
                .find(|(constraint, _)| message.contains(constraint))
                .map_or("record", |(_, label)| *label);
            StoreError::Conflict(label)
        }
        _ => StoreError::Backend(e.to_string()),
    }
}
