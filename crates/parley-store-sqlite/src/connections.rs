//! Connections between users, blocks, and who shares a conversation, on SQLite.

use super::*;

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
