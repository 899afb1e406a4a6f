//! Parley's store for scale: PostgreSQL, shared by any number of server nodes.
//!
//! Owns: the PostgreSQL [`Dialect`] (row locks, the statements whose text
//! differs from SQLite's, its bulk enqueue and its delivery) and its
//! `migrations/` (never edit a shipped migration; add one). Every other
//! statement is `parley-store-sql`'s. Writes that read first (`add_client`,
//! `add_cookie`) lock the user's row, so concurrent requests for one user
//! queue; a prekey claim deletes one row chosen with `FOR UPDATE SKIP LOCKED`,
//! so concurrent claims never get the same prekey; queue heads are always
//! locked in (user, device) order, so no two changes deadlock.
#![forbid(unsafe_code)]

/// The store operations both backends share, compiled here for PostgreSQL.
#[path = "../../parley-store-sql/ops/mod.rs"]
mod ops;

/// The store the shared operations implement the store traits for.
type Store = PostgresStore;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use parley_api::ConversationId;
use parley_store::{Delivered, DeliveryPlan, Outgoing, Posted, StoreError, StoreResult};
use parley_store_sql::columns::{client_id, event_id};
use parley_store_sql::{Dialect, Tx};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{Connection, Executor, PgConnection};

/// PostgreSQL's part of the store: its pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl parley_store::Store for PostgresStore {}

/// A database error as a store error: a broken uniqueness rule names the
/// rule, by the constraint the database reports.
fn backend(e: sqlx::Error) -> StoreError {
    parley_store_sql::store_error(
        e,
        &[("users_email_key", "email"), ("users_handle_key", "handle")],
    )
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
}

#[async_trait]
impl Dialect for PostgresStore {
    type Db = sqlx::Postgres;
    type Guard = ();

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn error(e: sqlx::Error) -> StoreError {
        backend(e)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn write_tx(&self) -> StoreResult<((), Tx<Self>)> {
        Ok(((), self.pool.begin().await.map_err(backend)?))
    }

    /// Appends one event to each of many devices' queues in one statement (devices
    /// that are gone get none): the heads are locked in (user, device) order first, as
    /// everywhere, then advanced and the events inserted from arrays.
    async fn enqueue_many(
        tx: &mut Tx<Self>, outgoing: Vec<Outgoing>, shared: &[Option<i64>], at: i64,
    ) -> StoreResult<Vec<Delivered>> {
        if outgoing.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<String> = outgoing.iter().map(|o| o.user.to_string()).collect();
        let clients: Vec<i64> = outgoing.iter().map(|o| client_id(o.client)).collect();
        let payloads: Vec<&str> = outgoing.iter().map(|o| o.payload.as_str()).collect();
        let shared: Vec<Option<i64>> = if shared.is_empty() {
            vec![None; outgoing.len()]
        } else {
            shared.to_vec()
        };
        // One round trip: lock the heads in order, advance them, insert the events.
        let stored: Vec<(String, i64, i64)> = sqlx::query_as(
            "WITH wanted AS (SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $5::bigint[]) \
                 AS t(u, c, p, m)), \
             locked AS (SELECT q.user_id, q.client_id FROM queue_heads q \
                 WHERE (q.user_id, q.client_id) IN (SELECT u, c FROM wanted) \
                 ORDER BY q.user_id COLLATE \"C\", q.client_id FOR UPDATE), \
             bumped AS (UPDATE queue_heads q SET next_id = q.next_id + 1 FROM locked l \
                 WHERE q.user_id = l.user_id AND q.client_id = l.client_id \
                 RETURNING q.user_id, q.client_id, q.next_id - 1 AS id) \
             INSERT INTO notifications (user_id, client_id, id, payload, created_at, mls_message) \
             SELECT b.user_id, b.client_id, b.id, w.p, $4, w.m FROM bumped b \
             JOIN wanted w ON w.u = b.user_id AND w.c = b.client_id \
             RETURNING user_id, client_id, id",
        )
        .bind(&users)
        .bind(&clients)
        .bind(&payloads)
        .bind(at)
        .bind(&shared)
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
                id: event_id(id)?,
                payload: o.payload.into(),
            });
        }
        Ok(delivered)
    }

    async fn deliver(
        &self, id: ConversationId, at: i64, plan: DeliveryPlan,
    ) -> StoreResult<Option<Posted>> {
        // The conversation's row lock serialises its deliveries with each other
        // and with membership changes (which take it too). The roster is read in
        // a second statement: under READ COMMITTED a statement sees the data as
        // of its own start, so one that waited for the lock would see the
        // members from before a join or leave that committed meanwhile.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let exists: Option<i64> = sqlx::query_scalar(Self::LOCK_CONVERSATION)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if exists.is_none() {
            return Ok(None);
        }
        let roster = PostgresStore::roster_in(&mut tx, id).await?;
        let Some(outgoing) = plan(&roster) else {
            return Ok(Some(Posted {
                roster,
                delivered: None,
            }));
        };
        let delivered = Self::enqueue_many(&mut tx, outgoing, &[], at).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(Posted {
            roster,
            delivered: Some(delivered),
        }))
    }

    const LOCK_USER: Option<&'static str> = Some("SELECT 1 FROM users WHERE id = $1 FOR UPDATE");
    const LOCK_HEADS: Option<&'static str> =
        Some("SELECT 1 FROM queue_heads WHERE user_id = $1 ORDER BY client_id FOR UPDATE");
    const LOCK_CONVERSATION: &'static str =
        "SELECT CAST(1 AS BIGINT) FROM conversations WHERE id = $1 FOR UPDATE";
    const DEVICES_OF: &'static str = "SELECT user_id, id FROM clients \
         WHERE user_id IN (SELECT json_array_elements_text($1::json))";
    const CLIENTS_OLDEST_FIRST: &'static str =
        "SELECT * FROM clients WHERE user_id = $1 ORDER BY created_at, seq";
    const COOKIES_NEWEST_FIRST: &'static str =
        "SELECT * FROM cookies WHERE user_id = $1 ORDER BY created_at DESC, seq DESC";
    const EVICT_COOKIES: &'static str = "DELETE FROM cookies WHERE user_id = $1 AND persistent = $2 AND id NOT IN \
         (SELECT id FROM cookies WHERE user_id = $1 AND persistent = $2 \
          ORDER BY created_at DESC, seq DESC LIMIT $3)";
    const RAISE_GENERATION: &'static str = "UPDATE clients SET generation = GREATEST(generation, $1) \
         WHERE user_id = $2 AND id = $3 RETURNING generation";
    // The row is locked as it is chosen, and a concurrent claim skips it rather
    // than waiting for it, so no prekey is handed out twice.
    const CLAIM_ONE_TIME_PREKEY: &'static str = "DELETE FROM prekeys WHERE seq = (SELECT seq FROM prekeys \
         WHERE user_id = $1 AND client_id = $2 AND id <> 65535 ORDER BY id LIMIT 1 \
         FOR UPDATE SKIP LOCKED) RETURNING id, key";
    // Locked as it is chosen; a concurrent claim skips it.
    const CLAIM_KEY_PACKAGE: &'static str = "DELETE FROM mls_key_packages WHERE ref = (SELECT ref \
         FROM mls_key_packages WHERE user_id = $1 AND client_id = $2 AND suite = $3 \
         AND not_after > $4 AND NOT last_resort ORDER BY not_after, ref LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING ref, data, not_after";
    const ROSTER: &'static str = "SELECT m.user_id, c.id FROM conversation_members m \
         LEFT JOIN clients c ON c.user_id = m.user_id \
         WHERE m.conversation_id = $1 ORDER BY m.user_id COLLATE \"C\", c.id";
    const MEMBER_IDS: &'static str = "SELECT user_id FROM conversation_members \
         WHERE conversation_id = $1 ORDER BY user_id COLLATE \"C\"";
}
