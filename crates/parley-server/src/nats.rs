//! Wake-ups between server nodes over NATS (`nats_url`): several nodes on one
//! PostgreSQL database wake each other's sockets.
//!
//! Each node keeps its own sockets in a [`LocalWakeups`] and mirrors every
//! wake-up, live frame and logins change onto one NATS subject (named after
//! the backend's domain, so backends sharing a NATS server do not hear each
//! other); every other node applies what it hears to its own sockets. A
//! message carries its node's id, so a node never applies its own twice.
//!
//! Nothing here is needed for correctness, only for speed: every event is in
//! the database first, and a woken socket reads its queue from its cursor.
//! So what NATS loses costs time, never messages:
//! - a node's outgoing messages wait in a bounded queue; past it they are
//!   dropped (and logged), never held in unbounded memory;
//! - when the connection to NATS comes back after an outage, the node wakes
//!   every socket it holds, and each catches up from its cursor;
//! - a node starts while NATS is down and connects when it can.
//!
//! Which devices have a socket open is known per node only: a node that
//! stores an event for a device connected elsewhere also wakes the device's
//! user (a wake-up goes everywhere) and sends it a push it did not need.

use std::sync::Arc;

use futures_util::StreamExt as _;
use parley_api::{ClientId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::wakeups::{Live, LocalWakeups, Subscription, Wakeups};

/// Messages to NATS that may wait to go out; past this they are dropped.
const OUTBOX: usize = 16 * 1024;

/// What a node tells the others about one user.
#[derive(Debug, Serialize, Deserialize)]
struct Remote {
    /// The node that sent it.
    node: String,
    user: UserId,
    #[serde(flatten)]
    what: What,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum What {
    /// The user may have new stored events.
    Wake,
    /// Some of the user's logins ended.
    Logins,
    /// A frame for the user's devices.
    Live {
        client: Option<ClientId>,
        id: Option<u64>,
        frame: String,
    },
}

/// Why a node could not start talking to NATS (a malformed address: one that
/// is only down is retried in the background).
#[derive(Debug, thiserror::Error)]
#[error("NATS at {url}: {reason}")]
pub struct NatsError {
    url: String,
    reason: String,
}

/// Wake-ups shared with the other nodes through NATS.
#[derive(Debug)]
pub(crate) struct NatsWakeups {
    local: Arc<LocalWakeups>,
    client: async_nats::Client,
    node: String,
    outbox: mpsc::Sender<Vec<u8>>,
}

/// The subject a backend's nodes talk on.
fn subject(domain: &str) -> String {
    let digest = Sha256::digest(domain.as_bytes());
    format!("parley.wakeups.{}", hex::encode(&digest[..8]))
}

impl NatsWakeups {
    /// Connects to NATS at `url` (retrying in the background while it is
    /// down) and starts mirroring.
    pub(crate) async fn connect(url: &str, domain: &str) -> Result<Arc<Self>, NatsError> {
        let error = |reason: String| NatsError {
            url: url.to_owned(),
            reason,
        };
        let local = Arc::new(LocalWakeups::default());
        let after_outage = Arc::downgrade(&local);
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let local = after_outage.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            // What others said meanwhile is lost: every
                            // socket here reads its queue.
                            if let Some(local) = local.upgrade() {
                                local.wake_all();
                            }
                            tracing::info!("NATS connected");
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS disconnected: live events between nodes wait");
                        }
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| error(e.to_string()))?;
        let subject = subject(domain);
        let mut node_id = [0u8; 16];
        getrandom::fill(&mut node_id).map_err(|e| error(e.to_string()))?;
        let node = hex::encode(node_id);
        let (outbox, mut queued) = mpsc::channel::<Vec<u8>>(OUTBOX);
        let sender = client.clone();
        let to = subject.clone();
        tokio::spawn(async move {
            while let Some(body) = queued.recv().await {
                if let Err(e) = sender.publish(to.clone(), body.into()).await {
                    tracing::warn!(error = %e, "NATS: a wake-up was not sent");
                }
            }
        });
        let mut incoming = client
            .subscribe(subject)
            .await
            .map_err(|e| error(e.to_string()))?;
        let this = Arc::new(Self {
            local,
            client,
            node,
            outbox,
        });
        let listener = Arc::downgrade(&this);
        tokio::spawn(async move {
            while let Some(message) = incoming.next().await {
                let Some(this) = listener.upgrade() else {
                    return;
                };
                match serde_json::from_slice::<Remote>(&message.payload) {
                    Ok(remote) if remote.node != this.node => this.apply(remote),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "NATS: a message that is not a wake-up"),
                }
            }
        });
        Ok(this)
    }

    /// What another node said, applied to this node's sockets.
    fn apply(&self, remote: Remote) {
        match remote.what {
            What::Wake => self.local.wake(remote.user),
            What::Logins => self.local.logins_changed(remote.user),
            What::Live { client, id, frame } => {
                self.local.publish(
                    remote.user,
                    Live {
                        client,
                        id,
                        frame: frame.into(),
                    },
                );
            }
        }
    }

    /// Tells the other nodes.
    fn tell(&self, user: UserId, what: What) {
        let body = serde_json::to_vec(&Remote {
            node: self.node.clone(),
            user,
            what,
        })
        .expect("a wake-up serializes");
        if self.outbox.try_send(body).is_err() {
            tracing::warn!("NATS: the outgoing queue is full; a wake-up was dropped");
        }
    }
}

impl Wakeups for NatsWakeups {
    fn subscribe(&self, user: UserId, client: ClientId) -> Subscription {
        self.local.subscribe(user, client)
    }

    fn wake(&self, user: UserId) {
        self.local.wake(user);
        self.tell(user, What::Wake);
    }

    fn publish(&self, user: UserId, frame: Live) -> bool {
        let here = self.local.publish(user, frame.clone());
        self.tell(
            user,
            What::Live {
                client: frame.client,
                id: frame.id,
                frame: frame.frame.to_string(),
            },
        );
        here
    }

    fn is_connected(&self, user: UserId, client: ClientId) -> bool {
        self.local.is_connected(user, client)
    }

    fn sockets(&self, user: UserId, client: ClientId) -> usize {
        self.local.sockets(user, client)
    }

    fn logins_changed(&self, user: UserId) {
        self.local.logins_changed(user);
        self.tell(user, What::Logins);
    }

    fn wake_elsewhere(&self, user: UserId) {
        self.tell(user, What::Wake);
    }

    fn unreachable(&self) -> Option<String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            state => Some(format!("NATS is {state:?}")),
        }
    }
}
