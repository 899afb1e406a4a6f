//! The rules. Each service owns its part of the store; routes call services and
//! never the store.

use std::sync::Arc;

use parley_store::Store;

use crate::clock::Clock;
use crate::config::Settings;
use crate::mail::Mailer;
use crate::ratelimit::RateLimiter;
use crate::tokens::TokenKeys;

pub mod accounts;
pub mod clients;
pub mod notifications;

/// What every service shares.
#[derive(Clone, Debug)]
pub struct Core {
    /// Storage.
    pub store: Arc<dyn Store>,
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
}

impl Core {
    /// Counts an attempt against both the account's and the address's limit.
    pub fn limit(&self, account: &str, address: &str) -> crate::error::ApiResult<()> {
        let now = self.clock.now();
        self.per_address
            .check(address, now)
            .and_then(|()| self.per_account.check(account, now))
            .map_err(crate::error::ApiError::rate_limited)
    }
}

/// Random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system provides randomness");
    b
}
