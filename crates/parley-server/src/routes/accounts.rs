//! Account routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parley_api::{
    AccessToken, ChangePassword, ClientId, CookieList, Login, PasswordConfirmation,
    PasswordResetComplete, PasswordResetRequest, Register, RemoveCookies, SelfProfile,
    SendActivationCode, SetHandle, UpdateProfile, UserId, UserProfile,
};
use serde::Deserialize;

use super::{
    ApiJson, ApiPath, ApiQuery, AppState, Auth, COOKIE_NAME, Peer, done, logged_in, user_token,
};
use crate::error::ApiResult;

pub(super) async fn send_activation(
    State(s): State<AppState>,
    Peer(peer): Peer,
    ApiJson(req): ApiJson<SendActivationCode>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts.send_activation_code(&req.email, &peer).await?;
    Ok(done())
}

pub(super) async fn register(
    State(s): State<AppState>,
    Peer(peer): Peer,
    ApiJson(req): ApiJson<Register>,
) -> ApiResult<Response> {
    let l = s.accounts.register(&req, &peer).await?;
    Ok(logged_in(&s, StatusCode::CREATED, l))
}

pub(super) async fn login(
    State(s): State<AppState>,
    Peer(peer): Peer,
    ApiJson(req): ApiJson<Login>,
) -> ApiResult<Response> {
    let l = s.accounts.login(&req, &peer).await?;
    Ok(logged_in(&s, StatusCode::OK, l))
}

#[derive(Deserialize)]
pub(super) struct RefreshQuery {
    client: Option<ClientId>,
}

pub(super) async fn refresh(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<RefreshQuery>,
) -> ApiResult<Json<AccessToken>> {
    let token = user_token(&headers)?;
    Ok(Json(s.accounts.refresh(&token, q.client).await?))
}

pub(super) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    s.accounts.logout(&user_token(&headers)?).await?;
    let mut response = done().into_response();
    let expired = format!("{COOKIE_NAME}=; Path=/v1/access; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

pub(super) async fn list_cookies(
    State(s): State<AppState>,
    Auth(me): Auth,
) -> ApiResult<Json<CookieList>> {
    Ok(Json(CookieList {
        cookies: s.accounts.cookies(me.user).await?,
    }))
}

pub(super) async fn remove_cookies(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiJson(req): ApiJson<RemoveCookies>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts
        .remove_cookies(me.user, &req.labels, &req.password)
        .await?;
    Ok(done())
}

pub(super) async fn request_reset(
    State(s): State<AppState>,
    Peer(peer): Peer,
    ApiJson(req): ApiJson<PasswordResetRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    s.accounts.request_password_reset(&req.email, &peer).await?;
    Ok((StatusCode::CREATED, done()))
}

pub(super) async fn complete_reset(
    State(s): State<AppState>,
    Peer(peer): Peer,
    ApiJson(req): ApiJson<PasswordResetComplete>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts
        .complete_password_reset(&req.key, &req.code, &req.password, &peer)
        .await?;
    Ok(done())
}

pub(super) async fn get_self(
    State(s): State<AppState>,
    Auth(me): Auth,
) -> ApiResult<Json<SelfProfile>> {
    Ok(Json(s.accounts.self_profile(me.user).await?))
}

pub(super) async fn put_self(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiJson(req): ApiJson<UpdateProfile>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts.update_profile(me.user, &req).await?;
    Ok(done())
}

pub(super) async fn delete_self(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiJson(req): ApiJson<PasswordConfirmation>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts.delete(me.user, req.password.as_deref()).await?;
    Ok(done())
}

pub(super) async fn put_handle(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiJson(req): ApiJson<SetHandle>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts.set_handle(me.user, &req.handle).await?;
    Ok(done())
}

pub(super) async fn put_password(
    State(s): State<AppState>,
    Auth(me): Auth,
    ApiJson(req): ApiJson<ChangePassword>,
) -> ApiResult<Json<serde_json::Value>> {
    s.accounts
        .change_password(me.user, &req.old_password, &req.new_password)
        .await?;
    Ok(done())
}

pub(super) async fn get_user(
    State(s): State<AppState>,
    Auth(_): Auth,
    ApiPath((domain, id)): ApiPath<(String, UserId)>,
) -> ApiResult<Json<UserProfile>> {
    Ok(Json(s.accounts.user_profile(&domain, id).await?))
}

pub(super) async fn get_handle(
    State(s): State<AppState>,
    Auth(_): Auth,
    ApiPath(handle): ApiPath<String>,
) -> ApiResult<Json<UserProfile>> {
    Ok(Json(s.accounts.by_handle(&handle).await?))
}
