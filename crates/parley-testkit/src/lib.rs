//! A real Parley server for tests: the whole server on a loopback port with its
//! store (a SQLite file in a temporary directory, a fresh PostgreSQL database,
//! or the in-memory reference store), e-mail written to an outbox in that
//! directory, and the server's clock under the test's control. Nothing of the
//! server is mocked.
//!
//! The one harness for every test that needs a server: the server's own, the
//! client SDK's, the CLI's and bots'. PostgreSQL runs when
//! `PARLEY_TEST_POSTGRES` holds a connection URL; without it,
//! [`TestServer::start_on`] prints a notice and gives `None`.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use parley_server::config::{Database, Settings};
use parley_server::server::{RunningServer, start_with_store};
use parley_store::Store;

/// Which store the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the server's directory (the default).
    Sqlite,
    /// A fresh database on the PostgreSQL server `PARLEY_TEST_POSTGRES` names.
    Postgres,
    /// The in-memory reference store: fastest, lost when the server stops.
    Memory,
}

/// A running server and its directory (database, outbox).
#[derive(Debug)]
pub struct TestServer {
    /// The server: its address and clock.
    pub running: RunningServer,
    backend: Backend,
    settings: Settings,
    dir: Arc<tempfile::TempDir>,
    store: Arc<dyn Store>,
}

impl TestServer {
    /// Starts a server with development settings on `127.0.0.1:0`, on SQLite.
    ///
    /// # Panics
    /// When the server cannot start: a test cannot go on without it.
    pub async fn start() -> Self {
        Self::start_on(Backend::Sqlite, |_| {})
            .await
            .expect("SQLite always runs")
    }

    /// Starts a server on `backend` with development settings on
    /// `127.0.0.1:0`, changed by `tweak`. `None` (with a notice) for
    /// PostgreSQL when `PARLEY_TEST_POSTGRES` is not set.
    ///
    /// # Panics
    /// When the server or its store cannot start.
    pub async fn start_on(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("a temporary directory for the server");
        let mut settings = Settings::development(dir.path());
        settings.listen = "127.0.0.1:0".parse().expect("a loopback address");
        tweak(&mut settings);
        let store: Arc<dyn Store> = match backend {
            Backend::Sqlite => {
                let path = dir.path().join("parley.db");
                settings.database = Database::Sqlite(path.clone());
                Arc::new(open_sqlite(&path).await)
            }
            Backend::Postgres => {
                let Ok(url) = std::env::var("PARLEY_TEST_POSTGRES") else {
                    skipped_notice();
                    return None;
                };
                Arc::new(
                    parley_store_postgres::PostgresStore::open_fresh_database(&url)
                        .await
                        .expect("a fresh PostgreSQL database"),
                )
            }
            Backend::Memory => Arc::new(parley_store::memory::MemoryStore::new()),
        };
        let running = start_with_store(settings.clone(), store.clone(), Default::default())
            .await
            .expect("the server starts");
        Some(Self {
            running,
            backend,
            settings,
            dir: Arc::new(dir),
            store,
        })
    }

    /// Which store the server runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Stops the server, waits `down` (clients find nothing listening), and
    /// starts it again at the same address with the same data and settings.
    ///
    /// # Panics
    /// When the server fails to stop or to start again, or does not run on
    /// SQLite (the only store a test can reopen).
    pub async fn restart(self, down: std::time::Duration) -> Self {
        assert_eq!(
            self.backend,
            Backend::Sqlite,
            "only a SQLite server can be restarted with its data"
        );
        let addr = self.running.addr;
        self.running.shutdown().await.expect("the server stops");
        tokio::time::sleep(down).await;
        let mut settings = self.settings;
        settings.listen = addr;
        let store: Arc<dyn Store> = Arc::new(open_sqlite(&self.dir.path().join("parley.db")).await);
        let running = start_with_store(settings.clone(), store.clone(), Default::default())
            .await
            .expect("the server starts again");
        Self {
            running,
            backend: self.backend,
            settings,
            dir: self.dir,
            store,
        }
    }

    /// Another node of this server, as a cluster's next process would be:
    /// the same PostgreSQL database, its own address, data directory (signing
    /// keys on disk, outbox), sockets and memory, with its settings changed
    /// by `tweak` (`nats_url`, without which its tokens are its own). (It
    /// shares the first node's connection pool: the database is what nodes
    /// share.)
    ///
    /// # Panics
    /// When the server does not run on PostgreSQL, or the node cannot start.
    pub async fn another_node(&self, tweak: impl FnOnce(&mut Settings)) -> Self {
        assert_eq!(
            self.backend,
            Backend::Postgres,
            "nodes share a PostgreSQL database"
        );
        let dir = tempfile::tempdir().expect("a temporary directory for the node");
        let mut settings = self.settings.clone();
        settings.listen = "127.0.0.1:0".parse().expect("a loopback address");
        settings.data_dir = dir.path().to_owned();
        tweak(&mut settings);
        let running = start_with_store(settings.clone(), self.store.clone(), Default::default())
            .await
            .expect("another node starts");
        Self {
            running,
            backend: self.backend,
            settings,
            dir: Arc::new(dir),
            store: self.store.clone(),
        }
    }

    /// Stops the server (clients then find nothing listening at its address).
    ///
    /// # Panics
    /// When the server fails while stopping.
    pub async fn stop(self) {
        self.running.shutdown().await.expect("the server stops");
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    /// The server's directory (database file, outbox).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's e-mail outbox.
    pub fn outbox(&self) -> std::path::PathBuf {
        self.dir.path().join("outbox")
    }

    /// The newest e-mail verification code sent to `email`.
    ///
    /// # Panics
    /// When none was sent.
    pub fn code_for(&self, email: &str) -> String {
        let mut found = None;
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path().join("outbox"))
            .expect("the outbox exists once mail was sent")
            .map(|e| e.expect("an outbox entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let text = std::fs::read_to_string(&path).expect("a readable mail");
            if text.contains(&format!("To: {email}"))
                && let Some(at) = text.find("code is ")
            {
                found = Some(text[at + 8..at + 14].to_owned());
            }
        }
        found.unwrap_or_else(|| panic!("no code was mailed to {email}"))
    }

    /// Whether any file of the server's database contains `needle` (to prove
    /// the server holds no plaintext).
    pub fn database_contains(&self, needle: &[u8]) -> bool {
        ["parley.db", "parley.db-wal"].iter().any(|name| {
            std::fs::read(self.dir.path().join(name))
                .is_ok_and(|hay| hay.windows(needle.len()).any(|w| w == needle))
        })
    }
}

async fn open_sqlite(path: &Path) -> parley_store_sqlite::SqliteStore {
    parley_store_sqlite::SqliteStore::open(path)
        .await
        .expect("the SQLite store opens")
}

#[expect(
    clippy::print_stderr,
    reason = "a skipped test says so where the test runner shows it"
)]
fn skipped_notice() {
    eprintln!("NOTICE: PARLEY_TEST_POSTGRES is not set: this test is skipped on PostgreSQL");
}
