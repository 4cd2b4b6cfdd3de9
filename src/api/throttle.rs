//! The growing delay after failed logins, sans-io. Failures are counted two ways:
//! - per (client address, user name): a guesser waits longer and longer (to five minutes),
//!   while the administrator logging in from their own machine is not delayed by someone else's
//!   failures;
//! - per user name, from every address: a guesser who rotates addresses is slowed too. This
//!   delay is short and capped (ten seconds), so it slows and never locks out, and it does not
//!   apply at all to an address the user has logged in from before. From such an address the
//!   per-address wait is capped at those same ten seconds too, since a stranger behind the
//!   administrator's NAT shares it: nobody can keep the administrator out for longer.
//!
//! One attempt per (address, user) is checked at a time, so parallel requests cannot all slip
//! in before the first failure is counted.

use crate::clock::Instant;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

/// Failures allowed without any wait: typing mistakes.
const FREE_FAILURES: u32 = 2;
/// The wait doubles with each further failure up to this.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// A record of failures is forgotten this long after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Records kept at most; the oldest goes first. Bounds what a scan of many addresses costs.
const MAX_RECORDS: usize = 10_000;
/// Failures of one user name, from any address, before its attempts are spaced out.
const USER_FREE_FAILURES: u32 = 10;
/// The per-user wait doubles up to this: about six guesses a minute for a whole botnet, and a
/// few seconds for the administrator on a new machine.
const USER_MAX_WAIT: Duration = Duration::from_secs(10);
/// Addresses remembered per user as ones it logged in from, newest kept.
const KNOWN_ADDRESSES: usize = 16;
/// How long a successful login's address stays known.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginKey {
    pub peer: Option<IpAddr>,
    /// Lowercase, as user names are compared.
    pub user: String,
}

impl LoginKey {
    /// An IPv6 peer counts by its /64: one host usually owns a whole /64 and could otherwise
    /// take a fresh address for every guess.
    pub fn new(peer: Option<IpAddr>, user: &str) -> Self {
        let peer = peer.map(|ip| match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(bits.into())
                }
            },
            v4 => v4,
        });
        LoginKey {
            peer,
            user: user.to_lowercase(),
        }
    }
}

/// Why an attempt may not be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The delay after earlier failures still runs for this long.
    Wait(Duration),
    /// Another attempt for the same key is being checked.
    InFlight,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: HashMap<LoginKey, Failures>,
    /// Per lowercase user name, from every address.
    users: HashMap<String, Failures>,
    /// Per lowercase user name: the addresses (IPv6 by /64) it logged in from, and when.
    known: HashMap<String, Vec<(Option<IpAddr>, Instant)>>,
    checking: HashSet<LoginKey>,
    /// Per user name past its free failures: the one attempt from an unknown address being
    /// checked (else many addresses could each have one checked at once).
    user_checking: HashMap<String, LoginKey>,
}

impl LoginThrottle {
    /// How long this key must still wait before a login attempt is even checked.
    pub fn wait(&self, key: &LoginKey, now: Instant) -> Option<Duration> {
        let known = self.is_known(key, now);
        let own = self.failures.get(key).map(|f| {
            let delay = delay_after(f.count);
            f.until(if known {
                delay.min(USER_MAX_WAIT)
            } else {
                delay
            })
        });
        let user = if known {
            None
        } else {
            self.users
                .get(&key.user)
                .map(|f| f.until(user_delay_after(f.count)))
        };
        let until = own.into_iter().chain(user).max()?;
        let left = until.saturating_since(now);
        (!left.is_zero()).then_some(left)
    }

    fn is_known(&self, key: &LoginKey, now: Instant) -> bool {
        self.known.get(&key.user).is_some_and(|addresses| {
            addresses
                .iter()
                .any(|(peer, at)| *peer == key.peer && now.saturating_since(*at) < KNOWN_FOR)
        })
    }

    /// Claims the right to check one attempt for `key` now. Every successful claim must be
    /// followed by [`LoginThrottle::failed`] or [`LoginThrottle::succeeded`], which release it.
    pub fn begin(&mut self, key: &LoginKey, now: Instant) -> Result<(), Refused> {
        if let Some(wait) = self.wait(key, now) {
            return Err(Refused::Wait(wait));
        }
        let spaced = !self.is_known(key, now)
            && self
                .users
                .get(&key.user)
                .is_some_and(|f| f.count >= USER_FREE_FAILURES);
        if spaced && self.user_checking.contains_key(&key.user) {
            return Err(Refused::InFlight);
        }
        if !self.checking.insert(key.clone()) {
            return Err(Refused::InFlight);
        }
        if spaced {
            self.user_checking.insert(key.user.clone(), key.clone());
        }
        Ok(())
    }

    /// Ends `key`'s claim, and its claim on its user name if it held that.
    fn release(&mut self, key: &LoginKey) {
        self.checking.remove(key);
        if self.user_checking.get(&key.user) == Some(key) {
            self.user_checking.remove(&key.user);
        }
    }

    /// Records a failed attempt; returns the wait before the next one from the same address.
    pub fn failed(&mut self, key: LoginKey, now: Instant) -> Duration {
        self.release(&key);
        count_failure(&mut self.users, key.user.clone(), now, user_delay_after);
        count_failure(&mut self.failures, key.clone(), now, delay_after);
        self.wait(&key, now).unwrap_or_default()
    }

    /// Forgets the address's failures and remembers it as one the user logs in from. The
    /// user's failures from everywhere stay: a guesser elsewhere is not helped by the
    /// administrator's login.
    pub fn succeeded(&mut self, key: &LoginKey, now: Instant) {
        self.release(key);
        self.failures.remove(key);
        let addresses = self.known.entry(key.user.clone()).or_default();
        addresses.retain(|(peer, at)| *peer != key.peer && now.saturating_since(*at) < KNOWN_FOR);
        if addresses.len() >= KNOWN_ADDRESSES {
            addresses.remove(0);
        }
        addresses.push((key.peer, now));
    }

    /// Releases a claim without judging the attempt (the check itself failed).
    pub fn abandon(&mut self, key: &LoginKey) {
        self.release(key);
    }
}

/// Counts one more failure for `key` in `records`, forgetting stale records first; a full table
/// drops its oldest record whose delay is over. Records still delaying someone are never
/// dropped, so flooding the table cannot erase a guesser's.
fn count_failure<K: Clone + Eq + std::hash::Hash>(
    records: &mut HashMap<K, Failures>,
    key: K,
    now: Instant,
    delay: fn(u32) -> Duration,
) {
    records.retain(|_, f| now.saturating_since(f.last) < FORGET_AFTER);
    if records.len() >= MAX_RECORDS
        && !records.contains_key(&key)
        && let Some(oldest) = records
            .iter()
            .filter(|(_, f)| f.until(delay(f.count)) <= now)
            .min_by_key(|(_, f)| f.last)
            .map(|(k, _)| k.clone())
    {
        records.remove(&oldest);
    }
    let entry = records.entry(key).or_insert(Failures {
        count: 0,
        last: now,
    });
    entry.count = entry.count.saturating_add(1);
    entry.last = now;
}

impl Failures {
    fn until(&self, delay: Duration) -> Instant {
        self.last.saturating_add(delay)
    }
}

/// From one user name's failures at every address: nothing for ten, then 1 s, 2 s, 4 s, 8 s,
/// then ten seconds.
fn user_delay_after(failures: u32) -> Duration {
    crate::net::backoff::doubling(failures, USER_FREE_FAILURES, USER_MAX_WAIT)
}

/// 0, 0, then 1 s, 2 s, 4 s ... up to five minutes.
fn delay_after(failures: u32) -> Duration {
    crate::net::backoff::doubling(failures, FREE_FAILURES, MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock, WallMs};

    fn key(ip: &str, user: &str) -> LoginKey {
        LoginKey::new(Some(ip.parse().unwrap()), user)
    }

    #[test]
    fn the_delay_grows_after_two_free_failures_and_is_capped() {
        let waits: Vec<u64> = (1..=14).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(
            waits,
            [0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
        assert_eq!(delay_after(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn a_guesser_waits_and_a_success_forgets_the_failures() {
        let clock = ManualClock::new(WallMs(0));
        let mut t = LoginThrottle::default();
        let k = key("192.0.2.7", "admin");
        assert_eq!(t.failed(k.clone(), clock.now()), Duration::ZERO);
        assert_eq!(t.wait(&k, clock.now()), None);
        t.failed(k.clone(), clock.now());
        assert_eq!(t.failed(k.clone(), clock.now()), Duration::from_secs(1));
        assert_eq!(t.failed(k.clone(), clock.now()), Duration::from_secs(2));
        clock.advance(Duration::from_millis(1500));
        assert_eq!(t.wait(&k, clock.now()), Some(Duration::from_millis(500)));
        // User names are compared ignoring case.
        assert!(t.wait(&key("192.0.2.7", "ADMIN"), clock.now()).is_some());
        clock.advance(Duration::from_millis(500));
        assert_eq!(t.wait(&k, clock.now()), None);
        t.succeeded(&k, clock.now());
        assert_eq!(t.failed(k.clone(), clock.now()), Duration::ZERO);
    }

    #[test]
    fn another_address_or_user_is_not_delayed() {
        let clock = ManualClock::new(WallMs(0));
        let mut t = LoginThrottle::default();
        let k = key("192.0.2.7", "admin");
        for _ in 0..USER_FREE_FAILURES {
            t.failed(k.clone(), clock.now());
        }
        assert!(t.wait(&k, clock.now()).is_some());
        assert_eq!(t.wait(&key("192.0.2.8", "admin"), clock.now()), None);
        assert_eq!(t.wait(&key("192.0.2.7", "alice"), clock.now()), None);
    }

    #[test]
    fn one_attempt_per_key_is_checked_at_a_time() {
        let clock = ManualClock::new(WallMs(0));
        let mut t = LoginThrottle::default();
        let k = key("192.0.2.7", "admin");
        assert_eq!(t.begin(&k, clock.now()), Ok(()));
        assert_eq!(t.begin(&k, clock.now()), Err(Refused::InFlight));
        assert_eq!(t.begin(&key("192.0.2.8", "admin"), clock.now()), Ok(()));
        t.failed(k.clone(), clock.now());
        assert_eq!(t.begin(&k, clock.now()), Ok(()));
        t.failed(k.clone(), clock.now());
        t.begin(&k, clock.now()).unwrap();
        t.failed(k.clone(), clock.now());
        assert_eq!(
            t.begin(&k, clock.now()),
            Err(Refused::Wait(Duration::from_secs(1)))
        );
        clock.advance(Duration::from_secs(1));
        t.begin(&k, clock.now()).unwrap();
        t.abandon(&k);
        t.begin(&k, clock.now()).unwrap();
        t.succeeded(&k, clock.now());
        assert_eq!(t.wait(&k, clock.now()), None);
    }

    #[test]
    fn an_ipv6_host_counts_by_its_slash_64() {
        let a = LoginKey::new(Some("2001:db8:1:2::1".parse().unwrap()), "admin");
        let b = LoginKey::new(Some("2001:db8:1:2:ffff::9".parse().unwrap()), "admin");
        let c = LoginKey::new(Some("2001:db8:1:3::1".parse().unwrap()), "admin");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = LoginKey::new(Some("::ffff:192.0.2.7".parse().unwrap()), "admin");
        assert_eq!(mapped, key("192.0.2.7", "admin"));
    }

    #[test]
    fn a_full_table_never_forgets_a_record_still_delaying() {
        let clock = ManualClock::new(WallMs(0));
        let mut t = LoginThrottle::default();
        let guesser = key("192.0.2.7", "admin");
        for _ in 0..6 {
            t.failed(guesser.clone(), clock.now());
        }
        for i in 0..MAX_RECORDS {
            t.failed(LoginKey::new(None, &format!("user{i}")), clock.now());
        }
        assert!(t.wait(&guesser, clock.now()).is_some());
    }

    #[test]
    fn old_failures_are_forgotten() {
        let clock = ManualClock::new(WallMs(0));
        let mut t = LoginThrottle::default();
        let old = key("192.0.2.7", "admin");
        for _ in 0..5 {
            t.failed(old.clone(), clock.now());
        }
        clock.advance(FORGET_AFTER);
        t.failed(key("192.0.2.9", "admin"), clock.now());
        assert_eq!(t.failures.len(), 1);
        assert_eq!(t.failed(old, clock.now()), Duration::ZERO);
    }

    #[test]
    fn rotating_addresses_are_slowed_per_user_but_never_for_long() {
        let clock = ManualClock::new(WallMs(0));
        let mut t = LoginThrottle::default();
        let from = |n: u32| key(&format!("198.51.{}.{}", n / 250, n % 250 + 1), "admin");
        let mut waits = Vec::new();
        for n in 0..16 {
            waits.push(t.failed(from(n), clock.now()).as_secs());
        }
        assert_eq!(waits, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 10, 10]);
        // A fresh address for the same user waits too; another user does not.
        assert_eq!(
            t.begin(&from(100), clock.now()),
            Err(Refused::Wait(Duration::from_secs(10)))
        );
        assert_eq!(t.wait(&key("198.51.0.1", "alice"), clock.now()), None);
        // However long it goes on, a new attempt waits ten seconds at most.
        for n in 16..200 {
            clock.advance(USER_MAX_WAIT);
            t.begin(&from(n), clock.now()).unwrap();
            t.failed(from(n), clock.now());
        }
        assert_eq!(t.wait(&from(300), clock.now()), Some(USER_MAX_WAIT));
        // Past its free failures, one attempt per user name is checked at a time.
        clock.advance(USER_MAX_WAIT);
        t.begin(&from(301), clock.now()).unwrap();
        assert_eq!(t.begin(&from(302), clock.now()), Err(Refused::InFlight));
        t.abandon(&from(301));
        assert_eq!(t.begin(&from(302), clock.now()), Ok(()));
    }

    #[test]
    fn an_address_the_user_logged_in_from_is_not_slowed_by_others_failures() {
        let clock = ManualClock::new(WallMs(0));
        let mut t = LoginThrottle::default();
        let home = key("192.0.2.7", "admin");
        t.begin(&home, clock.now()).unwrap();
        t.succeeded(&home, clock.now());
        for n in 0..40 {
            t.failed(key(&format!("203.0.113.{}", n + 1), "Admin"), clock.now());
        }
        assert!(t.wait(&key("198.51.100.1", "admin"), clock.now()).is_some());
        assert_eq!(t.begin(&home, clock.now()), Ok(()), "home is not delayed");
        t.succeeded(&home, clock.now());
        // The administrator's login does not lift the delay for the guesser.
        assert!(t.wait(&key("203.0.113.99", "admin"), clock.now()).is_some());
        // A stranger behind the same address fails as admin many times: home still waits ten
        // seconds at most.
        for _ in 0..20 {
            t.failed(home.clone(), clock.now());
        }
        assert_eq!(t.wait(&home, clock.now()), Some(USER_MAX_WAIT));
        assert_eq!(
            t.wait(&key("192.0.2.8", "admin"), clock.now()),
            Some(USER_MAX_WAIT),
            "elsewhere, the per-user wait"
        );
        // A month later, home is a stranger again.
        clock.advance(KNOWN_FOR);
        t.failed(key("203.0.113.1", "admin"), clock.now());
        assert!(!t.is_known(&home, clock.now()));
    }
}
