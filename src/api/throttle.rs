//! The growing delay after failed logins, sans-io. Failures are counted per (client address,
//! user name): a guesser waits longer and longer, while the administrator logging in from their
//! own machine is not locked out by someone else's failures. One attempt per key is checked at a
//! time, so parallel requests cannot all slip in before the first failure is counted.

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
    checking: HashSet<LoginKey>,
}

impl LoginThrottle {
    /// How long this key must still wait before a login attempt is even checked.
    pub fn wait(&self, key: &LoginKey, now: Instant) -> Option<Duration> {
        let f = self.failures.get(key)?;
        let left = f.until().saturating_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Claims the right to check one attempt for `key` now. Every successful claim must be
    /// followed by [`LoginThrottle::failed`] or [`LoginThrottle::succeeded`], which release it.
    pub fn begin(&mut self, key: &LoginKey, now: Instant) -> Result<(), Refused> {
        if let Some(wait) = self.wait(key, now) {
            return Err(Refused::Wait(wait));
        }
        if !self.checking.insert(key.clone()) {
            return Err(Refused::InFlight);
        }
        Ok(())
    }

    /// Records a failed attempt; returns the wait before the next one.
    pub fn failed(&mut self, key: LoginKey, now: Instant) -> Duration {
        self.checking.remove(&key);
        self.failures
            .retain(|_, f| now.saturating_since(f.last) < FORGET_AFTER);
        // Full: make room by forgetting the oldest record whose delay is over. Records still
        // delaying someone are never dropped, so flooding the table cannot erase a guesser's.
        if self.failures.len() >= MAX_RECORDS
            && !self.failures.contains_key(&key)
            && let Some(oldest) = self
                .failures
                .iter()
                .filter(|(_, f)| f.until() <= now)
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
        {
            self.failures.remove(&oldest);
        }
        let entry = self.failures.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        delay_after(entry.count)
    }

    pub fn succeeded(&mut self, key: &LoginKey) {
        self.checking.remove(key);
        self.failures.remove(key);
    }

    /// Releases a claim without judging the attempt (the check itself failed).
    pub fn abandon(&mut self, key: &LoginKey) {
        self.checking.remove(key);
    }
}

impl Failures {
    fn until(&self) -> Instant {
        self.last.saturating_add(delay_after(self.count))
    }
}

/// 0, 0, then 1 s, 2 s, 4 s ... up to five minutes.
fn delay_after(failures: u32) -> Duration {
    let beyond = failures.saturating_sub(FREE_FAILURES);
    if beyond == 0 {
        return Duration::ZERO;
    }
    let secs = 1u64.checked_shl(beyond - 1).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_WAIT)
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
        t.succeeded(&k);
        assert_eq!(t.failed(k.clone(), clock.now()), Duration::ZERO);
    }

    #[test]
    fn another_address_or_user_is_not_delayed() {
        let clock = ManualClock::new(WallMs(0));
        let mut t = LoginThrottle::default();
        let k = key("192.0.2.7", "admin");
        for _ in 0..10 {
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
        t.succeeded(&k);
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
}
