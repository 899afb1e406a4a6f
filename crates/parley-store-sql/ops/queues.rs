//! Reading and purging each device's event queue.

use async_trait::async_trait;
use parley_api::{ClientId, UserId};
use parley_store::{EventPage, QueuePosition, QueueStore, QueuedEvent, StoreResult};

use super::Store;
use parley_store_sql::Dialect;
use parley_store_sql::columns::{client_id, event};

/// Queues purged in one transaction.
const PURGE_BATCH: usize = 64;

#[async_trait]
impl QueueStore for Store {
    async fn events(
        &self, user: UserId, client: ClientId, since: Option<u64>, limit: usize,
    ) -> StoreResult<Option<EventPage>> {
        // One read transaction: the head and the page agree.
        let mut tx = self.pool().begin().await.map_err(Store::error)?;
        let head: Option<(i64, i64)> = sqlx::query_as(
            "SELECT next_id, purged_before FROM queue_heads WHERE user_id = $1 AND client_id = $2",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&mut *tx)
        .await
        .map_err(Store::error)?;
        let Some((next, purged_before)) = head else {
            return Ok(None);
        };
        let QueuePosition { after, lost } = QueuePosition::of(since, purged_before, next);
        let rows: Vec<(i64, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT n.id, n.payload, n.created_at, m.data FROM notifications n \
             LEFT JOIN mls_messages m ON m.id = n.mls_message \
             WHERE n.user_id = $1 AND n.client_id = $2 AND n.id > $3 ORDER BY n.id LIMIT $4",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
        .fetch_all(&mut *tx)
        .await
        .map_err(Store::error)?;
        let mut events = rows
            .into_iter()
            .map(event)
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
        let row: Option<(i64, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT n.id, n.payload, n.created_at, m.data FROM notifications n \
             LEFT JOIN mls_messages m ON m.id = n.mls_message \
             WHERE n.user_id = $1 AND n.client_id = $2 ORDER BY n.id DESC LIMIT 1",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(self.pool())
        .await
        .map_err(Store::error)?;
        row.map(event).transpose()
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.pool())
            .await
            .map(drop)
            .map_err(Store::error)
    }

    async fn purge_events(&self, before: i64) -> StoreResult<u64> {
        // Each queue that loses events marks everything up to the newest one
        // it lost as purged (a cursor before it has missed something). Queue
        // by queue in (user, device) order, the order every fan-out locks
        // heads in, so a purge and a delivery never deadlock: the head is
        // raised first (locking it), then exactly the events counted are
        // deleted, so no event goes without its head saying so (an event
        // another node stored meanwhile with an older clock waits for the
        // next purge). A transaction covers `PURGE_BATCH` queues, so that
        // after a long downtime deliveries to the queues not yet reached do
        // not wait for the whole purge.
        let mut heads: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT user_id, client_id, MAX(id) FROM notifications WHERE created_at < $1 \
             GROUP BY user_id, client_id",
        )
        .bind(before)
        .fetch_all(self.pool())
        .await
        .map_err(Store::error)?;
        heads.sort();
        let mut purged = 0;
        for batch in heads.chunks(PURGE_BATCH) {
            let (_guard, mut tx) = self.write_tx().await?;
            for (user, client, last) in batch {
                sqlx::query(
                    "UPDATE queue_heads SET purged_before = \
                     CASE WHEN purged_before > $3 THEN purged_before ELSE $3 END \
                     WHERE user_id = $1 AND client_id = $2",
                )
                .bind(user)
                .bind(client)
                .bind(last.saturating_add(1))
                .execute(&mut *tx)
                .await
                .map_err(Store::error)?;
                let done = sqlx::query(
                    "DELETE FROM notifications WHERE user_id = $1 AND client_id = $2 \
                     AND id <= $3 AND created_at < $4",
                )
                .bind(user)
                .bind(client)
                .bind(last)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(Store::error)?;
                purged += Store::rows_affected(&done);
            }
            tx.commit().await.map_err(Store::error)?;
        }
        // Shared group messages as old, once no event refers to them (an
        // event a slow clock stored later keeps its message until the next
        // purge takes both).
        let (_guard, mut tx) = self.write_tx().await?;
        sqlx::query(
            "DELETE FROM mls_messages WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM notifications n WHERE n.mls_message = mls_messages.id)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)?;
        Ok(purged)
    }
}
