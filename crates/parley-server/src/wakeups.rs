//! Wake-ups: "a device of this user may have new events". The one process today; a
//! NATS-backed implementation of the same interface lets several nodes wake each
//! other's sockets later. Wake-ups carry no data: a woken socket reads the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use parley_api::UserId;
use tokio::sync::watch;

/// Wakes the sockets of a user.
pub trait Wakeups: Send + Sync + std::fmt::Debug {
    /// A receiver that changes whenever `user` may have new events.
    fn subscribe(&self, user: UserId) -> watch::Receiver<u64>;
    /// Tells every socket of `user` to look.
    fn wake(&self, user: UserId);
}

/// Wake-ups within one process.
#[derive(Debug, Default)]
pub struct LocalWakeups {
    users: Mutex<HashMap<UserId, watch::Sender<u64>>>,
}

impl Wakeups for LocalWakeups {
    fn subscribe(&self, user: UserId) -> watch::Receiver<u64> {
        let mut users = self
            .users
            .lock()
            .expect("the wake-up table's lock is never poisoned");
        users.retain(|_, tx| tx.receiver_count() > 0);
        users
            .entry(user)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn wake(&self, user: UserId) {
        let users = self
            .users
            .lock()
            .expect("the wake-up table's lock is never poisoned");
        if let Some(tx) = users.get(&user) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The shared handle.
pub type SharedWakeups = Arc<dyn Wakeups>;
