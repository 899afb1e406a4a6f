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

#[async_trait]
impl AccountStore for SqliteStore {
    async fn put_activation_code(&self, c: &ActivationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activation_codes (email, code_hash, expires_at, tries) VALUES (?, ?, ?, ?) \
             ON CONFLICT (email) DO UPDATE SET code_hash = excluded.code_hash, \
             expires_at = excluded.expires_at, tries = excluded.tries",
        )
        .bind(&c.email)
        .bind(&c.code_hash)
        .bind(c.expires_at)
        .bind(i64::from(c.tries))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn activation_code(&self, email: &str) -> StoreResult<Option<ActivationCode>> {
        let row = sqlx::query("SELECT * FROM activation_codes WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok(ActivationCode {
                email: r.try_get("email").map_err(backend)?,
                code_hash: r.try_get("code_hash").map_err(backend)?,
                expires_at: r.try_get("expires_at").map_err(backend)?,
                tries: tries(&r)?,
            })
        })
        .transpose()
    }

    async fn count_activation_try(&self, email: &str) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE activation_codes SET tries = tries + 1 WHERE email = ? RETURNING tries",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
        tries(&row)
    }

    async fn delete_activation_code(&self, email: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM activation_codes WHERE email = ?")
            .bind(email)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_user(&self, u: &User) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO users (id, name, email, handle, password_hash, accent_id, locale, \
             picture, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.id.to_string())
        .bind(&u.name)
        .bind(&u.email)
        .bind(&u.handle)
        .bind(&u.password_hash)
        .bind(u.accent_id)
        .bind(&u.locale)
        .bind(&u.picture)
        .bind(u.created_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM activation_codes WHERE email = ?")
            .bind(&u.email)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user_by_handle(&self, handle: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE handle = ?")
            .bind(handle)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_row).transpose()
    }

    async fn update_profile(
        &self,
        id: UserId,
        p: &ProfileUpdate,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE users SET name = COALESCE(?, name), accent_id = COALESCE(?, accent_id), \
             locale = COALESCE(?, locale), picture = CASE WHEN ? THEN ? ELSE picture END \
             WHERE id = ?",
        )
        .bind(&p.name)
        .bind(p.accent_id)
        .bind(&p.locale)
        .bind(p.picture.is_some())
        .bind(p.picture.clone().flatten())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        enqueue_for_user(&mut tx, id, None, notify).await?;
        tx.commit().await.map_err(backend)
    }

    async fn set_handle(&self, id: UserId, handle: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET handle = ? WHERE id = ?")
            .bind(handle)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_password(&self, id: UserId, hash: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn change_password(&self, id: UserId, hash: &str) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM cookies WHERE user_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        // Cookies, devices (with their prekeys) and resets go by ON DELETE CASCADE.
        sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn add_cookie(&self, c: &Cookie, max_per_kind: usize) -> StoreResult<()> {
        let persistent = c.kind == CookieKind::Persistent;
        let (_writer, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO cookies (user_id, id, label, persistent, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(c.user.to_string())
        .bind(&c.id)
        .bind(&c.label)
        .bind(persistent)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "DELETE FROM cookies WHERE user_id = ?1 AND persistent = ?2 AND id NOT IN \
             (SELECT id FROM cookies WHERE user_id = ?1 AND persistent = ?2 \
              ORDER BY created_at DESC, rowid DESC LIMIT ?3)",
        )
        .bind(c.user.to_string())
        .bind(persistent)
        .bind(i64::try_from(max_per_kind).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn cookie(&self, user: UserId, id: &str) -> StoreResult<Option<Cookie>> {
        let row = sqlx::query("SELECT * FROM cookies WHERE user_id = ? AND id = ?")
            .bind(user.to_string())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(cookie_row).transpose()
    }

    async fn cookies(&self, user: UserId) -> StoreResult<Vec<Cookie>> {
        let rows = sqlx::query(
            "SELECT * FROM cookies WHERE user_id = ? ORDER BY created_at DESC, rowid DESC",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(cookie_row).collect()
    }

    async fn remove_cookie(&self, user: UserId, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM cookies WHERE user_id = ? AND id = ?")
            .bind(user.to_string())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_cookies_by_label(&self, user: UserId, labels: &[String]) -> StoreResult<u64> {
        let (_writer, mut tx) = self.write_tx().await?;
        let mut removed = 0;
        for label in labels {
            removed += sqlx::query("DELETE FROM cookies WHERE user_id = ? AND label = ?")
                .bind(user.to_string())
                .bind(label)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(removed)
    }

    async fn start_password_reset(
        &self,
        r: &PasswordReset,
        now: i64,
        max_tries: u32,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO password_resets (key, user_id, code_hash, expires_at, tries) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET user_id = excluded.user_id, \
             code_hash = excluded.code_hash, expires_at = excluded.expires_at, tries = excluded.tries \
             WHERE password_resets.expires_at <= ? OR password_resets.tries >= ?",
        )
        .bind(&r.key)
        .bind(r.user.to_string())
        .bind(&r.code_hash)
        .bind(r.expires_at)
        .bind(i64::from(r.tries))
        .bind(now)
        .bind(i64::from(max_tries))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn password_reset(&self, key: &str) -> StoreResult<Option<PasswordReset>> {
        let row = sqlx::query("SELECT * FROM password_resets WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok(PasswordReset {
                key: r.try_get("key").map_err(backend)?,
                user: parse_user_id(&r.try_get::<String, _>("user_id").map_err(backend)?)?,
                code_hash: r.try_get("code_hash").map_err(backend)?,
                expires_at: r.try_get("expires_at").map_err(backend)?,
                tries: tries(&r)?,
            })
        })
        .transpose()
    }

    async fn count_password_reset_try(&self, key: &str) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE password_resets SET tries = tries + 1 WHERE key = ? RETURNING tries",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
        tries(&row)
    }

    async fn delete_password_reset(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM password_resets WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn complete_password_reset(
        &self,
        key: &str,
        user: UserId,
        hash: &str,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM password_resets WHERE key = ? AND user_id = ?")
            .bind(key)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM cookies WHERE user_id = ?")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn set_recovery_bundle(&self, user: UserId, bundle: Option<&[u8]>) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let updated = sqlx::query("UPDATE users SET recovery_bundle = ? WHERE id = ?")
            .bind(bundle)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(backend)
    }

    async fn recovery_bundle(&self, user: UserId) -> StoreResult<Option<Vec<u8>>> {
        let row: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT recovery_bundle FROM users WHERE id = ?")
                .bind(user.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(row.flatten())
    }
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn add_client(
        &self,
        c: &ClientRecord,
        prekeys: &[PrekeyRecord],
        max_permanent: usize,
        notify: Notify<'_>,
    ) -> StoreResult<AddedClient> {
        let (_writer, mut tx) = self.write_tx().await?;
        let mut added = AddedClient::default();
        match c.kind {
            ClientType::Permanent => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM clients WHERE user_id = ? AND kind = 'permanent'",
                )
                .bind(c.user.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= max_permanent {
                    return Err(StoreError::TooManyClients);
                }
            }
            ClientType::Temporary => {
                let old: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM clients WHERE user_id = ? AND kind = 'temporary'",
                )
                .bind(c.user.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                if let Some(old) = old {
                    remove_client(&mut tx, c.user, parse_client_id(old)).await?;
                    added.replaced = Some(parse_client_id(old));
                }
            }
        }
        sqlx::query(
            "INSERT INTO clients (user_id, id, kind, class, model, label, cookie_label, created_at, trust) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.user.to_string())
        .bind(client_id(c.id))
        .bind(client_type(c.kind))
        .bind(client_class(c.class))
        .bind(&c.model)
        .bind(&c.label)
        .bind(&c.cookie_label)
        .bind(c.created_at)
        .bind(&c.trust)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        insert_prekeys(&mut tx, c.user, c.id, prekeys).await?;
        sqlx::query("INSERT INTO queue_heads (user_id, client_id) VALUES (?, ?)")
            .bind(c.user.to_string())
            .bind(client_id(c.id))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        enqueue_for_user(&mut tx, c.user, Some(c.id), notify).await?;
        tx.commit().await.map_err(backend)?;
        Ok(added)
    }

    async fn clients(&self, user: UserId) -> StoreResult<Vec<ClientRecord>> {
        let rows =
            sqlx::query("SELECT * FROM clients WHERE user_id = ? ORDER BY created_at, rowid")
                .bind(user.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.iter().map(client_row).collect()
    }

    async fn client(&self, user: UserId, id: ClientId) -> StoreResult<Option<ClientRecord>> {
        let row = sqlx::query("SELECT * FROM clients WHERE user_id = ? AND id = ?")
            .bind(user.to_string())
            .bind(client_id(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(client_row).transpose()
    }

    async fn delete_client(
        &self,
        user: UserId,
        id: ClientId,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        if !remove_client(&mut tx, user, id).await? {
            return Err(StoreError::NotFound);
        }
        enqueue_for_user(&mut tx, user, None, notify).await?;
        tx.commit().await.map_err(backend)
    }

    async fn add_prekeys(
        &self,
        user: UserId,
        client: ClientId,
        prekeys: &[PrekeyRecord],
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        require_client(&mut tx, user, client).await?;
        insert_prekeys(&mut tx, user, client, prekeys).await?;
        tx.commit().await.map_err(backend)
    }

    async fn count_prekeys(&self, user: UserId, client: ClientId) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM prekeys WHERE user_id = ? AND client_id = ? AND id <> 65535",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn raise_generation(
        &self,
        user: UserId,
        client: ClientId,
        generation: u64,
    ) -> StoreResult<Option<u64>> {
        let g: Option<i64> = sqlx::query_scalar(
            "UPDATE clients SET generation = MAX(generation, ?) WHERE user_id = ? AND id = ? RETURNING generation",
        )
        .bind(i64::try_from(generation).unwrap_or(i64::MAX))
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(g.map(|g| u64::try_from(g).unwrap_or(0)))
    }

    async fn claim_prekey(
        &self,
        user: UserId,
        client: ClientId,
    ) -> StoreResult<Option<PrekeyRecord>> {
        // One statement: SQLite runs it under the write lock, so it is atomic.
        let claimed = sqlx::query(
            "DELETE FROM prekeys WHERE rowid = (SELECT rowid FROM prekeys \
             WHERE user_id = ?1 AND client_id = ?2 AND id <> 65535 ORDER BY id LIMIT 1) \
             RETURNING id, key",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        if let Some(row) = claimed {
            return prekey_row(&row).map(Some);
        }
        let last = sqlx::query(
            "SELECT id, key FROM prekeys WHERE user_id = ? AND client_id = ? AND id = 65535",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        last.as_ref().map(prekey_row).transpose()
    }

    async fn set_push_endpoint(
        &self,
        user: UserId,
        client: ClientId,
        url: Option<&str>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        require_client(&mut tx, user, client).await?;
        match url {
            Some(url) => sqlx::query(
                "INSERT INTO push_endpoints (user_id, client_id, url) VALUES (?, ?, ?) \
                 ON CONFLICT (user_id, client_id) DO UPDATE SET url = excluded.url",
            )
            .bind(user.to_string())
            .bind(client_id(client))
            .bind(url),
            None => sqlx::query("DELETE FROM push_endpoints WHERE user_id = ? AND client_id = ?")
                .bind(user.to_string())
                .bind(client_id(client)),
        }
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn push_endpoint(&self, user: UserId, client: ClientId) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT url FROM push_endpoints WHERE user_id = ? AND client_id = ?")
            .bind(user.to_string())
            .bind(client_id(client))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn events(
        &self,
        user: UserId,
        client: ClientId,
        since: Option<u64>,
        limit: usize,
    ) -> StoreResult<Option<EventPage>> {
        // One read transaction: the head and the page agree.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let head = sqlx::query(
            "SELECT next_id, purged_before FROM queue_heads WHERE user_id = ? AND client_id = ?",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(head) = head else { return Ok(None) };
        let next: i64 = head.try_get("next_id").map_err(backend)?;
        let purged_before: i64 = head.try_get("purged_before").map_err(backend)?;
        let QueuePosition { after, lost } = QueuePosition::of(since, purged_before, next);
        let rows = sqlx::query(
            "SELECT id, payload, created_at FROM notifications \
             WHERE user_id = ? AND client_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut events = rows
            .iter()
            .map(event_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let has_more = events.len() > limit;
        events.truncate(limit);
        Ok(Some(EventPage {
            events,
            has_more,
            lost,
        }))
    }

    async fn last_event(&self, user: UserId, client: ClientId) -> StoreResult<Option<QueuedEvent>> {
        let row = sqlx::query(
            "SELECT id, payload, created_at FROM notifications \
             WHERE user_id = ? AND client_id = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(event_row).transpose()
    }

    async fn purge_events(&self, before: i64) -> StoreResult<u64> {
        let (_writer, mut tx) = self.write_tx().await?;
        let purged = sqlx::query("DELETE FROM notifications WHERE created_at < ?")
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if purged > 0 {
            sqlx::query(
                "UPDATE queue_heads SET purged_before = COALESCE((SELECT MIN(n.id) \
                 FROM notifications n WHERE n.user_id = queue_heads.user_id \
                 AND n.client_id = queue_heads.client_id), next_id)",
            )
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(purged)
    }
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn connection(&self, from: UserId, to: UserId) -> StoreResult<Option<ConnectionRecord>> {
        let row: Option<ConnectionRow> = sqlx::query_as(concat!(
            "SELECT ",
            connection_columns!(),
            " FROM connections WHERE from_id = ? AND to_id = ?"
        ))
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(columns::connection).transpose()
    }

    async fn connections(&self, from: UserId) -> StoreResult<Vec<ConnectionRecord>> {
        let rows: Vec<ConnectionRow> = sqlx::query_as(concat!(
            "SELECT ",
            connection_columns!(),
            " FROM connections WHERE from_id = ? ORDER BY updated_at DESC, to_id"
        ))
        .bind(from.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(columns::connection).collect()
    }

    async fn blocks_involving(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT to_id FROM connections WHERE from_id = ? AND status = 'blocked' UNION SELECT from_id FROM connections WHERE to_id = ? AND status = 'blocked'")
        .bind(user.to_string())
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        ids.iter()
            .map(|id| parley_store::columns::parse_user_id(id))
            .collect()
    }

    async fn share_conversation(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM conversation_members a JOIN conversation_members b ON a.conversation_id = b.conversation_id WHERE a.user_id = ? AND b.user_id = ?)")
        .bind(a.to_string())
        .bind(b.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(backend)
    }

    async fn change_connection(&self, change: &ConnectionChange) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        for (side, expected) in &change.sides {
            let now: Option<String> = sqlx::query_scalar(
                "SELECT status FROM connections WHERE from_id = ? AND to_id = ?",
            )
            .bind(side.from.to_string())
            .bind(side.to.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if now.as_deref() != expected.map(connection_status) {
                return Err(StoreError::Conflict("connection"));
            }
        }
        if let Some((conversation, members)) = &change.conversation {
            insert_conversation(&mut tx, conversation, members).await?;
        }
        for (side, _) in &change.sides {
            sqlx::query(
                "INSERT INTO connections (from_id, to_id, status, conversation_id, updated_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (from_id, to_id) DO UPDATE SET \
                 status = excluded.status, conversation_id = excluded.conversation_id, \
                 updated_at = excluded.updated_at",
            )
            .bind(side.from.to_string())
            .bind(side.to.to_string())
            .bind(connection_status(side.status))
            .bind(side.conversation.map(|c| c.to_string()))
            .bind(side.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match backend(e) {
                StoreError::Backend(_) => StoreError::NotFound,
                other => other,
            })?;
        }
        for (user, payload) in &change.notify {
            let notify = Notify {
                payload,
                at: change.at,
            };
            enqueue_for_user(&mut tx, *user, None, notify).await?;
        }
        tx.commit().await.map_err(backend)
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn create_conversation(
        &self,
        conversation: &ConversationRecord,
        members: &[MemberRecord],
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        insert_conversation(&mut tx, conversation, members).await?;
        for user in member_ids(&mut tx, conversation.id).await? {
            enqueue_for_user(&mut tx, user, None, notify).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>> {
        let row: Option<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!("c"),
            " FROM conversations c WHERE c.id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(columns::conversation).transpose()
    }

    async fn members(&self, id: ConversationId) -> StoreResult<Vec<MemberRecord>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT user_id, role FROM conversation_members WHERE conversation_id = ? \
             ORDER BY user_id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(columns::member).collect()
    }

    async fn conversations_of(
        &self,
        user: UserId,
        after: Option<ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<ConversationRecord>> {
        let rows: Vec<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!("c"),
            " FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.user_id = ? AND m.conversation_id > ? ORDER BY m.conversation_id LIMIT ?"
        ))
        .bind(user.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(columns::conversation).collect()
    }

    async fn change_conversation(
        &self,
        id: ConversationId,
        change: &ConversationChange,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let mut told = member_ids(&mut tx, id).await?;
        match change {
            ConversationChange::AddMembers { members, max } => {
                insert_members(&mut tx, id, members).await?;
                let after = member_ids(&mut tx, id).await?;
                if after.len() > *max {
                    return Err(StoreError::Limit("members"));
                }
                told = after;
            }
            ConversationChange::RemoveMember(user) => {
                let gone = sqlx::query(
                    "DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
                )
                .bind(id.to_string())
                .bind(user.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                if gone.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            ConversationChange::SetRole(member) => {
                let changed = sqlx::query(
                    "UPDATE conversation_members SET role = ? WHERE conversation_id = ? AND user_id = ?",
                )
                .bind(role(member.role))
                .bind(id.to_string())
                .bind(member.user.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                if changed.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            ConversationChange::Rename(name) => {
                sqlx::query("UPDATE conversations SET name = ? WHERE id = ?")
                    .bind(name)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            ConversationChange::MessageTimer(ms) => {
                sqlx::query("UPDATE conversations SET message_timer = ? WHERE id = ?")
                    .bind(timer(*ms))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            ConversationChange::ReceiptMode(mode) => {
                sqlx::query("UPDATE conversations SET receipt_mode = ? WHERE id = ?")
                    .bind(i64::from(*mode))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        for user in told {
            enqueue_for_user(&mut tx, user, None, notify).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn roster(&self, id: ConversationId) -> StoreResult<Option<Roster>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if exists.is_none() {
            return Ok(None);
        }
        let roster = roster_in(&mut tx, id).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(roster))
    }

    async fn post(
        &self,
        id: ConversationId,
        at: i64,
        plan: DeliveryPlan,
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
}
