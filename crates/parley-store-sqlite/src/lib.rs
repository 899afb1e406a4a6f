//! Parley's embedded default store: one SQLite file in WAL mode.
//!
//! Owns: its SQL and its `migrations/` (never edit a shipped migration; add one).
//! Writes that read first (`add_client`, `add_cookie`) take the write lock up front
//! (`BEGIN IMMEDIATE`), so concurrent requests queue instead of failing; single
//! statements such as a prekey claim are atomic on their own. Writers queue on an
//! in-process lock first. Message deliveries go through one writer task that
//! commits all waiting deliveries together (group commit), each in its own
//! savepoint.
#![forbid(unsafe_code)]

mod accounts;
mod connections;
mod conversations;
mod devices;
mod queues;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use parley_api::ConversationId;
use parley_api::{ClientId, ClientType, CookieKind, UserId};
use parley_store::columns::{
    self, ConnectionRow, ConversationRow, client_class, client_id, client_type, connection_status,
    conversation_kind, parse_client_class, parse_client_id, parse_client_type, parse_user_id, role,
    timer,
};
use parley_store::{
    AccountStore, ActivationCode, AddedClient, ClientRecord, ConnectionChange, ConnectionRecord,
    ConnectionStore, ConversationChange, ConversationRecord, ConversationStore, Cookie, Delivered,
    DeliveryPlan, DeviceStore, EventPage, MemberRecord, Notify, Outgoing, PasswordReset, Posted,
    PrekeyRecord, ProfileUpdate, QueuePosition, QueueStore, QueuedEvent, Roster, StoreError,
    StoreResult, User, connection_columns, conversation_columns,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    deliveries: tokio::sync::mpsc::UnboundedSender<PostJob>,
}

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
    pool: SqlitePool,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
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
    pool: &SqlitePool,
    writer: &tokio::sync::Mutex<()>,
    batch: &[PostJob],
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

async fn post_one(
    tx: &mut Transaction<'static, Sqlite>,
    job: &PostJob,
) -> StoreResult<Option<Posted>> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = ?")
        .bind(job.id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    if exists.is_none() {
        return Ok(None);
    }
    let roster = roster_in(tx, job.id).await?;
    // A plan that panics fails its own delivery, not the writer every delivery needs.
    let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.plan)(&roster)))
        .map_err(|_| StoreError::Backend("the delivery plan panicked".into()))?;
    let Some(outgoing) = planned else {
        return Ok(Some(Posted {
            roster,
            delivered: None,
        }));
    };
    let delivered = enqueue_many(tx, outgoing, job.at).await?;
    Ok(Some(Posted {
        roster,
        delivered: Some(delivered),
    }))
}

fn backend(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let m = db.message();
            if m.contains("users.email") {
                StoreError::Conflict("email")
            } else if m.contains("users.handle") {
                StoreError::Conflict("handle")
            } else {
                StoreError::Conflict("record")
            }
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options).await
    }

    /// Opens a `sqlite:` URL (for example `sqlite://parley.db`).
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> StoreResult<Self> {
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

    /// A write transaction. Writers queue on an in-process lock first, so they wait
    /// their turn without SQLite's sleeping busy handler; `BEGIN IMMEDIATE` still
    /// guards against other processes.
    async fn write_tx(
        &self,
    ) -> StoreResult<(
        tokio::sync::OwnedMutexGuard<()>,
        Transaction<'static, Sqlite>,
    )> {
        let writer = self.writer.clone().lock_owned().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        Ok((writer, tx))
    }
}

fn user_row(r: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: parse_user_id(&r.try_get::<String, _>("id").map_err(backend)?)?,
        name: r.try_get("name").map_err(backend)?,
        email: r.try_get("email").map_err(backend)?,
        handle: r.try_get("handle").map_err(backend)?,
        password_hash: r.try_get("password_hash").map_err(backend)?,
        accent_id: r.try_get("accent_id").map_err(backend)?,
        locale: r.try_get("locale").map_err(backend)?,
        picture: r.try_get("picture").map_err(backend)?,
        created_at: r.try_get("created_at").map_err(backend)?,
    })
}

fn cookie_row(r: &SqliteRow) -> StoreResult<Cookie> {
    let persistent: bool = r.try_get("persistent").map_err(backend)?;
    Ok(Cookie {
        id: r.try_get("id").map_err(backend)?,
        user: parse_user_id(&r.try_get::<String, _>("user_id").map_err(backend)?)?,
        label: r.try_get("label").map_err(backend)?,
        kind: if persistent {
            CookieKind::Persistent
        } else {
            CookieKind::Session
        },
        created_at: r.try_get("created_at").map_err(backend)?,
        expires_at: r.try_get("expires_at").map_err(backend)?,
    })
}

fn client_row(r: &SqliteRow) -> StoreResult<ClientRecord> {
    Ok(ClientRecord {
        user: parse_user_id(&r.try_get::<String, _>("user_id").map_err(backend)?)?,
        id: parse_client_id(r.try_get("id").map_err(backend)?),
        kind: parse_client_type(&r.try_get::<String, _>("kind").map_err(backend)?)?,
        class: parse_client_class(&r.try_get::<String, _>("class").map_err(backend)?)?,
        model: r.try_get("model").map_err(backend)?,
        label: r.try_get("label").map_err(backend)?,
        cookie_label: r.try_get("cookie_label").map_err(backend)?,
        created_at: r.try_get("created_at").map_err(backend)?,
        trust: r.try_get("trust").map_err(backend)?,
    })
}

fn prekey_row(r: &SqliteRow) -> StoreResult<PrekeyRecord> {
    let id: i64 = r.try_get("id").map_err(backend)?;
    Ok(PrekeyRecord {
        id: u16::try_from(id).map_err(|_| StoreError::Backend(format!("prekey id {id}")))?,
        key: r.try_get("key").map_err(backend)?,
    })
}

fn tries(r: &SqliteRow) -> StoreResult<u32> {
    let t: i64 = r.try_get("tries").map_err(backend)?;
    u32::try_from(t).map_err(|_| StoreError::Backend(format!("tries {t}")))
}

/// `NotFound` unless the user has this device (inside the caller's transaction).
async fn require_client(
    tx: &mut Transaction<'static, Sqlite>,
    user: UserId,
    client: ClientId,
) -> StoreResult<()> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM clients WHERE user_id = ? AND id = ?")
            .bind(user.to_string())
            .bind(client_id(client))
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
    exists.map(|_| ()).ok_or(StoreError::NotFound)
}

async fn insert_prekeys(
    tx: &mut Transaction<'static, Sqlite>,
    user: UserId,
    client: ClientId,
    prekeys: &[PrekeyRecord],
) -> StoreResult<()> {
    for p in prekeys {
        sqlx::query(
            "INSERT INTO prekeys (user_id, client_id, id, key) VALUES (?, ?, ?, ?) \
             ON CONFLICT (user_id, client_id, id) DO UPDATE SET key = excluded.key",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .bind(i64::from(p.id))
        .bind(&p.key)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

/// Deletes a device with its prekeys and the cookies with its cookie label.
async fn remove_client(
    tx: &mut Transaction<'static, Sqlite>,
    user: UserId,
    id: ClientId,
) -> StoreResult<bool> {
    let label: Option<Option<String>> = sqlx::query_scalar(
        "DELETE FROM clients WHERE user_id = ? AND id = ? RETURNING cookie_label",
    )
    .bind(user.to_string())
    .bind(client_id(id))
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    let Some(label) = label else { return Ok(false) };
    if let Some(label) = label {
        sqlx::query("DELETE FROM cookies WHERE user_id = ? AND label = ?")
            .bind(user.to_string())
            .bind(label)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(true)
}

/// Appends an event to one device's queue (nothing if the device is gone).
async fn enqueue(
    tx: &mut Transaction<'static, Sqlite>,
    user: UserId,
    client: ClientId,
    notify: Notify<'_>,
) -> StoreResult<Option<u64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE queue_heads SET next_id = next_id + 1 WHERE user_id = ? AND client_id = ? \
         RETURNING next_id - 1",
    )
    .bind(user.to_string())
    .bind(client_id(client))
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    let Some(id) = id else { return Ok(None) };
    sqlx::query(
        "INSERT INTO notifications (user_id, client_id, id, payload, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(user.to_string())
    .bind(client_id(client))
    .bind(id)
    .bind(notify.payload)
    .bind(notify.at)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(Some(u64::try_from(id).map_err(|_| {
        StoreError::Backend(format!("event id {id}"))
    })?))
}

/// Appends an event to every device of a user but one.
async fn enqueue_for_user(
    tx: &mut Transaction<'static, Sqlite>,
    user: UserId,
    except: Option<ClientId>,
    notify: Notify<'_>,
) -> StoreResult<()> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM clients WHERE user_id = ?")
        .bind(user.to_string())
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)?;
    for id in ids
        .into_iter()
        .map(parse_client_id)
        .filter(|id| Some(*id) != except)
    {
        enqueue(tx, user, id, notify).await?;
    }
    Ok(())
}

/// Appends one event to each of many devices' queues in two statements (devices
/// that are gone get none): the rows travel as one JSON parameter, which keeps a
/// 50-member fan-out from paying for 100 statements.
async fn enqueue_many(
    tx: &mut Transaction<'static, Sqlite>,
    outgoing: Vec<Outgoing>,
    at: i64,
) -> StoreResult<Vec<Delivered>> {
    if outgoing.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<(String, i64)> = outgoing
        .iter()
        .map(|o| (o.user.to_string(), client_id(o.client)))
        .collect();
    let keys_json = serde_json::to_string(&keys).map_err(|e| StoreError::Backend(e.to_string()))?;
    let heads: Vec<(String, i64, i64)> = sqlx::query_as(
        "UPDATE queue_heads SET next_id = next_id + 1 \
         WHERE (user_id, client_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?)) \
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
    for (o, key) in outgoing.into_iter().zip(keys) {
        let Some(id) = ids.get(&key).copied() else {
            continue;
        };
        rows.push(serde_json::json!([key.0, key.1, id, o.payload]));
        delivered.push(Delivered {
            user: o.user,
            client: o.client,
            id: u64::try_from(id).map_err(|_| StoreError::Backend(format!("event id {id}")))?,
            payload: o.payload,
        });
    }
    let rows_json = serde_json::to_string(&rows).map_err(|e| StoreError::Backend(e.to_string()))?;
    sqlx::query(
        "INSERT INTO notifications (user_id, client_id, id, payload, created_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ? FROM json_each(?)",
    )
    .bind(at)
    .bind(&rows_json)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(delivered)
}

/// The devices of a conversation's members, read inside `tx`.
async fn roster_in(
    tx: &mut Transaction<'static, Sqlite>,
    conversation: ConversationId,
) -> StoreResult<Roster> {
    let rows: Vec<(Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT m.user_id, c.id FROM conversation_members m \
         LEFT JOIN clients c ON c.user_id = m.user_id \
         WHERE m.conversation_id = ? ORDER BY m.user_id, c.id",
    )
    .bind(conversation.to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    parley_store::columns::roster(rows)
}

/// The members of a conversation, read inside `tx`.
async fn member_ids(
    tx: &mut Transaction<'static, Sqlite>,
    conversation: ConversationId,
) -> StoreResult<Vec<UserId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM conversation_members WHERE conversation_id = ? ORDER BY user_id",
    )
    .bind(conversation.to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    ids.iter().map(|u| parse_user_id(u)).collect()
}

async fn insert_conversation(
    tx: &mut Transaction<'static, Sqlite>,
    c: &ConversationRecord,
    members: &[MemberRecord],
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO conversations (id, kind, name, creator, message_timer, receipt_mode, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(c.id.to_string())
    .bind(conversation_kind(c.kind))
    .bind(&c.name)
    .bind(c.creator.to_string())
    .bind(timer(c.message_timer))
    .bind(i64::from(c.receipt_mode))
    .bind(c.created_at)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    insert_members(tx, c.id, members).await
}

async fn insert_members(
    tx: &mut Transaction<'static, Sqlite>,
    conversation: ConversationId,
    members: &[MemberRecord],
) -> StoreResult<()> {
    for m in members {
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES (?, ?, ?) \
             ON CONFLICT (conversation_id, user_id) DO NOTHING",
        )
        .bind(conversation.to_string())
        .bind(m.user.to_string())
        .bind(role(m.role))
        .execute(&mut **tx)
        .await
        .map_err(|e| match backend(e) {
            // The user does not exist (any more).
            StoreError::Backend(_) => StoreError::NotFound,
            other => other,
        })?;
    }
    Ok(())
}

fn event_row(r: &SqliteRow) -> StoreResult<QueuedEvent> {
    let id: i64 = r.try_get("id").map_err(backend)?;
    Ok(QueuedEvent {
        id: u64::try_from(id).map_err(|_| StoreError::Backend(format!("event id {id}")))?,
        payload: r.try_get("payload").map_err(backend)?,
        created_at: r.try_get("created_at").map_err(backend)?,
    })
}
