//! A growing wait per source after failures (sans-io: the time comes in): what keeps a
//! stranger from trying activation tokens as fast as the manager can check them (646 a second
//! before). A few failures are free, since a typo in a token is common; after them each failure
//! doubles the source's wait, up to a minute, and a source is forgotten ten minutes after its
//! last failure. Sources are IPv4 addresses or IPv6 /64s, as in the admission budget.
//!
//! A source that has used its free failures gets one attempt at a time: otherwise it could open
//! as many connections as the admission budget lets it (256) and have every one checked before
//! the first failure counted. A source without failures is not limited (a site behind one NAT
//! activating many computers at once).

use super::admission::Source;
use crate::clock::Instant;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Failures from one source before it waits at all.
const FREE_FAILURES: u32 = 5;
/// The longest wait: an agent retrying with a token fixed meanwhile is not kept out for long.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// A source is forgotten this long after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Sources remembered at most; a full table drops the oldest whose wait is over, never one
/// still waiting, so a flood from many sources cannot erase a guesser's record.
const MAX_SOURCES: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    fn until(self) -> Instant {
        self.last.saturating_add(delay_after(self.count))
    }
}

#[derive(Debug, Default)]
pub struct Backoff {
    sources: HashMap<Source, Failures>,
    /// Sources past their free failures with an attempt being checked.
    checking: HashSet<Source>,
}

impl Backoff {
    /// How long `source` must still wait before its next attempt is looked at.
    pub fn wait(&self, source: Source, now: Instant) -> Option<Duration> {
        let left = self.sources.get(&source)?.until().saturating_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Claims the right to have one attempt of `source` checked now, or says how long to wait.
    /// Every successful claim is followed by [`Backoff::release`].
    pub fn begin(&mut self, source: Source, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.wait(source, now) {
            return Err(wait);
        }
        let limited = self.sources.get(&source).is_some_and(|f| {
            f.count >= FREE_FAILURES && now.saturating_since(f.last) < FORGET_AFTER
        });
        if limited && !self.checking.insert(source) {
            return Err(Duration::from_secs(1));
        }
        Ok(())
    }

    /// The attempt claimed by [`Backoff::begin`] is over (its failure, if any, already
    /// counted by [`Backoff::failed`]).
    pub fn release(&mut self, source: Source) {
        self.checking.remove(&source);
    }

    /// Counts a failure; returns the wait it now has. Constant time until the table is full;
    /// then stale sources are swept (a flood of new sources costs a sweep per failure, which
    /// the admission budget's per-source cap already bounds).
    pub fn failed(&mut self, source: Source, now: Instant) -> Duration {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
            self.sources
                .retain(|_, f| now.saturating_since(f.last) < FORGET_AFTER);
            if self.sources.len() >= MAX_SOURCES
                && let Some(oldest) = self
                    .sources
                    .iter()
                    .filter(|(_, f)| f.until() <= now)
                    .min_by_key(|(_, f)| f.last)
                    .map(|(s, _)| *s)
            {
                self.sources.remove(&oldest);
            }
        }
        let entry = self.sources.entry(source).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        delay_after(entry.count)
    }
}

/// Nothing for five failures, then 1 s, 2 s, 4 s ... up to a minute.
fn delay_after(failures: u32) -> Duration {
    doubling(failures, FREE_FAILURES, MAX_WAIT)
}

/// The wait after `failures`: nothing for the first `free`, then 1 s doubling with each further
/// one, at most `max`. Shared by this backoff and the login throttle.
pub fn doubling(failures: u32, free: u32, max: Duration) -> Duration {
    let beyond = failures.saturating_sub(free);
    if beyond == 0 {
        return Duration::ZERO;
    }
    let secs = 1u64.checked_shl(beyond - 1).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(ip: &str) -> Source {
        Source::of(ip.parse().unwrap())
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn five_failures_are_free_then_the_wait_doubles_to_a_minute() {
        let mut b = Backoff::default();
        let s = source("192.0.2.7");
        let waits: Vec<u64> = (0..14).map(|_| b.failed(s, at(0)).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.wait(s, at(59_000)), Some(Duration::from_secs(1)));
        assert_eq!(b.wait(s, at(60_000)), None);
        assert_eq!(b.wait(source("192.0.2.8"), at(0)), None, "another source");
    }

    #[test]
    fn past_its_free_failures_a_source_has_one_attempt_checked_at_a_time() {
        let mut b = Backoff::default();
        let s = source("192.0.2.7");
        assert_eq!(b.begin(s, at(0)), Ok(()));
        assert_eq!(b.begin(s, at(0)), Ok(()), "no limit without failures");
        b.release(s);
        b.release(s);
        for _ in 0..5 {
            b.failed(s, at(0));
        }
        assert_eq!(b.begin(s, at(0)), Ok(()));
        assert_eq!(
            b.begin(s, at(0)),
            Err(Duration::from_secs(1)),
            "one at a time"
        );
        assert_eq!(b.begin(source("192.0.2.8"), at(0)), Ok(()));
        b.failed(s, at(0));
        b.release(s);
        assert_eq!(
            b.begin(s, at(0)),
            Err(Duration::from_secs(1)),
            "now it waits"
        );
        assert_eq!(b.begin(s, at(1_000)), Ok(()));
    }

    #[test]
    fn an_ipv6_host_waits_for_its_whole_slash_64() {
        let mut b = Backoff::default();
        for i in 0..8 {
            b.failed(source(&format!("2001:db8:1:2::{i}")), at(0));
        }
        assert!(b.wait(source("2001:db8:1:2::ffff"), at(0)).is_some());
        assert_eq!(b.wait(source("2001:db8:1:3::1"), at(0)), None);
    }

    #[test]
    fn a_source_is_forgotten_ten_minutes_after_its_last_failure() {
        let mut b = Backoff::default();
        let s = source("192.0.2.7");
        for _ in 0..10 {
            b.failed(s, at(0));
        }
        let later = at(FORGET_AFTER.as_millis() as u64);
        assert_eq!(b.failed(source("192.0.2.9"), later), Duration::ZERO);
        assert_eq!(b.failed(s, later), Duration::ZERO, "counted from one again");
    }

    #[test]
    fn a_full_table_keeps_every_source_still_waiting() {
        let mut b = Backoff::default();
        let guesser = source("192.0.2.7");
        for _ in 0..8 {
            b.failed(guesser, at(0));
        }
        for i in 0..MAX_SOURCES as u32 {
            b.failed(
                Source::of(std::net::Ipv4Addr::from(0x0a00_0000 + i).into()),
                at(1),
            );
        }
        assert!(b.wait(guesser, at(1)).is_some());
        assert!(b.sources.len() <= MAX_SOURCES + 1);
    }
}
