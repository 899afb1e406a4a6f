//! Connections, conversations with their members, rosters and message delivery,
//! in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use async_trait::async_trait;
use parley_api::{ConnectionStatus, ConversationId, UserId};

use super::{ConversationRow, MemoryStore, State, stored_conversation, stored_timer};
use crate::{
    ConnectionChange, ConnectionRecord, ConnectionStore, ConversationChange, ConversationRecord,
    ConversationStore, Delivered, DeliveryPlan, MemberRecord, Notify, Posted, Roster, StoreError,
    StoreResult,
};

impl State {
    /// Whether a conversation with these members could be inserted: `Conflict`
    /// for a taken id, `NotFound` for a member who does not exist.
    pub(super) fn check_new_conversation(
        &self, conversation: &ConversationRecord, members: &[MemberRecord],
    ) -> StoreResult<()> {
        if self.conversations.contains_key(&conversation.id) {
            return Err(StoreError::Conflict("record"));
        }
        self.check_users(members)
    }

    /// `NotFound` if a member does not exist (a member row needs its user).
    fn check_users(&self, members: &[MemberRecord]) -> StoreResult<()> {
        if members.iter().all(|m| self.user_exists(m.user)) {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// Inserts a conversation checked by [`State::check_new_conversation`]; a
    /// member named twice keeps the first role.
    pub(super) fn insert_conversation(
        &mut self, conversation: &ConversationRecord, members: &[MemberRecord],
    ) {
        let mut row = ConversationRow {
            record: stored_conversation(conversation),
            members: BTreeMap::new(),
        };
        for m in members {
            row.members.entry(m.user).or_insert(m.role);
        }
        self.conversations.insert(conversation.id, row);
    }

    fn change_connection(&mut self, change: &ConnectionChange) -> StoreResult<()> {
        // Every side as expected, or nothing is written.
        for (side, expected) in &change.sides {
            let now = self
                .connections
                .get(&(side.from, side.to))
                .map(|c| c.status);
            if now != *expected {
                return Err(StoreError::Conflict("connection"));
            }
        }
        if let Some((conversation, members)) = &change.conversation {
            self.check_new_conversation(conversation, members)?;
        }
        // A side that is new needs both its users (one that exists has them).
        if change
            .sides
            .iter()
            .any(|(side, _)| !(self.user_exists(side.from) && self.user_exists(side.to)))
        {
            return Err(StoreError::NotFound);
        }
        if let Some((conversation, members)) = &change.conversation {
            self.insert_conversation(conversation, members);
        }
        for (side, _) in &change.sides {
            self.connections.insert((side.from, side.to), side.clone());
        }
        // One event per device of each user named, with the first payload named
        // for them (as the SQL backends' one fan-out does).
        let mut told: BTreeMap<UserId, &str> = BTreeMap::new();
        for (user, payload) in &change.notify {
            told.entry(*user).or_insert(payload.as_str());
        }
        for (user, payload) in told {
            let notify = Notify {
                payload,
                at: change.at,
            };
            self.enqueue_for_user(user, None, notify);
        }
        Ok(())
    }

    fn change_conversation(
        &mut self, id: ConversationId, change: &ConversationChange, notify: Notify<'_>,
    ) -> StoreResult<()> {
        if !self.conversations.contains_key(&id) {
            return Err(StoreError::NotFound);
        }
        // Told: the members before the change (so a removed one learns it), or
        // after it when members are added.
        let mut told = self.member_ids(id);
        if let ConversationChange::AddMembers { members, .. } = change {
            self.check_users(members)?;
        }
        let Some(row) = self.conversations.get_mut(&id) else {
            return Err(StoreError::NotFound);
        };
        match change {
            ConversationChange::AddMembers { members, max } => {
                let mut after = row.members.clone();
                for m in members {
                    after.entry(m.user).or_insert(m.role);
                }
                if after.len() > *max {
                    return Err(StoreError::Limit("members"));
                }
                told = after.keys().copied().collect();
                row.members = after;
            }
            ConversationChange::RemoveMember(user) => {
                if row.members.remove(user).is_none() {
                    return Err(StoreError::NotFound);
                }
                // As in SQL: out of the delivery of the conversation's
                // groups (its subconversations' too), their revisions moved.
                for (_, devices) in self
                    .group_devices
                    .iter_mut()
                    .filter(|(key, _)| key.conversation == id)
                {
                    devices.retain(|(u, _)| u != user);
                }
                for (_, state) in self
                    .group_states
                    .iter_mut()
                    .filter(|(key, _)| key.conversation == id)
                {
                    state.revision += 1;
                }
            }
            ConversationChange::SetRole(member) => {
                let Some(role) = row.members.get_mut(&member.user) else {
                    return Err(StoreError::NotFound);
                };
                *role = member.role;
            }
            ConversationChange::Rename(name) => row.record.name = Some(name.clone()),
            ConversationChange::MessageTimer(ms) => row.record.message_timer = stored_timer(*ms),
            ConversationChange::ReceiptMode(mode) => row.record.receipt_mode = *mode,
        }
        for user in told {
            self.enqueue_for_user(user, None, notify);
        }
        Ok(())
    }

    fn post(
        &mut self, id: ConversationId, at: i64, plan: &DeliveryPlan,
    ) -> StoreResult<Option<Posted>> {
        if !self.conversations.contains_key(&id) {
            return Ok(None);
        }
        let roster = self.roster(id);
        // A plan that panics fails its own delivery, as on SQLite (and leaves the
        // lock unpoisoned: the panic never leaves this frame).
        let planned = catch_unwind(AssertUnwindSafe(|| plan(&roster)))
            .map_err(|_| StoreError::Backend("the delivery plan panicked".into()))?;
        let Some(outgoing) = planned else {
            return Ok(Some(Posted {
                roster,
                delivered: None,
            }));
        };
        // Two events for one device would share an id: the queue's primary key
        // refuses the whole delivery.
        let mut seen = BTreeSet::new();
        for o in &outgoing {
            if self.clients.contains_key(&(o.user, o.client)) && !seen.insert((o.user, o.client)) {
                return Err(StoreError::Conflict("record"));
            }
        }
        let mut delivered = Vec::with_capacity(outgoing.len());
        for o in outgoing {
            // A device that is gone gets none.
            if let Some(event) = self.enqueue(o.user, o.client, &o.payload, at) {
                delivered.push(Delivered {
                    user: o.user,
                    client: o.client,
                    id: event,
                    payload: o.payload.into(),
                });
            }
        }
        Ok(Some(Posted {
            roster,
            delivered: Some(delivered),
        }))
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn connection(&self, from: UserId, to: UserId) -> StoreResult<Option<ConnectionRecord>> {
        self.with(|s| Ok(s.connections.get(&(from, to)).cloned()))
    }

    async fn connections(&self, from: UserId) -> StoreResult<Vec<ConnectionRecord>> {
        self.with(|s| {
            let mut sides: Vec<ConnectionRecord> = s
                .connections
                .iter()
                .filter(|((f, _), _)| *f == from)
                .map(|(_, c)| c.clone())
                .collect();
            // Most recently changed first (updated_at DESC, to_id).
            sides.sort_by_key(|c| (std::cmp::Reverse(c.updated_at), c.to));
            Ok(sides)
        })
    }

    async fn blocks_involving(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        self.with(|s| {
            // A UNION: each user once, in id order.
            let blocked: BTreeSet<UserId> = s
                .connections
                .values()
                .filter(|c| c.status == ConnectionStatus::Blocked)
                .filter_map(|c| {
                    if c.from == user {
                        Some(c.to)
                    } else if c.to == user {
                        Some(c.from)
                    } else {
                        None
                    }
                })
                .collect();
            Ok(blocked.into_iter().collect::<Vec<_>>())
        })
    }

    async fn share_conversation(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        self.with(|s| {
            Ok(s.conversations
                .values()
                .any(|c| c.members.contains_key(&a) && c.members.contains_key(&b)))
        })
    }

    async fn change_connection(&self, change: &ConnectionChange) -> StoreResult<()> {
        self.with(|s| s.change_connection(change))
    }
}

#[async_trait]
impl ConversationStore for MemoryStore {
    async fn create_conversation(
        &self, conversation: &ConversationRecord, members: &[MemberRecord], notify: Notify<'_>,
    ) -> StoreResult<()> {
        self.with(|s| {
            s.check_new_conversation(conversation, members)?;
            s.insert_conversation(conversation, members);
            for user in s.member_ids(conversation.id) {
                s.enqueue_for_user(user, None, notify);
            }
            Ok(())
        })
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>> {
        self.with(|s| Ok(s.conversations.get(&id).map(|c| c.record.clone())))
    }

    async fn members(&self, id: ConversationId) -> StoreResult<Vec<MemberRecord>> {
        self.with(|s| {
            Ok(s.conversations
                .get(&id)
                .map(|c| {
                    c.members
                        .iter()
                        .map(|(user, role)| MemberRecord {
                            user: *user,
                            role: *role,
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default())
        })
    }

    async fn conversations_of(
        &self, user: UserId, after: Option<ConversationId>, limit: usize,
    ) -> StoreResult<Vec<ConversationRecord>> {
        self.with(|s| {
            // In id order, which is the order of the ids' text (see `ConversationRow`).
            Ok(s.conversations
                .iter()
                .filter(|(id, _)| after.is_none_or(|a| **id > a))
                .filter(|(_, c)| c.members.contains_key(&user))
                .take(limit)
                .map(|(_, c)| c.record.clone())
                .collect::<Vec<_>>())
        })
    }

    async fn change_conversation(
        &self, id: ConversationId, change: &ConversationChange, notify: Notify<'_>,
    ) -> StoreResult<()> {
        self.with(|s| s.change_conversation(id, change, notify))
    }

    async fn roster(&self, id: ConversationId) -> StoreResult<Option<Roster>> {
        self.with(|s| Ok(s.conversations.contains_key(&id).then(|| s.roster(id))))
    }

    async fn post(
        &self, id: ConversationId, at: i64, plan: DeliveryPlan,
    ) -> StoreResult<Option<Posted>> {
        self.with(|s| s.post(id, at, &plan))
    }
}
