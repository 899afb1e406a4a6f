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
    /// `nats://host:4222`: several nodes on one PostgreSQL database wake each
    /// other's sockets through this NATS server (unset: one node, no NATS).
    pub nats_url: Option<String>,
    /// Serve HTTPS.
    pub tls: Option<TlsConfig>,
    /// Send e-mail by SMTP instead of writing it to the outbox; see [`SmtpConfig`]
    /// for the `[smtp]` table (host, port, `security` = none, starttls or tls,
    /// username and password).
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
    /// MLS cipher suites: see [`MlsConfig`] for the `[mls]` table.
    pub mls: Option<MlsConfig>,
}

/// The `[mls]` table: the suite new MLS conversations use and the suites
/// devices may publish key packages on, each as `"0x0002"` or `2`, among
/// 0x0001, 0x0002, 0x0003, 0x0005 and 0x0007 (the default: 0x0002, all five
/// allowed); and from when a group migrating from Proteus may become MLS
/// with devices still outside its group (`migration_finalise_after`, an RFC
/// 3339 time such as `"2027-03-01T00:00:00Z"`; unset: only once all are in).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlsConfig {
    /// The default suite; it must be allowed.
    pub default_suite: Option<String>,
    /// The allowed suites.
    pub allowed_suites: Option<Vec<String>>,
    /// From when a migration may finish with devices left out.
    pub migration_finalise_after: Option<String>,
}

impl MlsConfig {
    /// `migration_finalise_after` as Unix seconds, checked.
    pub fn finalise_after(&self) -> Result<Option<i64>, ConfigError> {
        self.migration_finalise_after
            .as_deref()
            .map(|text| {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map(time::OffsetDateTime::unix_timestamp)
                    .map_err(|_| {
                        ConfigError(format!(
                            "mls: migration_finalise_after {text:?} is not an RFC 3339 time \
                             (for example \"2027-03-01T00:00:00Z\")"
                        ))
                    })
            })
            .transpose()
    }

    /// The default suite and the allowed ones, checked.
    pub fn resolve(
        &self,
    ) -> Result<(parley_mls::CipherSuite, Vec<parley_mls::CipherSuite>), ConfigError> {
        use parley_mls::CipherSuite;
        let read = |text: &str| {
            CipherSuite::parse(text)
                .filter(|suite| suite.is_selectable())
                .ok_or_else(|| {
                    ConfigError(format!(
                        "mls: {text:?} is not one of the suites 0x0001, 0x0002, 0x0003, \
                         0x0005, 0x0007"
                    ))
                })
        };
        let default = self
            .default_suite
            .as_deref()
            .map_or(Ok(CipherSuite::DEFAULT), read)?;
        let mut allowed = match &self.allowed_suites {
            None => CipherSuite::SELECTABLE.to_vec(),
            Some(list) => list.iter().map(|t| read(t)).collect::<Result<_, _>>()?,
        };
        allowed.sort();
        allowed.dedup();
        if !allowed.contains(&default) {
            return Err(ConfigError(format!(
                "mls: the default suite {default} must be one of allowed_suites"
            )));
        }
        Ok((default, allowed))
    }
}

/// Attempt limits, per 5 minutes: logins and code tries per account, requests
/// that count attempts per client address, and prekey claims per device and
/// claimer. A key may spend its whole allowance at once, then gets one more
/// attempt each 5 minutes / limit (`Retry-After` says when); 0 refuses every
/// attempt.
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

/// An SMTP relay, the `[smtp]` table:
///
/// ```toml
/// [smtp]
/// host = "smtp.example.com"
/// security = "starttls"   # "none" (the default), "starttls" or "tls"
/// port = 587              # default: 25 for "none", 587 for "starttls", 465 for "tls"
/// username = "parley"     # both or neither
/// password = "…"
/// ```
///
/// Combinations that cannot be meant are refused at start ([`SmtpConfig::check`]):
/// a password sent in clear text to another machine, half a login, and a
/// security mode on the port of the other kind (465 is implicit TLS, 25 and 587
/// plain SMTP).
#[derive(Clone, Deserialize)]
#[serde(from = "SmtpFile")]
pub struct SmtpConfig {
    /// Host name (or address); with TLS, the name the relay's certificate must carry.
    pub host: String,
    /// Port (default: the security mode's, see [`SmtpSecurity::default_port`]).
    pub port: u16,
    /// How the connection is secured (default: not at all, for a relay on this
    /// machine or a trusted network).
    pub security: SmtpSecurity,
    /// User name, if the relay wants one.
    pub username: Option<String>,
    /// Password, if the relay wants one.
    pub password: Option<String>,
}

/// How the connection to the SMTP relay is secured. With `starttls` and `tls` the
/// relay's certificate is checked against the system's trusted roots (rustls with
/// the platform verifier), and TLS 1.2 is the least accepted.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// `none`: plain SMTP, nothing encrypted; for a relay on this machine or a
    /// trusted network (the default).
    #[default]
    None,
    /// `starttls`: a plain connection the relay must upgrade with STARTTLS before
    /// anything else is sent; a relay that does not offer it gets no mail (no
    /// fall-back to plain text). Usually port 587 (or 25 between relays).
    Starttls,
    /// `tls`: TLS from the first byte ("implicit TLS", SMTPS). Usually port 465.
    Tls,
}

impl SmtpSecurity {
    /// The port when none is given: 25 for `none`, 587 for `starttls`, 465 for `tls`.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::None => 25,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SmtpSecurity::None => "none",
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
        }
    }
}

/// `[smtp]` as written, before the port's default (which depends on the mode).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpFile {
    host: String,
    port: Option<u16>,
    #[serde(default)]
    security: SmtpSecurity,
    username: Option<String>,
    password: Option<String>,
}

impl From<SmtpFile> for SmtpConfig {
    fn from(f: SmtpFile) -> Self {
        Self {
            port: f.port.unwrap_or_else(|| f.security.default_port()),
            host: f.host,
            security: f.security,
            username: f.username,
            password: f.password,
        }
    }
}

impl SmtpConfig {
    /// Refuses combinations that cannot be meant, saying what to change.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mode = self.security.name();
        if self.host.trim().is_empty() {
            return Err(ConfigError("smtp: host is empty".into()));
        }
        if self.host.starts_with('[') {
            return Err(ConfigError(format!(
                "smtp: write the host {} without brackets (for example ::1)",
                self.host
            )));
        }
        match (&self.username, &self.password) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError(
                    "smtp: username and password go together: give both or neither".into(),
                ));
            }
            (Some(_), Some(_)) if self.security == SmtpSecurity::None && !self.is_local() => {
                return Err(ConfigError(format!(
                    "smtp: security = \"none\" would send the password in clear text to {}; \
                     set security = \"starttls\" or \"tls\" (a password over plain SMTP is \
                     only for a relay on this machine)",
                    self.host
                )));
            }
            _ => {}
        }
        match (self.security, self.port) {
            (SmtpSecurity::None | SmtpSecurity::Starttls, 465) => Err(ConfigError(format!(
                "smtp: port 465 is implicit TLS, but security = \"{mode}\" starts in plain \
                 text; set security = \"tls\" (or the relay's plain SMTP port)"
            ))),
            (SmtpSecurity::Tls, port @ (25 | 587)) => Err(ConfigError(format!(
                "smtp: port {port} starts in plain text, but security = \"tls\" starts with \
                 a TLS handshake; set security = \"starttls\" for port {port}, or port 465 \
                 for implicit TLS"
            ))),
            _ => Ok(()),
        }
    }

    /// Whether mail (and the codes in it) would cross the network in clear
    /// text: no TLS, to a relay on another machine. Allowed (a relay on a
    /// private network may be meant), but said at startup.
    pub fn in_clear_to_another_machine(&self) -> bool {
        self.security == SmtpSecurity::None && !self.is_local()
    }

    /// Whether the relay is on this machine (a name or a loopback address).
    fn is_local(&self) -> bool {
        let host = self.host.as_str();
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
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
    /// The MLS suite new conversations use.
    pub mls_default_suite: parley_mls::CipherSuite,
    /// The MLS suites devices may publish key packages on.
    pub mls_allowed_suites: Vec<parley_mls::CipherSuite>,
    /// From when (Unix seconds) a mixed conversation may become MLS with
    /// devices outside its group.
    pub mls_migration_finalise_after: Option<i64>,
    /// The NATS server the nodes share, if there are several.
    pub nats_url: Option<NatsUrl>,
}

/// A NATS server's address, which may hold a password: kept out of `Debug`.
#[derive(Clone)]
pub struct NatsUrl(pub String);

impl std::fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsUrl(<redacted>)")
    }
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
            mls_default_suite: parley_mls::CipherSuite::DEFAULT,
            mls_allowed_suites: parley_mls::CipherSuite::SELECTABLE.to_vec(),
            mls_migration_finalise_after: None,
            nats_url: None,
        }
    }

    /// Resolves defaults, then the file, then explicit overrides.
    pub fn resolve(
        config_file: Option<&Path>, listen: Option<SocketAddr>, data_dir: Option<PathBuf>,
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
        if let Some(url) = file.nats_url {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                return Err(ConfigError(
                    "nats_url must start with nats:// (or tls://)".into(),
                ));
            }
            if !matches!(s.database, Database::Postgres(_)) {
                return Err(ConfigError(
                    "nats_url is for several nodes on one PostgreSQL database: set database_url \
                     to postgres://… too (a SQLite file belongs to one node)"
                        .into(),
                ));
            }
            s.nats_url = Some(NatsUrl(url));
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
        if let Some(smtp) = &file.smtp {
            smtp.check()?;
        }
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
        if let Some(mls) = &file.mls {
            (s.mls_default_suite, s.mls_allowed_suites) = mls.resolve()?;
            s.mls_migration_finalise_after = mls.finalise_after()?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(toml: &str) -> Result<SmtpConfig, String> {
        let file: FileConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        Ok(file.smtp.expect("an [smtp] table"))
    }

    #[test]
    fn smtp_security_defaults_to_none_on_port_25() {
        let s = smtp("[smtp]\nhost = \"127.0.0.1\"").expect("parses");
        assert_eq!((s.security, s.port), (SmtpSecurity::None, 25));
        assert!(s.check().is_ok());
    }

    #[test]
    fn smtp_security_modes_and_their_ports() {
        for (mode, security, port) in [
            ("none", SmtpSecurity::None, 25),
            ("starttls", SmtpSecurity::Starttls, 587),
            ("tls", SmtpSecurity::Tls, 465),
        ] {
            let s = smtp(&format!(
                "[smtp]\nhost = \"smtp.example.com\"\nsecurity = \"{mode}\""
            ))
            .expect("parses");
            assert_eq!((s.security, s.port), (security, port), "{mode}");
            assert!(s.check().is_ok(), "{mode}");
        }
        // A port given wins over the mode's.
        let s = smtp("[smtp]\nhost = \"smtp.example.com\"\nsecurity = \"tls\"\nport = 2465")
            .expect("parses");
        assert_eq!((s.security, s.port), (SmtpSecurity::Tls, 2465));
        assert!(s.check().is_ok());
    }

    #[test]
    fn mls_suites_are_checked() {
        let mls = |toml: &str| {
            let file: FileConfig = toml::from_str(toml).expect("parses");
            file.mls.unwrap_or_default().resolve()
        };
        use parley_mls::CipherSuite;
        let (default, allowed) = mls("").expect("the defaults");
        assert_eq!((default, allowed.len()), (CipherSuite::DEFAULT, 5));
        let (default, allowed) =
            mls("[mls]\ndefault_suite = \"0x0007\"\nallowed_suites = [\"7\", \"0x0005\"]")
                .expect("valid");
        assert_eq!(default, CipherSuite::P384_AES256);
        assert_eq!(
            allowed,
            [CipherSuite::P521_AES256, CipherSuite::P384_AES256]
        );
        for (toml, why) in [
            (
                "[mls]\nallowed_suites = [\"0x0001\"]",
                "the default 0x0002 not allowed",
            ),
            (
                "[mls]\ndefault_suite = \"0x0004\"",
                "not a selectable suite",
            ),
            ("[mls]\nallowed_suites = [\"two\"]", "not a number"),
        ] {
            assert!(mls(toml).is_err(), "{why}");
        }
    }

    #[test]
    fn the_migration_deadline_is_an_rfc3339_time() {
        let after = |toml: &str| {
            let file: FileConfig = toml::from_str(toml).expect("parses");
            file.mls.unwrap_or_default().finalise_after()
        };
        assert_eq!(after("").expect("unset"), None);
        assert_eq!(
            after("[mls]\nmigration_finalise_after = \"2027-03-01T00:00:00Z\"").expect("valid"),
            Some(1_803_859_200)
        );
        let refused =
            after("[mls]\nmigration_finalise_after = \"March 2027\"").expect_err("not a time");
        assert!(refused.0.contains("RFC 3339"), "{refused}");
    }

    #[test]
    fn unknown_smtp_security_is_refused() {
        for mode in ["ssl", "STARTTLS", ""] {
            let e = smtp(&format!("[smtp]\nhost = \"h\"\nsecurity = \"{mode}\""))
                .expect_err("not a mode");
            assert!(e.contains("none") && e.contains("starttls"), "{e}");
        }
    }

    #[test]
    fn smtp_combinations_that_cannot_be_meant_are_refused() {
        let with = |extra: &str| {
            smtp(&format!("[smtp]\nhost = \"smtp.example.com\"\n{extra}"))
                .expect("parses")
                .check()
                .map_err(|e| e.0)
        };
        let login = "username = \"u\"\npassword = \"p\"";
        let e = with(login).expect_err("a password in clear text");
        assert!(e.contains("clear text") && e.contains("starttls"), "{e}");
        assert!(with(&format!("security = \"starttls\"\n{login}")).is_ok());
        assert!(with(&format!("security = \"tls\"\n{login}")).is_ok());
        let e = with("username = \"u\"").expect_err("half a login");
        assert!(e.contains("both or neither"), "{e}");
        let e = with("security = \"starttls\"\npassword = \"p\"").expect_err("half a login");
        assert!(e.contains("both or neither"), "{e}");
        for wrong in [
            "security = \"tls\"\nport = 587",
            "security = \"tls\"\nport = 25",
            "security = \"starttls\"\nport = 465",
            "port = 465",
        ] {
            let e = with(wrong).expect_err(wrong);
            assert!(e.contains("465"), "{wrong}: {e}");
        }
        assert!(
            with("security = \"starttls\"\nport = 25").is_ok(),
            "STARTTLS on 25"
        );
        // A relay on this machine may take a password over plain SMTP.
        for local in ["localhost", "127.0.0.1", "::1"] {
            let s = smtp(&format!("[smtp]\nhost = \"{local}\"\n{login}")).expect("parses");
            assert!(s.check().is_ok(), "{local}");
            assert!(!s.in_clear_to_another_machine(), "{local}");
        }
        // Brackets are URL syntax: the mailer could not resolve the host.
        let bracketed = smtp("[smtp]\nhost = \"[::1]\"").expect("parses");
        let e = bracketed.check().expect_err("brackets");
        assert!(e.0.contains("without brackets"), "{e}");
        // No password over plain SMTP to another machine is allowed, but said.
        let remote = smtp("[smtp]\nhost = \"mail.internal\"").expect("parses");
        assert!(remote.check().is_ok());
        assert!(remote.in_clear_to_another_machine());
    }

    #[test]
    fn a_wrong_smtp_combination_stops_the_start() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("parley.toml");
        std::fs::write(
            &path,
            "[smtp]\nhost = \"smtp.example.com\"\nsecurity = \"tls\"\nport = 587\n",
        )
        .expect("write");
        let e = Settings::resolve(Some(path.as_path()), None, Some(dir.path().to_owned()))
            .expect_err("refused");
        assert!(e.0.starts_with("smtp: port 587"), "{e}");
        std::fs::write(
            &path,
            "[smtp]\nhost = \"smtp.example.com\"\nsecurity = \"starttls\"\n",
        )
        .expect("write");
        let s = Settings::resolve(Some(path.as_path()), None, Some(dir.path().to_owned()))
            .expect("valid");
        let smtp = s.smtp.expect("smtp");
        assert_eq!((smtp.security, smtp.port), (SmtpSecurity::Starttls, 587));
    }

    #[test]
    fn nats_is_for_nodes_on_postgresql() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("parley.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Settings::resolve(Some(path.as_path()), None, Some(dir.path().to_owned()))
        };
        let e = resolve("nats_url = \"nats://127.0.0.1:4222\"\n").expect_err("SQLite");
        assert!(e.0.contains("PostgreSQL"), "{e}");
        let e = resolve(
            "database_url = \"postgres://db/parley\"\nnats_url = \"http://127.0.0.1:4222\"\n",
        )
        .expect_err("not nats://");
        assert!(e.0.contains("nats://"), "{e}");
        let s = resolve(
            "database_url = \"postgres://db/parley\"\nnats_url = \"nats://127.0.0.1:4222\"\n",
        )
        .expect("valid");
        let url = s.nats_url.expect("set");
        assert_eq!(url.0, "nats://127.0.0.1:4222");
        assert!(!format!("{url:?}").contains("4222"));
        assert!(resolve("").expect("valid").nats_url.is_none());
    }

    #[test]
    fn the_smtp_password_stays_out_of_debug() {
        let s =
            smtp("[smtp]\nhost = \"h\"\nusername = \"u\"\npassword = \"hunter2\"").expect("parses");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
