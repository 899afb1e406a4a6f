//! Device and prekey routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use parley_api::{
    Client, ClientId, ClientPrekey, NewClient, PasswordConfirmation, PrekeyCount, PrekeyMap,
    PrekeyRequest, PublicClient, UploadPrekeys, UserId,
};

use super::{ApiJson, ApiPath, AppState, Auth, done};
use crate::error::ApiResult;

pub(super) async fn add(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiJson(req): ApiJson<NewClient>,
) -> ApiResult<(StatusCode, Json<Client>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.clients.add(me.user, &req).await?),
    ))
}

pub(super) async fn list(
    State(s): State<AppState>,
    Auth(me): Auth,
) -> ApiResult<Json<Vec<Client>>> {
    Ok(Json(s.clients.list(me.user).await?))
}

pub(super) async fn get(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<ClientId>,
) -> ApiResult<Json<Client>> {
    Ok(Json(s.clients.get(me.user, id).await?))
}

pub(super) async fn remove(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<ClientId>,
    ApiJson(req): ApiJson<PasswordConfirmation>,
) -> ApiResult<Json<serde_json::Value>> {
    s.clients
        .remove(me.user, id, req.password.as_deref())
        .await?;
    Ok(done())
}

pub(super) async fn upload(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<ClientId>,
    ApiJson(req): ApiJson<UploadPrekeys>,
) -> ApiResult<Json<serde_json::Value>> {
    s.clients.upload_prekeys(me.user, id, &req.prekeys).await?;
    Ok(done())
}

pub(super) async fn count(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<ClientId>,
) -> ApiResult<Json<PrekeyCount>> {
    Ok(Json(PrekeyCount {
        count: s.clients.count_prekeys(me.user, id).await?,
    }))
}

pub(super) async fn public_list(
    State(s): State<AppState>,
    Auth(_): Auth,
    ApiPath((domain, id)): ApiPath<(String, UserId)>,
) -> ApiResult<Json<Vec<PublicClient>>> {
    Ok(Json(s.clients.public_list(&domain, id).await?))
}

pub(super) async fn claim(
    State(s): State<AppState>,
    Auth(_): Auth,
    ApiPath((domain, id, client)): ApiPath<(String, UserId, ClientId)>,
) -> ApiResult<Json<ClientPrekey>> {
    Ok(Json(s.clients.claim(&domain, id, client).await?))
}

pub(super) async fn claim_many(
    State(s): State<AppState>,
    Auth(_): Auth,
    ApiJson(req): ApiJson<PrekeyRequest>,
) -> ApiResult<Json<PrekeyMap>> {
    Ok(Json(s.clients.claim_many(&req).await?))
}
