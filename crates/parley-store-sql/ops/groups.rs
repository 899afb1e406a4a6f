//! MLS groups and their messages (`GroupStore`): each message stored once in
//! `mls_messages`, every recipient's queue event referring to it.

use async_trait::async_trait;
use parley_api::{ClientId, ConversationId, UserId};
use parley_store::{
    ConversationRecord, Delivered, GroupCommit, GroupStore, GroupWrite, MemberRecord,
    MlsGroupRecord, Notify, Outgoing, SharedMessage, StoreError, StoreResult, with_data,
};

use super::{Store, Tx};
use parley_store_sql::Dialect;
use parley_store_sql::columns::{client_id, parse_client_id, parse_user_id};

/// An `mls_groups` row.
type GroupRow = (Vec<u8>, i32, i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

fn group(conversation: ConversationId, row: GroupRow) -> StoreResult<MlsGroupRecord> {
    let (group_id, suite, epoch, epoch_at, state, group_info) = row;
    Ok(MlsGroupRecord {
        conversation,
        group_id,
        suite: u16::try_from(suite).map_err(|_| StoreError::Backend(format!("suite {suite}")))?,
        epoch: u64::try_from(epoch).map_err(|_| StoreError::Backend(format!("epoch {epoch}")))?,
        epoch_at,
        state,
        group_info,
    })
}

fn epoch(e: u64) -> StoreResult<i64> {
    i64::try_from(e).map_err(|_| StoreError::Backend(format!("epoch {e}")))
}

impl Store {
    /// Locks the conversation and reads its group's epoch: `None` without
    /// a group.
    async fn lock_group(tx: &mut Tx, conversation: ConversationId) -> StoreResult<Option<u64>> {
        let locked: Option<i64> = sqlx::query_scalar(Store::LOCK_CONVERSATION)
            .bind(conversation.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(Store::error)?;
        if locked.is_none() {
            return Ok(None);
        }
        let e: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM mls_groups WHERE conversation_id = $1")
                .bind(conversation.to_string())
                .fetch_optional(&mut **tx)
                .await
                .map_err(Store::error)?;
        e.map(|e| u64::try_from(e).map_err(|_| StoreError::Backend(format!("epoch {e}"))))
            .transpose()
    }

    /// The group's devices, read inside `tx`, in (user, device) order.
    async fn devices_in(
        tx: &mut Tx, conversation: ConversationId,
    ) -> StoreResult<Vec<(UserId, ClientId)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT user_id, client_id FROM mls_group_devices WHERE conversation_id = $1 \
",
        )
        .bind(conversation.to_string())
        .fetch_all(&mut **tx)
        .await
        .map_err(Store::error)?;
        let mut devices = rows
            .into_iter()
            .map(|(u, c)| Ok((parse_user_id(&u)?, parse_client_id(c))))
            .collect::<StoreResult<Vec<_>>>()?;
        // In the ids' own order (the column is signed).
        devices.sort();
        Ok(devices)
    }

    /// Stores `message` once and queues it for `devices` (those still
    /// there); the events, with their data, for live delivery.
    async fn queue_shared(
        tx: &mut Tx, conversation: ConversationId, devices: &[(UserId, ClientId)],
        message: SharedMessage<'_>, at: i64,
    ) -> StoreResult<Vec<Delivered>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO mls_messages (conversation_id, data, created_at) VALUES ($1, $2, $3) \
             RETURNING id",
        )
        .bind(conversation.to_string())
        .bind(message.data)
        .bind(at)
        .fetch_one(&mut **tx)
        .await
        .map_err(Store::error)?;
        let mut outgoing: Vec<Outgoing> = devices
            .iter()
            .map(|&(user, client)| Outgoing {
                user,
                client,
                payload: message.payload.to_owned(),
            })
            .collect();
        // Heads are locked in the order every fan-out locks them.
        outgoing.sort_by_key(|o| (o.user.to_string(), o.client));
        let delivered = Store::enqueue_many(tx, outgoing, Some(id), at).await?;
        Ok(delivered
            .into_iter()
            .map(|d| Delivered {
                payload: with_data(&d.payload, message.data),
                ..d
            })
            .collect())
    }
}

#[async_trait]
impl GroupStore for Store {
    async fn create_mls_conversation(
        &self, conversation: &ConversationRecord, creator: MemberRecord, g: &MlsGroupRecord,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.write_tx().await?;
        Self::insert_conversation(&mut tx, conversation, &[creator]).await?;
        sqlx::query(
            "INSERT INTO mls_groups (conversation_id, group_id, suite, epoch, epoch_at, state, \
             group_info) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(conversation.id.to_string())
        .bind(&g.group_id)
        .bind(i32::from(g.suite))
        .bind(epoch(g.epoch)?)
        .bind(g.epoch_at)
        .bind(&g.state)
        .bind(&g.group_info)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        Self::fan_out(&mut tx, &[(creator.user, notify.payload)], None, notify.at).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn mls_group(&self, conversation: ConversationId) -> StoreResult<Option<MlsGroupRecord>> {
        let row: Option<GroupRow> = sqlx::query_as(
            "SELECT group_id, suite, epoch, epoch_at, state, group_info FROM mls_groups \
             WHERE conversation_id = $1",
        )
        .bind(conversation.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(Store::error)?;
        row.map(|r| group(conversation, r)).transpose()
    }

    async fn group_devices(
        &self, conversation: ConversationId,
    ) -> StoreResult<Vec<(UserId, ClientId)>> {
        let mut tx = self.pool().begin().await.map_err(Store::error)?;
        Self::devices_in(&mut tx, conversation).await
    }

    async fn commit_group(&self, c: &GroupCommit<'_>) -> StoreResult<GroupWrite> {
        let (_guard, mut tx) = self.write_tx().await?;
        let current = Self::lock_group(&mut tx, c.conversation)
            .await?
            .ok_or(StoreError::NotFound)?;
        if current != c.from_epoch {
            return Ok(GroupWrite::Stale(current));
        }
        let devices = Self::devices_in(&mut tx, c.conversation).await?;
        if !devices.contains(&c.sender) && !c.added.contains(&c.sender) {
            return Ok(GroupWrite::NotMember);
        }
        let id = c.conversation.to_string();
        sqlx::query(
            "UPDATE mls_groups SET epoch = $2, epoch_at = $3, state = $4, group_info = $5 \
             WHERE conversation_id = $1",
        )
        .bind(&id)
        .bind(epoch(c.epoch)?)
        .bind(c.at)
        .bind(c.state)
        .bind(c.group_info)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        for &(user, client) in c.removed {
            sqlx::query(
                "DELETE FROM mls_group_devices WHERE conversation_id = $1 AND user_id = $2 \
                 AND client_id = $3",
            )
            .bind(&id)
            .bind(user.to_string())
            .bind(client_id(client))
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        }
        for &(user, client) in c.added {
            sqlx::query(
                "INSERT INTO mls_group_devices (conversation_id, user_id, client_id) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(user.to_string())
            .bind(client_id(client))
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        }
        for user in c.leave {
            sqlx::query(
                "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(&id)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        }
        Self::insert_members(&mut tx, c.conversation, c.join).await?;
        let before: Vec<_> = devices.into_iter().filter(|d| *d != c.sender).collect();
        let mut delivered =
            Self::queue_shared(&mut tx, c.conversation, &before, c.commit, c.at).await?;
        if let Some(welcome) = c.welcome {
            let to: Vec<_> = c.added.iter().copied().filter(|d| *d != c.sender).collect();
            delivered
                .extend(Self::queue_shared(&mut tx, c.conversation, &to, welcome, c.at).await?);
        }
        tx.commit().await.map_err(Store::error)?;
        Ok(GroupWrite::Done(delivered))
    }

    async fn post_group_message(
        &self, conversation: ConversationId, epoch: u64, past_epochs: u64,
        sender: (UserId, ClientId), message: SharedMessage<'_>, at: i64,
    ) -> StoreResult<GroupWrite> {
        let (_guard, mut tx) = self.write_tx().await?;
        let current = Self::lock_group(&mut tx, conversation)
            .await?
            .ok_or(StoreError::NotFound)?;
        if epoch > current || current - epoch > past_epochs {
            return Ok(GroupWrite::Stale(current));
        }
        let devices = Self::devices_in(&mut tx, conversation).await?;
        if !devices.contains(&sender) {
            return Ok(GroupWrite::NotMember);
        }
        let to: Vec<_> = devices.into_iter().filter(|d| *d != sender).collect();
        let delivered = Self::queue_shared(&mut tx, conversation, &to, message, at).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(GroupWrite::Done(delivered))
    }
}
