//! Parley's embedded default store: one SQLite file in WAL mode.
//!
//! Owns: the SQLite [`Dialect`] (the statements whose text differs from
//! PostgreSQL's, its write lock, its bulk enqueue and its group-committing
//! delivery writer) and its `migrations/` (never edit a shipped migration; add
//! one). Every other statement is `parley-store-sql`'s. Writers queue on an
//! in-process lock, then take SQLite's write lock up front (`BEGIN
//! IMMEDIATE`), so concurrent requests queue instead of failing; single
//! statements such as a prekey claim are atomic on their own. Message
//! deliveries go through one writer task that commits all waiting deliveries
//! together (group commit), each in its own savepoint.
#![forbid(unsafe_code)]

/// The store operations both backends share, compiled here for SQLite.
#[path = "../../parley-store-sql/ops/mod.rs"]
mod ops;

/// The store the shared operations implement the store traits for.
type Store = SqliteStore;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use parley_api::ConversationId;
use parley_store::{Delivered, DeliveryPlan, Outgoing, Posted, StoreError, StoreResult};
use parley_store_sql::columns::{client_id, event_id};
use parley_store_sql::{Dialect, Tx};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

/// SQLite's part of the store: its pool, its writer queue and its delivery
/// writer.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    deliveries: tokio::sync::mpsc::UnboundedSender<PostJob>,
}

impl parley_store::Store for SqliteStore {}

/// A delivery waiting for the delivery writer.
struct PostJob {
    id: ConversationId,
    at: i64,
    plan: DeliveryPlan,
    reply: tokio::sync::oneshot::Sender<StoreResult<Option<Posted>>>,
}

impl std::fmt::Debug for PostJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostJob")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Most deliveries committed together.
const MAX_BATCH: usize = 64;

/// The delivery writer: takes every delivery waiting, runs each in its own
/// savepoint of one transaction and commits once, so concurrent deliveries share
/// one fsync instead of queueing for one each. A delivery that fails rolls back to
/// its savepoint and fails alone.
async fn deliveries_writer(
    pool: SqlitePool, writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<PostJob>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let results = post_batch(&pool, &writer, &batch).await;
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

async fn post_batch(
    pool: &SqlitePool, writer: &tokio::sync::Mutex<()>, batch: &[PostJob],
) -> Vec<StoreResult<Option<Posted>>> {
    let failed = |e: &StoreError| {
        batch
            .iter()
            .map(|_| Err(StoreError::Backend(e.to_string())))
            .collect()
    };
    let _writer = writer.lock().await;
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend) {
        Ok(tx) => tx,
        Err(e) => return failed(&e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        if let Err(e) = sqlx::query("SAVEPOINT delivery")
            .execute(&mut *tx)
            .await
            .map_err(backend)
        {
            return failed(&e);
        }
        let result = post_one(&mut tx, job).await;
        let end = if result.is_ok() {
            "RELEASE delivery"
        } else {
            "ROLLBACK TO delivery; RELEASE delivery"
        };
        if let Err(e) = sqlx::raw_sql(end).execute(&mut *tx).await.map_err(backend) {
            return failed(&e);
        }
        results.push(result);
    }
    if let Err(e) = tx.commit().await.map_err(backend) {
        return failed(&e);
    }
    results
}

async fn post_one(tx: &mut Tx<SqliteStore>, job: &PostJob) -> StoreResult<Option<Posted>> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = $1")
        .bind(job.id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    if exists.is_none() {
        return Ok(None);
    }
    let roster = SqliteStore::roster_in(tx, job.id).await?;
    // A plan that panics fails its own delivery, not the writer every delivery needs.
    let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.plan)(&roster)))
        .map_err(|_| StoreError::Backend("the delivery plan panicked".into()))?;
    let Some(outgoing) = planned else {
        return Ok(Some(Posted {
            roster,
            delivered: None,
        }));
    };
    let delivered = SqliteStore::enqueue_many(tx, outgoing, &[], job.at).await?;
    Ok(Some(Posted {
        roster,
        delivered: Some(delivered),
    }))
}

/// A database error as a store error: a broken uniqueness rule names the
/// rule, by the constraint the database reports.
fn backend(e: sqlx::Error) -> StoreError {
    parley_store_sql::store_error(e, &[("users.email", "email"), ("users.handle", "handle")])
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Self::connect(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens a `sqlite:` URL (for example `sqlite://parley.db`).
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        Self::connect(SqliteConnectOptions::from_str(url).map_err(backend)?).await
    }

    async fn connect(options: SqliteConnectOptions) -> StoreResult<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(backend)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating the SQLite database: {e}")))?;
        let writer = std::sync::Arc::<tokio::sync::Mutex<()>>::default();
        let (deliveries, jobs) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(deliveries_writer(pool.clone(), writer.clone(), jobs));
        Ok(Self {
            pool,
            writer,
            deliveries,
        })
    }
}

#[async_trait]
impl Dialect for SqliteStore {
    type Db = sqlx::Sqlite;
    type Guard = tokio::sync::OwnedMutexGuard<()>;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn error(e: sqlx::Error) -> StoreError {
        backend(e)
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Writers queue on an in-process lock first, so they wait their turn
    /// without SQLite's sleeping busy handler; `BEGIN IMMEDIATE` still guards
    /// against other processes.
    async fn write_tx(&self) -> StoreResult<(Self::Guard, Tx<Self>)> {
        let writer = self.writer.clone().lock_owned().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        Ok((writer, tx))
    }

    /// Appends one event to each of many devices' queues in two statements (devices
    /// that are gone get none): the rows travel as one JSON parameter, which keeps a
    /// 50-member fan-out from paying for 100 statements.
    async fn enqueue_many(
        tx: &mut Tx<Self>, outgoing: Vec<Outgoing>, shared: &[Option<i64>], at: i64,
    ) -> StoreResult<Vec<Delivered>> {
        if outgoing.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<(String, i64)> = outgoing
            .iter()
            .map(|o| (o.user.to_string(), client_id(o.client)))
            .collect();
        let keys_json =
            serde_json::to_string(&keys).map_err(|e| StoreError::Backend(e.to_string()))?;
        let heads: Vec<(String, i64, i64)> = sqlx::query_as(
            "UPDATE queue_heads SET next_id = next_id + 1 \
             WHERE (user_id, client_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each($1)) \
             RETURNING user_id, client_id, next_id - 1",
        )
        .bind(&keys_json)
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)?;
        let ids: std::collections::HashMap<(String, i64), i64> =
            heads.into_iter().map(|(u, c, id)| ((u, c), id)).collect();
        let mut rows = Vec::with_capacity(outgoing.len());
        let mut delivered = Vec::with_capacity(outgoing.len());
        for (i, (o, key)) in outgoing.into_iter().zip(keys).enumerate() {
            let Some(id) = ids.get(&key).copied() else {
                continue;
            };
            let refers = shared.get(i).copied().flatten();
            rows.push(serde_json::json!([key.0, key.1, id, o.payload, refers]));
            delivered.push(Delivered {
                user: o.user,
                client: o.client,
                id: event_id(id)?,
                payload: o.payload.into(),
            });
        }
        let rows_json =
            serde_json::to_string(&rows).map_err(|e| StoreError::Backend(e.to_string()))?;
        sqlx::query(
            "INSERT INTO notifications (user_id, client_id, id, payload, created_at, mls_message) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, $1, value ->> 4 \
             FROM json_each($2)",
        )
        .bind(at)
        .bind(&rows_json)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(delivered)
    }

    async fn deliver(
        &self, id: ConversationId, at: i64, plan: DeliveryPlan,
    ) -> StoreResult<Option<Posted>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.deliveries
            .send(PostJob {
                id,
                at,
                plan,
                reply,
            })
            .map_err(|_| StoreError::Backend("the delivery writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the delivery writer has stopped".into()))?
    }

    // SQLite writes one transaction at a time: nothing to lock.
    const LOCK_USER: Option<&'static str> = None;
    const LOCK_HEADS: Option<&'static str> = None;
    const LOCK_CONVERSATION: &'static str =
        "SELECT CAST(1 AS BIGINT) FROM conversations WHERE id = $1";
    const DEVICES_OF: &'static str =
        "SELECT user_id, id FROM clients WHERE user_id IN (SELECT value FROM json_each($1))";
    const CLIENTS_OLDEST_FIRST: &'static str =
        "SELECT * FROM clients WHERE user_id = $1 ORDER BY created_at, rowid";
    const COOKIES_NEWEST_FIRST: &'static str =
        "SELECT * FROM cookies WHERE user_id = $1 ORDER BY created_at DESC, rowid DESC";
    const EVICT_COOKIES: &'static str = "DELETE FROM cookies WHERE user_id = $1 AND persistent = $2 AND id NOT IN \
         (SELECT id FROM cookies WHERE user_id = $1 AND persistent = $2 \
          ORDER BY created_at DESC, rowid DESC LIMIT $3)";
    const RAISE_GENERATION: &'static str = "UPDATE clients SET generation = MAX(generation, $1) \
         WHERE user_id = $2 AND id = $3 RETURNING generation";
    // One statement: SQLite runs it under the write lock, so it is atomic.
    const CLAIM_ONE_TIME_PREKEY: &'static str = "DELETE FROM prekeys WHERE rowid = (SELECT rowid FROM prekeys \
         WHERE user_id = $1 AND client_id = $2 AND id <> 65535 ORDER BY id LIMIT 1) \
         RETURNING id, key";
    // One statement: SQLite runs it under the write lock, so it is atomic.
    const CLAIM_KEY_PACKAGE: &'static str = "DELETE FROM mls_key_packages WHERE ref = (SELECT ref \
         FROM mls_key_packages WHERE user_id = $1 AND client_id = $2 AND suite = $3 \
         AND not_after > $4 AND NOT last_resort ORDER BY not_after, ref LIMIT 1) \
         RETURNING ref, data, not_after";
    const ROSTER: &'static str = "SELECT m.user_id, c.id FROM conversation_members m \
         LEFT JOIN clients c ON c.user_id = m.user_id \
         WHERE m.conversation_id = $1 ORDER BY m.user_id, c.id";
    const MEMBER_IDS: &'static str = "SELECT user_id FROM conversation_members \
         WHERE conversation_id = $1 ORDER BY user_id";
}
