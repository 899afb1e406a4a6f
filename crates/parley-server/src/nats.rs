//! Wake-ups between server nodes over NATS (`nats_url`): several nodes on one
//! PostgreSQL database wake each other's sockets.
//!
//! Each node keeps its own sockets in a [`LocalWakeups`] and mirrors onto one
//! NATS subject (named after the backend's domain, so backends sharing a NATS
//! server do not hear each other) what the other nodes' sockets must know:
//! that a user may have new stored events (a wake-up: the socket reads its
//! queue), that some of a user's logins ended, and transient frames (typing,
//! transient messages) of at most 16 KiB. A stored event never crosses as a
//! frame: another node's socket is woken and reads it from the database, so a
//! socket's cursor only ever moves past what its own node read or framed. A
//! message carries its node's id, so a node never applies its own twice.
//!
//! NATS is trusted as far as the messages it can carry: a wake-up, a logins
//! check (each socket checks its own login in the database) or a transient
//! frame (end-to-end encrypted by its sender). It must still be a private,
//! authenticated server (see `docs/cluster.md`): anyone who can publish on the
//! subject can send transient frames to any user.
//!
//! Every event is in the database first, and a woken socket reads its queue
//! from its cursor, so what NATS loses costs time, never messages:
//! - a node's outgoing messages wait in a bounded queue; past it they are
//!   dropped (and logged), never held in unbounded memory;
//! - whenever this node's subscription is (re)established, or it fell behind
//!   (a slow consumer), it wakes every socket it holds and has each check
//!   its login, and asks every other node to do the same (what it said
//!   meanwhile may be lost too);
//! - a node starts while NATS is down, connects when it can, and is ready
//!   (`/v1/ready`) only once its subscription is confirmed.
//!
//! Which devices have a socket open is known per node only: a node that
//! stores an event for a device connected elsewhere wakes the device's user
//! (a wake-up goes everywhere) and sends it a push it did not need.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt as _;
use parley_api::{ClientId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::wakeups::{Live, LocalWakeups, Subscription, Wakeups};

/// Messages to NATS that may wait to go out; past this they are dropped.
/// (Each is at most a transient frame of 16 KiB: at most 64 MiB waiting.)
const OUTBOX: usize = 4 * 1024;

/// The largest transient frame mirrored to other nodes.
const MAX_MIRRORED_FRAME: usize = 16 * 1024;

/// What a node tells the others.
#[derive(Debug, Serialize, Deserialize)]
struct Remote {
    /// The node that sent it.
    node: String,
    #[serde(flatten)]
    what: What,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum What {
    /// The user may have new stored events.
    Wake { user: UserId },
    /// Some of the user's logins ended.
    Logins { user: UserId },
    /// A transient frame for the user's devices.
    Transient {
        user: UserId,
        client: Option<ClientId>,
        frame: String,
    },
    /// The sender may have missed or lost messages: every socket reads its
    /// queue and checks its login.
    Resync,
}

/// Why a node could not start talking to NATS (a malformed address: one that
/// is only down is retried in the background).
#[derive(Debug, thiserror::Error)]
#[error("NATS (nats_url): {0}")]
pub struct NatsError(String);

/// What a node hears about its own connection.
#[derive(Debug)]
enum Heard {
    /// (Re)connected, or fell behind: resynchronise.
    Resync,
    /// Lost the connection.
    Lost,
}

/// Wake-ups shared with the other nodes through NATS.
#[derive(Debug)]
pub(crate) struct NatsWakeups {
    local: Arc<LocalWakeups>,
    client: async_nats::Client,
    node: String,
    outbox: mpsc::Sender<Vec<u8>>,
    /// The subscription is confirmed by the server (and not lost since).
    subscribed: Arc<AtomicBool>,
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
        let (heard, mut hearing) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let heard = heard.clone();
                async move {
                    let what = match event {
                        async_nats::Event::Connected | async_nats::Event::SlowConsumer(_) => {
                            Heard::Resync
                        }
                        async_nats::Event::Disconnected => Heard::Lost,
                        other => {
                            tracing::debug!(event = %other, "NATS");
                            return;
                        }
                    };
                    // (The node is gone when nobody listens.)
                    let _ = heard.send(what);
                }
            })
            .connect(url)
            .await
            .map_err(|e| NatsError(e.to_string()))?;
        let subject = subject(domain);
        let mut node_id = [0u8; 16];
        getrandom::fill(&mut node_id).map_err(|e| NatsError(e.to_string()))?;
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
            .map_err(|e| NatsError(e.to_string()))?;
        let this = Arc::new(Self {
            local: Arc::new(LocalWakeups::default()),
            client,
            node: hex::encode(node_id),
            outbox,
            subscribed: Arc::new(AtomicBool::new(false)),
        });
        let listener = Arc::downgrade(&this);
        tokio::spawn(async move {
            while let Some(message) = incoming.next().await {
                let Some(this) = listener.upgrade() else {
                    return;
                };
                match serde_json::from_slice::<Remote>(&message.payload) {
                    Ok(remote) if remote.node != this.node => this.apply(remote.what),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "NATS: a message that is not a wake-up"),
                }
            }
        });
        // The subscription is confirmed by a round trip; then (and after
        // every reconnect, once confirmed again) everyone resynchronises.
        let watcher = Arc::downgrade(&this);
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let what = if first {
                    first = false;
                    Heard::Resync
                } else {
                    match hearing.recv().await {
                        Some(what) => what,
                        None => return,
                    }
                };
                let Some(this) = watcher.upgrade() else {
                    return;
                };
                match what {
                    Heard::Lost => {
                        this.subscribed.store(false, Ordering::SeqCst);
                        tracing::warn!("NATS disconnected: live events between nodes wait");
                    }
                    Heard::Resync => {
                        if this.client.flush().await.is_ok() {
                            this.subscribed.store(true, Ordering::SeqCst);
                            this.local.resync();
                            this.tell(What::Resync);
                            tracing::info!("NATS connected: sockets resynchronised");
                        }
                    }
                }
            }
        });
        Ok(this)
    }

    /// What another node said, applied to this node's sockets.
    fn apply(&self, what: What) {
        match what {
            What::Wake { user } => self.local.wake(user),
            What::Logins { user } => self.local.logins_changed(user),
            What::Transient {
                user,
                client,
                frame,
            } => {
                self.local.publish(
                    user,
                    Live {
                        client,
                        id: None,
                        frame: frame.into(),
                    },
                );
            }
            What::Resync => self.local.resync(),
        }
    }

    /// Tells the other nodes.
    fn tell(&self, what: What) {
        let body = serde_json::to_vec(&Remote {
            node: self.node.clone(),
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
        self.tell(What::Wake { user });
    }

    fn publish(&self, user: UserId, frame: Live) -> bool {
        let here = self.local.publish(user, frame.clone());
        if frame.id.is_some() {
            // Stored: another node's socket reads it from the database.
            self.tell(What::Wake { user });
        } else if frame.frame.len() <= MAX_MIRRORED_FRAME {
            self.tell(What::Transient {
                user,
                client: frame.client,
                frame: frame.frame.to_string(),
            });
        }
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
        self.tell(What::Logins { user });
    }

    fn wake_elsewhere(&self, user: UserId) {
        self.tell(What::Wake { user });
    }

    fn unreachable(&self) -> Option<String> {
        if !matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        ) {
            return Some("NATS is not connected".into());
        }
        (!self.subscribed.load(Ordering::SeqCst))
            .then(|| "NATS: this node's subscription is not confirmed yet".into())
    }
}
