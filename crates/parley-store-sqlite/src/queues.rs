//! Reading and purging each device's event queue, on SQLite.

use super::*;

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
