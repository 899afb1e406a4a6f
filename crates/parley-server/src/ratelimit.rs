//! Attempt limits for logins, codes and prekey claims, per key (an account, a client
//! address, a claimer and device), in memory: `governor`'s keyed GCRA limiter. (Several
//! nodes each keep their own count; the limit then applies per node, which still
//! bounds guessing.)
//!
//! A limit of `limit` attempts per `window` seconds lets a key make `limit` attempts
//! at once, then one more each `window / limit` seconds: over any stretch of time the
//! rate stays `limit` per `window`.
//!
//! Time is passed in, as everywhere in the server: each check names the server
//! clock's `now`, and the limiter's clock is the latest time it was given (so the
//! tests' clock, moved forward, moves it too).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};

/// Keys kept before stale ones (indistinguishable from a fresh key) are dropped.
const PRUNE_ABOVE: usize = 100_000;

type Keyed = Governor<String, DefaultKeyedStateStore<String>, PassedIn, NoOpMiddleware<Nanos>>;

/// Counts attempts per key.
pub struct RateLimiter {
    limit: u32,
    window: u64,
    /// `None` for a limit of zero: every attempt is refused.
    keyed: Option<Keyed>,
    /// Above this many keys, the next check drops the stale ones (those
    /// indistinguishable from a key never seen); then it is twice what is left
    /// (at least [`PRUNE_ABOVE`]), so pruning stays rare however many keys are live.
    prune_above: AtomicUsize,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limit", &self.limit)
            .field("window", &self.window)
            .field("keys", &self.keyed.as_ref().map_or(0, |k| k.len()))
            .finish()
    }
}

impl RateLimiter {
    /// At most `limit` attempts per `window` seconds per key.
    pub fn new(limit: u32, window: i64) -> Self {
        let window = u64::try_from(window).unwrap_or(1).max(1);
        let keyed = NonZeroU32::new(limit).map(|burst| {
            let every = Duration::from_secs(window) / burst.get();
            let quota = Quota::with_period(every.max(Duration::from_nanos(1)))
                .expect("the period is not zero")
                .allow_burst(burst);
            Governor::new(
                quota,
                DefaultKeyedStateStore::default(),
                PassedIn::default(),
            )
        });
        Self {
            limit,
            window,
            keyed,
            prune_above: AtomicUsize::new(PRUNE_ABOVE),
        }
    }

    /// Counts an attempt for `key` at `now` (Unix seconds, the server clock's);
    /// `Err(seconds to wait)` beyond the limit.
    pub fn check(&self, key: &str, now: i64) -> Result<(), u64> {
        let Some(keyed) = &self.keyed else {
            return Err(self.window);
        };
        let clock = keyed.clock();
        clock.advance_to(now);
        if keyed.len() > self.prune_above.load(Ordering::Relaxed) {
            keyed.retain_recent();
            keyed.shrink_to_fit();
            self.prune_above.store(
                PRUNE_ABOVE.max(keyed.len().saturating_mul(2)),
                Ordering::Relaxed,
            );
        }
        keyed.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(clock));
            // Whole seconds, rounded up: never "try again in 0 seconds".
            wait.as_secs()
                .saturating_add(u64::from(wait.subsec_nanos() > 0))
                .max(1)
        })
    }
}

/// `governor`'s clock over the times the checks pass in: the latest of them (Unix
/// seconds), so it never goes back even if two checks race.
#[derive(Debug, Default)]
struct PassedIn {
    seconds: AtomicU64,
}

impl PassedIn {
    fn advance_to(&self, now: i64) {
        self.seconds
            .fetch_max(u64::try_from(now).unwrap_or(0), Ordering::AcqRel);
    }
}

impl governor::clock::Clock for PassedIn {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(
            self.seconds
                .load(Ordering::Acquire)
                .saturating_mul(1_000_000_000),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_window() {
        // Two per minute: both at once, then one each 30 seconds.
        let l = RateLimiter::new(2, 60);
        assert!(l.check("a", 0).is_ok());
        assert!(l.check("a", 1).is_ok());
        assert_eq!(l.check("a", 2), Err(28), "the next one frees up at 30");
        assert!(l.check("b", 2).is_ok(), "other keys unaffected");
        assert_eq!(l.check("a", 29), Err(1));
        assert!(l.check("a", 30).is_ok(), "one more after 30 seconds");
        assert_eq!(l.check("a", 31), Err(29), "and only one");
        assert!(l.check("a", 120).is_ok(), "a whole window later, ");
        assert!(l.check("a", 120).is_ok(), "the whole burst again");
        assert!(l.check("a", 120).is_err());
    }

    #[test]
    fn time_never_goes_back() {
        let l = RateLimiter::new(1, 60);
        assert!(l.check("a", 100).is_ok());
        // A check that read the clock a moment earlier counts at the later time.
        assert_eq!(l.check("a", 99), Err(60));
    }

    #[test]
    fn a_limit_of_zero_refuses_everything() {
        let l = RateLimiter::new(0, 300);
        assert_eq!(l.check("a", 0), Err(300));
    }

    #[test]
    fn stale_keys_are_dropped_when_there_are_many() {
        let l = RateLimiter::new(5, 300);
        let keyed = l.keyed.as_ref().expect("a limit");
        for i in 0..=PRUNE_ABOVE {
            assert!(l.check(&i.to_string(), 0).is_ok());
        }
        assert_eq!(keyed.len(), PRUNE_ABOVE + 1);
        // Long after: every key is as good as new, and the next check drops them.
        assert!(l.check("new", 1000).is_ok());
        assert_eq!(keyed.len(), 1, "only the new key is left");
        // Live keys are kept: nothing is dropped within their window.
        for i in 0..=PRUNE_ABOVE {
            assert!(l.check(&i.to_string(), 1000).is_ok());
        }
        assert!(l.check("other", 1001).is_ok());
        assert_eq!(keyed.len(), PRUNE_ABOVE + 3);
    }
}
