//! Each device's event queue: paging with a cursor, the newest event, retention.
//!
//! A page holds at most `size` events and at most
//! [`limits::MAX_NOTIFICATION_PAGE_BYTES`] of them (but always one, however
//! large).
//!
//! Events are written by the other services, in the same transaction as the change
//! they report (`Notify` in the store). Here they are read. Events older than the
//! retention (28 days by default) are purged once a minute by a task of the
//! server's own (`server::purge_loop`), never on a reader's request; a cursor
//! that points before what is left answers `notifications-lost` together with
//! what remains, so the device resynchronises instead of guessing.

use std::sync::Arc;

use parley_api::{ClientId, Event, EventPayload, OffsetDateTime, TransientEvent, UserId, limits};
use parley_store::{QueueStore, QueuedEvent, StoreResult};

use super::Core;
use crate::error::{ApiError, ApiResult};

/// Sockets one device may have open at once (a client needs one; a few more
/// cover reconnects that overlap and several windows).
pub(crate) const MAX_SOCKETS_PER_DEVICE: usize = 8;

/// Events read from the store at a time while a page is filled.
const PAGE_CHUNK: usize = 16;

/// A page, or the sign that events were lost (with what is left).
#[derive(Debug)]
pub struct Page {
    /// Events, oldest first.
    pub events: Vec<Event>,
    /// More follow.
    pub has_more: bool,
    /// Events after the cursor are gone.
    pub lost: bool,
}

/// Device event queues.
#[derive(Clone, Debug)]
pub struct Notifications {
    core: Core,
    store: Arc<dyn QueueStore>,
}

/// Serialises an event for the store.
pub(crate) fn payload(event: &EventPayload) -> String {
    serde_json::to_string(event).expect("events serialize")
}

/// Serialises an event that is sent to open sockets only, stamped `at`.
pub(crate) fn transient_frame(event: &EventPayload, at: i64) -> String {
    let frame = TransientEvent {
        transient: true,
        time: OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        payload: event.clone(),
    };
    serde_json::to_string(&frame).expect("events serialize")
}

impl Notifications {
    /// The service.
    pub fn new(core: Core, store: Arc<dyn QueueStore>) -> Self {
        Self { core, store }
    }

    fn to_api(e: QueuedEvent) -> ApiResult<Event> {
        Ok(Event {
            id: e.id,
            time: OffsetDateTime::from_unix_timestamp(e.created_at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            payload: serde_json::from_str(&e.payload).map_err(ApiError::internal)?,
        })
    }

    /// Purges the events older than the retention; how many went.
    pub async fn purge_expired(&self) -> StoreResult<u64> {
        let retention = self.core.settings.notification_retention_days * 24 * 3600;
        let purged = self
            .store
            .purge_events(self.core.clock.now().saturating_sub(retention))
            .await?;
        if purged > 0 {
            tracing::info!(purged, "expired events purged");
        }
        Ok(purged)
    }

    /// Events of one of the user's devices after `since`.
    pub async fn page(
        &self, user: UserId, client: ClientId, since: Option<u64>, size: Option<usize>,
    ) -> ApiResult<Page> {
        let size = size.unwrap_or(100);
        if size == 0 || size > limits::MAX_NOTIFICATION_PAGE {
            return Err(ApiError::bad_request(
                "bad-request",
                format!("size is 1 to {}", limits::MAX_NOTIFICATION_PAGE),
            ));
        }
        // Read in small chunks and stop at the byte budget, so that a queue of
        // large events never sits in memory a whole page at a time.
        let mut events = Vec::new();
        let mut bytes = 0usize;
        let mut cursor = since;
        let mut lost = false;
        let has_more = loop {
            let want = (size - events.len()).min(PAGE_CHUNK);
            let chunk = self
                .store
                .events(user, client, cursor, want)
                .await?
                .ok_or_else(|| ApiError::not_found("client-not-found", "no such device"))?;
            if events.is_empty() {
                lost = chunk.lost;
            } else if chunk.lost {
                // Purged while this page was read: stop here, and the next
                // page (from the last event sent) says what was lost.
                break true;
            }
            let mut cut = false;
            for event in chunk.events {
                let len = event.payload.len();
                if !events.is_empty()
                    && bytes.saturating_add(len) > limits::MAX_NOTIFICATION_PAGE_BYTES
                {
                    cut = true;
                    break;
                }
                bytes = bytes.saturating_add(len);
                cursor = Some(event.id);
                events.push(Self::to_api(event)?);
            }
            if cut {
                break true;
            }
            if !chunk.has_more {
                break false;
            }
            if events.len() >= size {
                break true;
            }
        };
        Ok(Page {
            events,
            has_more,
            lost,
        })
    }

    /// Where a new socket starts: after the newest event (checking the device is the
    /// user's).
    pub async fn cursor(&self, user: UserId, client: ClientId) -> ApiResult<u64> {
        self.store
            .events(user, client, None, 0)
            .await?
            .ok_or_else(|| ApiError::not_found("client-not-found", "no such device"))?;
        Ok(self
            .store
            .last_event(user, client)
            .await?
            .map_or(0, |e| e.id))
    }

    /// Whether this node can serve: its database answers and, with several
    /// nodes, NATS is reachable (else 503 `not-ready`, saying which).
    pub async fn ready(&self) -> ApiResult<()> {
        if let Err(e) = self.store.ping().await {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            return Err(ApiError::not_ready("the database does not answer"));
        }
        if let Some(why) = self.core.wakeups.unreachable() {
            return Err(ApiError::not_ready(why));
        }
        Ok(())
    }

    /// The server's time (Unix seconds), to hold a socket to its token's expiry.
    pub fn now(&self) -> i64 {
        self.core.clock.now()
    }

    /// How long one frame to a socket may take before the socket is cut.
    pub fn send_timeout(&self) -> std::time::Duration {
        self.core.settings.websocket_send_timeout
    }

    /// What an open socket of this device listens to; the device counts as
    /// connected while it lives. A device has at most
    /// [`MAX_SOCKETS_PER_DEVICE`] open at once (429 `too-many-sockets`).
    pub fn subscribe(
        &self, user: UserId, client: ClientId,
    ) -> ApiResult<crate::wakeups::Subscription> {
        if self.core.wakeups.sockets(user, client) >= MAX_SOCKETS_PER_DEVICE {
            return Err(ApiError::too_many(
                "too-many-sockets",
                format!(
                    "this device has {MAX_SOCKETS_PER_DEVICE} sockets open already: close one first"
                ),
            ));
        }
        Ok(self.core.wakeups.subscribe(user, client))
    }

    /// The newest event of one of the user's devices.
    pub async fn last(&self, user: UserId, client: ClientId) -> ApiResult<Event> {
        let event = self.store.last_event(user, client).await?;
        event
            .map(Self::to_api)
            .transpose()?
            .ok_or_else(|| ApiError::not_found("not-found", "no events for this device"))
    }
}
