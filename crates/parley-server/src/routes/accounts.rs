//! Account routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parley_api::{
    AccessToken, ChangePassword, ClientId, CookieList, Login, PasswordConfirmation,
    PasswordResetComplete, PasswordResetRequest, RecoveryBundle, Register, RemoveCookies,
    SelfProfile, SendActivationCode, SetHandle, UpdateProfile, UserId, UserProfile,
};
use serde::Deserialize;

use super::{
    ApiJson, ApiPath, ApiQuery, AppState, Auth, Peer, done, logged_in, set_login_cookie, user_token,
};
use crate::error::ApiResult;
#[allow(unused_imports, reason = "named by the OpenAPI annotations")]
use parley_api::{ErrorBody, Uuid};

#[utoipa::path(post, path = "/v1/activate/send", tag = "accounts", request_body = SendActivationCode, responses((status = 200, description = "code sent"), (status = 409, description = "address taken", body = ErrorBody), (status = 429, description = "too many attempts", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody)))]
pub(super) async fn send_activation(
    State(s): State<AppState>, peer: Peer, ApiJson(req): ApiJson<SendActivationCode>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts
        .send_activation_code(&req.email, &peer.address)
        .await?;
    Ok(done())
}

#[utoipa::path(post, path = "/v1/register", tag = "accounts", request_body = Register, responses((status = 201, description = "registered and logged in; sets the login cookie", body = AccessToken), (status = 403, description = "wrong or expired code", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody)))]
pub(super) async fn register(
    State(s): State<AppState>, peer: Peer, ApiJson(req): ApiJson<Register>,
) -> ApiResult<Response> {
    let l = s.accounts.register(&req, &peer.address).await?;
    Ok(logged_in(&peer, StatusCode::CREATED, l))
}

#[utoipa::path(post, path = "/v1/login", tag = "accounts", request_body = Login, responses((status = 200, description = "logged in; sets the login cookie", body = AccessToken), (status = 403, description = "wrong credentials", body = ErrorBody), (status = 429, description = "too many attempts", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody)))]
pub(super) async fn login(
    State(s): State<AppState>, peer: Peer, ApiJson(req): ApiJson<Login>,
) -> ApiResult<Response> {
    let l = s.accounts.login(&req, &peer.address).await?;
    Ok(logged_in(&peer, StatusCode::OK, l))
}

#[derive(Deserialize)]
pub(super) struct RefreshQuery {
    client: Option<ClientId>,
}

#[utoipa::path(post, path = "/v1/access", tag = "accounts", responses((status = 200, description = "a new access token", body = AccessToken), (status = 403, description = "no valid login cookie", body = ErrorBody)))]
pub(super) async fn refresh(
    State(s): State<AppState>, headers: HeaderMap, ApiQuery(q): ApiQuery<RefreshQuery>,
) -> ApiResult<Json<AccessToken>> {
    let token = user_token(&headers)?;
    let login = s.accounts.check_login(&token).await?;
    if let Some(client) = q.client {
        // A token bound to a device the user does not have is refused (404).
        s.clients.get(login.user, client).await?;
    }
    Ok(Json(s.accounts.access_for(&login, q.client)))
}

#[utoipa::path(post, path = "/v1/access/logout", tag = "accounts", responses((status = 200, description = "the login cookie is revoked"), (status = 403, description = "no valid login cookie", body = ErrorBody)))]
pub(super) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    s.accounts.logout(&user_token(&headers)?).await?;
    let mut response = done().into_response();
    set_login_cookie(&mut response, "", 0, false);
    Ok(response)
}

#[utoipa::path(get, path = "/v1/cookies", tag = "accounts", responses((status = 200, body = CookieList), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn list_cookies(
    State(s): State<AppState>, Auth(me): Auth,
) -> ApiResult<Json<CookieList>> {
    Ok(Json(CookieList {
        cookies: s.accounts.cookies(me.user).await?,
    }))
}

#[utoipa::path(post, path = "/v1/cookies/remove", tag = "accounts", request_body = RemoveCookies, responses((status = 200, description = "removed"), (status = 403, description = "wrong password", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn remove_cookies(
    State(s): State<AppState>, Auth(me): Auth, ApiJson(req): ApiJson<RemoveCookies>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts
        .remove_cookies(me.user, &req.labels, &req.password)
        .await?;
    Ok(done())
}

#[utoipa::path(post, path = "/v1/password-reset", tag = "accounts", request_body = PasswordResetRequest, responses((status = 201, description = "a key and code were mailed if the address has an account"), (status = 400, description = "invalid input", body = ErrorBody)))]
pub(super) async fn request_reset(
    State(s): State<AppState>, peer: Peer, ApiJson(req): ApiJson<PasswordResetRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    s.accounts
        .request_password_reset(&req.email, &peer.address)
        .await?;
    Ok((StatusCode::CREATED, done()))
}

#[utoipa::path(post, path = "/v1/password-reset/complete", tag = "accounts", request_body = PasswordResetComplete, responses((status = 200, description = "password changed; every login cookie dropped"), (status = 403, description = "wrong, expired or used-up code", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody)))]
pub(super) async fn complete_reset(
    State(s): State<AppState>, peer: Peer, ApiJson(req): ApiJson<PasswordResetComplete>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts
        .complete_password_reset(&req.key, &req.code, &req.password, &peer.address)
        .await?;
    Ok(done())
}

#[utoipa::path(get, path = "/v1/self", tag = "users", responses((status = 200, body = SelfProfile), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn get_self(
    State(s): State<AppState>, Auth(me): Auth,
) -> ApiResult<Json<SelfProfile>> {
    Ok(Json(s.accounts.self_profile(me.user).await?))
}

#[utoipa::path(put, path = "/v1/self", tag = "users", request_body = UpdateProfile, responses((status = 200, description = "updated"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn put_self(
    State(s): State<AppState>, Auth(me): Auth, ApiJson(req): ApiJson<UpdateProfile>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts.update_profile(me.user, &req).await?;
    Ok(done())
}

#[utoipa::path(delete, path = "/v1/self", tag = "users", request_body = PasswordConfirmation, responses((status = 200, description = "the account and its devices, prekeys and cookies are deleted"), (status = 403, description = "wrong password", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn delete_self(
    State(s): State<AppState>, Auth(me): Auth, ApiJson(req): ApiJson<PasswordConfirmation>,
) -> ApiResult<Json<serde_json::Value>> {
    // Its MLS conversations and devices, read while it still has them: the
    // server proposes the devices' removal from those groups after.
    let conversations = s.mls.conversations_of(me.user).await.unwrap_or_else(|e| {
        tracing::warn!(label = e.label(), "MLS: a deleted account's groups unread");
        Vec::new()
    });
    let devices = s.clients.ids(me.user).await?;
    s.accounts.delete(me.user, req.password.as_deref()).await?;
    s.mls.devices_gone(me.user, &devices, &conversations).await;
    Ok(done())
}

#[utoipa::path(put, path = "/v1/self/handle", tag = "users", request_body = SetHandle, responses((status = 200, description = "set"), (status = 409, description = "taken", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn put_handle(
    State(s): State<AppState>, Auth(me): Auth, ApiJson(req): ApiJson<SetHandle>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts.set_handle(me.user, &req.handle).await?;
    Ok(done())
}

#[utoipa::path(put, path = "/v1/self/password", tag = "users", request_body = ChangePassword, responses((status = 200, description = "changed; every login ended, and the caller gets a new login cookie and access token", body = AccessToken), (status = 403, description = "wrong password", body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn put_password(
    State(s): State<AppState>, Auth(me): Auth, peer: Peer, ApiJson(req): ApiJson<ChangePassword>,
) -> ApiResult<Response> {
    let l = s
        .accounts
        .change_password(me.user, &req.old_password, &req.new_password)
        .await?;
    Ok(logged_in(&peer, StatusCode::OK, l))
}

#[utoipa::path(get, path = "/v1/users/{domain}/{id}", tag = "users", params(("domain" = String, Path), ("id" = Uuid, Path)), responses((status = 200, body = UserProfile), (status = 404, body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn get_user(
    State(s): State<AppState>, Auth(_): Auth, ApiPath((domain, id)): ApiPath<(String, UserId)>,
) -> ApiResult<Json<UserProfile>> {
    Ok(Json(s.accounts.user_profile(&domain, id).await?))
}

#[utoipa::path(get, path = "/v1/handles/{handle}", tag = "users", params(("handle" = String, Path)), responses((status = 200, body = UserProfile), (status = 404, body = ErrorBody), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn get_handle(
    State(s): State<AppState>, Auth(_): Auth, ApiPath(handle): ApiPath<String>,
) -> ApiResult<Json<UserProfile>> {
    Ok(Json(s.accounts.by_handle(&handle).await?))
}

#[utoipa::path(put, path = "/v1/self/recovery-bundle", tag = "users", request_body = RecoveryBundle, responses((status = 200, description = "stored, replacing any earlier bundle"), (status = 400, description = "invalid input", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn put_recovery_bundle(
    State(s): State<AppState>, Auth(me): Auth, ApiJson(req): ApiJson<RecoveryBundle>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts.set_recovery_bundle(me.user, &req).await?;
    Ok(done())
}

#[utoipa::path(get, path = "/v1/self/recovery-bundle", tag = "users", responses((status = 200, body = RecoveryBundle), (status = 404, description = "no bundle yet", body = ErrorBody), (status = 401, description = "no valid access token", body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn get_recovery_bundle(
    State(s): State<AppState>, Auth(me): Auth,
) -> ApiResult<Json<RecoveryBundle>> {
    Ok(Json(s.accounts.recovery_bundle(me.user).await?))
}
