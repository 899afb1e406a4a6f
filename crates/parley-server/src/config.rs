//! Configuration: defaults for a development backend, a TOML file for production,
//! and `PARLEY_*` variables and flags on top (flags win).
//!
//! With nothing given: `127.0.0.1:8080`, domain `localhost`, everything under
//! `./parley-data` (SQLite file, signing keys, e-mail outbox).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::passwords::PasswordHashing;

/// The TOML file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// This backend's domain: the `@domain` of every id it owns.
    pub domain: Option<String>,
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Where data lives.
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL; `sqlite://…` for another SQLite file.
    pub database_url: Option<String>,
    /// Serve HTTPS.
    pub tls: Option<TlsConfig>,
    /// Send e-mail by SMTP instead of writing it to the outbox.
    pub smtp: Option<SmtpConfig>,
    /// Sender address of e-mail.
    pub mail_from: Option<String>,
    /// `scrypt` (default) or `argon2id` for new password hashes.
    pub password_hashing: Option<PasswordHashing>,
    /// Attempt limits.
    pub limits: Option<Limits>,
    /// Days events stay in a device's queue (default 28).
    pub notification_retention_days: Option<i64>,
    /// Most members of a group (default 500).
    pub max_conversation_members: Option<usize>,
    /// Allow `http://` push endpoints (default: only `https://`).
    pub push_allow_http: Option<bool>,
    /// Allow push endpoints on loopback, private, link-local and unspecified
    /// addresses (default: refused, so a device cannot make the server call
    /// into its own network).
    pub push_allow_private: Option<bool>,
    /// Password hashes computed at once (default: one per core); four times as
    /// many may wait, and more get 503 with `Retry-After`.
    pub password_hash_concurrency: Option<usize>,
    /// Connections open at once (default: as many as the open-files limit
    /// allows, after raising it to the system's hard limit).
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers, and a new
    /// connection its first request (default 10).
    pub header_timeout_seconds: Option<u64>,
    /// Seconds a client has to send a request's body (default 30).
    pub body_timeout_seconds: Option<u64>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed: the client's address is then the last
    /// one in `X-Forwarded-For` that is not a proxy, and cookies are `Secure`
    /// when the proxy says it received HTTPS.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// Attempt limits, per 5 minutes: logins and code tries per account, requests
/// that count attempts per client address, and prekey claims per device and
/// claimer.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Logins or code attempts per account.
    pub per_account: u32,
    /// Attempts per client address.
    pub per_address: u32,
    /// One-time prekeys of one device one user may take (enough for a session
    /// lost and remade a few times, too few to drain a pool of a hundred);
    /// beyond it, claims get the last-resort prekey.
    #[serde(default = "default_prekey_claims")]
    pub prekey_claims: u32,
}

fn default_prekey_claims() -> u32 {
    5
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_account: 10,
            per_address: 300,
            prekey_claims: default_prekey_claims(),
        }
    }
}

/// TLS certificate chain and key, PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// An SMTP relay.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name.
    pub host: String,
    /// Port (default 25).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// User name, if the relay wants one.
    pub username: Option<String>,
    /// Password, if the relay wants one.
    pub password: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn default_smtp_port() -> u16 {
    25
}

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A SQLite URL.
    SqliteUrl(String),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// Everything the server runs with, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This backend's domain.
    pub domain: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database.
    pub database: Database,
    /// TLS, if any.
    pub tls: Option<TlsConfig>,
    /// SMTP, if any (else the outbox).
    pub smtp: Option<SmtpConfig>,
    /// Sender address.
    pub mail_from: String,
    /// Hash for new passwords.
    pub password_hashing: PasswordHashing,
    /// Attempt limits.
    pub limits: Limits,
    /// Days events stay in a device's queue.
    pub notification_retention_days: i64,
    /// Most members of a group.
    pub max_conversation_members: usize,
    /// Whether push endpoints may be `http://`.
    pub push_allow_http: bool,
    /// Whether push endpoints may be on internal addresses.
    pub push_allow_private: bool,
    /// Password hashes computed at once.
    pub password_hash_concurrency: usize,
    /// How long one WebSocket frame may take to go out before the socket is cut.
    pub websocket_send_timeout: std::time::Duration,
    /// Connections open at once (`None`: what the open-files limit allows).
    pub max_connections: Option<usize>,
    /// Time to send a request's headers (and a connection's first request).
    pub header_timeout: std::time::Duration,
    /// Time to send a request's body.
    pub body_timeout: std::time::Duration,
    /// Reverse proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// A configuration a person must fix, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Development defaults under `data_dir`.
    pub fn development(data_dir: &Path) -> Self {
        Self {
            domain: "localhost".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.to_owned(),
            database: Database::Sqlite(data_dir.join("parley.db")),
            tls: None,
            smtp: None,
            mail_from: "Parley <parley@localhost>".into(),
            password_hashing: PasswordHashing::Scrypt,
            limits: Limits::default(),
            notification_retention_days: parley_api::limits::NOTIFICATION_RETENTION_DAYS,
            max_conversation_members: parley_api::limits::MAX_CONVERSATION_MEMBERS,
            push_allow_http: false,
            push_allow_private: false,
            password_hash_concurrency: std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get),
            websocket_send_timeout: std::time::Duration::from_secs(10),
            max_connections: None,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }

    /// Resolves defaults, then the file, then explicit overrides.
    pub fn resolve(
        config_file: Option<&Path>,
        listen: Option<SocketAddr>,
        data_dir: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let file = match config_file {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!(
                        "cannot read the config file {}: {e}",
                        path.display()
                    ))
                })?;
                toml::from_str(&text).map_err(|e| {
                    ConfigError(format!(
                        "the config file {} is not valid: {e}",
                        path.display()
                    ))
                })?
            }
        };
        let data_dir = data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("parley-data"));
        let mut s = Self::development(&data_dir);
        if let Some(domain) = file.domain {
            if domain.is_empty() || domain.contains(['/', '@', ' ']) {
                return Err(ConfigError(format!(
                    "domain {domain:?} is not a domain name"
                )));
            }
            s.domain = domain;
        }
        s.listen = listen.or(file.listen).unwrap_or(s.listen);
        if let Some(url) = file.database_url {
            s.database = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Database::Postgres(url)
            } else if url.starts_with("sqlite:") {
                Database::SqliteUrl(url)
            } else {
                return Err(ConfigError(
                    "database_url must start with postgres:// or sqlite:".into(),
                ));
            };
        }
        if let Some(tls) = &file.tls {
            for (what, path) in [("certificate", &tls.cert), ("key", &tls.key)] {
                if !path.exists() {
                    return Err(ConfigError(format!(
                        "the TLS {what} file {} does not exist",
                        path.display()
                    )));
                }
            }
        }
        s.tls = file.tls;
        s.smtp = file.smtp;
        if let Some(from) = file.mail_from {
            s.mail_from = from;
        }
        if s.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError(format!(
                "mail_from {:?} is not an e-mail address",
                s.mail_from
            )));
        }
        s.password_hashing = file.password_hashing.unwrap_or_default();
        s.limits = file.limits.unwrap_or_default();
        if let Some(days) = file.notification_retention_days {
            if !(1..=3650).contains(&days) {
                return Err(ConfigError(
                    "notification_retention_days is 1 to 3650".into(),
                ));
            }
            s.notification_retention_days = days;
        }
        if let Some(max) = file.max_conversation_members {
            if !(2..=10_000).contains(&max) {
                return Err(ConfigError("max_conversation_members is 2 to 10000".into()));
            }
            s.max_conversation_members = max;
        }
        s.push_allow_http = file.push_allow_http.unwrap_or(false);
        s.push_allow_private = file.push_allow_private.unwrap_or(false);
        if let Some(n) = file.password_hash_concurrency {
            if !(1..=256).contains(&n) {
                return Err(ConfigError("password_hash_concurrency is 1 to 256".into()));
            }
            s.password_hash_concurrency = n;
        }
        if let Some(n) = file.max_connections {
            if n < 16 {
                return Err(ConfigError("max_connections is at least 16".into()));
            }
            s.max_connections = Some(n);
        }
        for (name, value, slot) in [
            (
                "header_timeout_seconds",
                file.header_timeout_seconds,
                &mut s.header_timeout,
            ),
            (
                "body_timeout_seconds",
                file.body_timeout_seconds,
                &mut s.body_timeout,
            ),
        ] {
            if let Some(secs) = value {
                if !(1..=600).contains(&secs) {
                    return Err(ConfigError(format!("{name} is 1 to 600")));
                }
                *slot = std::time::Duration::from_secs(secs);
            }
        }
        s.trusted_proxies = file
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError(format!(
                            "trusted_proxies: {p:?} is not an address or a CIDR range"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(s)
    }
}
