//! Start-up: storage from the database setting, signing keys, mail, the router, and
//! a listener (plain or TLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use axum_server::Handle;
use parley_store::Store;
use parley_store_postgres::PostgresStore;
use parley_store_sqlite::SqliteStore;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::clock::Clock;
use crate::config::{Database, Settings};
use crate::mail::Mailer;
use crate::ratelimit::RateLimiter;
use crate::routes::{AppState, router};
use crate::services::Core;
use crate::services::accounts::Accounts;
use crate::services::clients::Clients;
use crate::services::connections::Connections;
use crate::services::conversations::Conversations;
use crate::services::messages::Messages;
use crate::services::notifications::Notifications;
use crate::tokens::TokenKeys;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Why the server could not start, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or keys could not be used.
    #[error("{0}")]
    Io(String),
    /// The database could not be opened.
    #[error("opening the database: {0}")]
    Store(#[from] parley_store::StoreError),
    /// TLS could not be set up.
    #[error("{0}")]
    Tls(String),
}

/// A server that is running.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its clock (tests move it).
    pub clock: Clock,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish (up to 10 s), and waits.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        self.task.await.map_err(std::io::Error::other)?
    }

    /// Waits until the server stops by itself.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }

    /// A handle that can stop the server from elsewhere.
    pub fn handle(&self) -> Handle<SocketAddr> {
        self.handle.clone()
    }
}

/// Opens the configured store.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StartError> {
    Ok(match &settings.database {
        Database::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        Database::SqliteUrl(url) => Arc::new(SqliteStore::open_url(url).await?),
        Database::Postgres(url) => Arc::new(PostgresStore::open_url(url).await?),
    })
}

/// Starts serving with the configured store.
pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        StartError::Io(format!(
            "cannot create the data directory {}: {e}",
            settings.data_dir.display()
        ))
    })?;
    let store = open_store(&settings).await?;
    start_with_store(settings, store, Clock::default()).await
}

/// Starts serving with a given store and clock.
pub async fn start_with_store(
    settings: Settings,
    store: Arc<dyn Store>,
    clock: Clock,
) -> Result<RunningServer, StartError> {
    let keys_dir = settings.data_dir.join("keys");
    let tokens = TokenKeys::load_or_create(&keys_dir)
        .map_err(|e| StartError::Io(format!("signing keys in {}: {e}", keys_dir.display())))?;
    let from = settings
        .mail_from
        .parse()
        .map_err(|e| StartError::Io(format!("mail_from: {e}")))?;
    let mailer = match &settings.smtp {
        Some(smtp) => Mailer::smtp(
            &smtp.host,
            smtp.port,
            smtp.username.clone().zip(smtp.password.clone()),
            from,
        ),
        None => Mailer::Outbox {
            dir: settings.data_dir.join("outbox"),
            from,
        },
    };
    let tls = match &settings.tls {
        Some(t) => Some(crate::tls::server_config(&t.cert, &t.key).map_err(StartError::Tls)?),
        None => None,
    };
    let core = Core {
        store,
        clock: clock.clone(),
        mailer,
        tokens: Arc::new(tokens),
        settings: Arc::new(settings.clone()),
        per_account: Arc::new(RateLimiter::new(settings.limits.per_account, 300)),
        per_address: Arc::new(RateLimiter::new(settings.limits.per_address, 300)),
        wakeups: Arc::new(crate::wakeups::LocalWakeups::default()),
        push: crate::push::PushSender::new(settings.push_allow_private).map_err(StartError::Tls)?,
    };
    let notifications = Notifications::new(core.clone());
    let accounts = Accounts::new(core.clone());
    let connections = Connections::new(core.clone());
    let conversations = Conversations::new(core.clone(), connections.clone());
    let state = AppState {
        messages: Messages::new(core.clone(), conversations.clone(), connections.clone()),
        clients: Clients::new(core, accounts.clone()),
        notifications,
        accounts,
        connections,
        conversations,
        tls: tls.is_some(),
    };
    let mut app = router(state).layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    if tls.is_some() {
        app = app.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("strict-transport-security"),
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }

    let listener = std::net::TcpListener::bind(settings.listen)
        .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", settings.listen)))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| StartError::Io(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Io(e.to_string()))?;
    let handle = Handle::new();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let task = match tls {
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(|e| StartError::Io(e.to_string()))?
                .handle(handle.clone());
            tokio::spawn(server.serve(service))
        }
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
            let server = axum_server::tls_rustls::from_tcp_rustls(listener, config)
                .map_err(|e| StartError::Io(e.to_string()))?
                .handle(handle.clone());
            tokio::spawn(server.serve(service))
        }
    };
    Ok(RunningServer {
        addr,
        clock,
        handle,
        task,
    })
}
