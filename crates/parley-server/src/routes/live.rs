//! `GET /v1/await`: a WebSocket that pushes a device's events as they are stored.
//!
//! The socket sends every event after its cursor in queue order (the `since` given,
//! else the newest event at connection), each as a JSON text frame. After that, an
//! event published live with the next id is sent as it comes; a wake-up, a gap in
//! ids or falling behind sends it back to the store for what it missed.
//!
//! It pings every 30 seconds. A send that does not complete within the send timeout
//! (10 s by default) closes the socket rather than buffering without bound; so does a purge that took
//! events the socket had not yet sent (close reason `notifications-lost`). Either
//! way the device catches up through `GET /v1/notifications`. Transient events
//! (typing, transient messages) arrive as frames with `"transient": true` and no id;
//! they are never stored, and one the socket is too busy for is skipped.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use parley_api::ClientId;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::{ApiQuery, AppState, acts_as};
use crate::error::{ApiError, ApiResult};
use crate::tokens::Claims;
use crate::wakeups::Subscription;

/// The socket's read buffer: clients send only pongs and close frames.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes queued before a write is flushed.
const WRITE_BUFFER: usize = 8 * 1024;
/// Keep-alive interval.
const PING_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub(super) struct AwaitQuery {
    client: ClientId,
    since: Option<u64>,
    access_token: Option<String>,
}

pub(super) async fn open(
    State(s): State<AppState>, headers: HeaderMap, ApiQuery(q): ApiQuery<AwaitQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let bearer = super::bearer(&headers)
        .map(str::to_owned)
        .or(q.access_token)
        .ok_or_else(|| ApiError::unauthorized("missing-token", "send an access token"))?;
    let me = s.accounts.authenticate(bearer.trim())?;
    acts_as(&me, q.client)?;
    let start = s.notifications.cursor(me.user, q.client).await?;
    let cursor = q.since.unwrap_or(start);
    // Subscribe before the 101 goes out: once the client sees the upgrade, the
    // device counts as connected and gets live frames instead of push.
    let sub = s.notifications.subscribe(me.user, q.client)?;
    // After subscribing, so that a logout from now on is heard by the socket:
    // a token whose login has ended opens nothing (it would otherwise hold a
    // socket until it expired).
    if !s.accounts.login_stands(&me).await? {
        return Err(ApiError::unauthorized(
            "logged-out",
            "this token's login has ended: log in again",
        ));
    }
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(READ_BUFFER)
        .on_upgrade(move |socket| serve(socket, s, sub, me, q.client, cursor)))
}

async fn send(socket: &mut WebSocket, message: Message, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, socket.send(message)).await,
        Ok(Ok(()))
    )
}

async fn serve(
    mut socket: WebSocket, s: AppState, mut sub: Subscription, me: Claims, client: ClientId,
    mut cursor: u64,
) {
    let user = me.user;
    let send_timeout = s.notifications.send_timeout();
    // The socket lives as long as the token it was opened with: the client
    // reconnects with a fresh one (a refresh needs a login that still stands).
    let left = u64::try_from(me.expires.saturating_sub(s.notifications.now())).unwrap_or(0);
    let expiry = tokio::time::sleep(Duration::from_secs(left));
    tokio::pin!(expiry);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut catch_up = true;
    let mut stopping = s.stopping.clone();
    loop {
        // Everything after the cursor from the store, page by page; each page
        // only while the socket may still deliver (a page read may return
        // what was stored after the token expired).
        while catch_up {
            if let Some(reason) = ended(&s, &me, &mut sub).await {
                close(&mut socket, reason, send_timeout).await;
                return;
            }
            let page = match s
                .notifications
                .page(user, client, Some(cursor), Some(100))
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    close(&mut socket, e.label(), send_timeout).await;
                    return;
                }
            };
            if page.lost {
                close(&mut socket, "notifications-lost", send_timeout).await;
                return;
            }
            if let Some(reason) = ended(&s, &me, &mut sub).await {
                close(&mut socket, reason, send_timeout).await;
                return;
            }
            for event in page.events {
                let id = event.id;
                let text = serde_json::to_string(&event).expect("events serialize");
                if !send(&mut socket, Message::Text(text.into()), send_timeout).await {
                    tracing::debug!("socket too slow or gone: closed");
                    return;
                }
                cursor = id;
            }
            catch_up = page.has_more;
        }
        tokio::select! {
            () = async {
                // The guard `wait_for` returns is dropped at once.
                let _ = stopping.wait_for(|stop| *stop).await;
            } => {
                close(&mut socket, "server-stopping", send_timeout).await;
                return;
            }
            () = &mut expiry => {
                close(&mut socket, "token-expired", send_timeout).await;
                return;
            }
            Ok(()) = sub.logins.changed() => {
                // A store failure counts as ended: the client simply reconnects.
                if !s.accounts.login_stands(&me).await.unwrap_or(false) {
                    close(&mut socket, "logged-out", send_timeout).await;
                    return;
                }
            }
            changed = sub.wake.changed() => match changed {
                Ok(()) => catch_up = true,
                Err(_) => return,
            },
            live = sub.live.recv() => match live {
                Ok(live) if live.client.is_none_or(|c| c == client) => {
                    if let Some(reason) = ended(&s, &me, &mut sub).await {
                        close(&mut socket, reason, send_timeout).await;
                        return;
                    }
                    let next = match live.id {
                        // Transient: send as it comes.
                        None => true,
                        // Already sent (it came from the store first).
                        Some(id) if id <= cursor => false,
                        Some(id) if cursor.checked_add(1) == Some(id) => {
                            cursor = id;
                            true
                        }
                        // A gap: what is missing is in the store.
                        Some(_) => {
                            catch_up = true;
                            false
                        }
                    };
                    if next && !send(&mut socket, Message::Text(live.frame.as_ref().into()), send_timeout).await {
                        tracing::debug!("socket too slow or gone: closed");
                        return;
                    }
                }
                Ok(_) => {}
                // Fell behind: stored events are read from the store; transient ones
                // may be lost.
                Err(broadcast::error::RecvError::Lagged(_)) => catch_up = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ping.tick() => if !send(&mut socket, Message::Ping(Vec::new().into()), send_timeout).await { return },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Why the socket must close before it delivers anything more, if it must:
/// its token expired by the server's clock (the expiry timer runs on the
/// runtime's, which a test's clock does not move), or its login ended
/// meanwhile (a store failure counts as ended: the client simply reconnects).
async fn ended(s: &AppState, me: &Claims, sub: &mut Subscription) -> Option<&'static str> {
    if s.notifications.now() >= me.expires {
        return Some("token-expired");
    }
    if sub.logins.has_changed().unwrap_or(false) {
        sub.logins.borrow_and_update();
        if !s.accounts.login_stands(me).await.unwrap_or(false) {
            return Some("logged-out");
        }
    }
    None
}

async fn close(socket: &mut WebSocket, reason: &str, timeout: Duration) {
    let frame = CloseFrame {
        code: 4000,
        reason: reason.to_owned().into(),
    };
    let _ = send(socket, Message::Close(Some(frame)), timeout).await;
}
