//! MLS routes: a device's signature keys and the key package directory.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use parley_api::{
    ClaimQuery, ClientId, KeyPackageBundle, KeyPackageCount, KeyPackageRefs, KeyPackageUpload,
    MlsPublicKeys, SuiteQuery, UserId,
};

use super::{ApiJson, ApiPath, ApiQuery, AppState, Auth, acts_as, done};
use crate::error::ApiResult;
#[allow(unused_imports, reason = "named by the OpenAPI annotations")]
use parley_api::{ErrorBody, Uuid};

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
