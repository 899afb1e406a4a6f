//! Connection routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use parley_api::{Connection, ConnectionUpdate, UserId};

use super::{ApiJson, ApiPath, AppState, Auth};
use crate::error::ApiResult;
#[allow(unused_imports, reason = "named by the OpenAPI annotations")]
use parley_api::{ErrorBody, Uuid};

#[utoipa::path(post, path = "/v1/connections/{domain}/{id}", tag = "connections", params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 201, body = Connection), (status = 400, body = ErrorBody), (status = 403, description = "you blocked this user", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn request(
    State(s): State<AppState>, Auth(me): Auth, ApiPath((domain, id)): ApiPath<(String, UserId)>,
) -> ApiResult<(StatusCode, Json<Connection>)> {
    let c = s.connections.request(me.user, &domain, id).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[utoipa::path(put, path = "/v1/connections/{domain}/{id}", tag = "connections", request_body = ConnectionUpdate, params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 403, description = "not a possible change", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn update(
    State(s): State<AppState>, Auth(me): Auth, ApiPath((domain, id)): ApiPath<(String, UserId)>,
    ApiJson(req): ApiJson<ConnectionUpdate>,
) -> ApiResult<Json<Connection>> {
    Ok(Json(
        s.connections
            .update(me.user, &domain, id, req.status)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/connections/{domain}/{id}", tag = "connections", params(("domain" = String, Path), ("id" = Uuid, Path)),
    responses((status = 200, body = Connection), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get(
    State(s): State<AppState>, Auth(me): Auth, ApiPath((domain, id)): ApiPath<(String, UserId)>,
) -> ApiResult<Json<Connection>> {
    Ok(Json(s.connections.get(me.user, &domain, id).await?))
}

#[utoipa::path(get, path = "/v1/connections", tag = "connections",
    responses((status = 200, body = Vec<Connection>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list(
    State(s): State<AppState>, Auth(me): Auth,
) -> ApiResult<Json<Vec<Connection>>> {
    Ok(Json(s.connections.list(me.user).await?))
}
