//! How late the manager itself hears of heartbeats: the time a session spent inside the manager
//! (queued for a worker, for the TLS handshake, for the store; for a manager-initiated
//! computer, also how late the dial started) before its heartbeat was recorded. An overloaded
//! manager hears of every heartbeat late; taking that lateness for the agents' would mark
//! healthy computers offline for the manager's own fault, so the monitor judges deadlines that
//! much later. Sans-io: fed the waits and the time.
//!
//! The estimate is a high quantile of the waits of the last few seconds, not their maximum:
//! one agent on a slow link does not hold back everyone's verdicts, a manager that keeps
//! everyone waiting does.

use crate::clock::Instant;
use std::time::Duration;

/// Waits are kept in one-second slots over this many seconds: long enough to see a backlog,
/// short enough that verdicts wait no longer once the manager has caught up.
const SLOTS: usize = 10;
const SLOT_MS: u64 = 1_000;
/// Buckets per doubling of the wait: an estimate is at most a quarter above the real wait.
const PER_DOUBLING: usize = 4;
/// Waits up to about 2^33 ms (three months; longer ones count as that): beyond any timeout.
const BUCKETS: usize = PER_DOUBLING + 31 * PER_DOUBLING;
/// The share of recent waits the estimate covers.
const QUANTILE: f64 = 0.99;

#[derive(Clone, Debug)]
struct Slot {
    /// Which second (of the clock's origin) the counts belong to.
    second: u64,
    counts: Vec<u32>,
    total: u32,
}

#[derive(Clone, Debug)]
pub struct ManagerDelay {
    slots: Vec<Slot>,
}

impl Default for ManagerDelay {
    fn default() -> Self {
        let slot = Slot {
            second: u64::MAX,
            counts: vec![0; BUCKETS],
            total: 0,
        };
        ManagerDelay {
            slots: vec![slot; SLOTS],
        }
    }
}

impl ManagerDelay {
    /// A heartbeat recorded at `now` had waited `wait` inside the manager.
    pub fn record(&mut self, now: Instant, wait: Duration) {
        let second = now.as_millis() / SLOT_MS;
        let slot = &mut self.slots[slot_index(second)];
        if slot.second != second {
            slot.second = second;
            slot.counts.fill(0);
            slot.total = 0;
        }
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        slot.counts[bucket(ms)] += 1;
        slot.total += 1;
    }

    /// How late heartbeats reach the monitor now: the quantile of the waits recorded in the
    /// window ending at `now` (rounded up to its bucket's top), zero without any.
    pub fn estimate(&self, now: Instant) -> Duration {
        let live: Vec<&Slot> = self.live(now).collect();
        let total: u64 = live.iter().map(|s| u64::from(s.total)).sum();
        if total == 0 {
            return Duration::ZERO;
        }
        // At least one wait, so a single slow session among few counts (a small site).
        let wanted = ((total as f64 * QUANTILE).ceil() as u64).max(1);
        let mut seen = 0u64;
        for b in 0..BUCKETS {
            seen += live.iter().map(|s| u64::from(s.counts[b])).sum::<u64>();
            if seen >= wanted {
                return Duration::from_millis(bucket_top(b));
            }
        }
        Duration::from_millis(bucket_top(BUCKETS - 1))
    }

    /// When the oldest wait in the window leaves it (and the estimate may fall): the monitor
    /// must look again then even if nothing else happens.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        self.live(now)
            .map(|s| s.second)
            .min()
            .map(|second| Instant::from_millis((second + SLOTS as u64) * SLOT_MS))
    }

    /// The slots with waits inside the window ending at `now`.
    fn live(&self, now: Instant) -> impl Iterator<Item = &Slot> {
        let current = now.as_millis() / SLOT_MS;
        self.slots.iter().filter(move |s| {
            s.total > 0 && s.second <= current && current - s.second < SLOTS as u64
        })
    }
}

fn slot_index(second: u64) -> usize {
    (second % SLOTS as u64) as usize
}

/// The bucket of a wait of `ms`: exact below `PER_DOUBLING`, then `PER_DOUBLING` buckets per
/// doubling.
fn bucket(ms: u64) -> usize {
    let sub = PER_DOUBLING as u64;
    if ms < sub {
        return ms as usize;
    }
    let exp = u64::from(63 - ms.leading_zeros()); // ms >= 2^exp, exp >= 2
    let shift = exp - 2;
    let mantissa = (ms >> shift) - sub; // 0..PER_DOUBLING
    ((shift + 1) * sub + mantissa).min(BUCKETS as u64 - 1) as usize
}

/// The largest wait in bucket `b`.
fn bucket_top(b: usize) -> u64 {
    let sub = PER_DOUBLING as u64;
    let b = b as u64;
    if b < sub {
        return b;
    }
    let shift = b / sub - 1;
    let mantissa = b % sub;
    ((sub + mantissa + 1) << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn buckets_hold_their_waits_and_overestimate_by_at_most_a_quarter() {
        for ms in (0..5_000u64).chain([65_535, 1 << 20, 30 * 60 * 1000]) {
            let b = bucket(ms);
            let top = bucket_top(b);
            assert!(top >= ms, "{ms} ms in bucket {b} topped at {top}");
            assert!(
                b == 0 || bucket_top(b - 1) < ms,
                "{ms} ms belongs lower than {b}"
            );
            assert!(
                top as f64 <= ms as f64 * 1.25 + 1.0,
                "{ms} ms estimated as {top}"
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn no_waits_no_delay() {
        let delay = ManagerDelay::default();
        assert_eq!(delay.estimate(at(5_000)), Duration::ZERO);
        assert_eq!(delay.next_change(at(5_000)), None);
    }

    #[test]
    fn a_manager_that_keeps_everyone_waiting_is_seen_at_once() {
        let mut delay = ManagerDelay::default();
        for i in 0..1_000 {
            delay.record(at(20_000 + i), Duration::from_millis(4_000 + i));
        }
        let estimate = delay.estimate(at(21_000));
        assert!(
            (Duration::from_millis(4_990)..Duration::from_millis(6_300)).contains(&estimate),
            "{estimate:?}"
        );
    }

    #[test]
    fn one_slow_agent_among_many_does_not_hold_back_every_verdict() {
        let mut delay = ManagerDelay::default();
        for i in 0..1_000 {
            delay.record(at(20_000 + i), Duration::from_millis(5));
        }
        delay.record(at(20_500), Duration::from_secs(25));
        assert!(delay.estimate(at(21_000)) < Duration::from_millis(10));
        // Alone, on a small site, it is all there is to go by.
        let mut small = ManagerDelay::default();
        small.record(at(20_500), Duration::from_secs(25));
        assert!(small.estimate(at(21_000)) >= Duration::from_secs(25));
    }

    #[test]
    fn waits_leave_the_window_and_the_estimate_falls() {
        let mut delay = ManagerDelay::default();
        delay.record(at(20_300), Duration::from_secs(3));
        delay.record(at(24_700), Duration::from_millis(200));
        assert!(delay.estimate(at(29_999)) >= Duration::from_secs(3));
        assert_eq!(delay.next_change(at(29_999)), Some(at(30_000)));
        let later = delay.estimate(at(30_000));
        assert!(
            (Duration::from_millis(200)..Duration::from_millis(300)).contains(&later),
            "{later:?}"
        );
        assert_eq!(delay.next_change(at(30_000)), Some(at(34_000)));
        assert_eq!(delay.estimate(at(34_000)), Duration::ZERO);
        assert_eq!(delay.next_change(at(34_000)), None);
    }

    #[test]
    fn a_slot_reused_after_the_window_forgets_its_old_waits() {
        let mut delay = ManagerDelay::default();
        delay.record(at(3_000), Duration::from_secs(9));
        // Ten seconds later the same slot: the old wait must not count.
        delay.record(at(13_000), Duration::from_millis(1));
        assert!(delay.estimate(at(13_000)) <= Duration::from_millis(1));
    }
}
