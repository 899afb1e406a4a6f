//! The one error type of the SDK.

/// What went wrong, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused: its status, stable label and message.
    #[error("{status} {label}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable label (match on this).
        label: String,
        /// For people.
        message: String,
    },
    /// The call needs a logged-in user.
    #[error("log in first")]
    NotLoggedIn,
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the server {0}")]
    Transport(String),
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// End-to-end encryption failed (the peer's device is named where known).
    #[error("encryption: {0}")]
    Crypto(String),
    /// The local store's passphrase is wrong.
    #[error("wrong passphrase for this device's local store")]
    WrongPassphrase,
    /// A passphrase too easy to guess for what it protects.
    #[error("{0}")]
    WeakPassphrase(String),
    /// The local store could not be read or written (what and where are named).
    #[error("local store: {0}")]
    Storage(String),
    /// The conversation has devices the sender has not approved (a degraded
    /// conversation): nothing was sent.
    #[error("{} new device(s) in the conversation: verify them or confirm sending", .0.len())]
    NewDevices(Vec<crate::device::NewDevice>),
    /// Sending into a degraded conversation needs the user's confirmation.
    #[error("the conversation is degraded (a device is not verified): confirm to send anyway")]
    Degraded,
    /// Sending kept finding new missing devices.
    #[error("the conversation's devices kept changing; try again")]
    Unsettled,
    /// This client refused before anything was sent: a stable label and what
    /// to do (editing someone else's message, one that is not there).
    #[error("{message}")]
    Refused {
        /// Stable label (match on this).
        label: &'static str,
        /// For people.
        message: String,
    },
}

impl ClientError {
    /// The server is away, busy or wants a new login: nothing was refused, and
    /// trying again later can succeed (what was queued stays queued).
    pub fn is_away(&self) -> bool {
        match self {
            Self::Transport(_) | Self::NotLoggedIn => true,
            Self::Api { status, .. } => matches!(status, 401 | 408 | 429) || *status >= 500,
            _ => false,
        }
    }

    /// A stable label for every kind of error: the server's label when it
    /// refused, otherwise this client's.
    pub fn code(&self) -> &str {
        match self {
            Self::Api { label, .. } => label,
            Self::NotLoggedIn => "not-logged-in",
            Self::Transport(_) => "unreachable",
            Self::Decode(_) => "bad-answer",
            Self::Crypto(_) => "crypto",
            Self::WrongPassphrase => "wrong-passphrase",
            Self::WeakPassphrase(_) => "weak-passphrase",
            Self::Storage(_) => "local-store",
            Self::NewDevices(_) | Self::Degraded => "degraded",
            Self::Unsettled => "unsettled",
            Self::Refused { label, .. } => label,
        }
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_decode() {
            Self::Decode(e.without_url().to_string())
        } else {
            Self::Transport(e.without_url().to_string())
        }
    }
}
