//! Outgoing e-mail: SMTP when configured (plain, STARTTLS or implicit TLS; rustls),
//! otherwise `.eml` files in the outbox directory (for development: read your codes
//! there). Logs never show recipients or contents.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{ConfigError, SmtpConfig, SmtpSecurity};
use crate::error::ApiError;

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// Each message becomes a file in this directory.
    Outbox {
        /// The directory.
        dir: PathBuf,
        /// The sender.
        from: Mailbox,
    },
    /// An SMTP relay.
    Smtp {
        /// The connection pool.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The sender.
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Outbox { dir, .. } => write!(f, "Mailer::Outbox({})", dir.display()),
            Mailer::Smtp { .. } => write!(f, "Mailer::Smtp"),
        }
    }
}

impl Mailer {
    /// The SMTP relay `relay` describes, secured as it says: nothing (`none`),
    /// STARTTLS that the relay must offer (`starttls`), or TLS from the first
    /// byte (`tls`), the relay's certificate checked against the system's roots.
    /// Refuses what [`SmtpConfig::check`] refuses, and TLS that cannot be set up
    /// (no trusted roots on this system).
    pub fn smtp(relay: &SmtpConfig, from: Mailbox) -> Result<Self, ConfigError> {
        relay.check()?;
        let tls = match relay.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Starttls => Tls::Required(tls_parameters(&relay.host)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(&relay.host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&relay.host)
            .port(relay.port)
            .tls(tls);
        if let (Some(user), Some(password)) = (&relay.username, &relay.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from,
        })
    }

    /// Sends a plain-text message.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), ApiError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| ApiError::bad_request("invalid-email", "not a valid e-mail address"))?;
        let from = match self {
            Mailer::Outbox { from, .. } | Mailer::Smtp { from, .. } => from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .body(body)
            .map_err(ApiError::internal)?;
        match self {
            Mailer::Outbox { dir, .. } => {
                let name = format!("{}-{}.eml", time_stamp(), uuid::Uuid::new_v4().simple());
                let path = dir.join(name);
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(ApiError::internal)?;
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(ApiError::internal)?;
                tracing::info!(path = %path.display(), "e-mail written to the outbox");
            }
            Mailer::Smtp { transport, .. } => {
                transport.send(message).await.map_err(ApiError::internal)?;
                tracing::info!("e-mail sent by SMTP");
            }
        }
        Ok(())
    }
}

/// rustls (with the ring provider, as everywhere in Parley) checking `host`'s
/// certificate against the system's trusted roots.
fn tls_parameters(host: &str) -> Result<TlsParameters, ConfigError> {
    TlsParameters::builder(host.to_owned())
        .build_rustls()
        .map_err(|e| ConfigError(format!("smtp: cannot set up TLS to {host}: {e}")))
}

/// A unique, ordered outbox file name; not a time any rule depends on.
#[expect(
    clippy::disallowed_methods,
    reason = "names outbox files in the order they were written, whatever the test clock says"
)]
fn time_stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// A relay that speaks plain ESMTP, offers no STARTTLS, accepts anything, and
    /// reports each line a client sent, then `None` when the client has gone.
    async fn plain_relay() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 relay ESMTP\r\n").await.ok();
                // A TLS handshake is not text: reading it ends the loop.
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    tx.send(Some(line)).ok();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-relay\r\n250 AUTH PLAIN LOGIN\r\n",
                        "AUTH" => b"235 welcome\r\n",
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await.ok();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                tx.send(Some(l)).ok();
                            }
                            b"250 queued\r\n"
                        }
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.ok();
                    if verb == "QUIT" {
                        break;
                    }
                }
                tx.send(None).ok();
            }
        });
        (port, rx)
    }

    fn relay(port: u16, security: SmtpSecurity) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security,
            username: Some("parley".into()),
            password: Some("relay-password".into()),
        }
    }

    fn from() -> Mailbox {
        "Parley <parley@localhost>".parse().expect("a mailbox")
    }

    /// With `starttls` or `tls`, a relay that cannot do TLS gets neither the
    /// password nor the message: no fall-back to plain text.
    #[tokio::test]
    async fn tls_modes_never_fall_back_to_plain_text() {
        for security in [SmtpSecurity::Starttls, SmtpSecurity::Tls] {
            let (port, mut seen) = plain_relay().await;
            let mailer = Mailer::smtp(&relay(port, security), from()).expect("TLS set up");
            let sent = mailer
                .send("sam@example.com", "code", "123456".into())
                .await;
            assert!(sent.is_err(), "{security:?}: nothing is sent");
            let mut lines = Vec::new();
            while let Some(Some(line)) = seen.recv().await {
                lines.push(line);
            }
            let plain: Vec<_> = lines
                .iter()
                .filter(|l| !l.to_uppercase().starts_with("EHLO"))
                .collect();
            assert!(
                plain.iter().all(|l| !l.to_uppercase().starts_with("AUTH")
                    && !l.to_uppercase().starts_with("MAIL")
                    && !l.contains("123456")),
                "{security:?}: sent in plain text: {plain:?}"
            );
            if security == SmtpSecurity::Starttls {
                assert!(
                    plain.is_empty(),
                    "only the greeting before STARTTLS, which the relay does not offer: {lines:?}"
                );
            }
        }
    }

    /// Plain SMTP (the default) still reaches a local relay, with its password.
    #[tokio::test]
    async fn none_sends_in_plain_text_to_a_local_relay() {
        let (port, mut seen) = plain_relay().await;
        let mailer = Mailer::smtp(&relay(port, SmtpSecurity::None), from()).expect("plain");
        mailer
            .send("sam@example.com", "code", "123456".into())
            .await
            .expect("sent");
        let mut lines = Vec::new();
        while let Some(Some(line)) = seen.recv().await {
            lines.push(line);
        }
        assert!(lines.iter().any(|l| l.starts_with("AUTH")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("123456")), "{lines:?}");
    }

    #[test]
    fn combinations_that_cannot_be_meant_are_refused() {
        let mut remote = relay(25, SmtpSecurity::None);
        remote.host = "smtp.example.com".into();
        assert!(
            Mailer::smtp(&remote, from()).is_err(),
            "a password in clear text"
        );
        assert!(Mailer::smtp(&relay(587, SmtpSecurity::Tls), from()).is_err());
    }
}
