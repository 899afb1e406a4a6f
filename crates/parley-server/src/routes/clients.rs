//! Device and prekey routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use parley_api::{
    Client, ClientId, ClientPrekey, Generation, NewClient, PasswordConfirmation, PrekeyCount,
    PrekeyMap, PrekeyRequest, PublicClient, PushEndpoint, UploadPrekeys, UserId,
};

use super::{ApiJson, ApiPath, AppState, Auth, acts_as, done};
use crate::error::ApiResult;
#[allow(unused_imports, reason = "named by the OpenAPI annotations")]
use parley_api::{ErrorBody, Uuid};

#[utoipa::path(post, path = "/v1/clients", tag = "clients", request_body = NewClient, responses((status = 201, body = Client), (status = 403, description = "wrong password or too many devices", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn add(
    State(s): State<AppState>, Auth(me): Auth, ApiJson(req): ApiJson<NewClient>,
) -> ApiResult<(StatusCode, Json<Client>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.clients.add(me.user, &req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/clients", tag = "clients", responses((status = 200, body = Vec<Client>), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list(
    State(s): State<AppState>, Auth(me): Auth,
) -> ApiResult<Json<Vec<Client>>> {
    Ok(Json(s.clients.list(me.user).await?))
}

#[utoipa::path(get, path = "/v1/clients/{id}", tag = "clients", params(("id" = ClientId, Path)), responses((status = 200, body = Client), (status = 404, body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn get(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<ClientId>,
) -> ApiResult<Json<Client>> {
    Ok(Json(s.clients.get(me.user, id).await?))
}

#[utoipa::path(delete, path = "/v1/clients/{id}", tag = "clients", request_body = PasswordConfirmation, params(("id" = ClientId, Path)), responses((status = 200, description = "removed with its prekeys and cookies"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn remove(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<ClientId>,
    ApiJson(req): ApiJson<PasswordConfirmation>,
) -> ApiResult<Json<serde_json::Value>> {
    s.clients
        .remove(me.user, id, req.password.as_deref())
        .await?;
    // The device is gone: the server proposes its removal from its groups.
    match s.mls.conversations_of(me.user).await {
        Ok(conversations) => s.mls.devices_gone(me.user, &[id], &conversations).await,
        Err(e) => tracing::warn!(label = e.label(), "MLS: a deleted device's groups unread"),
    }
    Ok(done())
}

#[utoipa::path(post, path = "/v1/clients/{id}/prekeys", tag = "clients", request_body = UploadPrekeys, params(("id" = ClientId, Path)), responses((status = 200, description = "added"), (status = 404, body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn upload(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<ClientId>,
    ApiJson(req): ApiJson<UploadPrekeys>,
) -> ApiResult<Json<serde_json::Value>> {
    acts_as(&me, id)?;
    s.clients.upload_prekeys(me.user, id, &req.prekeys).await?;
    Ok(done())
}

#[utoipa::path(get, path = "/v1/clients/{id}/prekeys", tag = "clients", params(("id" = ClientId, Path)), responses((status = 200, body = PrekeyCount), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn count(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<ClientId>,
) -> ApiResult<Json<PrekeyCount>> {
    acts_as(&me, id)?;
    Ok(Json(PrekeyCount {
        count: s.clients.count_prekeys(me.user, id).await?,
    }))
}

#[utoipa::path(post, path = "/v1/clients/{id}/generation", tag = "clients", request_body = Generation, params(("id" = ClientId, Path)), responses((status = 200, description = "the device's generation now (never lowered)", body = Generation), (status = 404, body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn generation(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<ClientId>,
    ApiJson(req): ApiJson<Generation>,
) -> ApiResult<Json<Generation>> {
    acts_as(&me, id)?;
    Ok(Json(Generation {
        generation: s
            .clients
            .raise_generation(me.user, id, req.generation)
            .await?,
    }))
}

#[utoipa::path(get, path = "/v1/users/{domain}/{id}/clients", tag = "clients", params(("domain" = String, Path), ("id" = Uuid, Path)), responses((status = 200, body = Vec<PublicClient>), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn public_list(
    State(s): State<AppState>, Auth(_): Auth, ApiPath((domain, id)): ApiPath<(String, UserId)>,
) -> ApiResult<Json<Vec<PublicClient>>> {
    Ok(Json(s.clients.public_list(&domain, id).await?))
}

#[utoipa::path(get, path = "/v1/users/{domain}/{id}/prekeys/{client}", tag = "clients", params(("domain" = String, Path), ("id" = Uuid, Path), ("client" = ClientId, Path)), responses((status = 200, body = ClientPrekey), (status = 404, body = ErrorBody), (status = 403, description = "not connected or in a conversation with this user", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn claim(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id, client)): ApiPath<(String, UserId, ClientId)>,
) -> ApiResult<Json<ClientPrekey>> {
    Ok(Json(s.clients.claim(me.user, &domain, id, client).await?))
}

#[utoipa::path(post, path = "/v1/users/list-prekeys", tag = "clients", request_body(content = Object, description = "domain → user id → [device id]"), responses((status = 200, description = "domain → user → device → prekey or null (unknown, or a user you are not related to)", body = Object), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn claim_many(
    State(s): State<AppState>, Auth(me): Auth, ApiJson(req): ApiJson<PrekeyRequest>,
) -> ApiResult<Json<PrekeyMap>> {
    Ok(Json(s.clients.claim_many(me.user, &req).await?))
}

#[utoipa::path(put, path = "/v1/clients/{id}/push", tag = "clients", request_body = PushEndpoint, params(("id" = ClientId, Path)), responses((status = 200, description = "set"), (status = 404, body = ErrorBody), (status = 400, description = "not an acceptable endpoint", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn set_push(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<ClientId>,
    ApiJson(req): ApiJson<PushEndpoint>,
) -> ApiResult<Json<serde_json::Value>> {
    acts_as(&me, id)?;
    s.clients
        .set_push_endpoint(me.user, id, Some(&req.url))
        .await?;
    Ok(done())
}

#[utoipa::path(delete, path = "/v1/clients/{id}/push", tag = "clients", params(("id" = ClientId, Path)), responses((status = 200, description = "removed"), (status = 404, body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn remove_push(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<ClientId>,
) -> ApiResult<Json<serde_json::Value>> {
    acts_as(&me, id)?;
    s.clients.set_push_endpoint(me.user, id, None).await?;
    Ok(done())
}
