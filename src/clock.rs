//! The one place that reads the wall clock. Domain code takes `now` as a parameter, so expiry is
//! tested by moving a `ManualClock` instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::Timestamp;

pub trait Clock: Send + Sync + 'static {
    /// Unix seconds.
    fn now(&self) -> Timestamp;
    /// Unix milliseconds (for sub-second pacing, e.g. Plex polls).
    fn now_ms(&self) -> i64 {
        self.now() * 1000
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        #[allow(clippy::disallowed_methods)]
        let since = SystemTime::now().duration_since(UNIX_EPOCH);
        since.map(|d| d.as_secs() as Timestamp).unwrap_or(0)
    }
    fn now_ms(&self) -> i64 {
        #[allow(clippy::disallowed_methods)]
        let since = SystemTime::now().duration_since(UNIX_EPOCH);
        since.map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// The system clock shifted by an adjustable offset: tests fast-forward time with it. It can be
/// frozen, for tests whose outcome must not depend on a second passing meanwhile.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset: AtomicI64,
    /// Unix milliseconds the clock stands at; 0 while it follows the system clock.
    frozen_ms: AtomicI64,
}

impl ManualClock {
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Stops the clock where it is now (`advance` still moves it).
    pub fn freeze(&self) {
        self.frozen_ms.store(SystemClock.now_ms(), Ordering::SeqCst);
    }

    fn base_ms(&self) -> i64 {
        match self.frozen_ms.load(Ordering::SeqCst) {
            0 => SystemClock.now_ms(),
            frozen => frozen,
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.base_ms().div_euclid(1000) + self.offset.load(Ordering::SeqCst)
    }
    fn now_ms(&self) -> i64 {
        self.base_ms() + self.offset.load(Ordering::SeqCst) * 1000
    }
}
