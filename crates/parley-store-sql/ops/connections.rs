//! Connections between users, blocks, and who shares a conversation.

use async_trait::async_trait;

use parley_api::UserId;
use parley_store::{ConnectionChange, ConnectionRecord, ConnectionStore, StoreError, StoreResult};

use super::Store;
use parley_store_sql::Dialect;
use parley_store_sql::columns::{self, ConnectionRow, connection_status, parse_user_id};

#[async_trait]
impl ConnectionStore for Store {
    async fn connection(&self, from: UserId, to: UserId) -> StoreResult<Option<ConnectionRecord>> {
        let row: Option<ConnectionRow> = sqlx::query_as(concat!(
            "SELECT ",
            parley_store_sql::connection_columns!(),
            " FROM connections WHERE from_id = $1 AND to_id = $2"
        ))
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(Store::error)?;
        row.map(columns::connection).transpose()
    }

    async fn connections(&self, from: UserId) -> StoreResult<Vec<ConnectionRecord>> {
        let rows: Vec<ConnectionRow> = sqlx::query_as(concat!(
            "SELECT ",
            parley_store_sql::connection_columns!(),
            " FROM connections WHERE from_id = $1 ORDER BY updated_at DESC, to_id"
        ))
        .bind(from.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(Store::error)?;
        rows.into_iter().map(columns::connection).collect()
    }

    async fn blocks_involving(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT to_id FROM connections WHERE from_id = $1 AND status = 'blocked' UNION SELECT from_id FROM connections WHERE to_id = $2 AND status = 'blocked'")
        .bind(user.to_string())
        .bind(user.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(Store::error)?;
        ids.iter().map(|id| parse_user_id(id)).collect()
    }

    async fn share_conversation(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM conversation_members a JOIN conversation_members b ON a.conversation_id = b.conversation_id WHERE a.user_id = $1 AND b.user_id = $2)")
        .bind(a.to_string())
        .bind(b.to_string())
        .fetch_one(self.pool())
        .await
        .map_err(Store::error)
    }

    async fn change_connection(&self, change: &ConnectionChange) -> StoreResult<()> {
        let (_guard, mut tx) = self.write_tx().await?;
        // Both users' rows, in id order, so two changes to one pair queue.
        let mut users: Vec<UserId> = change
            .sides
            .iter()
            .flat_map(|(s, _)| [s.from, s.to])
            .collect();
        users.sort_by_key(ToString::to_string);
        users.dedup();
        for user in users {
            Self::lock_user(&mut tx, user).await?;
        }
        for (side, expected) in &change.sides {
            let now: Option<String> = sqlx::query_scalar(
                "SELECT status FROM connections WHERE from_id = $1 AND to_id = $2",
            )
            .bind(side.from.to_string())
            .bind(side.to.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(Store::error)?;
            if now.as_deref() != expected.map(connection_status) {
                return Err(StoreError::Conflict("connection"));
            }
        }
        if let Some((conversation, members)) = &change.conversation {
            Self::insert_conversation(&mut tx, conversation, members).await?;
        }
        for (side, _) in &change.sides {
            sqlx::query(
                "INSERT INTO connections (from_id, to_id, status, conversation_id, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (from_id, to_id) DO UPDATE SET \
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
            .map_err(|e| match Store::error(e) {
                StoreError::Backend(_) => StoreError::NotFound,
                other => other,
            })?;
        }
        let events: Vec<(UserId, &str)> = change
            .notify
            .iter()
            .map(|(user, payload)| (*user, payload.as_str()))
            .collect();
        Self::fan_out(&mut tx, &events, None, change.at).await?;
        tx.commit().await.map_err(Store::error)
    }
}
