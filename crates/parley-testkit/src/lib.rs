//! A real Parley server for tests: the whole server on a loopback port with a
//! SQLite file in a temporary directory, e-mail written to an outbox there, and
//! the server's clock under the test's control. Nothing is mocked.
//!
//! Used by the client SDK's, the CLI's and bots' tests. The server's own tests
//! have their own harness, which also runs every scenario on PostgreSQL.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use parley_server::config::{Database, Settings};
use parley_server::server::{RunningServer, start_with_store};

/// A running server and its directory (database, outbox).
#[derive(Debug)]
pub struct TestServer {
    /// The server: its address and clock.
    pub running: RunningServer,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with development settings on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When the server cannot start: a test cannot go on without it.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the server");
        let running = Self::run(dir.path(), "127.0.0.1:0").await;
        Self { running, dir }
    }

    async fn run(dir: &Path, listen: &str) -> RunningServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut settings = Settings::development(dir);
        settings.listen = listen.parse().expect("a loopback address");
        let path = dir.join("parley.db");
        settings.database = Database::Sqlite(path.clone());
        let store = parley_store_sqlite::SqliteStore::open(&path)
            .await
            .expect("the SQLite store opens");
        start_with_store(settings, Arc::new(store), Default::default())
            .await
            .expect("the server starts")
    }

    /// Stops the server, waits `down` (clients find nothing listening), and
    /// starts it again at the same address with the same data.
    ///
    /// # Panics
    /// When the server fails to stop or to start again.
    pub async fn restart(self, down: std::time::Duration) -> Self {
        let addr = self.running.addr;
        self.running.shutdown().await.expect("the server stops");
        tokio::time::sleep(down).await;
        let running = Self::run(self.dir.path(), &addr.to_string()).await;
        Self {
            running,
            dir: self.dir,
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
