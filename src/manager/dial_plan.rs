//! When the manager dials which agent (sans-io: the time comes in, dials go out). Manager-
//! initiated computers are dialed every interval, each at its own phase within the interval
//! (taken from its id) so they do not all fire at once; any computer can also be asked for at
//! once (send policy, check status, a pushed change). At most `max_in_flight` dials run together,
//! and never two to the same computer: a request during a dial makes one more dial after it.

use crate::clock::Instant;
use crate::model::ComputerId;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

#[derive(Debug)]
pub struct DialPlan {
    max_in_flight: usize,
    /// Manager-initiated computers: their interval and next due instant.
    scheduled: HashMap<ComputerId, (Duration, Instant)>,
    due: BTreeSet<(Instant, ComputerId)>,
    requested: VecDeque<ComputerId>,
    in_flight: HashSet<ComputerId>,
    /// Requested while a dial to them ran: dial again once it ends.
    again: HashSet<ComputerId>,
    /// Whose last dial failed: their next own session triggers a new dial, so a fixed network
    /// or firewall rule is noticed without waiting for an operation.
    unreachable: HashSet<ComputerId>,
}

/// What the plan needs to know of a computer to decide its dials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub computer: ComputerId,
    /// The direction its settings give it now (the agent may not have learnt it yet).
    pub direction: crate::model::Direction,
    pub interval: Duration,
    /// The agent said in its last status that it listens.
    pub listens: bool,
    /// The agent runs the configuration the manager expects.
    pub up_to_date: bool,
}

impl DialPlan {
    pub fn new(max_in_flight: usize) -> Self {
        DialPlan {
            max_in_flight: max_in_flight.max(1),
            scheduled: HashMap::new(),
            due: BTreeSet::new(),
            requested: VecDeque::new(),
            in_flight: HashSet::new(),
            again: HashSet::new(),
            unreachable: HashSet::new(),
        }
    }

    /// Dials a manager-initiated computer at its interval (and no other), and pushes a changed
    /// configuration to an agent that listens.
    pub fn target(&mut self, now: Instant, target: &Target) {
        if target.direction == crate::model::Direction::ManagerInitiated {
            self.schedule(now, target.computer, target.interval);
        } else {
            self.unschedule(target.computer);
        }
        if target.listens && !target.up_to_date {
            self.request(target.computer);
        }
    }

    /// A session with the computer ended (either side dialed). A new configuration may have
    /// changed the agent-port rule: check that the manager still gets in. An agent that called
    /// while out of reach: check whether it is back.
    pub fn session_ended(
        &mut self,
        computer: ComputerId,
        dialed: bool,
        config_applied: bool,
        listens: bool,
    ) {
        if listens && (config_applied || (!dialed && self.unreachable.contains(&computer))) {
            self.request(computer);
        }
    }

    /// How a dial ended. Returns whether this changes the computer's reachability (for the
    /// log: a thousand computers out of reach are not a thousand lines a minute).
    pub fn dial_result(&mut self, computer: ComputerId, reached: bool) -> bool {
        if reached {
            self.unreachable.remove(&computer)
        } else {
            self.unreachable.insert(computer)
        }
    }

    /// Dials `computer` every `interval` from now on. A computer already scheduled at the same
    /// interval keeps its phase; a new interval restarts it at the computer's phase from now.
    pub fn schedule(&mut self, now: Instant, computer: ComputerId, interval: Duration) {
        if let Some((current, _)) = self.scheduled.get(&computer)
            && *current == interval
        {
            return;
        }
        self.unschedule(computer);
        let first = now.saturating_add(phase(computer, interval));
        self.scheduled.insert(computer, (interval, first));
        self.due.insert((first, computer));
    }

    pub fn unschedule(&mut self, computer: ComputerId) {
        if let Some((_, at)) = self.scheduled.remove(&computer) {
            self.due.remove(&(at, computer));
        }
    }

    #[cfg(test)]
    pub fn is_scheduled(&self, computer: ComputerId) -> bool {
        self.scheduled.contains_key(&computer)
    }

    pub fn scheduled(&self) -> impl Iterator<Item = ComputerId> + '_ {
        self.scheduled.keys().copied()
    }

    /// Dial `computer` as soon as a slot is free (once, however often it is asked before).
    pub fn request(&mut self, computer: ComputerId) {
        if self.in_flight.contains(&computer) {
            self.again.insert(computer);
        } else if !self.requested.contains(&computer) {
            self.requested.push_back(computer);
        }
    }

    /// Forgets a deleted computer; a dial already running just ends.
    pub fn forget(&mut self, computer: ComputerId) {
        self.unschedule(computer);
        self.unreachable.remove(&computer);
        self.requested.retain(|c| *c != computer);
        self.again.remove(&computer);
    }

    /// The next dial to start now, if a slot is free: requests first, then what is due. With
    /// it, when it was due: a dial that starts late is the manager's lateness, not the agent's.
    pub fn poll_dial(&mut self, now: Instant) -> Option<(ComputerId, Instant)> {
        if self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        let next = match self.requested.pop_front() {
            Some(computer) => (computer, now),
            None => self.take_due(now)?,
        };
        self.in_flight.insert(next.0);
        Some(next)
    }

    /// The earliest scheduled dial not yet running, and when it was due; requests are already
    /// due.
    fn take_due(&mut self, now: Instant) -> Option<(ComputerId, Instant)> {
        let (at, computer) = self.next_due()?;
        if at > now {
            return None;
        }
        self.due.remove(&(at, computer));
        if let Some((interval, next)) = self.scheduled.get_mut(&computer) {
            // Keep the phase; after a stall, skip the missed slots rather than dial in a burst.
            let mut following = at.saturating_add(*interval);
            if following <= now {
                following = now.saturating_add(*interval);
            }
            *next = following;
            self.due.insert((following, computer));
        }
        Some((computer, at))
    }

    pub fn handle_done(&mut self, computer: ComputerId) {
        self.in_flight.remove(&computer);
        if self.again.remove(&computer) {
            self.requested.push_back(computer);
        }
    }

    /// When the next scheduled dial can start: `None` with nothing scheduled, or while every
    /// slot is taken (a finished dial frees one and the caller polls again; a timer already
    /// past would have it spin until then). Requests need no timer either, for the same reason.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        self.next_due().map(|(at, _)| at)
    }

    /// The earliest scheduled dial whose computer is not being dialed now.
    fn next_due(&self) -> Option<(Instant, ComputerId)> {
        self.due
            .iter()
            .find(|(_, c)| !self.in_flight.contains(c))
            .copied()
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// Where in its interval a computer's dials fall: a fixed fraction taken from a mix of its id,
/// so neighbouring ids land far apart.
fn phase(computer: ComputerId, interval: Duration) -> Duration {
    let mut x = computer.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let fraction = (x >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn drain(plan: &mut DialPlan, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| plan.poll_dial(now))
            .map(|(c, _)| c.0)
            .collect()
    }

    #[test]
    fn scheduled_computers_are_spread_over_the_interval_and_dialed_once_per_interval() {
        let mut plan = DialPlan::new(10_000);
        for id in 1..=1000 {
            plan.schedule(at(0), ComputerId(id), MIN);
        }
        // Per tenth of the interval, about a hundred dials: never a burst of all of them.
        let mut per_tenth = Vec::new();
        for tenth in 1..=10u64 {
            let now = at(tenth * 6_000);
            let dialed = drain(&mut plan, now);
            for id in &dialed {
                plan.handle_done(ComputerId(*id));
            }
            per_tenth.push(dialed.len());
        }
        assert_eq!(per_tenth.iter().sum::<usize>(), 1000, "{per_tenth:?}");
        assert!(
            per_tenth.iter().all(|n| (50..=150).contains(n)),
            "{per_tenth:?}"
        );
        // The second interval dials each exactly once more.
        let second = drain(&mut plan, at(120_000));
        assert_eq!(second.len(), 1000);
        for id in &second {
            plan.handle_done(ComputerId(*id));
        }
        assert_eq!(plan.poll_timeout().map(|t| t > at(120_000)), Some(true));
    }

    #[test]
    fn requests_come_first_and_never_run_twice_at_once() {
        let mut plan = DialPlan::new(2);
        plan.schedule(at(0), ComputerId(1), MIN);
        plan.request(ComputerId(7));
        plan.request(ComputerId(7));
        assert_eq!(plan.poll_dial(at(0)), Some((ComputerId(7), at(0))));
        assert_eq!(
            plan.poll_dial(at(0)),
            None,
            "one request, however often asked"
        );
        plan.request(ComputerId(7));
        assert_eq!(plan.poll_dial(at(0)), None, "7 is still being dialed");
        plan.handle_done(ComputerId(7));
        assert_eq!(
            plan.poll_dial(at(0)),
            Some((ComputerId(7), at(0))),
            "asked again during the dial"
        );
        plan.handle_done(ComputerId(7));
        assert_eq!(plan.poll_dial(at(0)), None);
    }

    #[test]
    fn no_more_than_the_limit_run_at_once() {
        let mut plan = DialPlan::new(3);
        for id in 1..=10 {
            plan.request(ComputerId(id));
        }
        assert_eq!(drain(&mut plan, at(0)), [1, 2, 3]);
        plan.handle_done(ComputerId(2));
        assert_eq!(drain(&mut plan, at(0)), [4]);
        assert_eq!(plan.in_flight(), 3);
    }

    #[test]
    fn no_timer_while_every_slot_is_taken() {
        let mut plan = DialPlan::new(2);
        for id in 1..=5 {
            plan.schedule(at(0), ComputerId(id), MIN);
        }
        let late = at(0).saturating_add(2 * MIN);
        assert_eq!(drain(&mut plan, late).len(), 2);
        // Three are overdue, but no slot is free: a timer now would fire at once, again and
        // again, until a dial ends.
        assert_eq!(plan.poll_timeout(), None);
        let running: Vec<ComputerId> = plan.in_flight.iter().copied().collect();
        plan.handle_done(running[0]);
        let next = plan
            .poll_timeout()
            .expect("a slot is free and dials are overdue");
        assert!(next <= late, "{next:?}");
        assert_eq!(drain(&mut plan, late).len(), 1);
    }

    #[test]
    fn the_timer_skips_a_computer_being_dialed() {
        let mut plan = DialPlan::new(4);
        plan.schedule(at(0), ComputerId(1), MIN);
        plan.schedule(at(0), ComputerId(2), MIN);
        let (first, second) = {
            let mut due = plan.due.iter();
            (*due.next().unwrap(), *due.next().unwrap())
        };
        // The first one is dialed on request before it is due: its scheduled slot is no
        // reason to wake up while that dial runs.
        plan.request(first.1);
        assert_eq!(plan.poll_dial(at(0)), Some((first.1, at(0))));
        assert_eq!(plan.poll_timeout(), Some(second.0));
    }

    #[test]
    fn a_stalled_plan_skips_missed_slots_and_a_new_interval_restarts_the_phase() {
        let mut plan = DialPlan::new(10);
        plan.schedule(at(0), ComputerId(5), MIN);
        let first = plan.poll_timeout().unwrap();
        // Ten minutes late: one dial, then the next a whole interval later, not ten at once.
        let late = first.saturating_add(10 * MIN);
        assert_eq!(drain(&mut plan, late), [5]);
        plan.handle_done(ComputerId(5));
        assert_eq!(plan.poll_timeout(), Some(late.saturating_add(MIN)));

        plan.schedule(late, ComputerId(5), MIN);
        assert_eq!(
            plan.poll_timeout(),
            Some(late.saturating_add(MIN)),
            "same interval"
        );
        plan.schedule(late, ComputerId(5), Duration::from_secs(1));
        assert!(plan.poll_timeout().unwrap() <= late.saturating_add(Duration::from_secs(1)));
        plan.forget(ComputerId(5));
        assert_eq!(plan.poll_timeout(), None);
        assert!(!plan.is_scheduled(ComputerId(5)));
    }
}
