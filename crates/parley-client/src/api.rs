//! The HTTP API, typed. Knows the wire, not the cryptography: ciphertexts pass
//! through as base64 strings.
//!
//! An access token lives 15 minutes. When a call is refused as unauthorised, the
//! client gets a new token from `/v1/access` with the login cookie it keeps, and
//! repeats the call once; the caller never sees the refresh.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use parley_api::{
    AccessToken, AddMembers, Client, ClientId, Connection, ConnectionStatus, ConnectionUpdate,
    Conversation, ConversationId, ConversationPage, ErrorBody, Login, MessageSent, NewClient,
    NewConversation, NewProteusMessage, NotificationPage, PasswordConfirmation, Prekey,
    PrekeyCount, PrekeyMap, PrekeyRequest, PublicClient, Qualified, RecoveryBundle, Register,
    SendActivationCode, Subconversation, SubconversationReset, UploadPrekeys, UserId, UserProfile,
};
use reqwest::Method;
use reqwest::cookie::CookieStore as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ClientError;

/// What an MLS post is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlsPost {
    /// A commit with its welcome and group info.
    CommitBundle,
    /// An application message.
    Message,
}

/// A request's body and its media type.
struct Body {
    bytes: Vec<u8>,
    content_type: &'static str,
}

impl Body {
    fn json(value: &(impl Serialize + ?Sized)) -> Result<Self, ClientError> {
        Ok(Self {
            bytes: serde_json::to_vec(value)
                .map_err(|e| ClientError::Decode(format!("cannot encode a request: {e}")))?,
            content_type: "application/json",
        })
    }

    fn mls(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            content_type: parley_api::MLS_MEDIA_TYPE,
        }
    }
}

/// A device's live socket (`GET /v1/await`): stored and transient events as they
/// happen.
pub struct LiveSocket {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl std::fmt::Debug for LiveSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSocket").finish_non_exhaustive()
    }
}

impl LiveSocket {
    /// The next frame; `None` when the server closed the socket (the device then
    /// catches up through the queue, for example by reconnecting from its cursor).
    pub async fn next(&mut self) -> Result<Option<parley_api::LiveFrame>, ClientError> {
        use futures_util::StreamExt as _;
        use tokio_tungstenite::tungstenite::Message;
        while let Some(frame) = self.ws.next().await {
            match frame.map_err(|e| ClientError::Transport(e.to_string()))? {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|e| ClientError::Decode(e.to_string()));
                }
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }
}

/// What the server did with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered (dropped devices named).
    Sent(MessageSent),
    /// Devices were missing; nothing was delivered.
    Missing(MessageSent),
}

/// What resumes a login in a later run: the user and the login cookie.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct LoginState {
    /// Who is logged in.
    pub user: UserId,
    /// The `Cookie` header value (a secret).
    pub cookie: String,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A connection to one Parley server for one user.
pub struct Api {
    http: reqwest::Client,
    base: String,
    jar: Arc<reqwest::cookie::Jar>,
    token: Mutex<Option<AccessToken>>,
}

/// The access token is a secret: `Debug` shows the server and the user only.
impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("user", &self.user())
            .finish_non_exhaustive()
    }
}

impl Api {
    /// A client for the server at `base` (for example `http://127.0.0.1:8080`).
    /// Uses rustls on ring, installing it as the process's default TLS provider
    /// if the program has not chosen one.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = base.trim_end_matches('/').to_owned();
        let bad = |why: String| ClientError::Refused {
            label: "bad-url",
            message: format!(
                "{base:?} is not a server address ({why}): give http://host:port or https://host"
            ),
        };
        let url = reqwest::Url::parse(&base).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("{}:// is not http or https", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".into()));
        }
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            // A server that stops answering must not hang a person's command.
            .connect_timeout(std::time::Duration::from_secs(10))
            // Never reuse a connection the server may be closing as idle
            // (Parley's default header deadline is 10 s): a request sent on
            // it would fail as if the server were away.
            .pool_idle_timeout(std::time::Duration::from_secs(4))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base,
            jar,
            token: Mutex::new(None),
        })
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Where the login cookie is sent (its path).
    fn access_url(&self) -> reqwest::Url {
        reqwest::Url::parse(&format!("{}/v1/access", self.base)).expect("checked in Api::new")
    }

    /// The login cookie and user, for a program that runs again later (the CLI):
    /// a secret, to be kept in the encrypted local store.
    pub fn login_state(&self) -> Option<LoginState> {
        let cookie = self.jar.cookies(&self.access_url())?;
        Some(LoginState {
            user: self.user()?,
            cookie: cookie.to_str().ok()?.to_owned(),
        })
    }

    /// Resumes from [`Api::login_state`]: the first call refreshes the access
    /// token with the cookie.
    pub fn resume(&self, state: &LoginState) {
        let url = self.access_url();
        for pair in state.cookie.split("; ") {
            self.jar
                .add_cookie_str(&format!("{pair}; Path=/v1/access"), &url);
        }
        self.keep(AccessToken {
            access_token: String::new(),
            token_type: "Bearer".into(),
            expires_in: 0,
            user: state.user,
        });
    }

    /// The logged-in user.
    pub fn user(&self) -> Option<UserId> {
        self.token
            .lock()
            .expect("the token lock is never poisoned")
            .as_ref()
            .map(|t| t.user)
    }

    fn bearer(&self) -> Option<String> {
        self.token
            .lock()
            .expect("the token lock is never poisoned")
            .as_ref()
            .map(|t| t.access_token.clone())
    }

    fn keep(&self, token: AccessToken) -> AccessToken {
        *self.token.lock().expect("the token lock is never poisoned") = Some(token.clone());
        token
    }

    async fn send(
        &self, method: &Method, path: &str, body: Option<&Body>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = self.bearer() {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, body.content_type)
                .body(body.bytes.clone());
        }
        req.send().await.map_err(|e| self.unreachable(e))
    }

    /// A failed request, naming the server (never the request's URL, which
    /// may carry a token).
    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Transport(format!("{}: {}", self.base, e.without_url()))
    }

    /// Sends a request with a JSON body; on 401 refreshes the token once and
    /// repeats it.
    async fn request(
        &self, method: Method, path: &str, body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response, ClientError> {
        let body = body.map(Body::json).transpose()?;
        self.request_body(method, path, body.as_ref()).await
    }

    /// Sends a request with any body; on 401 refreshes the token once and
    /// repeats it.
    async fn request_body(
        &self, method: Method, path: &str, body: Option<&Body>,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = self.send(&method, path, body).await?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED && self.bearer().is_some() {
            self.refresh().await?;
            return self.send(&method, path, body).await;
        }
        Ok(resp)
    }

    async fn refused(resp: reqwest::Response) -> ClientError {
        let status = resp.status().as_u16();
        match resp.json::<ErrorBody>().await {
            Ok(e) => ClientError::Api {
                status,
                label: e.label,
                message: e.message,
            },
            Err(_) => ClientError::Api {
                status,
                label: "unknown".into(),
                message: format!("HTTP {status}"),
            },
        }
    }

    async fn json<T: DeserializeOwned>(
        &self, method: Method, path: &str, body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let resp = self.request(method, path, body).await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await);
        }
        Ok(resp.json().await?)
    }

    /// Asks for an e-mail verification code.
    pub async fn send_activation_code(&self, email: &str) -> Result<(), ClientError> {
        let body = SendActivationCode {
            email: email.to_owned(),
        };
        let _: serde_json::Value = self
            .json(Method::POST, "/v1/activate/send", Some(&body))
            .await?;
        Ok(())
    }

    /// Creates an account and logs in.
    pub async fn register(&self, req: &Register) -> Result<AccessToken, ClientError> {
        let token = self.json(Method::POST, "/v1/register", Some(req)).await?;
        Ok(self.keep(token))
    }

    /// Logs in.
    pub async fn login(&self, req: &Login) -> Result<AccessToken, ClientError> {
        let token = self.json(Method::POST, "/v1/login", Some(req)).await?;
        Ok(self.keep(token))
    }

    /// A new access token from the login cookie.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/access", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status().is_client_error() {
            // The login cookie is gone, expired or revoked (a password change
            // elsewhere): the person must log in again. Nothing they asked for
            // was refused.
            return Err(ClientError::NotLoggedIn);
        }
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await);
        }
        let token = resp.json().await?;
        self.keep(token);
        Ok(())
    }

    /// Registers a device.
    pub async fn add_client(&self, req: &NewClient) -> Result<Client, ClientError> {
        self.json(Method::POST, "/v1/clients", Some(req)).await
    }

    /// How many unused one-time prekeys the server holds for one of the user's
    /// devices.
    pub async fn prekey_count(&self, client: ClientId) -> Result<u64, ClientError> {
        let path = format!("/v1/clients/{client}/prekeys");
        let count: PrekeyCount = self.json(Method::GET, &path, None::<&()>).await?;
        Ok(count.count)
    }

    /// Reports a device's send generation; the answer is the highest any copy
    /// of the device has reported.
    pub async fn raise_generation(
        &self, client: ClientId, generation: u64,
    ) -> Result<u64, ClientError> {
        let path = format!("/v1/clients/{client}/generation");
        let answer: parley_api::Generation = self
            .json(
                Method::POST,
                &path,
                Some(&parley_api::Generation { generation }),
            )
            .await?;
        Ok(answer.generation)
    }

    /// Adds prekeys to one of the user's devices.
    pub async fn upload_prekeys(
        &self, client: ClientId, prekeys: Vec<Prekey>,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/clients/{client}/prekeys");
        let body = UploadPrekeys { prekeys };
        let _: serde_json::Value = self.json(Method::POST, &path, Some(&body)).await?;
        Ok(())
    }

    /// Claims one prekey per listed device.
    pub async fn claim_prekeys(&self, req: &PrekeyRequest) -> Result<PrekeyMap, ClientError> {
        self.json(Method::POST, "/v1/users/list-prekeys", Some(req))
            .await
    }

    /// Registers a device's MLS signature keys (each scheme once; the same
    /// key again is accepted).
    pub async fn put_mls_public_keys(
        &self, client: ClientId, keys: &parley_api::MlsPublicKeys,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/clients/{client}/mls-public-keys");
        let resp = self.request(Method::PUT, &path, Some(keys)).await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await);
        }
        Ok(())
    }

    /// Publishes key packages (base64 MLS messages) of one of the user's
    /// devices.
    pub async fn upload_key_packages(
        &self, client: ClientId, key_packages: Vec<String>,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/mls/key-packages/self/{client}");
        let body = parley_api::KeyPackageUpload { key_packages };
        let resp = self.request(Method::POST, &path, Some(&body)).await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await);
        }
        Ok(())
    }

    /// How many key packages the server holds for a device on a suite.
    pub async fn key_package_count(
        &self, client: ClientId, suite: u16,
    ) -> Result<u64, ClientError> {
        let path = format!("/v1/mls/key-packages/self/{client}/count?ciphersuite={suite}");
        let count: parley_api::KeyPackageCount = self.json(Method::GET, &path, None::<&()>).await?;
        Ok(count.count)
    }

    /// Claims one key package per device of `user` on `suite` (`skip` left
    /// out: the caller's own device).
    pub async fn claim_key_packages(
        &self, user: &Qualified<UserId>, suite: u16, skip: Option<ClientId>,
    ) -> Result<parley_api::KeyPackageBundle, ClientError> {
        let skip = skip.map(|c| format!("&skip_own={c}")).unwrap_or_default();
        let path = format!(
            "/v1/mls/key-packages/claim/{}/{}?ciphersuite={suite}{skip}",
            user.domain, user.id
        );
        self.json(Method::POST, &path, None::<&()>).await
    }

    /// The backend's MLS settings (`GET /v1/mls/config`).
    pub async fn mls_settings(&self) -> Result<parley_api::MlsSettings, ClientError> {
        self.json(Method::GET, "/v1/mls/config", None::<&()>).await
    }

    /// The backend's removal keys (`GET /v1/mls/public-keys`), which every
    /// group names as its external sender.
    pub async fn removal_keys(&self) -> Result<parley_api::MlsRemovalKeys, ClientError> {
        self.json(Method::GET, "/v1/mls/public-keys", None::<&()>)
            .await
    }

    /// Posts a commit bundle (`/v1/mls/commit-bundles`) or an application
    /// message (`/v1/mls/messages`) of `client`: the group's epoch after it.
    pub async fn post_mls(
        &self, client: ClientId, what: MlsPost, bytes: Vec<u8>,
    ) -> Result<u64, ClientError> {
        let path = match what {
            MlsPost::CommitBundle => format!("/v1/mls/commit-bundles?client={client}"),
            MlsPost::Message => format!("/v1/mls/messages?client={client}"),
        };
        let resp = self
            .request_body(Method::POST, &path, Some(&Body::mls(bytes)))
            .await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await);
        }
        let sent: parley_api::MlsSent = resp.json().await?;
        Ok(sent.epoch)
    }

    /// An MLS conversation's latest group info (an MLS message).
    pub async fn group_info(&self, id: &Qualified<ConversationId>) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/conversations/{}/{}/groupinfo", id.domain, id.id);
        let resp = self.request_body(Method::GET, &path, None).await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await);
        }
        Ok(resp.bytes().await?.to_vec())
    }

    /// A conversation's subconversation (`conference`), opened by the
    /// server if it was not.
    pub async fn subconversation(
        &self, id: &Qualified<ConversationId>, name: &str,
    ) -> Result<Subconversation, ClientError> {
        let path = format!(
            "/v1/conversations/{}/{}/subconversations/{name}",
            id.domain, id.id
        );
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// A subconversation's latest group info (an MLS message).
    pub async fn subconversation_group_info(
        &self, id: &Qualified<ConversationId>, name: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let path = format!(
            "/v1/conversations/{}/{}/subconversations/{name}/groupinfo",
            id.domain, id.id
        );
        let resp = self.request_body(Method::GET, &path, None).await?;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await);
        }
        Ok(resp.bytes().await?.to_vec())
    }

    /// Takes `device` out of a subconversation.
    pub async fn leave_subconversation(
        &self, id: &Qualified<ConversationId>, name: &str, device: ClientId,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/v1/conversations/{}/{}/subconversations/{name}/self?client={device}",
            id.domain, id.id
        );
        let _: serde_json::Value = self.json(Method::DELETE, &path, None::<&()>).await?;
        Ok(())
    }

    /// Resets a subconversation whose group is still the one named.
    pub async fn reset_subconversation(
        &self, id: &Qualified<ConversationId>, name: &str, seen: &SubconversationReset,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/v1/conversations/{}/{}/subconversations/{name}",
            id.domain, id.id
        );
        let _: serde_json::Value = self.json(Method::DELETE, &path, Some(seen)).await?;
        Ok(())
    }

    /// Creates a group.
    pub async fn create_conversation(
        &self, req: &NewConversation,
    ) -> Result<Conversation, ClientError> {
        self.json(Method::POST, "/v1/conversations", Some(req))
            .await
    }

    /// One conversation.
    pub async fn conversation(
        &self, id: &Qualified<ConversationId>,
    ) -> Result<Conversation, ClientError> {
        let path = format!("/v1/conversations/{}/{}", id.domain, id.id);
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// Sends a Proteus message.
    pub async fn post_proteus(
        &self, id: &Qualified<ConversationId>, msg: &NewProteusMessage,
    ) -> Result<Delivery, ClientError> {
        let path = format!("/v1/conversations/{}/{}/proteus/messages", id.domain, id.id);
        let resp = self.request(Method::POST, &path, Some(msg)).await?;
        match resp.status().as_u16() {
            201 => Ok(Delivery::Sent(resp.json().await?)),
            412 => Ok(Delivery::Missing(resp.json().await?)),
            _ => Err(Self::refused(resp).await),
        }
    }

    /// Opens a device's live socket, replaying its queue after `since` first. The
    /// socket authenticates once, at the upgrade: an expired token is refreshed and
    /// the upgrade repeated, as for any other call.
    pub async fn connect_live(
        &self, client: ClientId, since: Option<u64>,
    ) -> Result<LiveSocket, ClientError> {
        match self.upgrade(client, since).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401 => {
                self.refresh().await?;
                self.upgrade(client, since).await
            }
            other => other,
        }
        .map(|ws| LiveSocket { ws })
        .map_err(|e| ClientError::Transport(e.to_string()))
    }

    async fn upgrade(
        &self, client: ClientId, since: Option<u64>,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::Error,
    > {
        let ws_base = self
            .base
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        let url = format!("{ws_base}/v1/await?client={client}{since}");
        // The token goes in a header, never in the URL (URLs end up in logs).
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
        if let Some(token) = self.bearer() {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                tokio_tungstenite::tungstenite::Error::Url(
                    tokio_tungstenite::tungstenite::error::UrlError::UnsupportedUrlScheme,
                )
            })?;
            request.headers_mut().insert("authorization", value);
        }
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map_err(|_| {
            tokio_tungstenite::tungstenite::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the server did not answer the upgrade",
            ))
        })?
        .map(|(ws, _)| ws)
    }

    /// Logs out: the server revokes the login cookie; this client forgets it.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/access/logout", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        *self.token.lock().expect("the token lock is never poisoned") = None;
        if !resp.status().is_success() {
            return Err(Self::refused(resp).await);
        }
        Ok(())
    }

    /// This user's devices.
    pub async fn clients(&self) -> Result<Vec<Client>, ClientError> {
        self.json(Method::GET, "/v1/clients", None::<&()>).await
    }

    /// Removes one of this user's devices (password required).
    pub async fn remove_client(&self, client: ClientId, password: &str) -> Result<(), ClientError> {
        let body = PasswordConfirmation {
            password: Some(password.to_owned()),
        };
        let path = format!("/v1/clients/{client}");
        let _: serde_json::Value = self.json(Method::DELETE, &path, Some(&body)).await?;
        Ok(())
    }

    /// Anyone's devices, with their published signatures.
    pub async fn user_clients(
        &self, user: &Qualified<UserId>,
    ) -> Result<Vec<PublicClient>, ClientError> {
        let path = format!("/v1/users/{}/{}/clients", user.domain, user.id);
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// This user's own profile.
    pub async fn self_profile(&self) -> Result<parley_api::SelfProfile, ClientError> {
        self.json(Method::GET, "/v1/self", None::<&()>).await
    }

    /// A user's profile.
    pub async fn user_profile(&self, user: &Qualified<UserId>) -> Result<UserProfile, ClientError> {
        let path = format!("/v1/users/{}/{}", user.domain, user.id);
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// Finds a user by handle.
    pub async fn user_by_handle(&self, handle: &str) -> Result<UserProfile, ClientError> {
        let path = format!("/v1/handles/{handle}");
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// Changes this user's profile (the fields given).
    pub async fn update_profile(
        &self, update: &parley_api::UpdateProfile,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self.json(Method::PUT, "/v1/self", Some(update)).await?;
        Ok(())
    }

    /// Sets this user's handle.
    pub async fn set_handle(&self, handle: &str) -> Result<(), ClientError> {
        let body = parley_api::SetHandle {
            handle: handle.to_owned(),
        };
        let _: serde_json::Value = self
            .json(Method::PUT, "/v1/self/handle", Some(&body))
            .await?;
        Ok(())
    }

    /// Asks to connect with a user.
    pub async fn request_connection(
        &self, user: &Qualified<UserId>,
    ) -> Result<Connection, ClientError> {
        let path = format!("/v1/connections/{}/{}", user.domain, user.id);
        self.json(Method::POST, &path, None::<&()>).await
    }

    /// Accepts, ignores, blocks or cancels a connection.
    pub async fn update_connection(
        &self, user: &Qualified<UserId>, status: ConnectionStatus,
    ) -> Result<Connection, ClientError> {
        let path = format!("/v1/connections/{}/{}", user.domain, user.id);
        let body = ConnectionUpdate { status };
        self.json(Method::PUT, &path, Some(&body)).await
    }

    /// This user's connections.
    pub async fn connections(&self) -> Result<Vec<Connection>, ClientError> {
        self.json(Method::GET, "/v1/connections", None::<&()>).await
    }

    /// Every conversation this user is a member of, page by page.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        let mut all = Vec::new();
        let mut start = String::new();
        loop {
            let path = format!("/v1/conversations?size=500{start}");
            let page: ConversationPage = self.json(Method::GET, &path, None::<&()>).await?;
            start = page
                .conversations
                .last()
                .map(|c| format!("&start={}", c.id.id))
                .unwrap_or_default();
            all.extend(page.conversations);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    /// Adds members to a group.
    pub async fn add_members(
        &self, id: &Qualified<ConversationId>, users: Vec<Qualified<UserId>>,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/conversations/{}/{}/members", id.domain, id.id);
        let body = AddMembers { users, role: None };
        let _: serde_json::Value = self.json(Method::POST, &path, Some(&body)).await?;
        Ok(())
    }

    /// Takes a group's next step from Proteus to MLS (`mixed`, then `mls`).
    pub async fn set_protocol(
        &self, id: &Qualified<ConversationId>, protocol: parley_api::Protocol,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/conversations/{}/{}/protocol", id.domain, id.id);
        let body = parley_api::ProtocolUpdate { protocol };
        let _: serde_json::Value = self.json(Method::PUT, &path, Some(&body)).await?;
        Ok(())
    }

    /// Removes a member from a group (or, with this user, leaves it).
    pub async fn remove_member(
        &self, id: &Qualified<ConversationId>, user: &Qualified<UserId>,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/v1/conversations/{}/{}/members/{}/{}",
            id.domain, id.id, user.domain, user.id
        );
        let _: serde_json::Value = self.json(Method::DELETE, &path, None::<&()>).await?;
        Ok(())
    }

    /// Tells the conversation's open sockets that this user started or stopped
    /// typing.
    pub async fn typing(
        &self, id: &Qualified<ConversationId>, started: bool,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/conversations/{}/{}/typing", id.domain, id.id);
        let body = parley_api::Typing {
            status: if started {
                parley_api::TypingStatus::Started
            } else {
                parley_api::TypingStatus::Stopped
            },
        };
        let _: serde_json::Value = self.json(Method::POST, &path, Some(&body)).await?;
        Ok(())
    }

    /// Stores this user's recovery bundle.
    pub async fn put_recovery_bundle(&self, bundle: &[u8]) -> Result<(), ClientError> {
        let body = RecoveryBundle {
            bundle: base64::engine::general_purpose::STANDARD.encode(bundle),
        };
        let _: serde_json::Value = self
            .json(Method::PUT, "/v1/self/recovery-bundle", Some(&body))
            .await?;
        Ok(())
    }

    /// This user's recovery bundle, if one was stored.
    pub async fn recovery_bundle(&self) -> Result<Option<Vec<u8>>, ClientError> {
        match self
            .json::<RecoveryBundle>(Method::GET, "/v1/self/recovery-bundle", None::<&()>)
            .await
        {
            Ok(b) => base64::engine::general_purpose::STANDARD
                .decode(b.bundle)
                .map(Some)
                .map_err(|_| ClientError::Decode("the recovery bundle is not base64".into())),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A page of a device's event queue after `since`.
    pub async fn notifications(
        &self, client: ClientId, since: Option<u64>,
    ) -> Result<NotificationPage, ClientError> {
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        let path = format!("/v1/notifications?client={client}{since}");
        self.json(Method::GET, &path, None::<&()>).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let api = Api::new("http://127.0.0.1:1").expect("client");
        api.keep(AccessToken {
            access_token: "secret-token".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            user: UserId::default(),
        });
        let shown = format!("{api:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
}
