//! The agent's heartbeat decisions, sans-io: when the next heartbeat is due (the manager's word
//! after a session, the effective interval with jitter otherwise, a growing backoff after
//! failures), whether to dial at all (the direction), when an announcement goes (at once), and
//! when a new interval applies (from now), and when an agent that must not dial has heard nothing
//! from the manager for so long that it dials once anyway (a rule that shut the manager out of a
//! manager-initiated agent can only be undone by a configuration the agent fetches itself). The
//! time, randomness and results come in as arguments; `heartbeat.rs` only sleeps until
//! [`Heartbeats::poll_timeout`] and moves bytes.

use crate::clock::Instant;
use std::time::Duration;

/// Shortest wait after a failure; doubled with each further failure up to the interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Intervals without a session with the manager (whoever dialed) after which an agent whose
/// direction forbids it to dial dials once. Three: the manager's own dials, a little late, never
/// set it off, and a fixed rule reaches a locked-out agent within three intervals.
pub const SILENT_INTERVALS: u32 = 3;

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

/// What the heartbeat loop asks [`Heartbeats`] after waking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing is due yet: sleep until [`Heartbeats::poll_timeout`].
    Wait,
    /// Run a heartbeat session now, then report it.
    Heartbeat,
}

/// The heartbeat loop's state: the schedule and the instant the next session is due.
#[derive(Debug, Clone)]
pub struct Heartbeats {
    schedule: Schedule,
    due: Instant,
    /// The later of the last session with the manager (either side dialed) and the agent's last
    /// attempt to reach it: silence is counted from here, so a failed attempt waits its turn
    /// again rather than retrying at once.
    quiet_since: Instant,
}

impl Heartbeats {
    /// The first heartbeat goes at once: the manager learns of the start and the spooled events.
    pub fn new(now: Instant, interval: Duration) -> Self {
        Heartbeats {
            schedule: Schedule::new(interval),
            due: now,
            quiet_since: now,
        }
    }

    /// When the loop should wake: the due time while the agent dials (its direction lets it,
    /// or an announcement waits); otherwise (it waits for the manager's dials) the instant it
    /// has heard nothing from the manager for [`SILENT_INTERVALS`], when it dials once.
    pub fn poll_timeout(&self, dials: bool, announce: bool) -> Option<Instant> {
        let due = (dials || announce).then_some(self.due);
        let silence = (!dials).then(|| self.silence_ends());
        match (due, silence) {
            (Some(due), Some(silence)) => Some(due.min(silence)),
            (due, silence) => due.or(silence),
        }
    }

    /// Woken at `now`: whether a heartbeat (or the dial after a silence) is due.
    pub fn poll(&self, now: Instant, dials: bool, announce: bool) -> Next {
        match self.poll_timeout(dials, announce) {
            Some(due) if now >= due => Next::Heartbeat,
            _ => Next::Wait,
        }
    }

    /// A session with the manager completed at `now`, whoever dialed: the manager can reach
    /// the agent (or the agent the manager), so nothing needs undoing.
    pub fn handle_heard(&mut self, now: Instant) {
        self.quiet_since = self.quiet_since.max(now);
    }

    fn silence_ends(&self) -> Instant {
        let interval = self.schedule.interval;
        self.quiet_since
            .saturating_add(interval.saturating_mul(SILENT_INTERVALS))
    }

    /// The configuration or the listener changed: a new interval applies from now (never
    /// later than what was already due), and an announcement goes at once.
    pub fn handle_changed(&mut self, now: Instant, interval: Duration, announce: bool) {
        self.schedule.set_interval(interval);
        self.due = if announce {
            now
        } else {
            self.due.min(now.saturating_add(interval))
        };
    }

    /// A heartbeat session completed at `now`; `next` is the manager's delay, `new_interval` a
    /// configuration it applied. Returns the wait until the next one.
    pub fn handle_success(
        &mut self,
        now: Instant,
        next: Option<Duration>,
        new_interval: Option<Duration>,
        unit: f64,
    ) -> Duration {
        if let Some(interval) = new_interval {
            self.schedule.set_interval(interval);
        }
        self.handle_heard(now);
        let wait = self.schedule.after_success(next, unit);
        self.due = now.saturating_add(wait);
        wait
    }

    /// A heartbeat session failed at `now`: the backoff. Returns the wait until the next one.
    pub fn handle_failure(&mut self, now: Instant, unit: f64) -> Duration {
        let wait = self.schedule.after_failure(unit);
        self.due = now.saturating_add(wait);
        // An attempt restarts the silence: a manager still out of reach is tried again after
        // another SILENT_INTERVALS, not at the backoff's pace.
        self.quiet_since = self.quiet_since.max(now);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn the_first_heartbeat_goes_at_once_and_the_next_when_the_manager_says() {
        let mut h = Heartbeats::new(at(0), Duration::from_secs(60));
        assert_eq!(h.poll(at(0), true, false), Next::Heartbeat);
        let wait = h.handle_success(at(0), Some(Duration::from_secs(60)), None, 0.0);
        assert_eq!(wait, Duration::from_secs(60));
        assert_eq!(h.poll(at(59), true, false), Next::Wait);
        assert_eq!(h.poll_timeout(true, false), Some(at(60)));
        assert_eq!(h.poll(at(60), true, false), Next::Heartbeat);
    }

    #[test]
    fn a_manager_initiated_agent_never_dials_unless_it_must_announce() {
        let mut h = Heartbeats::new(at(0), Duration::from_secs(60));
        assert_eq!(
            h.poll_timeout(false, false),
            Some(at(180)),
            "only after a silence"
        );
        assert_eq!(h.poll(at(179), false, false), Next::Wait);
        h.handle_changed(at(5), Duration::from_secs(60), true);
        assert_eq!(
            h.poll(at(5), false, true),
            Next::Heartbeat,
            "announced at once"
        );
    }

    #[test]
    fn failures_back_off_and_a_shorter_interval_applies_from_now() {
        let mut h = Heartbeats::new(at(0), Duration::from_secs(600));
        assert_eq!(h.handle_failure(at(0), 0.0), Duration::from_secs(1));
        assert_eq!(h.handle_failure(at(1), 0.0), Duration::from_secs(2));
        assert_eq!(h.handle_failure(at(3), 0.0), Duration::from_secs(4));
        h.handle_success(at(7), None, None, 0.0);
        assert_eq!(h.poll_timeout(true, false), Some(at(607)));
        h.handle_changed(at(10), Duration::from_secs(30), false);
        assert_eq!(
            h.poll_timeout(true, false),
            Some(at(40)),
            "not 10 minutes more"
        );
        h.handle_changed(at(11), Duration::from_secs(3600), false);
        assert_eq!(
            h.poll_timeout(true, false),
            Some(at(40)),
            "a longer one waits its turn"
        );
    }

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

    #[test]
    fn an_agent_that_does_not_dial_dials_once_after_three_silent_intervals() {
        let mut h = Heartbeats::new(at(0), Duration::from_secs(60));
        assert_eq!(h.poll_timeout(false, false), Some(at(180)));
        assert_eq!(h.poll(at(179), false, false), Next::Wait);
        // The manager's dials keep it quiet: silence counts from the last one.
        h.handle_heard(at(100));
        assert_eq!(h.poll(at(180), false, false), Next::Wait);
        assert_eq!(h.poll_timeout(false, false), Some(at(280)));
        assert_eq!(h.poll(at(280), false, false), Next::Heartbeat);
        // The one dial fails: the next waits another three intervals, not the backoff.
        h.handle_failure(at(280), 0.0);
        assert_eq!(h.poll(at(281), false, false), Next::Wait);
        assert_eq!(h.poll_timeout(false, false), Some(at(460)));
        // It succeeds: back to waiting for the manager.
        h.handle_success(at(460), Some(Duration::from_secs(60)), None, 0.0);
        assert_eq!(h.poll(at(461), false, false), Next::Wait);
        assert_eq!(h.poll_timeout(false, false), Some(at(640)));
    }

    #[test]
    fn silence_changes_nothing_for_an_agent_that_dials_and_follows_a_new_interval() {
        let mut h = Heartbeats::new(at(0), Duration::from_secs(60));
        h.handle_success(at(0), Some(Duration::from_secs(60)), None, 0.0);
        assert_eq!(
            h.poll_timeout(true, false),
            Some(at(60)),
            "a dialing agent's own heartbeats are its contact"
        );
        // Announcing goes at once even while silence would wait.
        h.handle_changed(at(5), Duration::from_secs(60), true);
        assert_eq!(h.poll(at(5), false, true), Next::Heartbeat);
        // A shorter interval shortens the silence too.
        let mut h = Heartbeats::new(at(0), Duration::from_secs(600));
        h.handle_changed(at(0), Duration::from_secs(10), false);
        assert_eq!(h.poll_timeout(false, false), Some(at(30)));
        // A late report of an older session never moves the silence back.
        h.handle_heard(at(20));
        h.handle_heard(at(10));
        assert_eq!(h.poll_timeout(false, false), Some(at(50)));
    }
}
