//! Failed-login throttling per client IP and per account. Only failures count, so a user who
//! types the right password and relying parties' normal traffic never trip it. Once the limit
//! is reached within the window, each further failure doubles the wait (1 s, 2 s, 4 s, ... up
//! to the window). Checked before any argon2 work, so a flood costs next to nothing.

use std::time::Duration;

use moka::sync::Cache;

use crate::store::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    failures: u32,
    window_start: Timestamp,
    blocked_until: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Try again after this many seconds.
    Limited(i64),
}

pub struct LoginLimiter {
    by_ip: Cache<String, Counter>,
    by_account: Cache<String, Counter>,
    max_ip: u32,
    max_account: u32,
    window: i64,
}

impl LoginLimiter {
    pub fn new(max_ip: u32, max_account: u32, window: Duration) -> LoginLimiter {
        let window_secs = i64::try_from(window.as_secs()).unwrap_or(300).max(1);
        // Entries outlive the window a little so the growing delay is remembered.
        let ttl = Duration::from_secs(u64::try_from(window_secs * 4).unwrap_or(1200));
        LoginLimiter {
            by_ip: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(ttl)
                .build(),
            by_account: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(ttl)
                .build(),
            max_ip,
            max_account,
            window: window_secs,
        }
    }

    pub fn check(&self, ip: &str, account: &str, now: Timestamp) -> Verdict {
        let wait = [
            self.by_ip.get(ip),
            self.by_account.get(&account.to_lowercase()),
        ]
        .into_iter()
        .flatten()
        .map(|c| c.blocked_until - now)
        .max()
        .unwrap_or(0);
        if wait > 0 {
            Verdict::Limited(wait)
        } else {
            Verdict::Allowed
        }
    }

    pub fn record_failure(&self, ip: &str, account: &str, now: Timestamp) {
        let bump = |cache: &Cache<String, Counter>, key: String, max: u32| {
            let mut c = cache.get(&key).unwrap_or(Counter {
                failures: 0,
                window_start: now,
                blocked_until: 0,
            });
            c = next(c, max, self.window, now);
            cache.insert(key, c);
        };
        bump(&self.by_ip, ip.to_string(), self.max_ip);
        bump(&self.by_account, account.to_lowercase(), self.max_account);
    }

    /// A successful login clears the account's count (not the IP's: one right password must
    /// not unlock guessing at other accounts).
    pub fn record_success(&self, account: &str) {
        self.by_account.invalidate(&account.to_lowercase());
    }
}

fn next(mut c: Counter, max: u32, window: i64, now: Timestamp) -> Counter {
    if now - c.window_start >= window && now >= c.blocked_until {
        c = Counter {
            failures: 0,
            window_start: now,
            blocked_until: 0,
        };
    }
    c.failures = c.failures.saturating_add(1);
    if c.failures >= max {
        let over = (c.failures - max).min(20);
        let delay = (1i64 << over).min(window);
        c.blocked_until = now + delay;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_max_failures_with_growing_delay() {
        let l = LoginLimiter::new(100, 3, Duration::from_secs(300));
        let now = 1000;
        for _ in 0..2 {
            l.record_failure("1.2.3.4", "Alice", now);
            assert_eq!(l.check("1.2.3.4", "alice", now), Verdict::Allowed);
        }
        l.record_failure("1.2.3.4", "alice", now);
        assert_eq!(
            l.check("9.9.9.9", "ALICE", now),
            Verdict::Limited(1),
            "per account, whatever the IP"
        );
        l.record_failure("5.6.7.8", "alice", now + 1);
        assert_eq!(l.check("5.6.7.8", "alice", now + 1), Verdict::Limited(2));
        assert_eq!(
            l.check("5.6.7.8", "bob", now + 1),
            Verdict::Allowed,
            "other accounts unaffected"
        );
        assert_eq!(
            l.check("5.6.7.8", "alice", now + 3),
            Verdict::Allowed,
            "the wait passes"
        );
    }

    #[test]
    fn per_ip_limit_and_success_reset() {
        let l = LoginLimiter::new(2, 100, Duration::from_secs(300));
        l.record_failure("1.1.1.1", "a", 0);
        l.record_failure("1.1.1.1", "b", 0);
        assert!(matches!(l.check("1.1.1.1", "c", 0), Verdict::Limited(_)));
        let l = LoginLimiter::new(100, 2, Duration::from_secs(300));
        l.record_failure("1.1.1.1", "a", 0);
        l.record_success("a");
        l.record_failure("1.1.1.1", "a", 0);
        assert_eq!(l.check("1.1.1.1", "a", 0), Verdict::Allowed);
    }

    #[test]
    fn window_resets() {
        let c = Counter {
            failures: 5,
            window_start: 0,
            blocked_until: 0,
        };
        assert_eq!(next(c, 10, 300, 400).failures, 1);
    }
}
