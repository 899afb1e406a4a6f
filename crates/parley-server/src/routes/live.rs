//! `GET /v1/await`: a WebSocket that pushes a device's events as they are stored.
//!
//! The socket sends every event after its cursor in queue order (the `since` given,
//! else the newest event at connection), each as a JSON text frame, then waits for a
//! wake-up. It pings every 30 seconds. A send that does not complete within 10 seconds
//! closes the socket rather than buffering without bound; so does a purge that took
//! events the socket had not yet sent (close reason `notifications-lost`). Either
//! way the device catches up through `GET /v1/notifications`.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use parley_api::{ClientId, UserId};
use serde::Deserialize;

use super::{ApiQuery, AppState};
use crate::error::{ApiError, ApiResult};

/// How long one frame may take to go out before the socket is cut.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive interval.
const PING_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub(super) struct AwaitQuery {
    client: ClientId,
    since: Option<u64>,
    access_token: Option<String>,
}

pub(super) async fn open(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<AwaitQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let bearer = super::bearer(&headers)
        .map(str::to_owned)
        .or(q.access_token)
        .ok_or_else(|| ApiError::unauthorized("missing-token", "send an access token"))?;
    let me = s.accounts.authenticate(bearer.trim())?;
    let start = s.notifications.cursor(me.user, q.client).await?;
    let cursor = q.since.unwrap_or(start);
    Ok(upgrade.on_upgrade(move |socket| serve(socket, s, me.user, q.client, cursor)))
}

async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

async fn serve(
    mut socket: WebSocket,
    s: AppState,
    user: UserId,
    client: ClientId,
    mut cursor: u64,
) {
    let mut wake = s.notifications.subscribe(user);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        // Everything after the cursor, page by page.
        loop {
            let page = match s
                .notifications
                .page(user, client, Some(cursor), Some(100))
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    close(&mut socket, e.label()).await;
                    return;
                }
            };
            if page.lost {
                close(&mut socket, "notifications-lost").await;
                return;
            }
            for event in page.events {
                let id = event.id;
                let text = serde_json::to_string(&event).expect("events serialize");
                if !send(&mut socket, Message::Text(text.into())).await {
                    tracing::debug!("socket too slow or gone: closed");
                    return;
                }
                cursor = id;
            }
            if !page.has_more {
                break;
            }
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return },
            _ = ping.tick() => if !send(&mut socket, Message::Ping(Vec::new().into())).await { return },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn close(socket: &mut WebSocket, reason: &str) {
    let frame = CloseFrame {
        code: 4000,
        reason: reason.to_owned().into(),
    };
    let _ = send(socket, Message::Close(Some(frame))).await;
}
