//! Start-up: storage from the database setting, signing keys, mail, the router, and
//! a listener (plain or TLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

pub use crate::transport::MAX_BODY_BYTES;

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
    /// NATS (`nats_url`) could not be used.
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
}

/// A server that is running.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its clock (tests move it).
    pub clock: Clock,
    stopper: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    notifications: Notifications,
}

/// Stops a server from elsewhere (a signal handler).
#[derive(Clone, Debug)]
pub struct Stopper {
    handle: Handle<SocketAddr>,
    sockets: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Stopper {
    /// Stops accepting, closes open WebSockets with `server-stopping` (their
    /// clients reconnect elsewhere or later), and lets requests in flight
    /// finish (up to 10 s).
    pub fn stop(&self) {
        self.sockets.send_replace(true);
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
    }
}

impl RunningServer {
    /// Stops (see [`Stopper::stop`]) and waits.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.stopper.stop();
        self.task.await.map_err(std::io::Error::other)?
    }

    /// Waits until the server stops by itself.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }

    /// What can stop the server from elsewhere.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Purges expired events now, as the server's own task does once a minute
    /// (for tests, which move the clock); how many went.
    pub async fn purge_expired_events(&self) -> parley_store::StoreResult<u64> {
        self.notifications.purge_expired().await
    }
}

/// How often expired events are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Purges expired events and key packages at start and then once a minute
/// until the server stops: off the request path, so that no reader waits for
/// a purge. A failed purge is logged and tried again at the next tick.
async fn purge_loop(
    notifications: Notifications, mls: crate::services::mls::Mls,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        if let Err(e) = notifications.purge_expired().await {
            tracing::warn!(error = %e, "purging expired events failed: trying again in a minute");
        }
        if let Err(e) = mls.purge_expired().await {
            tracing::warn!(error = %e, "purging expired key packages failed: trying again in a minute");
        }
    }
}

/// HTTP/1.1 with deadlines: a connection's first request and every request's
/// headers within `header_timeout`. An idle kept-alive connection is waiting
/// for headers, so it is closed after the same time.
///
/// HTTP/2 is not served (the TLS configuration offers only HTTP/1.1), but the
/// connection builder cannot turn it off where WebSocket upgrades are served:
/// a client that speaks it anyway is allowed no streams, so it never gets a
/// request in and the first-request deadline closes its connection.
fn bounded<A: axum_server::Address, Acc>(
    mut server: axum_server::Server<A, Acc>, settings: &Settings,
) -> axum_server::Server<A, Acc> {
    let http = server.http_builder();
    http.http1()
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(64 * 1024);
    http.http2().max_concurrent_streams(0);
    server.first_request_timeout(settings.header_timeout)
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
    settings: Settings, store: Arc<dyn Store>, clock: Clock,
) -> Result<RunningServer, StartError> {
    let keys_dir = settings.data_dir.join("keys");
    let mut tokens = TokenKeys::load_or_create(&keys_dir)
        .map_err(|e| StartError::Io(format!("signing keys in {}: {e}", keys_dir.display())))?;
    if settings.nats_url.is_some() {
        // Several nodes: one signs what another checks.
        let seed = store
            .token_signing_seed(tokens.signing_seed().as_slice())
            .await?;
        let seed: zeroize::Zeroizing<[u8; 32]> =
            zeroize::Zeroizing::new(seed.as_slice().try_into().map_err(|_| {
                StartError::Io("the stored token signing seed is not 32 bytes".into())
            })?);
        tokens.sign_with(&seed);
    }
    let from = settings
        .mail_from
        .parse()
        .map_err(|e| StartError::Io(format!("mail_from: {e}")))?;
    let mailer = match &settings.smtp {
        Some(smtp) => {
            if smtp.in_clear_to_another_machine() {
                tracing::warn!(
                    host = %smtp.host,
                    "smtp: security = \"none\": verification and reset codes cross the network \
                     in clear text; set security = \"starttls\" or \"tls\" unless the relay's \
                     network is trusted"
                );
            }
            Mailer::smtp(smtp, from).map_err(|e| StartError::Tls(e.0))?
        }
        None => Mailer::Outbox {
            dir: settings.data_dir.join("outbox"),
            from,
        },
    };
    let tls = match &settings.tls {
        Some(t) => Some(crate::tls::server_config(&t.cert, &t.key).map_err(StartError::Tls)?),
        None => None,
    };
    let stopping = Arc::new(tokio::sync::watch::channel(false).0);
    let wakeups: Arc<dyn crate::wakeups::Wakeups> = match &settings.nats_url {
        Some(url) => crate::nats::NatsWakeups::connect(&url.0, &settings.domain).await?,
        None => Arc::new(crate::wakeups::LocalWakeups::default()),
    };
    let core = Core {
        devices: store.clone(),
        clock: clock.clone(),
        mailer,
        tokens: Arc::new(tokens),
        settings: Arc::new(settings.clone()),
        per_account: Arc::new(RateLimiter::new(settings.limits.per_account, 300)),
        per_address: Arc::new(RateLimiter::new(settings.limits.per_address, 300)),
        wakeups,
        push: crate::push::PushSender::new(settings.push_allow_private).map_err(StartError::Tls)?,
    };
    // Each service gets the store of what it owns (ARCHITECTURE.md's table).
    let notifications = Notifications::new(core.clone(), store.clone());
    let accounts = Accounts::new(core.clone(), store.clone());
    let connections = Connections::new(core.clone(), store.clone(), accounts.clone());
    let groups = crate::services::groups::Groups::new(store.clone());
    let conversations = Conversations::new(
        core.clone(),
        store.clone(),
        connections.clone(),
        groups.clone(),
    );
    let clients = Clients::new(
        core.clone(),
        store.clone(),
        accounts.clone(),
        connections.clone(),
    );
    let purging = notifications.clone();
    let mls = crate::services::mls::Mls::new(
        core.clone(),
        store.clone(),
        clients.clone(),
        connections.clone(),
        conversations.clone(),
        groups,
    );
    let purging_mls = mls.clone();
    let body_rules = crate::transport::BodyRules {
        deadline: settings.body_timeout,
        tokens: core.tokens.clone(),
        clock: core.clock.clone(),
    };
    let state = AppState {
        mls,
        messages: Messages::new(
            core,
            store,
            conversations.clone(),
            connections.clone(),
            clients.clone(),
        ),
        clients,
        notifications,
        accounts,
        connections,
        conversations,
        tls: tls.is_some(),
        trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
        stopping: stopping.subscribe(),
    };
    let mut app = router(state).layer(axum::middleware::from_fn_with_state(
        body_rules,
        crate::transport::bounded_body,
    ));
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
    let fit = crate::transport::connections_that_fit();
    let max_connections = match settings.max_connections {
        Some(wanted) if wanted > fit => {
            tracing::warn!(
                wanted,
                fit,
                "max_connections is more than the open-files limit allows: using what fits"
            );
            fit
        }
        Some(wanted) => wanted,
        None => fit,
    };
    tracing::info!(max_connections, "connection limit");
    let capped = crate::transport::Capped::new(max_connections);
    let task = match tls {
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(|e| StartError::Io(e.to_string()))?
                .acceptor(capped)
                .handle(handle.clone());
            tokio::spawn(bounded(server, &settings).serve(service))
        }
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .handshake_timeout(settings.header_timeout)
                .acceptor(capped);
            let server = axum_server::from_tcp(listener)
                .map_err(|e| StartError::Io(e.to_string()))?
                .acceptor(acceptor)
                .handle(handle.clone());
            tokio::spawn(bounded(server, &settings).serve(service))
        }
    };
    tokio::spawn(purge_loop(
        purging.clone(),
        purging_mls,
        stopping.subscribe(),
    ));
    Ok(RunningServer {
        addr,
        clock,
        stopper: Stopper {
            handle,
            sockets: stopping,
        },
        task,
        notifications: purging,
    })
}
