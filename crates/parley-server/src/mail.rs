//! Outgoing e-mail: SMTP when configured, otherwise `.eml` files in the outbox
//! directory (for development: read your codes there). Logs never show recipients or
//! contents.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

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
    /// An SMTP relay at `host:port` (plain SMTP, for a relay on a trusted network).
    pub fn smtp(
        host: &str,
        port: u16,
        credentials: Option<(String, String)>,
        from: Mailbox,
    ) -> Self {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port);
        if let Some((user, password)) = credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Mailer::Smtp {
            transport: builder.build(),
            from,
        }
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
