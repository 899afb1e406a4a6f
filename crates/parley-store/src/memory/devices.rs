//! Devices (registration and removal, prekeys, send generations, push
//! endpoints) and their event queues, in memory.

use std::ops::Bound;

use async_trait::async_trait;
use parley_api::{ClientId, ClientType, UserId};

use super::{ClientRow, LAST_RESORT, MemoryStore, Queue, State, missing_parent};
use crate::{
    AddedClient, ClientRecord, DeviceStore, EventPage, Notify, PrekeyRecord, QueuePosition,
    QueueStore, QueuedEvent, StoreError, StoreResult,
};

impl State {
    fn add_client(
        &mut self, c: &ClientRecord, prekeys: &[PrekeyRecord], max_permanent: usize,
        notify: Notify<'_>,
    ) -> StoreResult<AddedClient> {
        let replaced = match c.kind {
            ClientType::Permanent => {
                let permanent = self
                    .clients
                    .iter()
                    .filter(|((u, _), row)| {
                        *u == c.user && row.record.kind == ClientType::Permanent
                    })
                    .count();
                if permanent >= max_permanent {
                    return Err(StoreError::TooManyClients);
                }
                None
            }
            ClientType::Temporary => self.temporary_device(c.user),
        };
        // The insert's refusals, checked before the old temporary device goes.
        if !self.user_exists(c.user) {
            return Err(missing_parent());
        }
        if self.clients.contains_key(&(c.user, c.id)) && replaced != Some(c.id) {
            return Err(StoreError::Conflict("record"));
        }
        if let Some(old) = replaced {
            self.remove_client(c.user, old);
        }
        let seq = self.next_seq();
        let mut row = ClientRow {
            record: c.clone(),
            seq,
            generation: 0,
            prekeys: Default::default(),
            push_endpoint: None,
            queue: Queue::default(),
            mls_keys: Default::default(),
        };
        for p in prekeys {
            row.prekeys.insert(p.id, p.key.clone());
        }
        self.clients.insert((c.user, c.id), row);
        self.enqueue_for_user(c.user, Some(c.id), notify);
        Ok(AddedClient { replaced })
    }

    fn client_mut(&mut self, user: UserId, id: ClientId) -> StoreResult<&mut ClientRow> {
        self.clients
            .get_mut(&(user, id))
            .ok_or(StoreError::NotFound)
    }

    fn claim_prekey(
        &mut self, user: UserId, client: ClientId, one_time: bool,
    ) -> Option<PrekeyRecord> {
        let row = self.clients.get_mut(&(user, client))?;
        if one_time {
            // The lowest id first, as `ORDER BY id LIMIT 1` picks it.
            let lowest = row.prekeys.keys().copied().find(|id| *id != LAST_RESORT);
            if let Some((id, key)) = lowest.and_then(|id| row.prekeys.remove_entry(&id)) {
                return Some(PrekeyRecord { id, key });
            }
        }
        row.prekeys.get(&LAST_RESORT).map(|key| PrekeyRecord {
            id: LAST_RESORT,
            key: key.clone(),
        })
    }

    fn events(
        &self, user: UserId, client: ClientId, since: Option<u64>, limit: usize,
    ) -> Option<EventPage> {
        let queue = &self.clients.get(&(user, client))?.queue;
        let QueuePosition { after, lost } =
            QueuePosition::of(since, queue.purged_before, queue.next_id);
        // One more than asked for tells whether more follow.
        let mut events: Vec<QueuedEvent> = queue
            .events
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit.saturating_add(1))
            .map(|(_, e)| e.clone())
            .collect();
        let has_more = events.len() > limit;
        events.truncate(limit);
        Some(EventPage {
            events,
            has_more,
            lost,
        })
    }

    /// Deletes every event created before `before`; a queue that lost events
    /// has `purged_before` raised past the newest one it lost.
    fn purge_events(&mut self, before: i64) -> u64 {
        let mut purged = 0u64;
        for row in self.clients.values_mut() {
            let queue = &mut row.queue;
            let gone: Vec<_> = queue
                .events
                .iter()
                .filter(|(_, e)| e.created_at < before)
                .map(|(id, _)| *id)
                .collect();
            // Everything up to the newest event purged counts as purged: a
            // cursor before it has missed something, even if older events
            // are still there.
            if let Some(last) = gone.last() {
                queue.purged_before = queue.purged_before.max(*last + 1);
            }
            for id in &gone {
                queue.events.remove(id);
            }
            purged += u64::try_from(gone.len()).unwrap_or(u64::MAX);
        }
        purged
    }
}

#[async_trait]
impl DeviceStore for MemoryStore {
    async fn add_client(
        &self, client: &ClientRecord, prekeys: &[PrekeyRecord], max_permanent: usize,
        notify: Notify<'_>,
    ) -> StoreResult<AddedClient> {
        self.with(|s| s.add_client(client, prekeys, max_permanent, notify))
    }

    async fn clients(&self, user: UserId) -> StoreResult<Vec<ClientRecord>> {
        self.with(|s| {
            let mut rows: Vec<&ClientRow> = s
                .clients
                .iter()
                .filter(|((u, _), _)| *u == user)
                .map(|(_, row)| row)
                .collect();
            // Oldest first (created_at, rowid).
            rows.sort_by_key(|r| (r.record.created_at, r.seq));
            Ok(rows
                .into_iter()
                .map(|r| r.record.clone())
                .collect::<Vec<_>>())
        })
    }

    async fn client(&self, user: UserId, id: ClientId) -> StoreResult<Option<ClientRecord>> {
        self.with(|s| Ok(s.clients.get(&(user, id)).map(|r| r.record.clone())))
    }

    async fn delete_client(
        &self, user: UserId, id: ClientId, notify: Notify<'_>,
    ) -> StoreResult<()> {
        self.with(|s| {
            if !s.remove_client(user, id) {
                return Err(StoreError::NotFound);
            }
            s.enqueue_for_user(user, None, notify);
            Ok(())
        })
    }

    async fn add_prekeys(
        &self, user: UserId, client: ClientId, prekeys: &[PrekeyRecord],
    ) -> StoreResult<()> {
        self.with(|s| {
            let row = s.client_mut(user, client)?;
            for p in prekeys {
                row.prekeys.insert(p.id, p.key.clone());
            }
            Ok(())
        })
    }

    async fn count_prekeys(&self, user: UserId, client: ClientId) -> StoreResult<u64> {
        self.with(|s| {
            let n = s.clients.get(&(user, client)).map_or(0, |r| {
                r.prekeys.keys().filter(|id| **id != LAST_RESORT).count()
            });
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }

    async fn raise_generation(
        &self, user: UserId, client: ClientId, generation: u64,
    ) -> StoreResult<Option<u64>> {
        self.with(|s| {
            let Some(row) = s.clients.get_mut(&(user, client)) else {
                return Ok(None);
            };
            let wanted = i64::try_from(generation).unwrap_or(i64::MAX);
            row.generation = row.generation.max(wanted);
            Ok(Some(u64::try_from(row.generation).unwrap_or(0)))
        })
    }

    async fn claim_prekey(
        &self, user: UserId, client: ClientId, one_time: bool,
    ) -> StoreResult<Option<PrekeyRecord>> {
        self.with(|s| Ok(s.claim_prekey(user, client, one_time)))
    }

    async fn set_push_endpoint(
        &self, user: UserId, client: ClientId, url: Option<&str>,
    ) -> StoreResult<()> {
        self.with(|s| {
            s.client_mut(user, client)?.push_endpoint = url.map(str::to_owned);
            Ok(())
        })
    }

    async fn push_endpoints(
        &self, devices: &[(UserId, ClientId)],
    ) -> StoreResult<Vec<(UserId, ClientId, String)>> {
        self.with(|s| {
            Ok(devices
                .iter()
                .filter_map(|&(user, client)| {
                    let url = s.clients.get(&(user, client))?.push_endpoint.clone()?;
                    Some((user, client, url))
                })
                .collect())
        })
    }
}

#[async_trait]
impl QueueStore for MemoryStore {
    async fn events(
        &self, user: UserId, client: ClientId, since: Option<u64>, limit: usize,
    ) -> StoreResult<Option<EventPage>> {
        self.with(|s| Ok(s.events(user, client, since, limit)))
    }

    async fn last_event(&self, user: UserId, client: ClientId) -> StoreResult<Option<QueuedEvent>> {
        self.with(|s| {
            Ok(s.clients
                .get(&(user, client))
                .and_then(|r| r.queue.events.values().next_back().cloned()))
        })
    }

    async fn purge_events(&self, before: i64) -> StoreResult<u64> {
        self.with(|s| Ok(s.purge_events(before)))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
