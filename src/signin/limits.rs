//! The in-process sign-in limits, per client IP: the failure budget of one IP (whatever the
//! accounts it tries), the number of sign-in flows one IP may open, and the Plex PINs one IP
//! may create. (The per-account lockout lives in the store: `accounts::lockout`.)
//!
//! A limit is *reserved* before the work it guards (argon2, a stored flow, a plex.tv call) and
//! settled afterwards, under one lock, so parallel requests cannot overrun it: a password
//! attempt takes a slot in its IP's failure budget before its hash is checked and gives it back
//! when the password was right (only failures count). An IP never has more attempts being
//! verified at once than failures it has left (and at most `MAX_VERIFYING_PER_IP`); a further
//! attempt waits its turn (at most `MAX_WAIT`) instead of being refused. Once the limit is
//! reached within the window, each further failure doubles the wait (1 s, 2 s, 4 s, ... up to
//! the window), one attempt at a time.
//!
//! Per process, on purpose: these counters guard this process's argon2 queue and live in its
//! memory (bounded moka caches), because a reservation is taken and settled around every hash
//! in microseconds. Several replicas therefore each allow the configured per-IP budget; the
//! per-account lockout, which must hold across replicas, is in the store. Clients are keyed by
//! IP, IPv6 by its /64 (one host usually owns a whole /64, so per-address limits would be no
//! limit at all).

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use moka::sync::Cache;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::LoginConfig;
use crate::store::{Hash, Timestamp};

/// The longest a password attempt waits for its turn before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// At most this many attempts from one IP are verified at once (a burst from one address must
/// not fill the argon2 queue that everyone else's sign-in waits in).
pub const MAX_VERIFYING_PER_IP: u32 = 4;
/// Plex PINs per IP: a burst of this many, then one every `PIN_INTERVAL_MS`.
const PIN_BURST: i64 = 10;
const PIN_INTERVAL_MS: i64 = 2000;
/// Passkey challenges per IP (each is a store write): a burst of this many, then one every
/// `CHALLENGE_INTERVAL_MS`.
pub const CHALLENGE_BURST: i64 = 20;
const CHALLENGE_INTERVAL_MS: i64 = 1000;
const CAPACITY: u64 = 100_000;

/// What the limiter keys a client by: an IPv4 address, or the /64 an IPv6 address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(IpAddr);

impl IpKey {
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(_) => IpKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(IpAddr::V4(v4)),
                None => {
                    let [a, b, c, d, ..] = v6.segments();
                    IpKey(IpAddr::from([a, b, c, d, 0, 0, 0, 0]))
                }
            },
        }
    }
}

impl std::fmt::Display for IpKey {
    /// The address, or for IPv6 its /64 (`2001:db8:1:2::/64`): the store's lockout key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Counter {
    failures: u32,
    window_start: i64,
    blocked_until: i64,
    /// Attempts reserved and not yet settled.
    in_flight: u32,
}

/// Why an attempt was refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds, at least 1 (the Retry-After value).
    pub retry_after: i64,
    pub reason: LimitReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// The failure limit is reached: wait for the delay.
    Failures,
    /// Attempts for this account (or IP) were still being checked after `MAX_WAIT`.
    Busy,
    /// Too many sign-in flows (or Plex PINs) from this IP.
    Rate,
}

impl Limited {
    fn after_ms(ms: i64, reason: LimitReason) -> Limited {
        Limited {
            retry_after: ((ms + 999) / 1000).max(1),
            reason,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserve {
    Reserved,
    Busy,
    Limited(i64),
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Failure,
    Success,
    /// Not checked after all (the argon2 queue was full, the request went away).
    Unused,
}

/// A token bucket in GCRA form: the stored value is the theoretical arrival time.
#[derive(Debug, Clone, Copy)]
struct Rate {
    interval_ms: i64,
    burst: i64,
}

pub struct SignInLimiter {
    lock: Mutex<()>,
    settled: Notify,
    by_ip: Cache<IpKey, Counter>,
    flows: Cache<IpKey, i64>,
    open_flows: Cache<Hash, IpKey>,
    pins: Cache<IpKey, i64>,
    challenges: Cache<IpKey, i64>,
    max_ip: u32,
    window_ms: i64,
    flow_rate: Rate,
    pin_rate: Rate,
    challenge_rate: Rate,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn cache<K, V>(idle: Duration) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_idle(idle)
        .build()
}

impl SignInLimiter {
    pub fn new(login: &LoginConfig) -> SignInLimiter {
        let window_ms = ms(login.failure_window).max(1000);
        // Entries outlive the window a little so the growing delay is remembered.
        let ttl = Duration::from_millis(u64::try_from(window_ms * 4).unwrap_or(1_200_000));
        let flows = i64::from(login.max_flows_per_ip.max(1));
        SignInLimiter {
            lock: Mutex::new(()),
            settled: Notify::new(),
            by_ip: cache(ttl),
            flows: cache(Duration::from_secs(120)),
            open_flows: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            pins: cache(Duration::from_secs(60)),
            challenges: cache(Duration::from_secs(60)),
            max_ip: login.max_failures_per_ip,
            window_ms,
            flow_rate: Rate {
                interval_ms: (60_000 / flows).max(1),
                burst: flows,
            },
            pin_rate: Rate {
                interval_ms: PIN_INTERVAL_MS,
                burst: PIN_BURST,
            },
            challenge_rate: Rate {
                interval_ms: CHALLENGE_INTERVAL_MS,
                burst: CHALLENGE_BURST,
            },
        }
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a password attempt from `ip`, waiting (at most `MAX_WAIT`) while the IP's
    /// remaining failures are all being checked. Settle the attempt with `failed` or
    /// `succeeded`; dropping it gives the slot back unused.
    pub async fn attempt(&self, ip: IpAddr, clock: &dyn Clock) -> Result<Attempt<'_>, Limited> {
        let key = IpKey::of(ip);
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            // Registered before the check, so a settlement in between is not missed.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let now = clock.now_ms();
            match self.try_reserve(key, now) {
                Reserve::Reserved => {
                    return Ok(Attempt {
                        limiter: self,
                        ip: key,
                        settled: false,
                        checking: false,
                        reserved_at: now,
                    })
                }
                Reserve::Limited(wait) => {
                    return Err(Limited::after_ms(wait, LimitReason::Failures))
                }
                Reserve::Busy => {}
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return Err(Limited::after_ms(1000, LimitReason::Busy));
            }
        }
    }

    fn try_reserve(&self, ip: IpKey, now: i64) -> Reserve {
        let _g = self.guard();
        let by_ip = fresh(self.by_ip.get(&ip), self.window_ms, now);
        let wait = by_ip.blocked_until - now;
        if wait > 0 {
            return Reserve::Limited(wait);
        }
        let ip_room = room(&by_ip, self.max_ip).min(MAX_VERIFYING_PER_IP);
        if by_ip.in_flight >= ip_room {
            return Reserve::Busy;
        }
        self.by_ip.insert(
            ip,
            Counter {
                in_flight: by_ip.in_flight + 1,
                ..by_ip
            },
        );
        Reserve::Reserved
    }

    fn settle(&self, ip: IpKey, outcome: Outcome, now: i64) {
        {
            let _g = self.guard();
            // An entry the cache evicted meanwhile starts afresh: a failure is never lost.
            let entry = |c: Option<Counter>| match (c, outcome) {
                (Some(c), _) => Some(c),
                (None, Outcome::Failure) => Some(fresh(None, self.window_ms, now)),
                (None, _) => None,
            };
            if let Some(mut c) = entry(self.by_ip.get(&ip)) {
                c.in_flight = c.in_flight.saturating_sub(1);
                // A right password clears nothing here: one right password must not unlock
                // guessing at other accounts from the same IP.
                if let Outcome::Failure = outcome {
                    c = next(c, self.max_ip, self.window_ms, now);
                }
                self.by_ip.insert(ip, c);
            }
        }
        self.settled.notify_waiters();
    }

    /// A new sign-in flow from `ip`: `[login] max_flows_per_ip` a minute, completed flows given
    /// back (`flow_completed`).
    pub fn open_flow(&self, ip: IpAddr, flow: Hash, now: Timestamp) -> Result<(), Limited> {
        let key = IpKey::of(ip);
        let _g = self.guard();
        take(&self.flows, key, self.flow_rate, now)?;
        self.open_flows.insert(flow, key);
        Ok(())
    }

    /// The flow finished with a sign-in: it no longer counts against its IP.
    pub fn flow_completed(&self, flow: &Hash, now: Timestamp) {
        let Some(key) = self.open_flows.remove(flow) else {
            return;
        };
        let _g = self.guard();
        if let Some(tat) = self.flows.get(&key) {
            self.flows
                .insert(key, (tat - self.flow_rate.interval_ms).max(now));
        }
    }

    /// A Plex PIN from `ip` (each costs a plex.tv call): a burst of 10, then one every 2 s.
    pub fn create_pin(&self, ip: IpAddr, now: Timestamp) -> Result<(), Limited> {
        let _g = self.guard();
        take(&self.pins, IpKey::of(ip), self.pin_rate, now)
    }

    /// A passkey challenge for `ip` (each one a store write): a burst of
    /// [`CHALLENGE_BURST`], then one a second.
    pub fn passkey_challenge(&self, ip: IpAddr, now: Timestamp) -> Result<(), Limited> {
        let _g = self.guard();
        take(&self.challenges, IpKey::of(ip), self.challenge_rate, now)
    }
}

/// A reserved password attempt. Dropping it unsettled gives the slot back unused, unless its
/// password was already handed to argon2 (`checking`): a request that goes away while its hash
/// runs counts as a failure, so dropping connections cannot buy unlimited guesses.
pub struct Attempt<'a> {
    limiter: &'a SignInLimiter,
    ip: IpKey,
    settled: bool,
    checking: bool,
    reserved_at: i64,
}

impl Attempt<'_> {
    /// The password is about to be checked: from now on, dropping the attempt counts as a
    /// failure (the hash runs to its end whatever happens to the request).
    pub fn checking(&mut self) {
        self.checking = true;
    }

    /// The password was wrong: counts against the IP.
    pub fn failed(mut self, now_ms: i64) {
        self.settled = true;
        self.limiter.settle(self.ip, Outcome::Failure, now_ms);
    }

    /// The password was right: nothing counts.
    pub fn succeeded(mut self, now_ms: i64) {
        self.settled = true;
        self.limiter.settle(self.ip, Outcome::Success, now_ms);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let outcome = if self.checking {
                Outcome::Failure
            } else {
                Outcome::Unused
            };
            self.limiter.settle(self.ip, outcome, self.reserved_at);
        }
    }
}

/// The counter as of `now`: a window that is over (and no delay running) starts again.
fn fresh(c: Option<Counter>, window: i64, now: i64) -> Counter {
    let c = c.unwrap_or(Counter {
        window_start: now,
        ..Counter::default()
    });
    if now - c.window_start >= window && now >= c.blocked_until {
        Counter {
            in_flight: c.in_flight,
            window_start: now,
            ..Counter::default()
        }
    } else {
        c
    }
}

/// How many attempts may be checked at once: the failures left, or one at a time past the limit.
fn room(c: &Counter, max: u32) -> u32 {
    if c.failures < max {
        max - c.failures
    } else {
        1
    }
}

fn next(c: Counter, max: u32, window: i64, now: i64) -> Counter {
    let mut c = fresh(Some(c), window, now);
    c.failures = c.failures.saturating_add(1);
    if c.failures >= max {
        let over = (c.failures - max).min(20);
        let delay = (1000i64 << over).min(window);
        c.blocked_until = now + delay;
    }
    c
}

fn take(cache: &Cache<IpKey, i64>, key: IpKey, rate: Rate, now: i64) -> Result<(), Limited> {
    let tat = cache.get(&key).unwrap_or(now).max(now);
    let ahead = (rate.burst - 1) * rate.interval_ms;
    if tat - now > ahead {
        return Err(Limited::after_ms(tat - now - ahead, LimitReason::Rate));
    }
    cache.insert(key, tat + rate.interval_ms);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_ip: u32, flows: u32) -> SignInLimiter {
        let mut login = crate::config::defaults().login;
        login.max_failures_per_ip = max_ip;
        login.max_flows_per_ip = flows;
        SignInLimiter::new(&login)
    }

    fn ip(s: &str) -> IpKey {
        IpKey::of(s.parse().unwrap())
    }

    /// Reserves and fails one attempt at `now`.
    fn fail(l: &SignInLimiter, from: &str, now: i64) {
        assert_eq!(l.try_reserve(ip(from), now), Reserve::Reserved);
        l.settle(ip(from), Outcome::Failure, now);
    }

    #[tokio::test]
    async fn an_attempt_dropped_while_checking_counts_as_a_failure() {
        let l = limiter(2, 300);
        let clock = crate::clock::ManualClock::default();
        clock.freeze();
        let addr: IpAddr = "1.2.3.4".parse().unwrap();
        let mut a = l.attempt(addr, &clock).await.unwrap();
        a.checking();
        drop(a);
        let b = l.attempt(addr, &clock).await.unwrap();
        drop(b); // never checked: unused
        let mut c = l.attempt(addr, &clock).await.unwrap();
        c.checking();
        drop(c);
        assert!(
            matches!(
                l.try_reserve(ip("1.2.3.4"), crate::clock::Clock::now_ms(&clock)),
                Reserve::Limited(_)
            ),
            "two abandoned checks are the two failures the IP had"
        );
    }

    #[test]
    fn a_failure_settled_after_its_entry_was_evicted_still_counts() {
        let l = limiter(1, 300);
        assert_eq!(l.try_reserve(ip("1.2.3.4"), 0), Reserve::Reserved);
        l.by_ip.invalidate(&ip("1.2.3.4"));
        l.settle(ip("1.2.3.4"), Outcome::Failure, 0);
        assert!(matches!(
            l.try_reserve(ip("1.2.3.4"), 0),
            Reserve::Limited(_)
        ));
    }

    #[test]
    fn limits_after_max_failures_with_growing_delay() {
        let l = limiter(3, 300);
        let now = 1_000_000;
        fail(&l, "1.2.3.4", now);
        fail(&l, "1.2.3.4", now);
        fail(&l, "1.2.3.4", now);
        assert_eq!(l.try_reserve(ip("1.2.3.4"), now), Reserve::Limited(1000));
        assert_eq!(l.try_reserve(ip("5.6.7.8"), now), Reserve::Reserved);
        fail(&l, "1.2.3.4", now + 1000);
        assert_eq!(
            l.try_reserve(ip("1.2.3.4"), now + 1000),
            Reserve::Limited(2000)
        );
        assert_eq!(
            l.try_reserve(ip("1.2.3.4"), now + 3000),
            Reserve::Reserved,
            "the wait passes"
        );
    }

    #[test]
    fn never_more_in_flight_than_failures_left() {
        let l = limiter(3, 300);
        let now = 0;
        for _ in 0..3 {
            assert_eq!(l.try_reserve(ip("1.1.1.1"), now), Reserve::Reserved);
        }
        assert_eq!(l.try_reserve(ip("1.1.1.1"), now), Reserve::Busy);
        // A right password gives its slot back and counts nothing.
        l.settle(ip("1.1.1.1"), Outcome::Success, now);
        assert_eq!(l.try_reserve(ip("1.1.1.1"), now), Reserve::Reserved);
        for _ in 0..3 {
            l.settle(ip("1.1.1.1"), Outcome::Failure, now);
        }
        assert!(matches!(
            l.try_reserve(ip("1.1.1.1"), now),
            Reserve::Limited(_)
        ));
    }

    #[test]
    fn at_most_a_few_verifications_per_ip_at_once() {
        let l = limiter(100, 300);
        for _ in 0..MAX_VERIFYING_PER_IP {
            assert_eq!(l.try_reserve(ip("1.1.1.1"), 0), Reserve::Reserved);
        }
        assert_eq!(l.try_reserve(ip("1.1.1.1"), 0), Reserve::Busy);
        assert_eq!(l.try_reserve(ip("1.1.1.2"), 0), Reserve::Reserved);
    }

    #[test]
    fn window_resets() {
        let c = Counter {
            failures: 5,
            ..Counter::default()
        };
        assert_eq!(next(c, 10, 300_000, 400_000).failures, 1);
    }

    #[test]
    fn ipv6_is_keyed_per_64() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(ip("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(ip("::ffff:192.0.2.1").to_string(), "192.0.2.1");
    }

    #[test]
    fn flows_per_ip_completed_ones_do_not_count() {
        let l = limiter(100, 3);
        let addr: IpAddr = "1.1.1.1".parse().unwrap();
        for i in 0..3u8 {
            assert!(l.open_flow(addr, [i; 32], 0).is_ok());
        }
        let refused = l.open_flow(addr, [9; 32], 0).unwrap_err();
        assert_eq!(refused.reason, LimitReason::Rate);
        assert!(refused.retry_after >= 1);
        assert!(l.open_flow("1.1.1.2".parse().unwrap(), [8; 32], 0).is_ok());
        l.flow_completed(&[0; 32], 0);
        assert!(l.open_flow(addr, [10; 32], 0).is_ok());
        assert!(l.open_flow(addr, [11; 32], 0).is_err());
        // A minute refills the budget.
        assert!(l.open_flow(addr, [12; 32], 60_000).is_ok());
    }

    #[test]
    fn pins_burst_then_one_every_two_seconds() {
        let l = limiter(100, 300);
        let addr: IpAddr = "1.1.1.1".parse().unwrap();
        for _ in 0..10 {
            assert!(l.create_pin(addr, 0).is_ok());
        }
        assert!(l.create_pin(addr, 0).is_err());
        assert!(l.create_pin(addr, 2000).is_ok());
        assert!(l.create_pin(addr, 2000).is_err());
    }

    #[tokio::test]
    async fn a_further_attempt_waits_its_turn() {
        let l = std::sync::Arc::new(limiter(1, 300));
        let clock = crate::clock::SystemClock;
        let addr: IpAddr = "1.1.1.1".parse().unwrap();
        let first = l.attempt(addr, &clock).await.unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move {
                let clock = crate::clock::SystemClock;
                l.attempt(addr, &clock).await.map(|a| a.succeeded(0))
            })
        };
        tokio::task::yield_now().await;
        // The first was right: the waiter gets its turn.
        first.succeeded(clock.now_ms());
        assert_eq!(waiter.await.unwrap(), Ok(()));
        // A wrong one reaches the limit: the waiter is refused at once.
        let first = l.attempt(addr, &clock).await.unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move {
                let clock = crate::clock::SystemClock;
                l.attempt(addr, &clock).await.map(|_| ())
            })
        };
        tokio::task::yield_now().await;
        first.failed(clock.now_ms());
        let refused = waiter.await.unwrap().unwrap_err();
        assert_eq!(refused.reason, LimitReason::Failures);
    }
}
