//! The server's black-box tests over [`parley_testkit`]'s real server (a
//! temporary SQLite file or a fresh PostgreSQL database): settings small
//! enough to reach, an HTTP client, and the scenario helpers.

#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use parley_api::{AccessToken, ClientId, Prekey};
use parley_server::config::{Limits, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const PASSWORD: &str = "Secret-123!";

/// Attempt limits no scenario reaches (the limits have their own tests).
pub const GENEROUS: Limits = Limits {
    per_account: 1000,
    per_address: 100_000,
    prekey_claims: 100_000,
};

/// A server from [`parley_testkit`] with an HTTP client for black-box calls.
pub struct TestServer {
    pub kit: parley_testkit::TestServer,
    pub base: String,
    pub http: reqwest::Client,
}

impl std::ops::Deref for TestServer {
    type Target = parley_testkit::TestServer;

    fn deref(&self) -> &parley_testkit::TestServer {
        &self.kit
    }
}

pub use parley_testkit::Backend;

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TestServer {
    /// Another node of this server, on its database (see
    /// [`parley_testkit::TestServer::another_node`]).
    pub async fn another_node(&self, tweak: impl FnOnce(&mut Settings)) -> Self {
        let kit = self.kit.another_node(tweak).await;
        let base = kit.url();
        Self {
            kit,
            base,
            http: self.http.clone(),
        }
    }

    pub async fn start(backend: Backend, limits: Limits) -> Option<Self> {
        Self::start_with(backend, limits, |_| {}).await
    }

    /// [`TestServer::start`] with settings changed by `tweak`.
    pub async fn start_with(
        backend: Backend, limits: Limits, tweak: impl FnOnce(&mut Settings),
    ) -> Option<Self> {
        let kit = parley_testkit::TestServer::start_on(backend, |settings| {
            settings.limits = limits;
            // Small enough to reach in a test; push receivers are plain HTTP on loopback.
            settings.max_conversation_members = 5;
            settings.push_allow_http = true;
            // The tests' push receiver listens on loopback.
            settings.push_allow_private = true;
            settings.websocket_send_timeout = std::time::Duration::from_secs(2);
            tweak(settings);
        })
        .await?;
        let base = kit.url();
        let http = reqwest::Client::builder().build().expect("client");
        Some(Self { kit, base, http })
    }

    /// The newest e-mail to `to`, as text.
    pub fn last_mail_to(&self, to: &str) -> String {
        let mut mails: Vec<_> = std::fs::read_dir(self.outbox())
            .expect("outbox exists")
            .map(|e| e.expect("entry").path())
            .collect();
        mails.sort();
        mails
            .iter()
            .rev()
            .map(|p| std::fs::read_to_string(p).expect("mail"))
            .find(|m| m.contains(&format!("To: {to}")))
            .unwrap_or_else(|| panic!("no mail to {to}"))
    }

    pub fn activation_code(&self, to: &str) -> String {
        let mail = self.last_mail_to(to);
        let at = mail.find("code is ").expect("code in mail") + 8;
        mail[at..at + 6].to_owned()
    }

    pub async fn call(
        &self, method: Method, path: &str, token: Option<&str>, body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value, headers)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self.call(Method::POST, path, token, Some(body)).await;
        (s, v)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.call(Method::GET, path, Some(token), None).await;
        (s, v)
    }

    /// Posts with the login cookie.
    pub async fn with_cookie(&self, path: &str, cookie: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", format!("parley={cookie}"))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Registers `email` and returns the access token and user token.
    pub async fn register(&self, email: &str) -> User {
        let (s, v) = self
            .post("/v1/activate/send", None, json!({"email": email}))
            .await;
        assert_eq!(s, 200, "{v}");
        let code = self.activation_code(email);
        let (s, v, h) = self
            .call(
                Method::POST,
                "/v1/register",
                None,
                Some(json!({"name": "Test", "email": email, "email_code": code, "password": PASSWORD})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let access: AccessToken = serde_json::from_value(v).expect("token");
        User {
            token: access.access_token,
            id: access.user,
            cookie: cookie_of(&h),
            email: email.into(),
        }
    }

    pub async fn login(
        &self, email: &str, password: &str, persist: bool, label: Option<&str>,
    ) -> (StatusCode, Value, Option<String>) {
        let (s, v, h) = self
            .call(
                Method::POST,
                "/v1/login",
                None,
                Some(json!({"email": email, "password": password, "persist": persist, "label": label})),
            )
            .await;
        let cookie = h.get("set-cookie").map(|_| cookie_of(&h));
        (s, v, cookie)
    }

    /// Connects two users: `a` asks, `b` accepts (only connections may share
    /// a group; prekeys are claimed only within a relationship).
    pub async fn connect_users(&self, a: &User, b: &User) {
        let (st, v) = self
            .post(
                &format!("/v1/connections/localhost/{}", b.id),
                Some(&a.token),
                json!({}),
            )
            .await;
        assert!(st.is_success(), "{v}");
        let (st, v, _) = self
            .call(
                Method::PUT,
                &format!("/v1/connections/localhost/{}", a.id),
                Some(&b.token),
                Some(json!({"status": "accepted"})),
            )
            .await;
        assert!(st.is_success(), "{v}");
    }

    pub async fn add_client(
        &self, user: &User, kind: &str, prekey_ids: impl IntoIterator<Item = u16>,
    ) -> (StatusCode, Value) {
        self.post(
            "/v1/clients",
            Some(&user.token),
            new_client(kind, prekey_ids, Some(PASSWORD)),
        )
        .await
    }
}

pub fn new_client(
    kind: &str, prekey_ids: impl IntoIterator<Item = u16>, password: Option<&str>,
) -> Value {
    let prekeys: Vec<Prekey> = prekey_ids
        .into_iter()
        .map(|id| Prekey {
            id,
            key: key_for(id),
        })
        .collect();
    let mut v = json!({
        "type": kind, "class": "desktop", "model": "Test Laptop", "label": "work",
        "prekeys": prekeys, "last_prekey": {"id": 65535, "key": key_for(65535)},
    });
    if let Some(p) = password {
        v["password"] = json!(p);
    }
    v
}

pub fn key_for(id: u16) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("bundle-{id}"))
}

pub fn client_id(v: &Value) -> ClientId {
    v["id"].as_str().expect("id").parse().expect("hex")
}

pub fn cookie_of(h: &reqwest::header::HeaderMap) -> String {
    let c = h
        .get("set-cookie")
        .expect("set-cookie")
        .to_str()
        .expect("ascii");
    assert!(
        c.contains("HttpOnly") && c.contains("Path=/v1/access"),
        "{c}"
    );
    c.split(';')
        .next()
        .expect("pair")
        .trim_start_matches("parley=")
        .to_owned()
}

#[derive(Clone, Debug)]
pub struct User {
    pub token: String,
    pub id: parley_api::UserId,
    pub cookie: String,
    pub email: String,
}

/// Runs each scenario on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($limits:expr => $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let s = super::support::TestServer::start(super::support::Backend::Sqlite, $limits)
                        .await
                        .expect("sqlite always runs");
                    super::$name(&s).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(s) = super::support::TestServer::start(super::support::Backend::Postgres, $limits).await {
                        super::$name(&s).await;
                    }
                }
            )*
        }
    };
}

/// A client's WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl TestServer {
    /// Opens `GET /v1/await` for a device (from `since`, else from now).
    pub async fn connect(&self, token: &str, client: ClientId, since: Option<u64>) -> Ws {
        let ws_base = self.base.replace("http://", "ws://");
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        let url = format!("{ws_base}/v1/await?client={client}&access_token={token}{since}");
        tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade")
            .0
    }
}

impl TestServer {
    /// Opens `/v1/await` for a device with the token in the `Authorization`
    /// header; the server's refusal comes back as the error.
    pub async fn upgrade(
        &self, token: &str, client: &str, since: Option<u64>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let ws_base = self.base.replace("http://", "ws://");
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        let mut request = format!("{ws_base}/v1/await?client={client}{since}")
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(ws, _)| ws)
    }
}

/// The status of a refused upgrade.
pub fn refused_with(result: &Result<Ws, tokio_tungstenite::tungstenite::Error>) -> Option<u16> {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Some(r.status().as_u16()),
        _ => None,
    }
}

/// Reads a socket until it closes; the close reason. A text frame first is a
/// failure when `deliver_nothing`.
pub async fn close_reason(ws: &mut Ws, deliver_nothing: bool) -> Option<String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("the socket closes in time");
        match frame {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
            Some(Ok(Message::Text(t))) if deliver_nothing => panic!("delivered: {t}"),
            Some(Ok(_)) => {}
            other => panic!("the socket must close with a reason, got {other:?}"),
        }
    }
}

/// The next JSON frame of a socket (within 10 seconds).
pub async fn next_event(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("an event arrives in time")
            .expect("socket open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("event JSON");
        }
    }
}
