//! Notices steps of the agent's own wall clock: between two looks, the wall clock should move as
//! much as the monotonic clock; a difference beyond a tolerance is a step (someone set the
//! clock, or NTP jumped it), reported as event 5004 with the old and new time. Sans-io. The
//! monotonic clock must count time suspended (the agent's `BootClock`): a laptop asleep for an
//! hour moves both clocks by an hour, which is no step.

use crate::clock::{Instant, WallMs};

/// Smaller differences are scheduling noise and NTP slewing, not steps.
const TOLERANCE_MS: i128 = 2_000;

#[derive(Debug, Default)]
pub struct ClockWatch {
    last: Option<(Instant, WallMs)>,
}

/// A step: the wall time expected from the monotonic clock, and the wall time found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockStep {
    pub expected: WallMs,
    pub found: WallMs,
    pub change_ms: i64,
}

impl ClockWatch {
    pub fn observe(&mut self, now: Instant, wall: WallMs) -> Option<ClockStep> {
        let previous = self.last.replace((now, wall));
        let (then, then_wall) = previous?;
        let elapsed = i128::from(now.as_millis()) - i128::from(then.as_millis());
        let expected = i128::from(then_wall.0) + elapsed;
        let change = i128::from(wall.0) - expected;
        (change.abs() > TOLERANCE_MS).then(|| ClockStep {
            expected: WallMs(u64::try_from(expected.max(0)).unwrap_or(u64::MAX)),
            found: wall,
            change_ms: i64::try_from(change).unwrap_or(if change < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::time::Duration;

    #[test]
    fn steady_time_is_quiet_and_a_step_is_reported_once() {
        let clock = ManualClock::new(WallMs(1_000_000));
        let mut watch = ClockWatch::default();
        assert_eq!(watch.observe(clock.now(), clock.wall()), None);
        clock.advance(Duration::from_secs(600));
        assert_eq!(watch.observe(clock.now(), clock.wall()), None);

        clock.set_wall(WallMs(clock.wall().0 + 3_600_000));
        let step = watch.observe(clock.now(), clock.wall()).unwrap();
        assert_eq!(step.change_ms, 3_600_000);
        assert_eq!(step.found.0 - step.expected.0, 3_600_000);
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            watch.observe(clock.now(), clock.wall()),
            None,
            "reported once"
        );
    }

    #[test]
    fn small_drift_is_not_a_step_but_a_step_backwards_is() {
        let clock = ManualClock::new(WallMs(10_000_000));
        let mut watch = ClockWatch::default();
        watch.observe(clock.now(), clock.wall());
        clock.set_wall(WallMs(clock.wall().0 + 1_500));
        assert_eq!(watch.observe(clock.now(), clock.wall()), None);
        clock.set_wall(WallMs(0));
        let step = watch.observe(clock.now(), clock.wall()).unwrap();
        assert!(step.change_ms < -9_000_000);
    }

    /// What a suspend looks like to the detector, with the agent's clock (monotonic time goes on
    /// while asleep) and with one that stops (`CLOCK_MONOTONIC`): only the second sees a step.
    #[test]
    fn a_suspend_is_no_step_when_monotonic_time_counts_it() {
        let slept = 2 * 3_600_000;
        let mut watch = ClockWatch::default();
        let (t0, w0) = (Instant::from_millis(1_000), WallMs(1_700_000_000_000));
        watch.observe(t0, w0);
        let awake = watch.observe(Instant::from_millis(1_000 + slept), WallMs(w0.0 + slept));
        assert_eq!(awake, None, "boot time counted the two hours asleep");

        let mut stopped = ClockWatch::default();
        stopped.observe(t0, w0);
        let step = stopped
            .observe(Instant::from_millis(1_000), WallMs(w0.0 + slept))
            .unwrap();
        assert_eq!(step.change_ms, i64::try_from(slept).unwrap());
    }
}
