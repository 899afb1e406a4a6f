//! Parley's store for scale: PostgreSQL, shared by any number of server nodes.
//!
//! Owns: its SQL and its `migrations/` (never edit a shipped migration; add one).
//! Writes that read first (`add_client`, `add_cookie`) lock the user's row, so
//! concurrent requests for one user queue; a prekey claim deletes one row chosen with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claims never get the same prekey.
#![forbid(unsafe_code)]

mod accounts;
mod connections;
mod conversations;
mod devices;
mod queues;

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
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, PgConnection, Postgres, Row, Transaction};

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

fn backend(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let m = db.message();
            if m.contains("users_email_key") {
                StoreError::Conflict("email")
            } else if m.contains("users_handle_key") {
                StoreError::Conflict("handle")
            } else {
                StoreError::Conflict("record")
            }
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

impl PostgresStore {
    /// Connects to a `postgres://` URL and applies migrations.
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        Self::connect(PgConnectOptions::from_str(url).map_err(backend)?).await
    }

    /// Creates a new, empty database next to the one `url` names and opens it: each
    /// test gets its own. Needs the right to create databases.
    pub async fn open_fresh_database(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(backend)?;
        let name = format!("parley_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(&options)
            .await
            .map_err(backend)?;
        let create = format!("CREATE DATABASE {name}");
        admin
            .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(create)))
            .await
            .map_err(backend)?;
        admin.close().await.map_err(backend)?;
        Self::connect(options.database(&name)).await
    }

    async fn connect(options: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(backend)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating the PostgreSQL database: {e}")))?;
        Ok(Self { pool })
    }

    /// A transaction holding the lock on one user's row, so that writes which read
    /// first (counting devices or cookies) see no concurrent change for that user.
    async fn user_tx(&self, user: UserId) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(user.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        Ok(tx)
    }

    async fn tx(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(backend)
    }
}

fn user_row(r: &PgRow) -> StoreResult<User> {
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

fn cookie_row(r: &PgRow) -> StoreResult<Cookie> {
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

fn client_row(r: &PgRow) -> StoreResult<ClientRecord> {
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

fn prekey_row(r: &PgRow) -> StoreResult<PrekeyRecord> {
    let id: i64 = r.try_get("id").map_err(backend)?;
    Ok(PrekeyRecord {
        id: u16::try_from(id).map_err(|_| StoreError::Backend(format!("prekey id {id}")))?,
        key: r.try_get("key").map_err(backend)?,
    })
}

fn tries(r: &PgRow) -> StoreResult<u32> {
    let t: i64 = r.try_get("tries").map_err(backend)?;
    u32::try_from(t).map_err(|_| StoreError::Backend(format!("tries {t}")))
}

/// `NotFound` unless the user has this device (inside the caller's transaction).
async fn require_client(
    tx: &mut Transaction<'static, Postgres>,
    user: UserId,
    client: ClientId,
) -> StoreResult<()> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1::BIGINT FROM clients WHERE user_id = $1 AND id = $2")
            .bind(user.to_string())
            .bind(client_id(client))
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
    exists.map(|_| ()).ok_or(StoreError::NotFound)
}

async fn insert_prekeys(
    tx: &mut Transaction<'static, Postgres>,
    user: UserId,
    client: ClientId,
    prekeys: &[PrekeyRecord],
) -> StoreResult<()> {
    for p in prekeys {
        sqlx::query(
            "INSERT INTO prekeys (user_id, client_id, id, key) VALUES ($1, $2, $3, $4) \
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
    tx: &mut Transaction<'static, Postgres>,
    user: UserId,
    id: ClientId,
) -> StoreResult<bool> {
    let label: Option<Option<String>> = sqlx::query_scalar(
        "DELETE FROM clients WHERE user_id = $1 AND id = $2 RETURNING cookie_label",
    )
    .bind(user.to_string())
    .bind(client_id(id))
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    let Some(label) = label else { return Ok(false) };
    if let Some(label) = label {
        sqlx::query("DELETE FROM cookies WHERE user_id = $1 AND label = $2")
            .bind(user.to_string())
            .bind(label)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(true)
}

/// Appends an event to every device of these users (but `except`), each user
/// with its own payload, through [`enqueue_many`]: one sorted fan-out, so queue
/// heads are locked in (user, device) order whatever order the users are named
/// in, and no two fan-outs can deadlock.
async fn fan_out(
    tx: &mut Transaction<'static, Postgres>,
    events: &[(UserId, &str)],
    except: Option<(UserId, ClientId)>,
    at: i64,
) -> StoreResult<()> {
    let mut payloads: std::collections::BTreeMap<UserId, &str> = std::collections::BTreeMap::new();
    for (user, payload) in events {
        payloads.entry(*user).or_insert(payload);
    }
    let users: Vec<String> = payloads.keys().map(ToString::to_string).collect();
    let devices: Vec<(String, i64)> =
        sqlx::query_as("SELECT user_id, id FROM clients WHERE user_id = ANY($1)")
            .bind(&users)
            .fetch_all(&mut **tx)
            .await
            .map_err(backend)?;
    let mut outgoing = Vec::with_capacity(devices.len());
    for (user, client) in devices {
        let (user, client) = (parse_user_id(&user)?, parse_client_id(client));
        if except == Some((user, client)) {
            continue;
        }
        if let Some(payload) = payloads.get(&user) {
            outgoing.push(Outgoing {
                user,
                client,
                payload: (*payload).to_owned(),
            });
        }
    }
    enqueue_many(tx, outgoing, at).await?;
    Ok(())
}

/// Locks every queue head of a user, in device order, before removing any: queue
/// heads are always locked in (user, device) order, so deliveries and removals
/// cannot deadlock.
async fn lock_heads(tx: &mut Transaction<'static, Postgres>, user: UserId) -> StoreResult<()> {
    sqlx::query(
        "SELECT 1::BIGINT FROM queue_heads WHERE user_id = $1 ORDER BY client_id FOR UPDATE",
    )
    .bind(user.to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Appends one event to each of many devices' queues in one statement (devices
/// that are gone get none): the heads are locked in (user, device) order first, as
/// everywhere, then advanced and the events inserted from arrays.
async fn enqueue_many(
    tx: &mut Transaction<'static, Postgres>,
    outgoing: Vec<Outgoing>,
    at: i64,
) -> StoreResult<Vec<Delivered>> {
    if outgoing.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<String> = outgoing.iter().map(|o| o.user.to_string()).collect();
    let clients: Vec<i64> = outgoing.iter().map(|o| client_id(o.client)).collect();
    let payloads: Vec<&str> = outgoing.iter().map(|o| o.payload.as_str()).collect();
    // One round trip: lock the heads in order, advance them, insert the events.
    let stored: Vec<(String, i64, i64)> = sqlx::query_as(
        "WITH wanted AS (SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS t(u, c, p)), \
         locked AS (SELECT q.user_id, q.client_id FROM queue_heads q \
             WHERE (q.user_id, q.client_id) IN (SELECT u, c FROM wanted) \
             ORDER BY q.user_id COLLATE \"C\", q.client_id FOR UPDATE), \
         bumped AS (UPDATE queue_heads q SET next_id = q.next_id + 1 FROM locked l \
             WHERE q.user_id = l.user_id AND q.client_id = l.client_id \
             RETURNING q.user_id, q.client_id, q.next_id - 1 AS id) \
         INSERT INTO notifications (user_id, client_id, id, payload, created_at) \
         SELECT b.user_id, b.client_id, b.id, w.p, $4 FROM bumped b \
         JOIN wanted w ON w.u = b.user_id AND w.c = b.client_id \
         RETURNING user_id, client_id, id",
    )
    .bind(&users)
    .bind(&clients)
    .bind(&payloads)
    .bind(at)
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    let ids: std::collections::HashMap<(String, i64), i64> =
        stored.into_iter().map(|(u, c, id)| ((u, c), id)).collect();
    let mut delivered = Vec::with_capacity(outgoing.len());
    for ((o, user), client) in outgoing.into_iter().zip(users).zip(clients) {
        let Some(id) = ids.get(&(user, client)).copied() else {
            continue;
        };
        delivered.push(Delivered {
            user: o.user,
            client: o.client,
            id: u64::try_from(id).map_err(|_| StoreError::Backend(format!("event id {id}")))?,
            payload: o.payload,
        });
    }
    Ok(delivered)
}

/// The devices of a conversation's members, read inside `tx`.
async fn roster_in(
    tx: &mut Transaction<'static, Postgres>,
    conversation: ConversationId,
) -> StoreResult<Roster> {
    let rows: Vec<(Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT m.user_id, c.id FROM conversation_members m \
         LEFT JOIN clients c ON c.user_id = m.user_id \
         WHERE m.conversation_id = $1 ORDER BY m.user_id COLLATE \"C\", c.id",
    )
    .bind(conversation.to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    parley_store::columns::roster(rows)
}

/// The members of a conversation, read inside `tx`.
async fn member_ids(
    tx: &mut Transaction<'static, Postgres>,
    conversation: ConversationId,
) -> StoreResult<Vec<UserId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id COLLATE \"C\"",
    )
    .bind(conversation.to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    ids.iter().map(|u| parse_user_id(u)).collect()
}

async fn insert_conversation(
    tx: &mut Transaction<'static, Postgres>,
    c: &ConversationRecord,
    members: &[MemberRecord],
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO conversations (id, kind, name, creator, message_timer, receipt_mode, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
    tx: &mut Transaction<'static, Postgres>,
    conversation: ConversationId,
    members: &[MemberRecord],
) -> StoreResult<()> {
    for m in members {
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1, $2, $3) \
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

fn event_row(r: &PgRow) -> StoreResult<QueuedEvent> {
    let id: i64 = r.try_get("id").map_err(backend)?;
    Ok(QueuedEvent {
        id: u64::try_from(id).map_err(|_| StoreError::Backend(format!("event id {id}")))?,
        payload: r.try_get("payload").map_err(backend)?,
        created_at: r.try_get("created_at").map_err(backend)?,
    })
}
