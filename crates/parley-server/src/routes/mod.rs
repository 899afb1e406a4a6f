//! HTTP in, service call, HTTP out. Handlers never touch the store; errors are
//! `ApiError`s whose status mapping lives in `error.rs`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cookie::{Cookie, SameSite};
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
mod mls;
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
    /// MLS signature keys and key packages.
    pub mls: crate::services::mls::Mls,
    /// Whether the server speaks TLS (cookies get `Secure`).
    pub tls: bool,
    /// Reverse proxies whose forwarding headers are believed.
    pub trusted_proxies: std::sync::Arc<Vec<ipnet::IpNet>>,
    /// Becomes true when the server stops: open sockets close.
    pub stopping: tokio::sync::watch::Receiver<bool>,
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
        (name = "mls", description = "MLS signature keys and the key package directory"),
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
        .routes(routes!(conversations::protocol))
        .routes(routes!(conversations::receipt_mode))
        .routes(routes!(conversations::typing))
        .routes(routes!(conversations::post_proteus))
        .routes(routes!(mls::set_public_keys))
        .routes(routes!(mls::removal_keys))
        .routes(routes!(mls::settings))
        .routes(routes!(mls::upload, mls::delete))
        .routes(routes!(mls::count))
        .routes(routes!(mls::claim))
        .routes(routes!(mls::commit_bundle))
        .routes(routes!(mls::message))
        .routes(routes!(mls::group_info))
        .routes(routes!(mls::subconversation, mls::reset_subconversation))
        .routes(routes!(mls::subconversation_group_info))
        .routes(routes!(mls::leave_subconversation))
        .routes(routes!(notifications::page))
        .routes(routes!(notifications::last))
        .routes(routes!(notifications::health))
        .routes(routes!(notifications::ready))
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

/// A JSON object body whose rejections are API errors. Every request body of the
/// API is an object: an array (which serde would read into a struct field by
/// field) or any other JSON value is refused.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .is_some_and(|m| {
                m.eq_ignore_ascii_case("application/json")
                    || (m.len() > 5 && m[m.len() - 5..].eq_ignore_ascii_case("+json"))
            });
        if !is_json {
            return Err(ApiError::bad_request(
                "bad-request",
                "send the body as application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request("bad-request", e.body_text()))?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "bad-request",
                "the body must be a JSON object",
            ));
        }
        let Json(value) = Json::<T>::from_bytes(&bytes)?;
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

/// Where a request comes from: the client's address (for attempt limits) and
/// whether it reached us over HTTPS (cookies get `Secure`). Behind a trusted
/// reverse proxy both come from its `X-Forwarded-For` and `X-Forwarded-Proto`;
/// from anyone else those headers are ignored.
#[derive(Debug)]
pub struct Peer {
    /// The client's IP address.
    pub address: String,
    /// Whether the client used HTTPS.
    pub secure: bool,
}

impl FromRequestParts<AppState> for Peer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let direct = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(peer_of(
            direct,
            &parts.headers,
            state.tls,
            &state.trusted_proxies,
        ))
    }
}

/// The rule behind [`Peer`]: walk `X-Forwarded-For` from the right (the entry
/// the nearest proxy added) past trusted proxies; the first untrusted address is
/// the client. Entries left of it are the client's own words and are never
/// read. An entry that is not an address (`ip:port` and `[v6]:port` are) stops
/// the walk at the last address read. Only a trusted proxy's headers are read
/// at all; IPv4 addresses written as IPv6 (`::ffff:10.0.0.1`) count as IPv4.
pub fn peer_of(
    direct: Option<std::net::IpAddr>, headers: &HeaderMap, tls: bool, trusted: &[ipnet::IpNet],
) -> Peer {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(direct) = direct.map(|ip| ip.to_canonical()) else {
        return Peer {
            address: String::new(),
            secure: tls,
        };
    };
    if !is_trusted(&direct) {
        return Peer {
            address: direct.to_string(),
            secure: tls,
        };
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = direct;
    for entry in entries.iter().rev() {
        let Some(ip) = forwarded_address(entry) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    let proto_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    Peer {
        address: client.to_string(),
        secure: tls || proto_https,
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port.
fn forwarded_address(entry: &str) -> Option<std::net::IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))?;
    Some(ip.to_canonical())
}

/// The user token from the `parley` cookie (the first, if a client sent several).
pub fn user_token(headers: &HeaderMap) -> ApiResult<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE_NAME)
        .map(|c| c.value().to_owned())
        .ok_or_else(|| ApiError::forbidden("missing-cookie", "no login cookie: log in first"))
}

/// Sets the login cookie on `response`: `value` for `max_age` seconds (0 removes
/// it), sent back only to `/v1/access`, out of scripts' and other sites' reach, and
/// only over HTTPS when `secure`.
pub fn set_login_cookie(response: &mut Response, value: &str, max_age: i64, secure: bool) {
    let cookie = Cookie::build((COOKIE_NAME, value))
        .path("/v1/access")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(max_age))
        .secure(secure)
        .build();
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
}

/// A login answer: the access token as JSON and the user token as a cookie.
pub fn logged_in(peer: &Peer, status: axum::http::StatusCode, l: LoggedIn) -> Response {
    let mut response = (status, Json(l.access)).into_response();
    set_login_cookie(&mut response, &l.user_token, l.cookie_seconds, peer.secure);
    response
}

/// An empty JSON object, for changes that answer nothing.
pub fn done() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str, proto: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", forwarded.parse().expect("header"));
        h.insert("x-forwarded-proto", proto.parse().expect("header"));
        h
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().expect("cidr"),
            "127.0.0.1/32".parse().expect("cidr"),
        ];
        let proxy = Some("127.0.0.1".parse().expect("ip"));
        let stranger = Some("192.0.2.1".parse().expect("ip"));
        let peer = |direct, h: &HeaderMap| {
            let p = peer_of(direct, h, false, &trusted);
            (p.address, p.secure)
        };
        // The rightmost untrusted address is the client; a spoofed entry to
        // its left is not believed.
        let h = headers("6.6.6.6, 203.0.113.5, 10.1.2.3", "https");
        assert_eq!(peer(proxy, &h), ("203.0.113.5".into(), true));
        // Junk the client wrote left of its address is never read; ports
        // and IPv4-in-IPv6 are understood.
        let h = headers("not-an-ip, [2001:db8::1]:443, 10.1.2.3:80", "https");
        assert_eq!(peer(proxy, &h), ("2001:db8::1".into(), true));
        let h = headers("203.0.113.5, ::ffff:10.1.2.3", "https");
        assert_eq!(peer(proxy, &h), ("203.0.113.5".into(), true));
        let mapped = Some("::ffff:127.0.0.1".parse().expect("ip"));
        let h = headers("203.0.113.5", "http");
        assert_eq!(peer(mapped, &h), ("203.0.113.5".into(), false));
        // Only proxies in the chain: the leftmost of them.
        let h = headers("10.9.9.9, 10.1.2.3", "http");
        assert_eq!(peer(proxy, &h), ("10.9.9.9".into(), false));
        // Junk where a proxy should have written: the last address read.
        let h = headers("203.0.113.5, not-an-ip", "https");
        assert_eq!(peer(proxy, &h), ("127.0.0.1".into(), true));
        let h = headers("203.0.113.5, nonsense, 10.1.2.3", "https");
        assert_eq!(peer(proxy, &h), ("10.1.2.3".into(), true));
        // From anyone else, the headers are ignored.
        let h = headers("203.0.113.5", "https");
        assert_eq!(peer(stranger, &h), ("192.0.2.1".into(), false));
        assert!(
            peer_of(stranger, &h, true, &trusted).secure,
            "TLS of our own"
        );
    }

    #[test]
    fn the_login_cookie_is_read_and_written() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "other=1; parley=tok.en=; x=2".parse().expect("header"),
        );
        h.append(header::COOKIE, "parley=second".parse().expect("header"));
        assert_eq!(user_token(&h).expect("a cookie"), "tok.en=", "the first");
        assert!(user_token(&HeaderMap::new()).is_err());
        let attributes = |value: &str, max_age: i64, secure: bool| {
            let mut response = done().into_response();
            set_login_cookie(&mut response, value, max_age, secure);
            let c = response.headers()[header::SET_COOKIE]
                .to_str()
                .expect("ascii")
                .to_owned();
            let mut parts: Vec<String> = c.split("; ").map(str::to_owned).collect();
            parts.sort();
            parts
        };
        assert_eq!(
            attributes("tok", 60, true),
            [
                "HttpOnly",
                "Max-Age=60",
                "Path=/v1/access",
                "SameSite=Strict",
                "Secure",
                "parley=tok"
            ]
        );
        assert_eq!(
            attributes("", 0, false),
            [
                "HttpOnly",
                "Max-Age=0",
                "Path=/v1/access",
                "SameSite=Strict",
                "parley="
            ]
        );
    }
}
