//! HTTP in, service call, HTTP out. Handlers never touch the store; errors are
//! `ApiError`s whose status mapping lives in `error.rs`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};
use crate::services::accounts::{Accounts, LoggedIn};
use crate::services::clients::Clients;
use crate::tokens::Claims;

mod accounts;
mod clients;
mod connections;
mod conversations;
mod live;
mod notifications;

/// What handlers can reach: services only.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Accounts.
    pub accounts: Accounts,
    /// Devices and prekeys.
    pub clients: Clients,
    /// Device event queues.
    pub notifications: crate::services::notifications::Notifications,
    /// Connections between users.
    pub connections: crate::services::connections::Connections,
    /// Conversations and members.
    pub conversations: crate::services::conversations::Conversations,
    /// Sending messages.
    pub messages: crate::services::messages::Messages,
    /// Whether the server speaks TLS (cookies get `Secure`).
    pub tls: bool,
}

/// The name of the cookie carrying the user token.
pub const COOKIE_NAME: &str = "parley";

/// The OpenAPI document's frame; the paths come from the routes themselves.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Parley API", description = "Parley's end-to-end encrypted messaging backend."),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "registration, login, tokens, password reset"),
        (name = "users", description = "profiles and handles"),
        (name = "clients", description = "devices and prekeys"),
        (name = "notifications", description = "each device's event queue"),
        (name = "connections", description = "connection requests between users"),
        (name = "conversations", description = "conversations, members and messages"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole API under `/v1`, and its OpenAPI document at `/v1/openapi.json`, both
/// from one list: each route is registered from its `#[utoipa::path]` annotation.
pub fn router(state: AppState) -> Router {
    use utoipa::OpenApi as _;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;

    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::send_activation))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::refresh))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::list_cookies))
        .routes(routes!(accounts::remove_cookies))
        .routes(routes!(accounts::request_reset))
        .routes(routes!(accounts::complete_reset))
        .routes(routes!(
            accounts::get_self,
            accounts::put_self,
            accounts::delete_self
        ))
        .routes(routes!(accounts::put_handle))
        .routes(routes!(accounts::put_password))
        .routes(routes!(
            accounts::put_recovery_bundle,
            accounts::get_recovery_bundle
        ))
        .routes(routes!(accounts::get_user))
        .routes(routes!(accounts::get_handle))
        .routes(routes!(clients::add, clients::list))
        .routes(routes!(clients::get, clients::remove))
        .routes(routes!(clients::upload, clients::count))
        .routes(routes!(clients::generation))
        .routes(routes!(clients::public_list))
        .routes(routes!(clients::claim))
        .routes(routes!(clients::claim_many))
        .routes(routes!(clients::set_push, clients::remove_push))
        .routes(routes!(connections::list))
        .routes(routes!(
            connections::request,
            connections::update,
            connections::get
        ))
        .routes(routes!(conversations::create, conversations::list))
        .routes(routes!(conversations::get))
        .routes(routes!(conversations::add_members))
        .routes(routes!(
            conversations::remove_member,
            conversations::update_member
        ))
        .routes(routes!(conversations::rename))
        .routes(routes!(conversations::message_timer))
        .routes(routes!(conversations::receipt_mode))
        .routes(routes!(conversations::typing))
        .routes(routes!(conversations::post_proteus))
        .routes(routes!(notifications::page))
        .routes(routes!(notifications::last))
        .split_for_parts();
    let doc = std::sync::Arc::new(doc);
    // The WebSocket is outside the OpenAPI document: it is not a request/response.
    api.route("/v1/await", get(live::open))
        .route(
            "/v1/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .fallback(|| async { ApiError::not_found("no-endpoint", "no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
}

/// A JSON body whose rejections are API errors.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// Path parameters whose rejections are API errors.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Query parameters whose rejections are API errors.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The caller, from a valid access token (`Authorization: Bearer …`).
#[derive(Debug)]
pub struct Auth(pub Claims);

/// The device a request acts as: a token bound to a device (minted with
/// `?client=`) acts only as that device; an unbound one as any of the user's
/// devices (the service checks they are the user's).
fn acts_as(me: &Claims, client: parley_api::ClientId) -> ApiResult<()> {
    match me.client {
        Some(bound) if bound != client => Err(ApiError::forbidden(
            "token-bound",
            "this access token belongs to another device",
        )),
        _ => Ok(()),
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing-token",
                "send an access token: Authorization: Bearer …",
            )
        })?;
        state.accounts.authenticate(bearer.trim()).map(Auth)
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The caller's IP address, for attempt limits.
#[derive(Debug)]
pub struct Peer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        Ok(Self(ip))
    }
}

/// The user token from the `parley` cookie.
pub fn user_token(headers: &HeaderMap) -> ApiResult<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| ApiError::forbidden("missing-cookie", "no login cookie: log in first"))
}

/// A login answer: the access token as JSON and the user token as a cookie.
pub fn logged_in(state: &AppState, status: axum::http::StatusCode, l: LoggedIn) -> Response {
    let secure = if state.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={}; Path=/v1/access; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        l.user_token, l.cookie_seconds
    );
    let mut response = (status, Json(l.access)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// An empty JSON object, for changes that answer nothing.
pub fn done() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}
