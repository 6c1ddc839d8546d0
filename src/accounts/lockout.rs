//! Per-account sign-in lockout, kept in the store so that every replica counts the same
//! failures. Two counters per attempt: the account with the client's IP key (the pair) and the
//! account over all IPs. The rules are plain functions on the counters taking `now`
//! ([`reserve`], [`release`], [`succeed`]); [`Lockout`] runs them inside one store transaction
//! ([`Store::update_lockouts`]).
//!
//! An attempt is counted as a failure *before* the password or code is checked (a
//! reservation): parallel attempts therefore cannot overrun a limit, and an attempt whose
//! request goes away half-way stays counted. A right answer resets both counters; an attempt
//! that was not checked after all (the argon2 queue was full) is taken back.

use std::sync::Arc;

use crate::store::{LockoutCounter, LockoutKey, Store, StoreResult, Timestamp};

/// The limits, in failures and seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures of one account from one IP key before that pair waits.
    pub per_pair: u32,
    /// Failures of one account from all IPs together before the account waits everywhere.
    pub per_account: u32,
    /// Failures below a limit are forgotten this long after the first one; a counter that
    /// reached its limit is forgotten this long after its block ends.
    pub window: i64,
    /// The first wait at a limit.
    pub base: i64,
    /// The longest wait: it doubles per further failure up to this.
    pub max: i64,
}

impl LockoutPolicy {
    /// The policy `[login]` configures.
    pub fn of(login: &crate::config::LoginConfig) -> LockoutPolicy {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
        LockoutPolicy {
            per_pair: login.max_failures_per_account,
            per_account: login.max_failures_per_account_all_ips,
            window: secs(login.failure_window).max(1),
            base: secs(login.lockout_base).max(1),
            max: secs(login.lockout_max).max(1),
        }
    }
}

impl Default for LockoutPolicy {
    /// The documented defaults: 10 per pair, 50 per account, 5 minutes, 30 s doubling to 15 min.
    fn default() -> LockoutPolicy {
        LockoutPolicy {
            per_pair: 10,
            per_account: 50,
            window: 300,
            base: 30,
            max: 900,
        }
    }
}

/// What a counter of an attempt stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The account from this IP key.
    Pair,
    /// The account from all IPs together.
    Account,
    /// Wrong second-factor codes of the account, from anywhere: remembered until a right code
    /// (or `doorman user unlock`), never forgotten by the window, so a stolen password buys a
    /// bounded number of code guesses however slowly they come.
    Codes,
    /// Not a counter: the IP key signed in to this account before (until `blocked_until`), so
    /// the all-IPs counter does not apply to it: a stranger spreading failures over many
    /// addresses cannot lock the owner out at a place they signed in from.
    Known,
}

/// How long an IP key that completed a sign-in stays known to the account.
pub const KNOWN_FOR: i64 = 30 * 86_400;

impl LockoutPolicy {
    /// The limit of a counter. A limit of 0 is read as 1: validation refuses it, and nothing
    /// may be admitted unlimited.
    fn limit(&self, role: Role) -> u32 {
        let limit = match role {
            Role::Pair | Role::Codes | Role::Known => self.per_pair,
            Role::Account => self.per_account,
        };
        limit.max(1)
    }

    fn window(&self, role: Role) -> i64 {
        match role {
            Role::Codes => i64::MAX,
            _ => self.window,
        }
    }

    /// How long a counter with `failures` at or past `limit` waits:
    /// `min(base << (failures - limit), max)`, saturating.
    fn delay(&self, failures: u32, limit: u32) -> i64 {
        let doublings = failures.saturating_sub(limit);
        let factor = 1i64.checked_shl(doublings).filter(|f| *f > 0);
        factor
            .and_then(|f| self.base.max(0).checked_mul(f))
            .unwrap_or(i64::MAX)
            .min(self.max)
    }

    /// The counter as of `now`: a window below the limit that is over starts again; a counter
    /// at or past its limit is kept until `window` after its block ends.
    fn current(&self, c: LockoutCounter, role: Role, now: Timestamp) -> LockoutCounter {
        let (limit, window) = (self.limit(role), self.window(role));
        let forget_at = if c.failures >= limit {
            c.blocked_until.saturating_add(window)
        } else {
            c.window_start.saturating_add(window)
        };
        if c.failures == 0 || now >= forget_at {
            LockoutCounter::default()
        } else {
            c
        }
    }
}

/// The counter keys of an attempt on `account` from `ip_key`, in the order the policy reads
/// them: the pair `(account, ip_key)`, then the account over all IPs `(account, "")`.
pub fn keys(account: &str, ip_key: &str) -> Vec<LockoutKey> {
    keys_for(account, ip_key, &[Role::Pair, Role::Account])
}

/// The store keys of `roles` for an attempt on `account` from `ip_key`.
pub fn keys_for(account: &str, ip_key: &str, roles: &[Role]) -> Vec<LockoutKey> {
    roles
        .iter()
        .map(|role| LockoutKey {
            account: account.to_owned(),
            ip: match role {
                Role::Pair => ip_key.to_owned(),
                Role::Account => String::new(),
                // Neither can be an IP key (those are addresses or `.../64`).
                Role::Codes => "codes".to_owned(),
                Role::Known => format!("known {ip_key}"),
            },
        })
        .collect()
}

/// The counters that count for this attempt: every one but the known-IP marker, and not the
/// all-IPs counter when the IP is known to the account.
fn counts(roles: &[Role], c: &[LockoutCounter], now: Timestamp) -> Vec<bool> {
    let known = roles
        .iter()
        .zip(c)
        .any(|(r, c)| *r == Role::Known && c.blocked_until > now);
    roles
        .iter()
        .map(|r| *r != Role::Known && !(known && *r == Role::Account))
        .collect()
}

/// Reserve an attempt (the pair and the account counter): see [`reserve_roles`].
pub fn reserve(p: &LockoutPolicy, c: &mut [LockoutCounter], now: Timestamp) -> Option<Timestamp> {
    reserve_roles(p, &[Role::Pair, Role::Account], c, now)
}

/// Reserve an attempt: counters as of `now` (a window that is over starts again; a counter at
/// or past its limit is remembered until `window` after its block ends); if any counter that
/// counts is blocked (`blocked_until > now`) -> Some(blocked_until) and nothing changes; else
/// counts the attempt as a failure in each of them (so parallel attempts cannot overrun the
/// limit: the attempt that reaches a limit starts that counter's block at once) and returns
/// None.
pub fn reserve_roles(
    p: &LockoutPolicy,
    roles: &[Role],
    c: &mut [LockoutCounter],
    now: Timestamp,
) -> Option<Timestamp> {
    let counting = counts(roles, c, now);
    let current: Vec<LockoutCounter> = c
        .iter()
        .zip(roles)
        .map(|(counter, role)| p.current(*counter, *role, now))
        .collect();
    let blocked = current
        .iter()
        .zip(&counting)
        .filter(|(_, counts)| **counts)
        .map(|(counter, _)| counter.blocked_until)
        .filter(|until| *until > now)
        .max();
    if blocked.is_some() {
        return blocked;
    }
    for (((slot, mut counter), role), counts) in c.iter_mut().zip(current).zip(roles).zip(counting)
    {
        if !counts {
            continue;
        }
        if counter.failures == 0 {
            counter.window_start = now;
        }
        counter.failures = counter.failures.saturating_add(1);
        let limit = p.limit(*role);
        if counter.failures >= limit {
            counter.blocked_until = now.saturating_add(p.delay(counter.failures, limit));
        }
        *slot = counter;
    }
    None
}

/// The attempt was not checked after all (queue full): take its provisional failure back and
/// lift a block it started (the pair and the account counter).
pub fn release(p: &LockoutPolicy, c: &mut [LockoutCounter], now: Timestamp) {
    release_roles(p, &[Role::Pair, Role::Account], c, now)
}

/// [`release`] for the counters of `roles`.
pub fn release_roles(p: &LockoutPolicy, roles: &[Role], c: &mut [LockoutCounter], now: Timestamp) {
    let counting = counts(roles, c, now);
    for ((slot, role), counts) in c.iter_mut().zip(roles).zip(counting) {
        if !counts {
            continue;
        }
        let limit = p.limit(*role);
        let mut counter = p.current(*slot, *role, now);
        if counter.failures == 0 {
            *slot = counter;
            continue;
        }
        counter.failures = counter.failures.saturating_sub(1);
        if counter.failures == 0 {
            counter = LockoutCounter::default();
        } else if counter.failures < limit {
            // Below the limit again: no block (only the attempt that reaches it starts one).
            counter.blocked_until = 0;
        } else {
            // Still past the limit: the block this attempt started ends now (the one before
            // had ended, or the attempt would have been refused); the count stays remembered.
            counter.blocked_until = counter.blocked_until.min(now);
        }
        *slot = counter;
    }
}

/// A right password/code: both counters reset.
pub fn succeed(c: &mut [LockoutCounter]) {
    for counter in c.iter_mut() {
        *counter = LockoutCounter::default();
    }
}

/// A completed sign-in: every counter of `roles` resets, and the IP key becomes known to the
/// account for [`KNOWN_FOR`].
pub fn succeed_roles(roles: &[Role], c: &mut [LockoutCounter], now: Timestamp) {
    for (counter, role) in c.iter_mut().zip(roles) {
        *counter = match role {
            Role::Known => LockoutCounter {
                failures: 0,
                window_start: now,
                blocked_until: now.saturating_add(KNOWN_FOR),
            },
            _ => LockoutCounter::default(),
        };
    }
}

/// The counters of a password attempt, and of a code attempt.
const PASSWORD: &[Role] = &[Role::Pair, Role::Account, Role::Known];
const CODE: &[Role] = &[Role::Pair, Role::Account, Role::Known, Role::Codes];

/// The lockout of the running server: the policy applied to the store's counters.
#[derive(Clone)]
pub struct Lockout {
    store: Arc<dyn Store>,
    policy: LockoutPolicy,
}

impl Lockout {
    pub fn new(store: Arc<dyn Store>, policy: LockoutPolicy) -> Lockout {
        Lockout { store, policy }
    }

    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    /// Reserves a password attempt on `account` from `ip_key` (counted as a failure until
    /// settled): Ok(Reservation) or Err(retry_after_seconds >= 1).
    pub async fn reserve(
        &self,
        account: &str,
        ip_key: &str,
        now: Timestamp,
    ) -> StoreResult<Result<Reservation, i64>> {
        self.reserve_as(account, ip_key, PASSWORD, now).await
    }

    /// Reserves a second-factor code attempt: the password's counters and the account's
    /// code counter ([`Role::Codes`]).
    pub async fn reserve_code(
        &self,
        account: &str,
        ip_key: &str,
        now: Timestamp,
    ) -> StoreResult<Result<Reservation, i64>> {
        self.reserve_as(account, ip_key, CODE, now).await
    }

    async fn reserve_as(
        &self,
        account: &str,
        ip_key: &str,
        roles: &'static [Role],
        now: Timestamp,
    ) -> StoreResult<Result<Reservation, i64>> {
        let keys = keys_for(account, ip_key, roles);
        let policy = self.policy;
        let blocked = self
            .store
            .update_lockouts(
                keys.clone(),
                now,
                Box::new(move |c| reserve_roles(&policy, roles, c, now)),
            )
            .await?;
        Ok(match blocked {
            Some(until) => Err(until.saturating_sub(now).max(1)),
            None => Ok(Reservation {
                keys,
                roles,
                store: Arc::clone(&self.store),
                policy,
            }),
        })
    }
}

/// An admitted attempt, already counted as a failure. Settle it with [`Reservation::succeeded`]
/// or [`Reservation::unused`]; dropping it leaves the failure counted (a wrong answer, or a
/// request that went away).
#[must_use = "a reservation is a counted failure until settled"]
pub struct Reservation {
    keys: Vec<LockoutKey>,
    roles: &'static [Role],
    store: Arc<dyn Store>,
    policy: LockoutPolicy,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// The sign-in is complete: its counters reset, and the IP key is known to the account.
    pub async fn succeeded(self, now: Timestamp) -> StoreResult<()> {
        let roles = self.roles;
        self.store
            .update_lockouts(
                self.keys,
                now,
                Box::new(move |c| {
                    succeed_roles(roles, c, now);
                    None
                }),
            )
            .await
            .map(|_| ())
    }

    /// The attempt was not checked after all: its failure is taken back.
    pub async fn unused(self, now: Timestamp) -> StoreResult<()> {
        let (policy, roles) = (self.policy, self.roles);
        self.store
            .update_lockouts(
                self.keys,
                now,
                Box::new(move |c| {
                    release_roles(&policy, roles, c, now);
                    None
                }),
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    const NOW: Timestamp = 1_700_000_000;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            per_pair: 3,
            per_account: 5,
            window: 300,
            base: 30,
            max: 200,
        }
    }

    /// Counters for one pair and its account, as the store would hand them over.
    fn fresh() -> [LockoutCounter; 2] {
        [LockoutCounter::default(); 2]
    }

    /// `n` failed attempts at `now`, each admitted.
    fn fail(p: &LockoutPolicy, c: &mut [LockoutCounter], n: u32, now: Timestamp) {
        for i in 0..n {
            assert_eq!(reserve(p, c, now), None, "attempt {} refused", i + 1);
        }
    }

    #[test]
    fn keys_are_the_pair_then_the_account_over_all_ips() {
        let k = keys("u1", "192.0.2.7");
        assert_eq!(
            k,
            vec![
                LockoutKey {
                    account: "u1".into(),
                    ip: "192.0.2.7".into()
                },
                LockoutKey {
                    account: "u1".into(),
                    ip: String::new()
                },
            ]
        );
    }

    #[test]
    fn the_limit_engages_at_exactly_the_limit_and_lifts_after_base() {
        let p = policy();
        let mut c = fresh();
        fail(&p, &mut c, 2, NOW);
        assert_eq!(c[0].blocked_until, 0, "below the limit nothing waits");
        // The third attempt (the limit) is admitted and starts the block at once.
        assert_eq!(reserve(&p, &mut c, NOW), None);
        assert_eq!(c[0].failures, 3);
        assert_eq!(c[0].blocked_until, NOW + 30);
        let before = c;
        assert_eq!(reserve(&p, &mut c, NOW), Some(NOW + 30));
        assert_eq!(reserve(&p, &mut c, NOW + 29), Some(NOW + 30));
        assert_eq!(c, before, "a refused attempt changes nothing");
        // After base seconds the next attempt is admitted.
        assert_eq!(reserve(&p, &mut c, NOW + 30), None);
    }

    #[test]
    fn the_wait_doubles_per_further_failure_up_to_max() {
        let p = LockoutPolicy {
            per_account: 100,
            ..policy()
        };
        let mut c = fresh();
        fail(&p, &mut c, 3, NOW);
        let mut now = NOW;
        let mut waits = Vec::new();
        for _ in 0..5 {
            now = c[0].blocked_until;
            assert_eq!(reserve(&p, &mut c, now), None);
            waits.push(c[0].blocked_until - now);
        }
        // 30 at the limit, then 60, 120, then capped at max 200.
        assert_eq!(waits, vec![60, 120, 200, 200, 200]);
        // Far past the limit the shift saturates instead of overflowing.
        let mut big = [LockoutCounter {
            failures: u32::MAX - 1,
            window_start: now,
            blocked_until: now,
        }];
        assert_eq!(reserve(&p, &mut big, now), None);
        assert_eq!(big[0].blocked_until, now + 200);
    }

    #[test]
    fn a_success_resets_both_counters() {
        let p = policy();
        let mut c = fresh();
        fail(&p, &mut c, 2, NOW);
        assert_eq!(reserve(&p, &mut c, NOW), None);
        succeed(&mut c);
        assert_eq!(c, fresh());
        // A fresh budget: the limit is three further failures away.
        fail(&p, &mut c, 2, NOW + 1);
        assert_eq!(c[0].blocked_until, 0);
    }

    #[test]
    fn release_takes_the_failure_back_and_lifts_the_block_it_started() {
        let p = policy();
        let mut c = fresh();
        assert_eq!(reserve(&p, &mut c, NOW), None);
        release(&p, &mut c, NOW);
        assert_eq!(c, fresh(), "one released attempt leaves nothing stored");

        fail(&p, &mut c, 2, NOW);
        let two = c;
        // The attempt that reached the limit was never checked: no block, back to two.
        assert_eq!(reserve(&p, &mut c, NOW), None);
        assert_eq!(c[0].blocked_until, NOW + 30);
        release(&p, &mut c, NOW);
        assert_eq!(c, two);
        assert_eq!(
            reserve(&p, &mut c, NOW),
            None,
            "not blocked after the release"
        );

        // Past the limit: a released attempt ends its own block but the count stays
        // remembered (the next failure still doubles).
        let mut c = fresh();
        fail(&p, &mut c, 3, NOW);
        let after = NOW + 30;
        assert_eq!(reserve(&p, &mut c, after), None);
        assert_eq!(c[0].blocked_until, after + 60);
        release(&p, &mut c, after);
        assert_eq!(c[0].failures, 3);
        assert_eq!(reserve(&p, &mut c, after), None);
        assert_eq!(c[0].blocked_until, after + 60);
    }

    #[test]
    fn failures_below_the_limit_are_forgotten_when_the_window_is_over() {
        let p = policy();
        let mut c = fresh();
        fail(&p, &mut c, 2, NOW);
        // Still inside the window: the third reaches the limit.
        let mut inside = c;
        assert_eq!(reserve(&p, &mut inside, NOW + 299), None);
        assert_eq!(inside[0].blocked_until, NOW + 299 + 30);
        // After the window the count starts again at one.
        assert_eq!(reserve(&p, &mut c, NOW + 300), None);
        assert_eq!(c[0].failures, 1);
        assert_eq!(c[0].window_start, NOW + 300);
        assert_eq!(c[0].blocked_until, 0);
    }

    #[test]
    fn a_counter_past_its_limit_is_remembered_until_a_window_after_its_block() {
        let p = policy();
        let mut c = fresh();
        fail(&p, &mut c, 3, NOW);
        let end = c[0].blocked_until;
        // Within the window after the block: the next failure doubles.
        let mut soon = c;
        assert_eq!(reserve(&p, &mut soon, end + 299), None);
        assert_eq!(soon[0].failures, 4);
        assert_eq!(soon[0].blocked_until, end + 299 + 60);
        // A window after the block ended: forgotten, counting starts again.
        assert_eq!(reserve(&p, &mut c, end + 300), None);
        assert_eq!(c[0].failures, 1);
        assert_eq!(c[0].blocked_until, 0);
    }

    #[test]
    fn the_all_ips_counter_engages_over_many_pairs_while_each_pair_is_below_its_limit() {
        let p = policy();
        let mut account = LockoutCounter::default();
        // Five failures from five IPs: no pair is near its limit of 3.
        for _ in 0..5 {
            let mut c = [LockoutCounter::default(), account];
            assert_eq!(reserve(&p, &mut c, NOW), None);
            assert_eq!(c[0].blocked_until, 0);
            account = c[1];
        }
        assert_eq!(account.blocked_until, NOW + 30);
        // A sixth IP with a clean pair is refused because of the account.
        let mut c = [LockoutCounter::default(), account];
        assert_eq!(reserve(&p, &mut c, NOW + 1), Some(NOW + 30));
        // Another account's counters are their own.
        let mut other = fresh();
        assert_eq!(reserve(&p, &mut other, NOW + 1), None);
    }

    #[test]
    fn a_pair_at_its_limit_does_not_block_the_account_from_another_ip() {
        let p = policy();
        let mut pair_a = LockoutCounter::default();
        let mut account = LockoutCounter::default();
        for _ in 0..3 {
            let mut c = [pair_a, account];
            assert_eq!(reserve(&p, &mut c, NOW), None);
            [pair_a, account] = c;
        }
        let mut from_a = [pair_a, account];
        assert_eq!(reserve(&p, &mut from_a, NOW), Some(NOW + 30));
        let mut from_b = [LockoutCounter::default(), account];
        assert_eq!(reserve(&p, &mut from_b, NOW), None);
    }

    #[tokio::test]
    async fn the_wrapper_answers_retry_after_and_settles_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("doorman.db")).unwrap());
        let lockout = Lockout::new(Arc::clone(&store), policy());
        for _ in 0..3 {
            // Dropped: a failure.
            let _ = lockout.reserve("u1", "ip-a", NOW).await.unwrap().unwrap();
        }
        assert_eq!(
            lockout
                .reserve("u1", "ip-a", NOW + 10)
                .await
                .unwrap()
                .unwrap_err(),
            20
        );
        // The last second still says one.
        assert_eq!(
            lockout
                .reserve("u1", "ip-a", NOW + 29)
                .await
                .unwrap()
                .unwrap_err(),
            1
        );

        // Another IP: admitted; unused takes its failure back, success resets both.
        let r = lockout.reserve("u1", "ip-b", NOW).await.unwrap().unwrap();
        r.unused(NOW).await.unwrap();
        let rows = store.lockouts_of("u1").await.unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].1.failures, 3, "all IPs");
        assert_eq!(rows[1].0.ip, "ip-a");
        let r = lockout.reserve("u1", "ip-b", NOW).await.unwrap().unwrap();
        r.succeeded(NOW).await.unwrap();
        // Both counters of that attempt (the ip-b pair and the all-IPs one) are gone, and
        // ip-b is now known to the account.
        let rows = store.lockouts_of("u1").await.unwrap();
        assert_eq!(
            rows.iter().map(|(k, _)| k.ip.as_str()).collect::<Vec<_>>(),
            vec!["ip-a", "known ip-b"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_reservations_never_exceed_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("doorman.db")).unwrap());
        let p = LockoutPolicy {
            per_pair: 10,
            per_account: 50,
            ..policy()
        };
        let lockout = Lockout::new(store, p);
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (lockout, barrier) = (lockout.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    // Held until all are done, so none is settled early.
                    lockout.reserve("u1", "ip-a", NOW).await.unwrap().ok()
                })
            })
            .collect();
        let mut admitted = Vec::new();
        for task in tasks {
            if let Some(r) = task.await.unwrap() {
                admitted.push(r);
            }
        }
        assert_eq!(admitted.len(), 10);
    }
}

#[cfg(test)]
mod role_tests {
    use super::*;

    const NOW: Timestamp = 1_700_000_000;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            per_pair: 3,
            per_account: 5,
            window: 300,
            base: 30,
            max: 200,
        }
    }

    #[test]
    fn wrong_codes_are_not_forgotten_by_the_window() {
        let p = policy();
        let roles = CODE;
        let mut c = [LockoutCounter::default(); 4];
        // Three wrong codes from three IPs' worth of time apart: the code counter keeps them.
        for i in 0..3 {
            let now = NOW + i * 10_000;
            // Fresh pair/account counters each time (the window has passed for them).
            let mut fresh = c;
            fresh[0] = LockoutCounter::default();
            fresh[1] = LockoutCounter::default();
            c = fresh;
            assert_eq!(reserve_roles(&p, roles, &mut c, now), None, "guess {i}");
        }
        assert_eq!(c[3].failures, 3);
        // Hours later the pair and account counters have forgotten; the code counter has
        // not: the third guess started its block, the doubled one follows the next guess.
        let later = NOW + 20_000 + 1;
        c[0] = LockoutCounter::default();
        c[1] = LockoutCounter::default();
        assert_eq!(
            reserve_roles(&p, roles, &mut c, NOW + 20_000 + 1),
            Some(NOW + 20_000 + 30),
            "locked by the code counter alone"
        );
        // A right code resets it.
        succeed_roles(roles, &mut c, later);
        assert_eq!(c[3], LockoutCounter::default());
        assert!(c[2].blocked_until > later, "and the IP is known");
    }

    #[test]
    fn a_known_ip_is_not_locked_by_failures_from_elsewhere() {
        let p = policy();
        let mut c = [LockoutCounter::default(); 3];
        // The account over all IPs is at its limit (a stranger's spread).
        c[1] = LockoutCounter {
            failures: 5,
            window_start: NOW,
            blocked_until: NOW + 30,
        };
        assert!(reserve_roles(&p, PASSWORD, &mut c, NOW).is_some());
        // The owner's IP signed in before: the all-IPs counter does not apply to it.
        succeed_roles(&[Role::Known], &mut c[2..], NOW - 100);
        assert_eq!(reserve_roles(&p, PASSWORD, &mut c, NOW), None);
        assert_eq!(c[1].failures, 5, "and its failures do not count there");
        assert_eq!(c[0].failures, 1, "the pair still counts");
    }

    #[test]
    fn keys_of_each_role_differ() {
        let k = keys_for("u1", "192.0.2.1", CODE);
        let ips: Vec<&str> = k.iter().map(|k| k.ip.as_str()).collect();
        assert_eq!(ips, ["192.0.2.1", "", "known 192.0.2.1", "codes"]);
    }
}
