//! MLS routes: a device's signature keys and the key package directory.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use parley_api::{
    ClaimQuery, ClientId, ConversationId, KeyPackageBundle, KeyPackageCount, KeyPackageRefs,
    KeyPackageUpload, MLS_MEDIA_TYPE, MlsPublicKeys, MlsRemovalKeys, MlsSent, MlsSettings,
    SenderQuery, Subconversation, SubconversationReset, SuiteQuery, UserId,
};

use super::{ApiJson, ApiPath, ApiQuery, AppState, Auth, acts_as, done};
use crate::error::{ApiError, ApiResult};
use crate::tokens::Claims;
#[allow(unused_imports, reason = "named by the OpenAPI annotations")]
use parley_api::{ErrorBody, Uuid};

#[utoipa::path(get, path = "/v1/mls/config", tag = "mls", responses((status = 200, body = MlsSettings), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn settings(
    State(s): State<AppState>, Auth(_me): Auth,
) -> ApiResult<Json<MlsSettings>> {
    Ok(Json(s.mls.settings()))
}

#[utoipa::path(get, path = "/v1/mls/public-keys", tag = "mls", responses((status = 200, body = MlsRemovalKeys), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn removal_keys(
    State(s): State<AppState>, Auth(_me): Auth,
) -> ApiResult<Json<MlsRemovalKeys>> {
    Ok(Json(s.mls.public_keys().await?))
}

#[utoipa::path(put, path = "/v1/clients/{id}/mls-public-keys", tag = "mls", request_body = MlsPublicKeys, params(("id" = ClientId, Path)), responses((status = 200, description = "registered"), (status = 400, description = "invalid input, or mls-duplicate-public-key: the device already has another key for the scheme", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn set_public_keys(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<ClientId>,
    ApiJson(req): ApiJson<MlsPublicKeys>,
) -> ApiResult<Json<serde_json::Value>> {
    acts_as(&me, id)?;
    s.mls.set_public_keys(me.user, id, &req).await?;
    Ok(done())
}

#[utoipa::path(post, path = "/v1/mls/key-packages/self/{client}", tag = "mls", request_body = KeyPackageUpload, params(("client" = ClientId, Path)), responses((status = 201, description = "published"), (status = 400, description = "invalid input or key package (mls-protocol-error, mls-invalid-key-package, mls-unsupported-cipher-suite, mls-key-package-lifetime, mls-duplicate-key-package, too-many-key-packages)", body = ErrorBody), (status = 403, description = "mls-identity-mismatch: not this device's credential or key; mls-signature-key-missing", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn upload(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(client): ApiPath<ClientId>,
    ApiJson(req): ApiJson<KeyPackageUpload>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    acts_as(&me, client)?;
    s.mls.upload(me.user, client, &req.key_packages).await?;
    Ok((StatusCode::CREATED, done()))
}

#[utoipa::path(delete, path = "/v1/mls/key-packages/self/{client}", tag = "mls", request_body = KeyPackageRefs, params(("client" = ClientId, Path)), responses((status = 200, description = "withdrawn"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn delete(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(client): ApiPath<ClientId>,
    ApiJson(req): ApiJson<KeyPackageRefs>,
) -> ApiResult<Json<serde_json::Value>> {
    acts_as(&me, client)?;
    s.mls.delete(me.user, client, &req.key_packages).await?;
    Ok(done())
}

#[utoipa::path(get, path = "/v1/mls/key-packages/self/{client}/count", tag = "mls", params(("client" = ClientId, Path), SuiteQuery), responses((status = 200, body = KeyPackageCount), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn count(
    State(s): State<AppState>, Auth(me): Auth, ApiPath(client): ApiPath<ClientId>,
    ApiQuery(q): ApiQuery<SuiteQuery>,
) -> ApiResult<Json<KeyPackageCount>> {
    acts_as(&me, client)?;
    let suite = s.mls.suite(q.ciphersuite.as_deref())?;
    Ok(Json(KeyPackageCount {
        count: s.mls.count(me.user, client, suite).await?,
    }))
}

#[utoipa::path(post, path = "/v1/mls/key-packages/claim/{domain}/{user}", tag = "mls", params(("domain" = String, Path), ("user" = Uuid, Path), ClaimQuery), responses((status = 200, body = KeyPackageBundle), (status = 403, description = "not connected or in a conversation with this user", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn claim(
    State(s): State<AppState>, Auth(me): Auth, ApiPath((domain, user)): ApiPath<(String, UserId)>,
    ApiQuery(q): ApiQuery<ClaimQuery>,
) -> ApiResult<Json<KeyPackageBundle>> {
    let suite = s.mls.suite(q.ciphersuite.as_deref())?;
    Ok(Json(
        s.mls
            .claim(me.user, &domain, user, suite, q.skip_own.or(me.client))
            .await?,
    ))
}

/// The sending device: the query's, or a device-bound token's own.
fn sender(me: &Claims, query: Option<ClientId>) -> ApiResult<ClientId> {
    match (query, me.client) {
        (Some(client), _) => {
            acts_as(me, client)?;
            Ok(client)
        }
        (None, Some(bound)) => Ok(bound),
        (None, None) => Err(ApiError::bad_request(
            "bad-request",
            "name the sending device: ?client=",
        )),
    }
}

/// Refuses a body that is not `message/mls`.
fn mls_body(headers: &HeaderMap) -> ApiResult<()> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media.is_some_and(|m| m.eq_ignore_ascii_case(MLS_MEDIA_TYPE)) {
        return Err(ApiError::bad_request(
            "bad-request",
            "send the body as message/mls",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/mls/commit-bundles", tag = "mls", request_body(content = Vec<u8>, content_type = "message/mls", description = "a commit bundle: the commit (a public message), the welcome for the devices it adds, the new epoch's group info"), params(SenderQuery), responses((status = 201, body = MlsSent), (status = 400, description = "mls-protocol-error, mls-group-info-mismatch, bad-request", body = ErrorBody), (status = 403, description = "mls-identity-mismatch, action-denied, not-connected, too-many-members, access-denied", body = ErrorBody), (status = 404, description = "no MLS conversation has this group", body = ErrorBody), (status = 409, description = "mls-stale-message: the group moved on; mls-client-mismatch: not all of a user's devices", body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, description = "too many commits from this device", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn commit_bundle(
    State(s): State<AppState>, Auth(me): Auth, ApiQuery(q): ApiQuery<SenderQuery>,
    headers: HeaderMap, body: Bytes,
) -> ApiResult<(StatusCode, Json<MlsSent>)> {
    mls_body(&headers)?;
    let device = sender(&me, q.client)?;
    let sent = s.mls.commit_bundle(me.user, device, &body).await?;
    Ok((StatusCode::CREATED, Json(sent)))
}

#[utoipa::path(post, path = "/v1/mls/messages", tag = "mls", request_body(content = Vec<u8>, content_type = "message/mls", description = "an application message (a private message)"), params(SenderQuery), responses((status = 201, body = MlsSent), (status = 400, description = "mls-protocol-error, mls-unsupported-proposal, bad-request", body = ErrorBody), (status = 403, description = "access-denied: the device is not in the group", body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "mls-stale-message: not of the group's current epoch", body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn message(
    State(s): State<AppState>, Auth(me): Auth, ApiQuery(q): ApiQuery<SenderQuery>,
    headers: HeaderMap, body: Bytes,
) -> ApiResult<(StatusCode, Json<MlsSent>)> {
    mls_body(&headers)?;
    let device = sender(&me, q.client)?;
    let sent = s.mls.message(me.user, device, &body).await?;
    Ok((StatusCode::CREATED, Json(sent)))
}

#[utoipa::path(get, path = "/v1/conversations/{domain}/{id}/groupinfo", tag = "mls", params(("domain" = String, Path), ("id" = Uuid, Path)), responses((status = 200, content_type = "message/mls", body = Vec<u8>, description = "the group's latest group info, with its ratchet tree"), (status = 403, description = "not a member", body = ErrorBody), (status = 404, description = "no such MLS conversation, or mls-missing-group-info", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn group_info(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id)): ApiPath<(String, ConversationId)>,
) -> ApiResult<impl IntoResponse> {
    let info = s.mls.group_info(me.user, &domain, id).await?;
    Ok(([(header::CONTENT_TYPE, MLS_MEDIA_TYPE)], info))
}

#[utoipa::path(get, path = "/v1/conversations/{domain}/{id}/subconversations/{name}", tag = "mls", params(("domain" = String, Path), ("id" = Uuid, Path), ("name" = String, Path, description = "conference")), responses((status = 200, body = Subconversation, description = "the subconversation, opened (at epoch 0) if it was not"), (status = 400, description = "mls-unknown-subconversation, mls-subconv-unsupported-convtype", body = ErrorBody), (status = 403, description = "not a member", body = ErrorBody), (status = 404, description = "no such MLS conversation", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn subconversation(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id, name)): ApiPath<(String, ConversationId, String)>,
) -> ApiResult<Json<Subconversation>> {
    Ok(Json(
        s.mls.subconversation(me.user, &domain, id, &name).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/conversations/{domain}/{id}/subconversations/{name}", tag = "mls", params(("domain" = String, Path), ("id" = Uuid, Path), ("name" = String, Path, description = "conference")), request_body = SubconversationReset, responses((status = 200, description = "reset: a new group at epoch 0, nobody in it"), (status = 400, description = "mls-unknown-subconversation, bad-request", body = ErrorBody), (status = 403, description = "not a member", body = ErrorBody), (status = 404, description = "no such subconversation", body = ErrorBody), (status = 409, description = "mls-stale-message: it is at another group or epoch", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn reset_subconversation(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id, name)): ApiPath<(String, ConversationId, String)>,
    ApiJson(req): ApiJson<SubconversationReset>,
) -> ApiResult<Json<serde_json::Value>> {
    s.mls
        .reset_subconversation(me.user, &domain, id, &name, &req)
        .await?;
    Ok(done())
}

#[utoipa::path(get, path = "/v1/conversations/{domain}/{id}/subconversations/{name}/groupinfo", tag = "mls", params(("domain" = String, Path), ("id" = Uuid, Path), ("name" = String, Path, description = "conference")), responses((status = 200, content_type = "message/mls", body = Vec<u8>, description = "the subconversation's latest group info, with its ratchet tree"), (status = 400, description = "mls-unknown-subconversation", body = ErrorBody), (status = 403, description = "not a member", body = ErrorBody), (status = 404, description = "no such subconversation, or mls-missing-group-info", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn subconversation_group_info(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id, name)): ApiPath<(String, ConversationId, String)>,
) -> ApiResult<impl IntoResponse> {
    let info = s
        .mls
        .subconversation_group_info(me.user, &domain, id, &name)
        .await?;
    Ok(([(header::CONTENT_TYPE, MLS_MEDIA_TYPE)], info))
}

#[utoipa::path(delete, path = "/v1/conversations/{domain}/{id}/subconversations/{name}/self", tag = "mls", params(("domain" = String, Path), ("id" = Uuid, Path), ("name" = String, Path, description = "conference"), SenderQuery), responses((status = 200, description = "left: out of its delivery, its removal proposed (or, the last one out, the subconversation reset)"), (status = 400, description = "mls-unknown-subconversation, bad-request", body = ErrorBody), (status = 403, description = "not a member", body = ErrorBody), (status = 404, description = "no such subconversation", body = ErrorBody), (status = 409, description = "mls-stale-message: it kept changing", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn leave_subconversation(
    State(s): State<AppState>, Auth(me): Auth,
    ApiPath((domain, id, name)): ApiPath<(String, ConversationId, String)>,
    ApiQuery(q): ApiQuery<SenderQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let device = sender(&me, q.client)?;
    s.mls
        .leave_subconversation(me.user, device, &domain, id, &name)
        .await?;
    Ok(done())
}
