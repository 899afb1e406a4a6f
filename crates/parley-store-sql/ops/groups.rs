//! MLS groups and their messages (`GroupStore`): each message stored once in
//! `mls_messages`, every recipient's queue event referring to it.

use async_trait::async_trait;
use parley_api::{ClientId, ConversationId, Role, UserId};
use parley_store::{
    ConversationRecord, Delivered, GroupCommit, GroupKey, GroupProposals, GroupState, GroupStore,
    GroupWrite, MemberRecord, MlsGroupRecord, Notify, Outgoing, SharedMessage, StoreError,
    StoreResult, SubconversationLeave, with_data,
};

use super::{Store, Tx};
use parley_store_sql::Dialect;
use parley_store_sql::columns::{client_id, parse_client_id, parse_user_id, role as role_name};

/// An `mls_groups` row's head.
type GroupRow = (String, i64, Vec<u8>, i32, i64, i64, bool);

/// A group's [`GroupRow`] (`$1`: the conversation, `$2`: the subconversation).
const GROUP: &str = "SELECT subconversation, generation, group_id, suite, epoch, epoch_at, mixed \
                     FROM mls_groups WHERE conversation_id = $1 AND subconversation = $2";

fn group(conversation: ConversationId, row: GroupRow) -> StoreResult<MlsGroupRecord> {
    let (sub, generation, group_id, suite, epoch, epoch_at, mixed) = row;
    Ok(MlsGroupRecord {
        conversation,
        subconversation: (!sub.is_empty()).then_some(sub),
        generation: u32::try_from(generation)
            .map_err(|_| StoreError::Backend(format!("generation {generation}")))?,
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

    /// Locks the conversation (a subconversation's too); the group's epoch,
    /// state revision and whether it is mixed, if it has the group id
    /// `expected`: `None` without a group, `NotFound` for another id.
    async fn lock_group(
        tx: &mut Tx, group: &GroupKey, expected: Option<&[u8]>,
    ) -> StoreResult<Option<(u64, u64, bool)>> {
        if !Self::lock_conversation(tx, &group.conversation.to_string()).await? {
            return Ok(None);
        }
        let row: Option<(i64, i64, bool, Vec<u8>)> = sqlx::query_as(
            "SELECT epoch, revision, mixed, group_id FROM mls_groups \
             WHERE conversation_id = $1 AND subconversation = $2",
        )
        .bind(group.conversation.to_string())
        .bind(group.sub_name())
        .fetch_optional(&mut **tx)
        .await
        .map_err(Store::error)?;
        let Some((e, r, mixed, id)) = row else {
            return Ok(None);
        };
        if expected.is_some_and(|expected| expected != id) {
            return Err(StoreError::NotFound);
        }
        Ok(Some((read_epoch(e)?, read_epoch(r)?, mixed)))
    }

    /// Starts a subconversation's next generation (see
    /// `GroupStore::reset_subconversation`) under the lock `tx` holds; the
    /// devices the old one had.
    async fn reset_in(
        tx: &mut Tx, key: &GroupKey, next_group_id: &[u8], at: i64,
    ) -> StoreResult<Vec<(UserId, ClientId)>> {
        let devices = Self::devices_in(tx, key).await?;
        let (conversation, sub) = (key.conversation.to_string(), key.sub_name());
        sqlx::query(
            "UPDATE mls_groups SET group_id = $3, generation = generation + 1, epoch = 0, \
             epoch_at = $4, state = NULL, group_info = NULL, revision = 0 \
             WHERE conversation_id = $1 AND subconversation = $2",
        )
        .bind(&conversation)
        .bind(sub)
        .bind(next_group_id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(Store::error)?;
        sqlx::query(
            "DELETE FROM mls_group_devices WHERE conversation_id = $1 AND subconversation = $2",
        )
        .bind(&conversation)
        .bind(sub)
        .execute(&mut **tx)
        .await
        .map_err(Store::error)?;
        Ok(devices)
    }

    /// The group's devices, read inside `tx`, in (user, device) order.
    async fn devices_in(tx: &mut Tx, group: &GroupKey) -> StoreResult<Vec<(UserId, ClientId)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT user_id, client_id FROM mls_group_devices \
             WHERE conversation_id = $1 AND subconversation = $2",
        )
        .bind(group.conversation.to_string())
        .bind(group.sub_name())
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

    /// Adds a group's row (a conversation's own or a subconversation's).
    async fn insert_group(tx: &mut Tx, g: &MlsGroupRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mls_groups (conversation_id, subconversation, generation, group_id, \
             suite, epoch, epoch_at, mixed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(g.conversation.to_string())
        .bind(g.subconversation.as_deref().unwrap_or(""))
        .bind(i64::from(g.generation))
        .bind(&g.group_id)
        .bind(i32::from(g.suite))
        .bind(epoch(g.epoch)?)
        .bind(g.epoch_at)
        .bind(g.mixed)
        .execute(&mut **tx)
        .await
        .map_err(Store::error)?;
        Ok(())
    }

    /// Takes a device out of a group's delivery (`remove`), or puts it in.
    async fn group_device(
        tx: &mut Tx, group: &GroupKey, (user, client): (UserId, ClientId), remove: bool,
    ) -> StoreResult<()> {
        let sql = if remove {
            "DELETE FROM mls_group_devices WHERE conversation_id = $1 AND subconversation = $2 \
             AND user_id = $3 AND client_id = $4"
        } else {
            "INSERT INTO mls_group_devices (conversation_id, subconversation, user_id, client_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        };
        sqlx::query(sql)
            .bind(group.conversation.to_string())
            .bind(group.sub_name())
            .bind(user.to_string())
            .bind(client_id(client))
            .execute(&mut **tx)
            .await
            .map_err(Store::error)?;
        Ok(())
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
        Self::insert_group(&mut tx, g).await?;
        Self::fan_out(&mut tx, &[(creator.user, notify.payload)], None, notify.at).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn start_migration(&self, g: &MlsGroupRecord, notify: Notify<'_>) -> StoreResult<bool> {
        let (_guard, mut tx) = self.write_tx().await?;
        let id = g.conversation.to_string();
        if !Self::lock_conversation(&mut tx, &id).await? {
            return Err(StoreError::NotFound);
        }
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT epoch FROM mls_groups WHERE conversation_id = $1 AND subconversation = ''",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Store::error)?;
        if existing.is_some() {
            return Ok(false);
        }
        Self::insert_group(
            &mut tx,
            &MlsGroupRecord {
                mixed: true,
                ..g.clone()
            },
        )
        .await?;
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
             WHERE conversation_id = $1 AND subconversation = '' AND mixed",
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

    async fn mls_group(&self, key: &GroupKey) -> StoreResult<Option<MlsGroupRecord>> {
        let row: Option<GroupRow> = sqlx::query_as(GROUP)
            .bind(key.conversation.to_string())
            .bind(key.sub_name())
            .fetch_optional(self.pool())
            .await
            .map_err(Store::error)?;
        row.map(|r| group(key.conversation, r)).transpose()
    }

    async fn subconversations(
        &self, conversation: ConversationId,
    ) -> StoreResult<Vec<MlsGroupRecord>> {
        let rows: Vec<GroupRow> = sqlx::query_as(
            "SELECT subconversation, generation, group_id, suite, epoch, epoch_at, mixed \
             FROM mls_groups WHERE conversation_id = $1 AND subconversation <> '' \
             ORDER BY subconversation",
        )
        .bind(conversation.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(Store::error)?;
        rows.into_iter().map(|r| group(conversation, r)).collect()
    }

    async fn open_subconversation(&self, g: &MlsGroupRecord) -> StoreResult<MlsGroupRecord> {
        let key = g.key();
        let (_guard, mut tx) = self.write_tx().await?;
        if !Self::lock_conversation(&mut tx, &g.conversation.to_string()).await? {
            return Err(StoreError::NotFound);
        }
        // (Read and written under the conversation's lock.)
        let open: Option<GroupRow> = sqlx::query_as(GROUP)
            .bind(g.conversation.to_string())
            .bind(key.sub_name())
            .fetch_optional(&mut *tx)
            .await
            .map_err(Store::error)?;
        if let Some(row) = open {
            return group(g.conversation, row);
        }
        Self::insert_group(&mut tx, g).await?;
        let row: GroupRow = sqlx::query_as(GROUP)
            .bind(g.conversation.to_string())
            .bind(key.sub_name())
            .fetch_one(&mut *tx)
            .await
            .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)?;
        group(g.conversation, row)
    }

    async fn reset_subconversation(
        &self, key: &GroupKey, (group_id, at_epoch): (&[u8], u64), next_group_id: &[u8],
        notify: Notify<'_>,
    ) -> StoreResult<Option<Vec<Delivered>>> {
        if key.subconversation.is_none() {
            return Ok(None);
        }
        let (_guard, mut tx) = self.write_tx().await?;
        match Self::lock_group(&mut tx, key, Some(group_id)).await {
            Ok(Some((epoch, _, _))) if epoch == at_epoch => {}
            Ok(_) | Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        }
        let devices = Self::reset_in(&mut tx, key, next_group_id, notify.at).await?;
        let outgoing = devices
            .into_iter()
            .map(|(user, client)| Outgoing {
                user,
                client,
                payload: notify.payload.to_owned(),
            })
            .collect();
        let delivered = Store::enqueue_many(&mut tx, outgoing, &[], notify.at).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(Some(delivered))
    }

    async fn leave_subconversation(
        &self, key: &GroupKey, device: (UserId, ClientId), next_group_id: &[u8], at: i64,
    ) -> StoreResult<SubconversationLeave> {
        if key.subconversation.is_none() {
            return Err(StoreError::NotFound);
        }
        let (_guard, mut tx) = self.write_tx().await?;
        if Self::lock_group(&mut tx, key, None).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        let devices = Self::devices_in(&mut tx, key).await?;
        if !devices.contains(&device) {
            return Ok(SubconversationLeave::NotIn);
        }
        let left = if devices.len() > 1 {
            Self::group_device(&mut tx, key, device, true).await?;
            SubconversationLeave::Left
        } else {
            Self::reset_in(&mut tx, key, next_group_id, at).await?;
            SubconversationLeave::Ended
        };
        tx.commit().await.map_err(Store::error)?;
        Ok(left)
    }

    async fn mls_group_state(&self, key: &GroupKey) -> StoreResult<Option<GroupState>> {
        let row: Option<(i64, i64, Option<Vec<u8>>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT epoch, revision, state, group_info FROM mls_groups \
             WHERE conversation_id = $1 AND subconversation = $2",
        )
        .bind(key.conversation.to_string())
        .bind(key.sub_name())
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

    async fn group_devices(&self, key: &GroupKey) -> StoreResult<Vec<(UserId, ClientId)>> {
        let mut tx = self.pool().begin().await.map_err(Store::error)?;
        Self::devices_in(&mut tx, key).await
    }

    async fn commit_group(&self, c: &GroupCommit<'_>) -> StoreResult<GroupWrite> {
        let (_guard, mut tx) = self.write_tx().await?;
        let (current, revision, mixed) = Self::lock_group(&mut tx, &c.group, Some(c.group_id))
            .await?
            .ok_or(StoreError::NotFound)?;
        if (current, revision) != (c.from_epoch, c.from_revision) {
            return Ok(GroupWrite::Stale(current));
        }
        if mixed {
            // Members change the Proteus way: a user removed since the
            // commit was checked is not brought back into the group.
            let members = Self::member_ids(&mut tx, c.group.conversation).await?;
            if c.added.iter().any(|(user, _)| !members.contains(user)) {
                return Ok(GroupWrite::Stale(current));
            }
        }
        let devices = Self::devices_in(&mut tx, &c.group).await?;
        if !devices.contains(&c.sender) && !c.added.contains(&c.sender) {
            return Ok(GroupWrite::NotMember);
        }
        // A call is its conversation's members'.
        if c.group.subconversation.is_some()
            && !Self::member_ids(&mut tx, c.group.conversation)
                .await?
                .contains(&c.sender.0)
        {
            return Ok(GroupWrite::NotMember);
        }
        let id = c.group.conversation.to_string();
        let sub = c.group.sub_name();
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
             revision = revision + 1 WHERE conversation_id = $1 AND subconversation = $6",
        )
        .bind(&id)
        .bind(epoch(c.epoch)?)
        .bind(c.at)
        .bind(c.state)
        .bind(c.group_info)
        .bind(sub)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        for (remove, devices) in [(true, c.removed), (false, c.added)] {
            for &(user, client) in devices {
                Self::group_device(&mut tx, &c.group, (user, client), remove).await?;
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
        Self::insert_members(&mut tx, c.group.conversation, c.join).await?;
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
        let delivered =
            Self::queue_messages(&mut tx, c.group.conversation, c.at, &messages).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(GroupWrite::Done(delivered))
    }

    async fn propose_group(&self, p: &GroupProposals<'_>) -> StoreResult<GroupWrite> {
        let (_guard, mut tx) = self.write_tx().await?;
        let (current, revision, _) = Self::lock_group(&mut tx, &p.group, Some(p.group_id))
            .await?
            .ok_or(StoreError::NotFound)?;
        if (current, revision) != (p.epoch, p.revision) {
            return Ok(GroupWrite::Stale(current));
        }
        let updated = sqlx::query(
            "UPDATE mls_groups SET state = $2, revision = revision + 1 \
             WHERE conversation_id = $1 AND subconversation = $3 AND state IS NOT NULL",
        )
        .bind(p.group.conversation.to_string())
        .bind(p.state)
        .bind(p.group.sub_name())
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let to = Self::devices_in(&mut tx, &p.group).await?;
        let messages: Vec<_> = p.proposals.iter().map(|m| (*m, to.as_slice())).collect();
        let delivered =
            Self::queue_messages(&mut tx, p.group.conversation, p.at, &messages).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(GroupWrite::Done(delivered))
    }

    async fn post_group_message(
        &self, (group, group_id): (&GroupKey, &[u8]), epoch: u64, past_epochs: u64,
        sender: (UserId, ClientId), message: SharedMessage<'_>, at: i64,
    ) -> StoreResult<GroupWrite> {
        let (_guard, mut tx) = self.write_tx().await?;
        let (current, _, mixed) = Self::lock_group(&mut tx, group, Some(group_id))
            .await?
            .ok_or(StoreError::NotFound)?;
        let devices = Self::devices_in(&mut tx, group).await?;
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
        let delivered =
            Self::queue_messages(&mut tx, group.conversation, at, &[(message, &to)]).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(GroupWrite::Done(delivered))
    }
}
