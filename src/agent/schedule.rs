//! When the next heartbeat is due: the manager's word after a session, the effective interval
//! with jitter otherwise, and a growing backoff after failures (sans-io: randomness and results
//! come in as arguments).

use std::time::Duration;

/// Shortest wait after a failure; doubled with each further failure up to the interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    failures: u32,
}

impl Schedule {
    pub fn new(interval: Duration) -> Self {
        Schedule {
            interval,
            failures: 0,
        }
    }

    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a completed session: the manager's delay if it gave one, else the interval, less
    /// up to 10% (`unit` in 0..1 from the caller's RNG) so agents started together drift apart.
    pub fn after_success(&mut self, manager_delay: Option<Duration>, unit: f64) -> Duration {
        self.failures = 0;
        let base = manager_delay
            .filter(|d| !d.is_zero())
            .unwrap_or(self.interval);
        base.mul_f64(1.0 - 0.1 * unit.clamp(0.0, 1.0))
    }

    /// After a failed session: 1 s, 2 s, 4 s ... capped at the interval, with up to 50% jitter so
    /// a manager back from an outage is not hit by every agent in the same second.
    pub fn after_failure(&mut self, unit: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.saturating_sub(1).min(20);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << exponent)
            .min(self.interval);
        backoff.mul_f64(1.0 - 0.5 * unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_uses_the_managers_delay_with_jitter_below_it() {
        let mut s = Schedule::new(Duration::from_secs(600));
        assert_eq!(
            s.after_success(Some(Duration::from_secs(60)), 0.0),
            Duration::from_secs(60)
        );
        assert_eq!(
            s.after_success(Some(Duration::from_secs(60)), 1.0),
            Duration::from_secs(54)
        );
        assert_eq!(s.after_success(None, 0.0), Duration::from_secs(600));
    }

    #[test]
    fn failures_back_off_up_to_the_interval_and_reset_on_success() {
        let mut s = Schedule::new(Duration::from_secs(10));
        let waits: Vec<u64> = (0..6).map(|_| s.after_failure(0.0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(s.failures(), 6);
        s.after_success(None, 0.0);
        assert_eq!(s.after_failure(0.0), Duration::from_secs(1));
        assert_eq!(s.after_failure(1.0), Duration::from_secs(1));
    }
}
