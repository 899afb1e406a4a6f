//! The model of [`GroupStore`]: a conversation's group beside it, and each
//! shared message written into every recipient's queue with its data (the
//! SQL backends store it once; what a device reads is the same).

use std::collections::BTreeSet;

use async_trait::async_trait;
use parley_api::{ClientId, ConversationId, UserId};

use super::{MemoryStore, State};
use crate::{
    ConversationRecord, Delivered, GroupCommit, GroupKey, GroupProposals, GroupState, GroupStore,
    GroupWrite, MemberRecord, MlsGroupRecord, Notify, SharedMessage, StoreError, StoreResult,
    SubconversationLeave, with_data,
};

impl State {
    /// Starts a subconversation's next generation (see
    /// [`GroupStore::reset_subconversation`]); the devices the old one had.
    fn reset(
        &mut self, group: &GroupKey, next_group_id: &[u8], at: i64,
    ) -> Vec<(UserId, ClientId)> {
        if let Some(record) = self.groups.get_mut(group) {
            record.group_id = next_group_id.to_vec();
            record.generation += 1;
            record.epoch = 0;
            record.epoch_at = at;
        }
        self.group_states.remove(group);
        self.group_devices
            .insert(group.clone(), BTreeSet::new())
            .map(|d| d.into_iter().collect())
            .unwrap_or_default()
    }

    /// Queues a shared message for `devices` (those still there), in order.
    fn enqueue_shared(
        &mut self, devices: &[(UserId, ClientId)], message: SharedMessage<'_>, at: i64,
    ) -> Vec<Delivered> {
        let payload: std::sync::Arc<str> = with_data(message.payload, message.data).into();
        devices
            .iter()
            .filter_map(|&(user, client)| {
                let id = self.enqueue(user, client, &payload, at)?;
                Some(Delivered {
                    user,
                    client,
                    id,
                    payload: payload.clone(),
                })
            })
            .collect()
    }
}

#[async_trait]
impl GroupStore for MemoryStore {
    async fn create_mls_conversation(
        &self, conversation: &ConversationRecord, creator: MemberRecord, group: &MlsGroupRecord,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        self.with(|s| {
            if s.groups.values().any(|g| g.group_id == group.group_id) {
                return Err(StoreError::Conflict("mls-group"));
            }
            s.check_new_conversation(conversation, &[creator])?;
            s.insert_conversation(conversation, &[creator]);
            s.groups
                .insert(GroupKey::of(conversation.id), group.clone());
            s.group_devices
                .insert(GroupKey::of(conversation.id), BTreeSet::new());
            s.enqueue_for_user(creator.user, None, notify);
            Ok(())
        })
    }

    async fn start_migration(
        &self, group: &MlsGroupRecord, notify: Notify<'_>,
    ) -> StoreResult<bool> {
        self.with(|s| {
            if !s.conversations.contains_key(&group.conversation) {
                return Err(StoreError::NotFound);
            }
            let key = GroupKey::of(group.conversation);
            if s.groups.contains_key(&key) {
                return Ok(false);
            }
            if s.groups.values().any(|g| g.group_id == group.group_id) {
                return Err(StoreError::Conflict("mls-group"));
            }
            s.groups.insert(key.clone(), group.clone());
            s.group_devices.insert(key, BTreeSet::new());
            for user in s.member_ids(group.conversation) {
                s.enqueue_for_user(user, None, notify);
            }
            Ok(true)
        })
    }

    async fn finish_migration(
        &self, conversation: ConversationId, notify: Notify<'_>,
    ) -> StoreResult<bool> {
        self.with(|s| {
            let key = GroupKey::of(conversation);
            match s.groups.get_mut(&key) {
                Some(group) if group.mixed => group.mixed = false,
                _ => return Ok(false),
            }
            if let Some(state) = s.group_states.get_mut(&key) {
                state.revision += 1;
            }
            for user in s.member_ids(conversation) {
                s.enqueue_for_user(user, None, notify);
            }
            Ok(true)
        })
    }

    async fn mls_group(&self, group: &GroupKey) -> StoreResult<Option<MlsGroupRecord>> {
        self.with(|s| Ok(s.groups.get(group).cloned()))
    }

    async fn mls_group_state(&self, group: &GroupKey) -> StoreResult<Option<GroupState>> {
        self.with(|s| Ok(s.group_states.get(group).cloned()))
    }

    async fn group_devices(&self, group: &GroupKey) -> StoreResult<Vec<(UserId, ClientId)>> {
        self.with(|s| {
            Ok(s.group_devices
                .get(group)
                .map(|d| d.iter().copied().collect())
                .unwrap_or_default())
        })
    }

    async fn subconversations(
        &self, conversation: ConversationId,
    ) -> StoreResult<Vec<MlsGroupRecord>> {
        self.with(|s| {
            Ok(s.groups
                .iter()
                .filter(|(key, _)| {
                    key.conversation == conversation && key.subconversation.is_some()
                })
                .map(|(_, g)| g.clone())
                .collect())
        })
    }

    async fn open_subconversation(&self, group: &MlsGroupRecord) -> StoreResult<MlsGroupRecord> {
        self.with(|s| {
            if !s.conversations.contains_key(&group.conversation) {
                return Err(StoreError::NotFound);
            }
            let key = group.key();
            if let Some(open) = s.groups.get(&key) {
                return Ok(open.clone());
            }
            if s.groups.values().any(|g| g.group_id == group.group_id) {
                return Err(StoreError::Conflict("mls-group"));
            }
            s.groups.insert(key.clone(), group.clone());
            s.group_devices.insert(key, BTreeSet::new());
            Ok(group.clone())
        })
    }

    async fn reset_subconversation(
        &self, group: &GroupKey, (group_id, epoch): (&[u8], u64), next_group_id: &[u8],
        notify: Notify<'_>,
    ) -> StoreResult<Option<Vec<Delivered>>> {
        self.with(|s| {
            let matches = s.groups.get(group).is_some_and(|record| {
                record.subconversation.is_some()
                    && record.group_id == group_id
                    && record.epoch == epoch
            });
            if !matches {
                return Ok(None);
            }
            let devices = s.reset(group, next_group_id, notify.at);
            let payload: std::sync::Arc<str> = notify.payload.into();
            Ok(Some(
                devices
                    .into_iter()
                    .filter_map(|(user, client)| {
                        let id = s.enqueue(user, client, &payload, notify.at)?;
                        Some(Delivered {
                            user,
                            client,
                            id,
                            payload: payload.clone(),
                        })
                    })
                    .collect(),
            ))
        })
    }

    async fn leave_subconversation(
        &self, group: &GroupKey, device: (UserId, ClientId), next_group_id: &[u8], at: i64,
    ) -> StoreResult<SubconversationLeave> {
        self.with(|s| {
            if s.groups
                .get(group)
                .is_none_or(|g| g.subconversation.is_none())
            {
                return Err(StoreError::NotFound);
            }
            let in_group = s.group_devices.entry(group.clone()).or_default();
            if !in_group.contains(&device) {
                return Ok(SubconversationLeave::NotIn);
            }
            if in_group.len() > 1 {
                in_group.remove(&device);
                return Ok(SubconversationLeave::Left);
            }
            s.reset(group, next_group_id, at);
            Ok(SubconversationLeave::Ended)
        })
    }

    async fn commit_group(&self, commit: &GroupCommit<'_>) -> StoreResult<GroupWrite> {
        self.with(|s| {
            let group = s
                .groups
                .get(&commit.group)
                .filter(|g| g.group_id == commit.group_id)
                .ok_or(StoreError::NotFound)?;
            let revision = s
                .group_states
                .get(&commit.group)
                .map_or(0, |st| st.revision);
            if (group.epoch, revision) != (commit.from_epoch, commit.from_revision) {
                return Ok(GroupWrite::Stale(group.epoch));
            }
            let members = s.member_ids(commit.group.conversation);
            if group.mixed && commit.added.iter().any(|(user, _)| !members.contains(user)) {
                return Ok(GroupWrite::Stale(group.epoch));
            }
            let devices = s
                .group_devices
                .get(&commit.group)
                .cloned()
                .unwrap_or_default();
            if !devices.contains(&commit.sender) && !commit.added.contains(&commit.sender) {
                return Ok(GroupWrite::NotMember);
            }
            // A call is its conversation's members'.
            if commit.group.subconversation.is_some() && !members.contains(&commit.sender.0) {
                return Ok(GroupWrite::NotMember);
            }
            if let Some(admin) = commit.admin {
                let role = s
                    .conversations
                    .get(&commit.group.conversation)
                    .and_then(|c| c.members.get(&admin).copied());
                if role != Some(parley_api::Role::Admin) {
                    return Ok(GroupWrite::NotAdmin);
                }
            }
            if !commit.join.iter().all(|m| s.user_exists(m.user)) {
                return Err(StoreError::NotFound);
            }
            let before: Vec<_> = devices
                .iter()
                .copied()
                .filter(|d| *d != commit.sender && !commit.added.contains(d))
                .collect();
            let group = s.groups.get_mut(&commit.group).expect("checked above");
            group.epoch = commit.epoch;
            group.epoch_at = commit.at;
            s.group_states.insert(
                commit.group.clone(),
                GroupState {
                    epoch: commit.epoch,
                    revision: commit.from_revision + 1,
                    state: commit.state.to_vec(),
                    group_info: commit.group_info.to_vec(),
                },
            );
            let row = s
                .conversations
                .get_mut(&commit.group.conversation)
                .expect("a group's conversation exists");
            for user in commit.leave {
                row.members.remove(user);
            }
            for m in commit.join {
                row.members.entry(m.user).or_insert(m.role);
            }
            let in_group = s.group_devices.entry(commit.group.clone()).or_default();
            for d in commit.removed {
                in_group.remove(d);
            }
            in_group.extend(commit.added.iter().copied());
            let mut delivered = s.enqueue_shared(&before, commit.commit, commit.at);
            if let Some(welcome) = commit.welcome {
                let to: Vec<_> = commit
                    .added
                    .iter()
                    .copied()
                    .filter(|d| *d != commit.sender)
                    .collect();
                delivered.extend(s.enqueue_shared(&to, welcome, commit.at));
            }
            Ok(GroupWrite::Done(delivered))
        })
    }

    async fn propose_group(&self, p: &GroupProposals<'_>) -> StoreResult<GroupWrite> {
        self.with(|s| {
            let current = s
                .groups
                .get(&p.group)
                .filter(|g| g.group_id == p.group_id)
                .ok_or(StoreError::NotFound)?
                .epoch;
            let state = s
                .group_states
                .get_mut(&p.group)
                .ok_or(StoreError::NotFound)?;
            if (current, state.revision) != (p.epoch, p.revision) {
                return Ok(GroupWrite::Stale(current));
            }
            state.state = p.state.to_vec();
            state.revision += 1;
            let to: Vec<_> = s
                .group_devices
                .get(&p.group)
                .map(|d| d.iter().copied().collect())
                .unwrap_or_default();
            let mut delivered = Vec::new();
            for message in p.proposals {
                delivered.extend(s.enqueue_shared(&to, *message, p.at));
            }
            Ok(GroupWrite::Done(delivered))
        })
    }

    async fn post_group_message(
        &self, (key, group_id): (&GroupKey, &[u8]), epoch: u64, past_epochs: u64,
        sender: (UserId, ClientId), message: SharedMessage<'_>, at: i64,
    ) -> StoreResult<GroupWrite> {
        self.with(|s| {
            let group = s
                .groups
                .get(key)
                .filter(|g| g.group_id == group_id)
                .ok_or(StoreError::NotFound)?;
            let (current, mixed) = (group.epoch, group.mixed);
            let devices = s.group_devices.get(key).cloned().unwrap_or_default();
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
            Ok(GroupWrite::Done(s.enqueue_shared(&to, message, at)))
        })
    }
}
