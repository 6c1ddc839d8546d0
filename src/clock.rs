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

/// The system clock shifted by an adjustable offset: tests fast-forward time with it.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset: AtomicI64,
}

impl ManualClock {
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        SystemClock.now() + self.offset.load(Ordering::SeqCst)
    }
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset.load(Ordering::SeqCst) * 1000
    }
}
