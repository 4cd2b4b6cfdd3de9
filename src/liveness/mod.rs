//! The sans-io liveness monitor: fed heartbeats, goodbyes, power states and the time, it keeps
//! one deadline per computer in an ordered index and says when a computer's state changes and
//! when an offline or clock-changed alert is due. Nothing here reads a clock or a socket.
//!
//! Misses are counted from a base instant (the last heartbeat, the goodbye, or the moment the
//! manager started tracking the computer, so its own downtime is never blamed on anyone): the
//! first miss is one interval plus a grace after the base, each further miss one interval
//! later. Counting from elapsed time rather than incrementing means a policy change of the
//! interval takes effect at once, with no restart and no drift.
//!
//! Deadlines are judged as late as the manager itself hears of heartbeats (`delay`): an
//! overloaded manager that keeps agents waiting must not mark them offline for it.

use crate::clock::{Instant, WallMs};
pub use crate::model::PowerState;
use crate::model::{ClockChangeLimit, ComputerId, ComputerKind, Direction, MissedLimit};
use crate::policy::EffectiveSettings;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

mod delay;
#[cfg(test)]
mod tests;

pub use delay::ManagerDelay;

/// The effective settings the monitor decides with, refreshed whenever a policy changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    pub interval: Duration,
    pub missed_before_alert: MissedLimit,
    pub max_clock_change: ClockChangeLimit,
    pub offline_errors_for_inactive_vms: bool,
    pub is_vm: bool,
    /// Decides what a failed dial means: a missed heartbeat when manager-initiated, a
    /// cannot-reach warning when bidirectional (heartbeats still arrive).
    pub direction: Direction,
}

impl Rules {
    pub fn new(effective: &EffectiveSettings, kind: ComputerKind) -> Rules {
        Rules {
            interval: effective.interval.value,
            missed_before_alert: effective.missed_before_alert.value,
            max_clock_change: effective.max_clock_change.value,
            offline_errors_for_inactive_vms: effective.offline_errors_for_inactive_vms.value,
            is_vm: kind == ComputerKind::Vm,
            direction: effective.direction.value,
        }
    }

    /// Heartbeats may be this late without counting as missed: network and TLS latency, and a
    /// loaded manager. A tenth of the interval, at least one second.
    fn grace(&self) -> Duration {
        (self.interval / 10).max(Duration::from_secs(1))
    }
}

/// What the monitor believes about a computer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Tracked since the manager started, not heard from yet, within its allowance.
    Unknown,
    Online,
    Offline,
    /// A VM its hypervisor reports stopped, past its allowance.
    VmStopped,
    /// The agent said goodbye on a clean shutdown.
    Stopped,
}

/// What the shell must record or raise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    State {
        computer: ComputerId,
        state: State,
        reason: String,
    },
    /// The N+1th consecutive heartbeat was missed.
    RaiseOffline {
        computer: ComputerId,
        missed: u64,
        reason: String,
    },
    /// A heartbeat came after an offline alert.
    ClearOffline { computer: ComputerId },
    /// The computer's clock moved by `change_ms` between two heartbeats, more than allowed.
    ClockChanged {
        computer: ComputerId,
        change_ms: i64,
        limit: Duration,
    },
    /// A bidirectional computer heartbeats but the manager's dial to it failed with `reason`.
    RaiseUnreachable {
        computer: ComputerId,
        reason: String,
    },
    /// A dial succeeded again, or the computer no longer expects to be dialed that way.
    ClearUnreachable { computer: ComputerId },
}

/// Why the base instant was set: decides the words of a later offline alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    ManagerStart,
    Activation,
    Heartbeat,
    Goodbye,
}

#[derive(Clone, Debug)]
struct Entry {
    rules: Rules,
    state: State,
    base: Instant,
    why: Base,
    missed: u64,
    deadline: Instant,
    alerted: bool,
    power: PowerState,
    /// When the last heartbeat with the agent's clock came, and what that clock read.
    last_agent_clock: Option<(Instant, WallMs)>,
    /// Why the last dial to the agent failed, while it has not succeeded since.
    dial_error: Option<String>,
    /// A heartbeat came after the last failed dial: the agent is alive.
    heard_since_dial_failed: bool,
    /// A cannot-reach alert is active.
    unreachable: bool,
}

impl Entry {
    /// Misses count afresh from `now`, for the reason `why`.
    fn rebase(&mut self, now: Instant, why: Base) {
        self.base = now;
        self.why = why;
        self.missed = 0;
    }
}

#[derive(Debug, Default)]
pub struct Monitor {
    entries: HashMap<ComputerId, Entry>,
    /// Every entry's next deadline, ordered, so a timeout finds what is due in O(log n).
    deadlines: BTreeSet<(Instant, ComputerId)>,
    out: VecDeque<Decision>,
    /// How late heartbeats reach the monitor, and that estimate as of the last look.
    delay: ManagerDelay,
    late_by: Duration,
    /// When the oldest wait behind `late_by` leaves the estimate's window.
    delay_falls: Option<Instant>,
}

impl Monitor {
    pub fn new() -> Self {
        Monitor::default()
    }

    /// Starts watching a computer from `now` with a full allowance: at manager start, or when
    /// it is activated.
    pub fn track(&mut self, now: Instant, computer: ComputerId, rules: Rules) {
        self.start_tracking(now, computer, rules, Base::ManagerStart);
    }

    /// Starts watching a computer just activated: like [`Monitor::track`], but a later alert
    /// says it was never heard from after its activation.
    pub fn track_activated(&mut self, now: Instant, computer: ComputerId, rules: Rules) {
        self.start_tracking(now, computer, rules, Base::Activation);
    }

    fn start_tracking(&mut self, now: Instant, computer: ComputerId, rules: Rules, why: Base) {
        self.forget(computer);
        let entry = Entry {
            rules,
            state: State::Unknown,
            base: now,
            why,
            missed: 0,
            deadline: now,
            alerted: false,
            power: PowerState::Running,
            last_agent_clock: None,
            dial_error: None,
            heard_since_dial_failed: false,
            unreachable: false,
        };
        self.insert(computer, entry);
    }

    /// An offline alert is active for the computer already (found in the store at start), so
    /// its next heartbeat clears it.
    pub fn mark_offline_alerted(&mut self, computer: ComputerId) {
        if let Some(entry) = self.entries.get_mut(&computer) {
            entry.alerted = true;
        }
    }

    /// A cannot-reach alert is active already (found in the store at start).
    pub fn mark_unreachable_alerted(&mut self, computer: ComputerId) {
        if let Some(entry) = self.entries.get_mut(&computer) {
            entry.unreachable = true;
        }
    }

    /// The manager's dial to the agent failed. Manager-initiated, it is a heartbeat that did
    /// not happen: the misses count by themselves, and the offline alert gives this reason.
    /// Bidirectional, it is news only if the agent is alive and still out of reach: a failure,
    /// then a heartbeat, then another failure (the dialer tries again after each heartbeat
    /// while the agent is out of reach) raises a warning. A dead agent never heartbeats in
    /// between; its misses make it offline instead.
    pub fn handle_dial_failed(&mut self, computer: ComputerId, reason: String) {
        let Some(entry) = self.entries.get_mut(&computer) else {
            return;
        };
        let confirmed = entry.dial_error.is_some() && entry.heard_since_dial_failed;
        entry.dial_error = Some(reason.clone());
        entry.heard_since_dial_failed = false;
        if entry.rules.direction == Direction::Bidirectional
            && confirmed
            && entry.state == State::Online
            && !entry.unreachable
        {
            entry.unreachable = true;
            self.out
                .push_back(Decision::RaiseUnreachable { computer, reason });
        }
    }

    pub fn handle_dial_succeeded(&mut self, computer: ComputerId) {
        let Some(entry) = self.entries.get_mut(&computer) else {
            return;
        };
        entry.dial_error = None;
        entry.heard_since_dial_failed = false;
        if std::mem::take(&mut entry.unreachable) {
            self.out.push_back(Decision::ClearUnreachable { computer });
        }
    }

    /// A heartbeat (or a dial's session) recorded at `now` had spent `wait` inside the manager
    /// before the monitor heard of it: from the accept, or from when the dial was due.
    pub fn note_wait(&mut self, now: Instant, wait: Duration) {
        self.delay.record(now, wait);
    }

    /// How late the manager hears of heartbeats, as of the last `handle_timeout`: deadlines
    /// are judged this much later.
    pub fn manager_delay(&self) -> Duration {
        self.late_by
    }

    /// An administrator dismissed the offline alert: if the computer is still offline, the
    /// next missed heartbeat raises it again.
    pub fn rearm_offline(&mut self, computer: ComputerId) {
        if let Some(entry) = self.entries.get_mut(&computer) {
            entry.alerted = false;
        }
    }

    /// The computer was deleted.
    pub fn forget(&mut self, computer: ComputerId) {
        if let Some(entry) = self.entries.remove(&computer) {
            self.deadlines.remove(&(entry.deadline, computer));
        }
    }

    pub fn state(&self, computer: ComputerId) -> Option<State> {
        self.entries.get(&computer).map(|e| e.state)
    }

    /// A completed heartbeat, with the agent's wall clock if it sent its status. The agent's
    /// clock change is measured against the manager's monotonic time, so a step of the
    /// manager's own wall clock (an edge box setting its time at boot) blames no agent.
    pub fn handle_heartbeat(
        &mut self,
        now: Instant,
        computer: ComputerId,
        agent_clock: Option<WallMs>,
    ) {
        let Some(mut entry) = self.take(computer) else {
            return;
        };
        if let (Some(new), Some((then, old)), ClockChangeLimit::Max(limit)) = (
            agent_clock,
            entry.last_agent_clock,
            entry.rules.max_clock_change,
        ) {
            let elapsed = i128::from(now.as_millis()) - i128::from(then.as_millis());
            let change = i128::from(new.0) - i128::from(old.0) - elapsed;
            if change.unsigned_abs() > limit.as_millis() {
                self.out.push_back(Decision::ClockChanged {
                    computer,
                    change_ms: i64::try_from(change).unwrap_or(if change < 0 {
                        i64::MIN
                    } else {
                        i64::MAX
                    }),
                    limit,
                });
            }
        }
        if let Some(clock) = agent_clock {
            entry.last_agent_clock = Some((now, clock));
        }
        entry.heard_since_dial_failed = entry.dial_error.is_some();
        if entry.alerted {
            entry.alerted = false;
            self.out.push_back(Decision::ClearOffline { computer });
        }
        entry.rebase(now, Base::Heartbeat);
        self.set_state(
            computer,
            &mut entry,
            State::Online,
            "heartbeat received".into(),
        );
        self.insert(computer, entry);
    }

    /// The agent itself reported a step of its clock (event 5004) of `change_ms`.
    pub fn handle_clock_event(&mut self, computer: ComputerId, change_ms: i64) {
        let Some(entry) = self.entries.get(&computer) else {
            return;
        };
        if let ClockChangeLimit::Max(limit) = entry.rules.max_clock_change
            && u128::from(change_ms.unsigned_abs()) > limit.as_millis()
        {
            self.out.push_back(Decision::ClockChanged {
                computer,
                change_ms,
                limit,
            });
        }
    }

    /// The agent stopped cleanly; misses are counted from now, and an alert says so.
    pub fn handle_goodbye(&mut self, now: Instant, computer: ComputerId) {
        let Some(mut entry) = self.take(computer) else {
            return;
        };
        entry.rebase(now, Base::Goodbye);
        self.set_state(
            computer,
            &mut entry,
            State::Stopped,
            "the agent said goodbye".into(),
        );
        self.insert(computer, entry);
    }

    /// New effective settings (a policy or computer change): deadlines move at once.
    pub fn set_rules(&mut self, now: Instant, computer: ComputerId, rules: Rules) {
        let Some(mut entry) = self.take(computer) else {
            return;
        };
        // Only a bidirectional computer is warned about: manager-initiated, a failed dial is
        // a missed heartbeat; agent-initiated, the manager no longer dials.
        if rules.direction != Direction::Bidirectional && std::mem::take(&mut entry.unreachable) {
            self.out.push_back(Decision::ClearUnreachable { computer });
        }
        entry.rules = rules;
        self.insert(computer, entry);
        self.handle_timeout(now);
    }

    /// What the hypervisor says about a VM.
    pub fn set_power(&mut self, now: Instant, computer: ComputerId, power: PowerState) {
        let Some(mut entry) = self.take(computer) else {
            return;
        };
        entry.power = power;
        self.insert(computer, entry);
        self.handle_timeout(now);
    }

    /// Counts the misses of every computer whose deadline has passed, as of what the manager
    /// has heard by now: `now` less the time heartbeats currently wait inside the manager.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.late_by = self.delay.estimate(now);
        self.delay_falls = self.delay.next_change(now);
        let judged = Instant::from_millis(
            now.as_millis()
                .saturating_sub(u64::try_from(self.late_by.as_millis()).unwrap_or(u64::MAX)),
        );
        while let Some(&(deadline, computer)) = self.deadlines.first() {
            if deadline > judged {
                break;
            }
            let Some(mut entry) = self.take(computer) else {
                continue;
            };
            self.count_misses(judged, computer, &mut entry);
            self.insert(computer, entry);
        }
        // Entries whose state depends on power or rules but whose deadline is later are settled
        // when it comes.
    }

    /// The next instant at which `handle_timeout` has something to do: a deadline, pushed back
    /// by the manager's delay, or the moment that delay may fall.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self
            .deadlines
            .first()
            .map(|(t, _)| t.saturating_add(self.late_by));
        let delay_falls = self.delay_falls.filter(|_| !self.late_by.is_zero());
        match (deadline, delay_falls) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.out.pop_front()
    }

    fn count_misses(&mut self, now: Instant, computer: ComputerId, entry: &mut Entry) {
        let missed = misses(entry, now);
        if missed == 0 {
            return;
        }
        entry.missed = missed;
        let vm_stopped = entry.rules.is_vm && entry.power == PowerState::Stopped;
        let state = match (vm_stopped, entry.why) {
            (true, _) => State::VmStopped,
            (false, Base::Goodbye) => State::Stopped,
            (false, _) => State::Offline,
        };
        let mut reason = format!("{missed} heartbeat(s) missed; {}", entry_reason(entry));
        if let Some(error) = &entry.dial_error {
            reason.push_str(&format!("; the manager's last dial failed: {error}"));
        }
        self.set_state(computer, entry, state, reason.clone());
        let threshold = match entry.rules.missed_before_alert {
            MissedLimit::Unlimited => return,
            MissedLimit::Count(n) => u64::from(n) + 1,
        };
        let quiet = vm_stopped && !entry.rules.offline_errors_for_inactive_vms;
        if missed >= threshold && !entry.alerted && !quiet {
            entry.alerted = true;
            self.out.push_back(Decision::RaiseOffline {
                computer,
                missed,
                reason,
            });
        }
    }

    fn set_state(&mut self, computer: ComputerId, entry: &mut Entry, state: State, reason: String) {
        if entry.state != state {
            entry.state = state;
            self.out.push_back(Decision::State {
                computer,
                state,
                reason,
            });
        }
    }

    fn take(&mut self, computer: ComputerId) -> Option<Entry> {
        let entry = self.entries.remove(&computer)?;
        self.deadlines.remove(&(entry.deadline, computer));
        Some(entry)
    }

    /// Stores the entry with its next deadline: the instant its next miss would be counted.
    fn insert(&mut self, computer: ComputerId, mut entry: Entry) {
        entry.deadline = miss_instant(&entry, entry.missed + 1);
        self.deadlines.insert((entry.deadline, computer));
        self.entries.insert(computer, entry);
    }
}

/// When the `n`th miss after the base is counted.
fn miss_instant(entry: &Entry, n: u64) -> Instant {
    let rules = &entry.rules;
    let intervals = rules
        .interval
        .checked_mul(u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(Duration::MAX);
    entry
        .base
        .saturating_add(intervals.saturating_add(rules.grace()))
}

/// Misses counted at `now`: whole intervals past the base, once the grace has run out.
fn misses(entry: &Entry, now: Instant) -> u64 {
    let first = miss_instant(entry, 1);
    if now < first {
        return 0;
    }
    let interval_ms = entry.rules.interval.as_millis().max(1);
    let late_ms = now.saturating_since(first).as_millis();
    u64::try_from(1 + late_ms / interval_ms).unwrap_or(u64::MAX)
}

fn entry_reason(entry: &Entry) -> String {
    match entry.why {
        Base::ManagerStart => "not heard from since the manager started".to_string(),
        Base::Activation => "no heartbeat since its activation".to_string(),
        Base::Heartbeat => "no heartbeat since the last one".to_string(),
        Base::Goodbye => {
            "the agent said goodbye (clean shutdown) and has not come back".to_string()
        }
    }
}
