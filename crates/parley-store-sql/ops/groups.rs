//! MLS groups and their messages (`GroupStore`): each message stored once in
//! `mls_messages`, every recipient's queue event referring to it.

use async_trait::async_trait;
use parley_api::{ClientId, ConversationId, Role, UserId};
use parley_store::{
    ConversationRecord, Delivered, GroupCommit, GroupProposals, GroupState, GroupStore, GroupWrite,
    MemberRecord, MlsGroupRecord, Notify, Outgoing, SharedMessage, StoreError, StoreResult,
    with_data,
};

use super::{Store, Tx};
use parley_store_sql::Dialect;
use parley_store_sql::columns::{client_id, parse_client_id, parse_user_id, role as role_name};

/// An `mls_groups` row's head.
type GroupRow = (Vec<u8>, i32, i64, i64, bool);

fn group(conversation: ConversationId, row: GroupRow) -> StoreResult<MlsGroupRecord> {
    let (group_id, suite, epoch, epoch_at, mixed) = row;
    Ok(MlsGroupRecord {
        conversation,
        group_id,
        suite: u16::try_from(suite).map_err(|_| StoreError::Backend(format!("suite {suite}")))?,
        epoch: read_epoch(epoch)?,
        epoch_at,
        mixed,
    })
}

fn epoch(e: u64) -> StoreResult<i64> {
    i64::try_from(e).map_err(|_| StoreError::Backend(format!("epoch {e}")))
}

fn read_epoch(e: i64) -> StoreResult<u64> {
    u64::try_from(e).map_err(|_| StoreError::Backend(format!("epoch {e}")))
}

impl Store {
    /// Locks the conversation: false when there is none.
    async fn lock_conversation(tx: &mut Tx, id: &str) -> StoreResult<bool> {
        let locked: Option<i64> = sqlx::query_scalar(Store::LOCK_CONVERSATION)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Store::error)?;
        Ok(locked.is_some())
    }

    /// Queues `notify` for every device of the conversation's members.
    async fn notify_members(
        tx: &mut Tx, conversation: ConversationId, notify: Notify<'_>,
    ) -> StoreResult<()> {
        let events: Vec<(UserId, &str)> = Self::member_ids(tx, conversation)
            .await?
            .into_iter()
            .map(|user| (user, notify.payload))
            .collect();
        Self::fan_out(tx, &events, None, notify.at).await
    }

    /// Locks the conversation; its group's epoch, state revision and
    /// whether it is mixed: `None` without a group.
    async fn lock_group(
        tx: &mut Tx, conversation: ConversationId,
    ) -> StoreResult<Option<(u64, u64, bool)>> {
        if !Self::lock_conversation(tx, &conversation.to_string()).await? {
            return Ok(None);
        }
        let row: Option<(i64, i64, bool)> = sqlx::query_as(
            "SELECT epoch, revision, mixed FROM mls_groups WHERE conversation_id = $1",
        )
        .bind(conversation.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(Store::error)?;
        row.map(|(e, r, mixed)| Ok((read_epoch(e)?, read_epoch(r)?, mixed)))
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

    /// Stores each message once and queues it for its devices (those still
    /// there; a device appears under one message at most), all in one
    /// enqueue, so that the queue heads are locked in the one order every
    /// fan-out uses; the events, with their data, for live delivery.
    async fn queue_messages(
        tx: &mut Tx, conversation: ConversationId, at: i64,
        messages: &[(SharedMessage<'_>, &[(UserId, ClientId)])],
    ) -> StoreResult<Vec<Delivered>> {
        let mut rows: Vec<(Outgoing, i64, usize)> = Vec::new();
        for (index, (message, devices)) in messages.iter().enumerate() {
            if devices.is_empty() {
                continue;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO mls_messages (conversation_id, data, created_at) \
                 VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(conversation.to_string())
            .bind(message.data)
            .bind(at)
            .fetch_one(&mut **tx)
            .await
            .map_err(Store::error)?;
            rows.extend(devices.iter().map(|&(user, client)| {
                let payload = message.payload.to_owned();
                (
                    Outgoing {
                        user,
                        client,
                        payload,
                    },
                    id,
                    index,
                )
            }));
        }
        rows.sort_by_key(|(o, _, _)| (o.user.to_string(), o.client));
        let shared: Vec<Option<i64>> = rows.iter().map(|(_, id, _)| Some(*id)).collect();
        let order: Vec<((UserId, ClientId), usize)> = rows
            .iter()
            .map(|(o, _, index)| ((o.user, o.client), *index))
            .collect();
        let outgoing = rows.into_iter().map(|(o, _, _)| o).collect();
        let delivered = Store::enqueue_many(tx, outgoing, &shared, at).await?;
        // Each message's event with its data, made once and shared by its
        // devices. Delivered events keep the order of the outgoing ones,
        // less the devices that are gone.
        let full: Vec<std::sync::Arc<str>> = messages
            .iter()
            .map(|(m, _)| with_data(m.payload, m.data).into())
            .collect();
        let mut order = order.into_iter();
        Ok(delivered
            .into_iter()
            .map(|d| {
                let index = order
                    .by_ref()
                    .find(|(device, _)| *device == (d.user, d.client))
                    .map_or(0, |(_, index)| index);
                Delivered {
                    payload: full[index].clone(),
                    ..d
                }
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
            "INSERT INTO mls_groups (conversation_id, group_id, suite, epoch, epoch_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(conversation.id.to_string())
        .bind(&g.group_id)
        .bind(i32::from(g.suite))
        .bind(epoch(g.epoch)?)
        .bind(g.epoch_at)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        Self::fan_out(&mut tx, &[(creator.user, notify.payload)], None, notify.at).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn start_migration(&self, g: &MlsGroupRecord, notify: Notify<'_>) -> StoreResult<bool> {
        let (_guard, mut tx) = self.write_tx().await?;
        let id = g.conversation.to_string();
        if !Self::lock_conversation(&mut tx, &id).await? {
            return Err(StoreError::NotFound);
        }
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM mls_groups WHERE conversation_id = $1")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Store::error)?;
        if existing.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO mls_groups (conversation_id, group_id, suite, epoch, epoch_at, mixed) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&g.group_id)
        .bind(i32::from(g.suite))
        .bind(epoch(g.epoch)?)
        .bind(g.epoch_at)
        .bind(true)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        Self::notify_members(&mut tx, g.conversation, notify).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(true)
    }

    async fn finish_migration(
        &self, conversation: ConversationId, notify: Notify<'_>,
    ) -> StoreResult<bool> {
        let (_guard, mut tx) = self.write_tx().await?;
        let id = conversation.to_string();
        if !Self::lock_conversation(&mut tx, &id).await? {
            return Ok(false);
        }
        let updated = sqlx::query(
            "UPDATE mls_groups SET mixed = $2, revision = revision + 1 \
             WHERE conversation_id = $1 AND mixed",
        )
        .bind(&id)
        .bind(false)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        Self::notify_members(&mut tx, conversation, notify).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(true)
    }

    async fn mls_group(&self, conversation: ConversationId) -> StoreResult<Option<MlsGroupRecord>> {
        let row: Option<GroupRow> = sqlx::query_as(
            "SELECT group_id, suite, epoch, epoch_at, mixed FROM mls_groups \
             WHERE conversation_id = $1",
        )
        .bind(conversation.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(Store::error)?;
        row.map(|r| group(conversation, r)).transpose()
    }

    async fn mls_group_state(
        &self, conversation: ConversationId,
    ) -> StoreResult<Option<GroupState>> {
        let row: Option<(i64, i64, Option<Vec<u8>>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT epoch, revision, state, group_info FROM mls_groups WHERE conversation_id = $1",
        )
        .bind(conversation.to_string())
        .fetch_optional(self.pool())
        .await
        .map_err(Store::error)?;
        match row {
            Some((e, r, Some(state), Some(group_info))) => Ok(Some(GroupState {
                epoch: read_epoch(e)?,
                revision: read_epoch(r)?,
                state,
                group_info,
            })),
            _ => Ok(None),
        }
    }

    async fn group_devices(
        &self, conversation: ConversationId,
    ) -> StoreResult<Vec<(UserId, ClientId)>> {
        let mut tx = self.pool().begin().await.map_err(Store::error)?;
        Self::devices_in(&mut tx, conversation).await
    }

    async fn commit_group(&self, c: &GroupCommit<'_>) -> StoreResult<GroupWrite> {
        let (_guard, mut tx) = self.write_tx().await?;
        let (current, revision, mixed) = Self::lock_group(&mut tx, c.conversation)
            .await?
            .ok_or(StoreError::NotFound)?;
        if (current, revision) != (c.from_epoch, c.from_revision) {
            return Ok(GroupWrite::Stale(current));
        }
        if mixed {
            // Members change the Proteus way: a user removed since the
            // commit was checked is not brought back into the group.
            let members = Self::member_ids(&mut tx, c.conversation).await?;
            if c.added.iter().any(|(user, _)| !members.contains(user)) {
                return Ok(GroupWrite::Stale(current));
            }
        }
        let devices = Self::devices_in(&mut tx, c.conversation).await?;
        if !devices.contains(&c.sender) && !c.added.contains(&c.sender) {
            return Ok(GroupWrite::NotMember);
        }
        let id = c.conversation.to_string();
        if let Some(admin) = c.admin {
            let role: Option<String> = sqlx::query_scalar(
                "SELECT role FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(&id)
            .bind(admin.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(Store::error)?;
            if role.as_deref() != Some(role_name(Role::Admin)) {
                return Ok(GroupWrite::NotAdmin);
            }
        }
        sqlx::query(
            "UPDATE mls_groups SET epoch = $2, epoch_at = $3, state = $4, group_info = $5, \
             revision = revision + 1 WHERE conversation_id = $1",
        )
        .bind(&id)
        .bind(epoch(c.epoch)?)
        .bind(c.at)
        .bind(c.state)
        .bind(c.group_info)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        let remove = "DELETE FROM mls_group_devices WHERE conversation_id = $1 AND user_id = $2 \
                      AND client_id = $3";
        let add = "INSERT INTO mls_group_devices (conversation_id, user_id, client_id) \
                   VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        for (sql, devices) in [(remove, c.removed), (add, c.added)] {
            for &(user, client) in devices {
                sqlx::query(sql)
                    .bind(&id)
                    .bind(user.to_string())
                    .bind(client_id(client))
                    .execute(&mut *tx)
                    .await
                    .map_err(Store::error)?;
            }
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
        // A device the commit removes and adds again (a fresh leaf for it)
        // gets the welcome, not the commit: one event each, never two.
        let before: Vec<_> = devices
            .into_iter()
            .filter(|d| *d != c.sender && !c.added.contains(d))
            .collect();
        let welcomed: Vec<_> = c.added.iter().copied().filter(|d| *d != c.sender).collect();
        let mut messages = vec![(c.commit, before.as_slice())];
        if let Some(welcome) = c.welcome {
            messages.push((welcome, welcomed.as_slice()));
        }
        let delivered = Self::queue_messages(&mut tx, c.conversation, c.at, &messages).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(GroupWrite::Done(delivered))
    }

    async fn propose_group(&self, p: &GroupProposals<'_>) -> StoreResult<GroupWrite> {
        let (_guard, mut tx) = self.write_tx().await?;
        let (current, revision, _) = Self::lock_group(&mut tx, p.conversation)
            .await?
            .ok_or(StoreError::NotFound)?;
        if (current, revision) != (p.epoch, p.revision) {
            return Ok(GroupWrite::Stale(current));
        }
        let id = p.conversation.to_string();
        let updated = sqlx::query(
            "UPDATE mls_groups SET state = $2, revision = revision + 1 \
             WHERE conversation_id = $1 AND state IS NOT NULL",
        )
        .bind(&id)
        .bind(p.state)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let to = Self::devices_in(&mut tx, p.conversation).await?;
        let messages: Vec<_> = p.proposals.iter().map(|m| (*m, to.as_slice())).collect();
        let delivered = Self::queue_messages(&mut tx, p.conversation, p.at, &messages).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(GroupWrite::Done(delivered))
    }

    async fn post_group_message(
        &self, conversation: ConversationId, epoch: u64, past_epochs: u64,
        sender: (UserId, ClientId), message: SharedMessage<'_>, at: i64,
    ) -> StoreResult<GroupWrite> {
        let (_guard, mut tx) = self.write_tx().await?;
        let (current, _, mixed) = Self::lock_group(&mut tx, conversation)
            .await?
            .ok_or(StoreError::NotFound)?;
        let devices = Self::devices_in(&mut tx, conversation).await?;
        // Membership first: a stranger learns nothing of the group.
        if !devices.contains(&sender) {
            return Ok(GroupWrite::NotMember);
        }
        if mixed {
            return Ok(GroupWrite::Mixed);
        }
        if epoch > current || current - epoch > past_epochs {
            return Ok(GroupWrite::Stale(current));
        }
        let to: Vec<_> = devices.into_iter().filter(|d| *d != sender).collect();
        let delivered = Self::queue_messages(&mut tx, conversation, at, &[(message, &to)]).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(GroupWrite::Done(delivered))
    }
}
