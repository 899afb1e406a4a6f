//! The rules. Each service owns its part of the store; routes call services and
//! never the store.

use std::sync::Arc;

use parley_api::{ClientId, UserId};
use parley_store::DeviceStore;

use crate::clock::Clock;
use crate::config::Settings;
use crate::mail::Mailer;
use crate::ratelimit::RateLimiter;
use crate::tokens::TokenKeys;

pub(crate) mod accounts;
pub(crate) mod clients;
pub(crate) mod connections;
pub(crate) mod conversations;
pub(crate) mod groups;
pub(crate) mod messages;
pub(crate) mod mls;
pub(crate) mod notifications;

/// The largest event handed to sockets inline; a larger one is read from
/// the queue (see [`Core::announce_stored`]).
const LIVE_FRAME_MAX_BYTES: usize = 16 * 1024;

/// What every service shares.
#[derive(Clone, Debug)]
pub struct Core {
    /// Devices, to find where to push a wake-up (each service holds the
    /// store of what it owns; this is the one shared read).
    pub devices: Arc<dyn DeviceStore>,
    /// Time.
    pub clock: Clock,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// Token keys.
    pub tokens: Arc<TokenKeys>,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Attempts per account (login, codes).
    pub per_account: Arc<RateLimiter>,
    /// Attempts per client address.
    pub per_address: Arc<RateLimiter>,
    /// Wakes a user's sockets after their events are stored.
    pub wakeups: crate::wakeups::SharedWakeups,
    /// Wakes devices with no open socket.
    pub push: crate::push::PushSender,
}

impl Core {
    /// Checks that `domain` is this backend's (federation is not enabled yet).
    pub fn local(&self, domain: &str) -> crate::error::ApiResult<()> {
        if domain != self.settings.domain {
            return Err(crate::error::ApiError::not_found(
                "not-found",
                format!("{domain} is not this backend, and federation is not enabled"),
            ));
        }
        Ok(())
    }

    /// An event to store with a change, stamped now.
    pub fn notify<'a>(&self, payload: &'a str) -> parley_store::Notify<'a> {
        parley_store::Notify {
            payload,
            at: self.clock.now(),
        }
    }

    /// This backend's id for something of its own.
    pub fn qualified<T>(&self, id: T) -> parley_api::Qualified<T> {
        parley_api::Qualified {
            id,
            domain: self.settings.domain.clone(),
        }
    }

    /// After events were stored for every device of these users: wakes their
    /// sockets and pushes a wake-up to each device with none open.
    pub fn announce_users(&self, users: &[UserId]) {
        for user in users {
            self.wakeups.wake(*user);
        }
        let core = self.clone();
        let users = users.to_vec();
        tokio::spawn(async move {
            for user in users {
                match core.devices.clients(user).await {
                    Ok(clients) => {
                        let devices: Vec<_> = clients.iter().map(|c| (user, c.id)).collect();
                        core.push_offline(&devices).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list devices to push to"),
                }
            }
        });
    }

    /// After events were stored (at `at`): hands each to its device's open sockets
    /// as a live frame, and pushes a wake-up to each device with none open. A
    /// large event (a group message of hundreds of KiB for hundreds of
    /// devices) is not copied into a frame per socket: its devices' sockets
    /// are woken and read it from their queues, a bounded page at a time.
    pub fn announce_stored(&self, at: i64, stored: Vec<parley_store::Delivered>) {
        let time = parley_api::OffsetDateTime::from_unix_timestamp(at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let mut offline = Vec::new();
        let mut to_wake = std::collections::BTreeSet::new();
        let mut elsewhere = std::collections::BTreeSet::new();
        for d in stored {
            if !self.wakeups.is_connected(d.user, d.client) {
                offline.push((d.user, d.client));
                elsewhere.insert(d.user);
                continue;
            }
            if d.payload.len() > LIVE_FRAME_MAX_BYTES {
                to_wake.insert(d.user);
                continue;
            }
            // The same JSON as `parley_api::Event`, without re-parsing the payload.
            let frame = format!(
                r#"{{"id":{},"time":"{time}","payload":{}}}"#,
                d.id, d.payload
            );
            let live = crate::wakeups::Live {
                client: Some(d.client),
                id: Some(d.id),
                frame: frame.into(),
            };
            // A socket that closed since `is_connected` reads its queue when it
            // reconnects; nothing else to do.
            self.wakeups.publish(d.user, live);
        }
        for user in to_wake {
            self.wakeups.wake(user);
        }
        // (A device with no socket here may have one on another node.)
        for user in elsewhere {
            self.wakeups.wake_elsewhere(user);
        }
        if !offline.is_empty() {
            let core = self.clone();
            tokio::spawn(async move { core.push_offline(&offline).await });
        }
    }

    async fn push_offline(&self, devices: &[(UserId, ClientId)]) {
        let offline: Vec<(UserId, ClientId)> = devices
            .iter()
            .copied()
            .filter(|(user, client)| !self.wakeups.is_connected(*user, *client))
            .collect();
        if offline.is_empty() {
            return;
        }
        // One read for the whole fan-out, not one per device.
        match self.devices.push_endpoints(&offline).await {
            Ok(found) => {
                for (_, _, url) in found {
                    self.push.wake(&url).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read push endpoints"),
        }
    }

    /// Counts one more attempt on an account's limit only (the address was
    /// counted already).
    pub fn count_account_attempt(&self, account: &str) -> crate::error::ApiResult<()> {
        self.per_account
            .check(account, self.clock.now())
            .map_err(crate::error::ApiError::rate_limited)
    }

    /// Counts an attempt against both the account's and the address's limit.
    pub fn limit(&self, account: &str, address: &str) -> crate::error::ApiResult<()> {
        let now = self.clock.now();
        self.per_address
            .check(address, now)
            .and_then(|()| self.per_account.check(account, now))
            .map_err(crate::error::ApiError::rate_limited)
    }
}

/// A short text a person chose that the server shows or mails back (a device
/// model or label, a login's label): bounded, and without line breaks or other
/// control characters, so it cannot forge lines in an e-mail or a log.
pub(crate) fn check_label(what: &str, value: Option<&str>) -> crate::error::ApiResult<()> {
    let Some(value) = value else { return Ok(()) };
    if value.chars().count() > MAX_LABEL_CHARS {
        return Err(crate::error::ApiError::bad_request(
            "bad-request",
            format!("{what} is longer than {MAX_LABEL_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(crate::error::ApiError::bad_request(
            "bad-request",
            format!("{what} may not contain line breaks or other control characters"),
        ));
    }
    Ok(())
}

/// See [`check_label`].
const MAX_LABEL_CHARS: usize = 128;

/// Random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system provides randomness");
    b
}
