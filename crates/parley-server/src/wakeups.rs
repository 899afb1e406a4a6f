//! Wake-ups: "a device of this user may have new events", live frames for
//! connected devices, and who is connected. [`LocalWakeups`] within one
//! process; `crate::nats` mirrors them between nodes when `nats_url` is set.
//!
//! A wake-up carries no data: a woken socket reads the store. A live frame carries
//! the event itself: a stored one (with its queue id, published after the commit, so
//! a socket whose cursor is just before it sends it without reading the store, and
//! reads the store on any gap) or a transient one (typing, transient messages), which
//! exists only here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use parley_api::{ClientId, UserId};
use tokio::sync::{broadcast, watch};

/// A frame for one device of the user, or for all of them.
#[derive(Clone, Debug)]
pub struct Live {
    /// The device, or `None` for every device of the user.
    pub client: Option<ClientId>,
    /// The event's id in the device's queue; `None` for a transient event.
    pub id: Option<u64>,
    /// The frame to send, as JSON.
    pub frame: Arc<str>,
}

/// What one open socket listens to. The device counts as connected until this is
/// dropped.
#[derive(Debug)]
pub struct Subscription {
    /// Changes whenever the user may have new stored events.
    pub wake: watch::Receiver<u64>,
    /// Live frames for the user's devices.
    pub live: broadcast::Receiver<Live>,
    /// Changes when some of the user's logins ended (a logout, logins removed,
    /// the password changed or reset, the account deleted): the socket closes
    /// if its own login is among them.
    pub logins: watch::Receiver<u64>,
    _connected: Arc<()>,
}

/// Wakes sockets and tells who is connected.
pub trait Wakeups: Send + Sync + std::fmt::Debug {
    /// Opens a subscription for one device of `user`.
    fn subscribe(&self, user: UserId, client: ClientId) -> Subscription;
    /// Tells every socket of `user` to look at the store.
    fn wake(&self, user: UserId);
    /// Sends a frame to the connected devices of `user`; returns whether any
    /// socket of the user was listening.
    fn publish(&self, user: UserId, frame: Live) -> bool;
    /// Whether a socket of this device is open.
    fn is_connected(&self, user: UserId, client: ClientId) -> bool;
    /// How many sockets of this device are open.
    fn sockets(&self, user: UserId, client: ClientId) -> usize;
    /// Tells every open socket of `user` that some of the user's logins
    /// ended: each checks its own and closes if it is gone.
    fn logins_changed(&self, user: UserId);
    /// Wakes `user`'s sockets on other nodes (a device with no socket here
    /// may have one there); nothing within one process.
    fn wake_elsewhere(&self, _user: UserId) {}
    /// What keeps live events from other nodes, if anything (`/v1/ready`).
    fn unreachable(&self) -> Option<String> {
        None
    }
}

/// Live frames a busy socket may fall behind by before it misses some (it then
/// reads stored events from the store; transient ones are lost).
const LIVE_BACKLOG: usize = 16;

#[derive(Debug)]
struct UserChannels {
    wake: watch::Sender<u64>,
    logins: watch::Sender<u64>,
    live: broadcast::Sender<Live>,
    connected: HashMap<ClientId, Weak<()>>,
}

impl UserChannels {
    fn in_use(&self) -> bool {
        self.wake.receiver_count() > 0
    }
}

/// Wake-ups within one process.
#[derive(Debug, Default)]
pub(crate) struct LocalWakeups {
    users: Mutex<HashMap<UserId, UserChannels>>,
}

impl LocalWakeups {
    /// Has every socket read its queue and check its login (after wake-ups
    /// or logouts from other nodes may have been missed).
    pub(crate) fn resync(&self) {
        for channels in self.users().values() {
            channels.wake.send_modify(|n| *n = n.wrapping_add(1));
            channels.logins.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, UserChannels>> {
        self.users
            .lock()
            .expect("the wake-up table's lock is never poisoned")
    }
}

impl Wakeups for LocalWakeups {
    fn subscribe(&self, user: UserId, client: ClientId) -> Subscription {
        let mut users = self.users();
        users.retain(|_, u| u.in_use());
        let channels = users.entry(user).or_insert_with(|| UserChannels {
            wake: watch::channel(0).0,
            logins: watch::channel(0).0,
            live: broadcast::channel(LIVE_BACKLOG).0,
            connected: HashMap::new(),
        });
        channels.connected.retain(|_, w| w.strong_count() > 0);
        let connected = match channels.connected.get(&client).and_then(Weak::upgrade) {
            Some(token) => token,
            None => {
                let token = Arc::new(());
                channels.connected.insert(client, Arc::downgrade(&token));
                token
            }
        };
        Subscription {
            wake: channels.wake.subscribe(),
            logins: channels.logins.subscribe(),
            live: channels.live.subscribe(),
            _connected: connected,
        }
    }

    fn wake(&self, user: UserId) {
        if let Some(channels) = self.users().get(&user) {
            channels.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn publish(&self, user: UserId, frame: Live) -> bool {
        self.users()
            .get(&user)
            .is_some_and(|channels| channels.live.send(frame).is_ok())
    }

    fn is_connected(&self, user: UserId, client: ClientId) -> bool {
        self.users()
            .get(&user)
            .and_then(|channels| channels.connected.get(&client))
            .is_some_and(|w| w.strong_count() > 0)
    }

    fn sockets(&self, user: UserId, client: ClientId) -> usize {
        self.users()
            .get(&user)
            .and_then(|channels| channels.connected.get(&client))
            .map_or(0, Weak::strong_count)
    }

    fn logins_changed(&self, user: UserId) {
        if let Some(channels) = self.users().get(&user) {
            channels.logins.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The shared handle.
pub(crate) type SharedWakeups = Arc<dyn Wakeups>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_connected_while_a_subscription_lives() {
        let hub = LocalWakeups::default();
        let (user, client) = (UserId::random(), ClientId(7));
        assert!(!hub.is_connected(user, client));
        let first = hub.subscribe(user, client);
        let second = hub.subscribe(user, client);
        assert!(hub.is_connected(user, client));
        assert!(!hub.is_connected(user, ClientId(8)));
        drop(first);
        assert!(hub.is_connected(user, client), "one socket is still open");
        assert_eq!(hub.sockets(user, client), 1);
        drop(second);
        assert!(!hub.is_connected(user, client));
        assert_eq!(hub.sockets(user, client), 0);
    }

    #[tokio::test]
    async fn wake_ups_and_live_frames_reach_subscribers() {
        let hub = LocalWakeups::default();
        let user = UserId::random();
        let frame: Arc<str> = Arc::from("{}");
        let event = Live {
            client: None,
            id: None,
            frame: frame.clone(),
        };
        assert!(!hub.publish(user, event.clone()), "nobody listens");
        let mut sub = hub.subscribe(user, ClientId(1));
        hub.wake(user);
        sub.wake.changed().await.expect("woken");
        assert!(hub.publish(user, event));
        let got = sub.live.recv().await.expect("received");
        assert_eq!(&*got.frame, &*frame);
    }
}
