//! What several operations share: locking a user, the one fan-out every
//! change's events go through, rosters, and the rows a device or a
//! conversation is made of.

use std::collections::BTreeMap;

use parley_api::{ClientId, ConversationId, UserId};
use parley_store::{
    ConversationRecord, MemberRecord, Outgoing, PrekeyRecord, Roster, StoreError, StoreResult,
};

use super::{Db, Store, Tx};
use parley_store_sql::Dialect;
use parley_store_sql::columns::{
    self, client_id, conversation_kind, parse_client_id, parse_user_id, role, timer, tries,
    user_ids_json,
};

impl Store {
    /// A write transaction holding the lock on one user's row, so that writes
    /// which read first (counting devices or cookies) see no concurrent change
    /// for that user.
    pub(crate) async fn user_tx(
        &self, user: UserId,
    ) -> StoreResult<(<Store as Dialect>::Guard, Tx)> {
        let (guard, mut tx) = self.write_tx().await?;
        Self::lock_user(&mut tx, user).await?;
        Ok((guard, tx))
    }

    /// The one row `sql` selects by its key (`$1`), if any.
    pub(crate) async fn row_by_key<R>(&self, sql: &'static str, key: &str) -> StoreResult<Option<R>>
    where
        R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
    {
        sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(Store::error)
    }

    /// Counts one try of a one-time code (before it is compared, so concurrent
    /// guesses cannot share a try): `sql` adds one to the row keyed `$1` and
    /// returns the tries. `NotFound` if there is no such code.
    pub(crate) async fn count_try(&self, sql: &'static str, key: &str) -> StoreResult<u32> {
        let t: i64 = sqlx::query_scalar(sql)
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(Store::error)?
            .ok_or(StoreError::NotFound)?;
        tries(t)
    }

    /// Forgets a one-time code by its key (`$1`).
    pub(crate) async fn keyed_delete(&self, sql: &'static str, key: &str) -> StoreResult<()> {
        sqlx::query(sql)
            .bind(key)
            .execute(self.pool())
            .await
            .map_err(Store::error)?;
        Ok(())
    }

    /// Locks a user's row, where the database locks rows.
    pub(crate) async fn lock_user(tx: &mut Tx, user: UserId) -> StoreResult<()> {
        if let Some(sql) = Store::LOCK_USER {
            sqlx::query(sql)
                .bind(user.to_string())
                .fetch_optional(&mut **tx)
                .await
                .map_err(Store::error)?;
        }
        Ok(())
    }

    /// Locks every queue head of a user, in device order, before removing any:
    /// queue heads are always locked in (user, device) order, so deliveries and
    /// removals cannot deadlock.
    pub(crate) async fn lock_heads(tx: &mut Tx, user: UserId) -> StoreResult<()> {
        if let Some(sql) = Store::LOCK_HEADS {
            sqlx::query(sql)
                .bind(user.to_string())
                .fetch_all(&mut **tx)
                .await
                .map_err(Store::error)?;
        }
        Ok(())
    }

    /// Appends an event to every device of these users (but `except`), each
    /// user with its own payload (the first given), through the dialect's one
    /// bulk enqueue: every change's events take this path, in (user, device)
    /// order.
    pub(crate) async fn fan_out(
        tx: &mut Tx, events: &[(UserId, &str)], except: Option<(UserId, ClientId)>, at: i64,
    ) -> StoreResult<()> {
        let mut payloads: BTreeMap<UserId, &str> = BTreeMap::new();
        for (user, payload) in events {
            payloads.entry(*user).or_insert(payload);
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let devices: Vec<(String, i64)> = sqlx::query_as(Store::DEVICES_OF)
            .bind(user_ids_json(payloads.keys()))
            .fetch_all(&mut **tx)
            .await
            .map_err(Store::error)?;
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
        outgoing.sort_by_key(|o| (o.user.to_string(), o.client));
        Store::enqueue_many(tx, outgoing, &[], at).await?;
        Ok(())
    }

    /// The devices of a conversation's members, read inside `tx`.
    pub(crate) async fn roster_in(
        tx: &mut Tx, conversation: ConversationId,
    ) -> StoreResult<Roster> {
        let rows: Vec<(Option<String>, Option<i64>)> = sqlx::query_as(Store::ROSTER)
            .bind(conversation.to_string())
            .fetch_all(&mut **tx)
            .await
            .map_err(Store::error)?;
        columns::roster(rows)
    }

    /// The members of a conversation, read inside `tx`.
    pub(crate) async fn member_ids(
        tx: &mut Tx, conversation: ConversationId,
    ) -> StoreResult<Vec<UserId>> {
        let ids: Vec<String> = sqlx::query_scalar(Store::MEMBER_IDS)
            .bind(conversation.to_string())
            .fetch_all(&mut **tx)
            .await
            .map_err(Store::error)?;
        ids.iter().map(|u| parse_user_id(u)).collect()
    }

    /// `NotFound` unless the user has this device (inside the caller's
    /// transaction).
    pub(crate) async fn require_client(
        tx: &mut Tx, user: UserId, client: ClientId,
    ) -> StoreResult<()> {
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM clients WHERE user_id = $1 AND id = $2",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&mut **tx)
        .await
        .map_err(Store::error)?;
        exists.map(|_| ()).ok_or(StoreError::NotFound)
    }

    pub(crate) async fn insert_prekeys(
        tx: &mut Tx, user: UserId, client: ClientId, prekeys: &[PrekeyRecord],
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
            .map_err(Store::error)?;
        }
        Ok(())
    }

    /// Deletes a device with its prekeys and the cookies with its cookie label.
    pub(crate) async fn remove_client(
        tx: &mut Tx, user: UserId, id: ClientId,
    ) -> StoreResult<bool> {
        let label: Option<Option<String>> = sqlx::query_scalar(
            "DELETE FROM clients WHERE user_id = $1 AND id = $2 RETURNING cookie_label",
        )
        .bind(user.to_string())
        .bind(client_id(id))
        .fetch_optional(&mut **tx)
        .await
        .map_err(Store::error)?;
        let Some(label) = label else { return Ok(false) };
        if let Some(label) = label {
            sqlx::query("DELETE FROM cookies WHERE user_id = $1 AND label = $2")
                .bind(user.to_string())
                .bind(label)
                .execute(&mut **tx)
                .await
                .map_err(Store::error)?;
        }
        Ok(true)
    }

    pub(crate) async fn insert_conversation(
        tx: &mut Tx, c: &ConversationRecord, members: &[MemberRecord],
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO conversations (id, kind, name, creator, message_timer, receipt_mode, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        .map_err(Store::error)?;
        Self::insert_members(tx, c.id, members).await
    }

    pub(crate) async fn insert_members(
        tx: &mut Tx, conversation: ConversationId, members: &[MemberRecord],
    ) -> StoreResult<()> {
        for m in members {
            sqlx::query(
                "INSERT INTO conversation_members (conversation_id, user_id, role) \
                 VALUES ($1, $2, $3) ON CONFLICT (conversation_id, user_id) DO NOTHING",
            )
            .bind(conversation.to_string())
            .bind(m.user.to_string())
            .bind(role(m.role))
            .execute(&mut **tx)
            .await
            .map_err(|e| match Store::error(e) {
                // The user does not exist (any more).
                StoreError::Backend(_) => StoreError::NotFound,
                other => other,
            })?;
        }
        Ok(())
    }
}
