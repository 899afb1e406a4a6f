//! Attempt limits for logins and codes, per account and per address: a fixed window
//! per key, in memory. (Several nodes each keep their own count; the limit then
//! applies per node, which still bounds guessing.)

use std::collections::HashMap;
use std::sync::Mutex;

/// Counts attempts per key in fixed windows.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: i64,
    counts: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    /// At most `limit` attempts per `window` seconds per key.
    pub fn new(limit: u32, window: i64) -> Self {
        Self {
            limit,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt for `key` at `now`; `Err(seconds to wait)` beyond the limit.
    pub fn check(&self, key: &str, now: i64) -> Result<(), u64> {
        let mut counts = self
            .counts
            .lock()
            .expect("the limiter's lock is never poisoned");
        if counts.len() > 100_000 {
            counts.retain(|_, (start, _)| now - *start < self.window);
        }
        let entry = counts.entry(key.to_owned()).or_insert((now, 0));
        if now - entry.0 >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(u64::try_from(entry.0 + self.window - now)
                .unwrap_or(1)
                .max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_window() {
        let l = RateLimiter::new(2, 60);
        assert!(l.check("a", 0).is_ok());
        assert!(l.check("a", 1).is_ok());
        assert_eq!(l.check("a", 2), Err(58));
        assert!(l.check("b", 2).is_ok(), "other keys unaffected");
        assert!(l.check("a", 60).is_ok(), "a new window");
    }
}
