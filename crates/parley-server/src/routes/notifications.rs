//! Event queue routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_api::{ClientId, Event, NotificationPage, NotificationsLost};
use serde::Deserialize;

use super::{ApiQuery, AppState, Auth, acts_as};
use crate::error::ApiResult;
#[allow(unused_imports, reason = "named by the OpenAPI annotations")]
use parley_api::ErrorBody;

#[utoipa::path(get, path = "/v1/health", tag = "notifications",
    responses((status = 200, description = "the process serves requests (liveness)")))]
pub(super) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/v1/ready", tag = "notifications",
    responses((status = 200, description = "the database answers and, with several nodes, NATS is reachable (readiness)"),
              (status = 503, description = "not-ready: what is unreachable", body = ErrorBody)))]
pub(super) async fn ready(State(s): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    s.notifications.ready().await?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(super) struct PageQuery {
    /// The device whose queue to read.
    client: ClientId,
    /// Continue after this event id.
    since: Option<u64>,
    /// At most this many events (1–1000, default 100).
    size: Option<usize>,
}

#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", params(PageQuery),
    responses((status = 200, body = NotificationPage),
              (status = 404, description = "events after `since` were purged: resynchronise", body = NotificationsLost),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn page(
    State(s): State<AppState>, Auth(me): Auth, ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    acts_as(&me, q.client)?;
    let page = s
        .notifications
        .page(me.user, q.client, q.since, q.size)
        .await?;
    if page.lost {
        let body = NotificationsLost {
            code: 404,
            label: "notifications-lost".into(),
            message: "events after `since` were purged: resynchronise, then continue from the \
                      events given here"
                .into(),
            notifications: page.events,
            has_more: page.has_more,
        };
        return Ok((StatusCode::NOT_FOUND, Json(body)).into_response());
    }
    Ok(Json(NotificationPage {
        notifications: page.events,
        has_more: page.has_more,
    })
    .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(super) struct LastQuery {
    /// The device whose queue to read.
    client: ClientId,
}

#[utoipa::path(get, path = "/v1/notifications/last", tag = "notifications", params(LastQuery),
    responses((status = 200, body = Event), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn last(
    State(s): State<AppState>, Auth(me): Auth, ApiQuery(q): ApiQuery<LastQuery>,
) -> ApiResult<Json<Event>> {
    acts_as(&me, q.client)?;
    Ok(Json(s.notifications.last(me.user, q.client).await?))
}
