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
//! overloaded manager that keeps agents waiting must not mark them offline for it. A manager
//! that did not run at all (its process frozen: a paused VM, a swap storm) is told so by its
//! shell, which looks often and notices when it wakes late ([`Monitor::handle_frozen`]); that
//! time counts towards nobody's misses (`paused`).
//!
//! An alert follows its settings: a change that means an active offline alert should not exist
//! withdraws it, one that means it should raises it at once. A clock step is one occurrence
//! however many witnesses it has: the agent's own report (event 5004) and the manager's check of
//! the agent's clock between heartbeats are judged together at the heartbeat.

use crate::clock::{Instant, WallMs};
pub use crate::model::PowerState;
use crate::model::{ClockChangeLimit, ComputerId, ComputerKind, Direction, MissedLimit};
use crate::policy::EffectiveSettings;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

mod clock;
mod delay;
#[cfg(test)]
mod tests;

pub use clock::Witness;
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
    /// The settings changed so that the active offline alert should not exist (`why`).
    WithdrawOffline { computer: ComputerId, why: String },
    /// The computer's clock moved by `change_ms` since the last heartbeat, more than allowed.
    ClockChanged {
        computer: ComputerId,
        change_ms: i64,
        limit: Duration,
        seen_by: Witness,
    },
    /// A bidirectional computer heartbeats but the manager's dial to it failed with `reason`.
    RaiseUnreachable {
        computer: ComputerId,
        reason: String,
    },
    /// A dial succeeded again, or the computer no longer expects to be dialed that way.
    ClearUnreachable { computer: ComputerId },
}

/// How often the shell looks ([`Monitor::handle_timeout`]) at the least. A freeze is forgiven
/// from the last look, so at most this much too long.
pub const LOOK_EVERY: Duration = Duration::from_millis(500);
/// A wake-up this much later than asked can only mean the manager did not run meanwhile; the
/// shell then says so with [`Monitor::handle_frozen`].
pub const FROZEN_AFTER: Duration = Duration::from_secs(2);

/// The longest a session counts as a heartbeat on its way: a verified connection waits at most
/// a step timeout (30 s) for a runner, then each step may take as long.
pub const SESSION_LIMIT: Duration = Duration::from_secs(60);

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
    /// Steps the agent reported (change, the agent's clock when it saw it) since the last
    /// heartbeat, judged with it.
    reported_steps: Vec<(i64, WallMs)>,
    /// The heartbeats whose check alone raised a clock alert (the last few): the agent's clock
    /// then, and how long before it the step may have been. A report of the same step that
    /// comes late (the store refused it, or its session failed) is the same occurrence.
    checked_steps: Vec<(WallMs, u64)>,
    /// The active offline alert was found in the store at start: the misses before the restart
    /// are not counted again, so it stands until the computer is heard from.
    carried: bool,
    /// Since when a session with the computer is inside the manager (on the monitor's clock):
    /// its heartbeat is on its way, however long the manager keeps it queued.
    in_session: Option<Instant>,
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
    /// The manager's own freezes, summed: deadlines are kept on a clock that stood still
    /// meanwhile (`local`), so no computer's misses count them.
    paused: Duration,
    /// The last freeze: waits that overlap it are the freeze's, already forgiven.
    last_freeze: Option<(Instant, Instant)>,
}

impl Monitor {
    pub fn new() -> Self {
        Monitor::default()
    }

    /// The manager did not run from `from` to `to` (its process was frozen: a paused VM, a
    /// swap storm; or this task got no turn): that time counts towards nobody's misses.
    pub fn handle_frozen(&mut self, from: Instant, to: Instant) {
        let gap = to.saturating_since(from);
        if !gap.is_zero() {
            self.paused += gap;
            self.last_freeze = Some((from, to));
        }
    }

    /// `now` on the clock deadlines are kept on, which stood still while the manager was frozen.
    fn local(&self, now: Instant) -> Instant {
        now.saturating_sub(self.paused)
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
        let now = self.local(now);
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
            reported_steps: Vec::new(),
            checked_steps: Vec::new(),
            carried: false,
            in_session: None,
        };
        self.insert(computer, entry);
    }

    /// An offline alert is active for the computer already (found in the store at start), so
    /// its next heartbeat clears it; one its settings forbid (unlimited, a quiet stopped VM) is
    /// withdrawn at once.
    pub fn mark_offline_alerted(&mut self, computer: ComputerId) {
        if let Some(entry) = self.entries.get_mut(&computer) {
            entry.alerted = true;
            entry.carried = true;
            if let Some(why) = forbids(entry) {
                entry.alerted = false;
                entry.carried = false;
                self.out
                    .push_back(Decision::WithdrawOffline { computer, why });
            }
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
        // The part of the wait the manager spent frozen is forgiven already.
        let frozen = self.last_freeze.map_or(Duration::ZERO, |(from, to)| {
            let started = now.saturating_sub(wait);
            let (a, b) = (started.max(from), now.min(to));
            b.saturating_since(a)
        });
        self.delay.record(now, wait.saturating_sub(frozen));
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
            entry.carried = false;
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
        self.judge_clock(now, computer, &mut entry, agent_clock);
        if let Some(clock) = agent_clock {
            entry.last_agent_clock = Some((now, clock));
        }
        entry.heard_since_dial_failed = entry.dial_error.is_some();
        entry.in_session = None;
        if entry.alerted {
            entry.alerted = false;
            entry.carried = false;
            self.out.push_back(Decision::ClearOffline { computer });
        }
        entry.rebase(self.local(now), Base::Heartbeat);
        self.set_state(
            computer,
            &mut entry,
            State::Online,
            "heartbeat received".into(),
        );
        self.insert(computer, entry);
    }

    /// A session with the computer got into the manager (an agent's verified connection, or a
    /// dial that reached it): until it ends, or [`SESSION_LIMIT`], the computer is not judged.
    /// A manager too busy to run the session at once (a fleet activating) must not call its
    /// heartbeat missed.
    pub fn handle_arrival(&mut self, now: Instant, computer: ComputerId) {
        let local = self.local(now);
        if let Some(mut entry) = self.take(computer) {
            // The earliest of the sessions in progress; one never heard of again is over.
            if !in_session(&entry, local) {
                entry.in_session = Some(local);
            }
            self.insert(computer, entry);
        }
    }

    /// The session ended without a heartbeat (it failed, or the agent gave up waiting): the
    /// computer is judged at once, before another session can hold its verdict again (a
    /// manager-initiated computer on a bad link is dialed back to back, every session failing).
    pub fn handle_left(&mut self, now: Instant, computer: ComputerId) {
        let judged = self.judged(now);
        if let Some(mut entry) = self.take(computer) {
            entry.in_session = None;
            // Clock reports its session stored stay pending: the next heartbeat's check sees
            // the same step, and they are judged together then.
            self.count_misses(judged, computer, &mut entry);
            self.insert(computer, entry);
        }
    }

    /// The agent stopped cleanly; misses are counted from now, and an alert says so. It spoke:
    /// an offline alert raised before ends (a later one says it said goodbye), and its clock is
    /// judged as at a heartbeat.
    pub fn handle_goodbye(
        &mut self,
        now: Instant,
        computer: ComputerId,
        agent_clock: Option<WallMs>,
    ) {
        let Some(mut entry) = self.take(computer) else {
            return;
        };
        self.judge_clock(now, computer, &mut entry, agent_clock);
        if let Some(clock) = agent_clock {
            entry.last_agent_clock = Some((now, clock));
        }
        entry.in_session = None;
        if entry.alerted {
            entry.alerted = false;
            entry.carried = false;
            self.out.push_back(Decision::ClearOffline { computer });
        }
        entry.rebase(self.local(now), Base::Goodbye);
        self.set_state(
            computer,
            &mut entry,
            State::Stopped,
            "the agent said goodbye".into(),
        );
        self.insert(computer, entry);
    }

    /// New effective settings (a policy or computer change): deadlines move at once, and the
    /// offline alert follows (withdrawn or raised now, as the new settings say).
    pub fn set_rules(&mut self, now: Instant, computer: ComputerId, rules: Rules) {
        if let Some(power) = self.entries.get(&computer).map(|e| e.power) {
            self.set_settings(now, computer, rules, power);
        }
    }

    /// What the hypervisor says about a VM.
    pub fn set_power(&mut self, now: Instant, computer: ComputerId, power: PowerState) {
        if let Some(rules) = self.entries.get(&computer).map(|e| e.rules) {
            self.set_settings(now, computer, rules, power);
        }
    }

    /// Rules and power state together, judged once: one change that stops a VM and lowers its
    /// threshold must not raise an alert on the way and withdraw it again.
    pub fn set_settings(
        &mut self,
        now: Instant,
        computer: ComputerId,
        rules: Rules,
        power: PowerState,
    ) {
        let Some(mut entry) = self.take(computer) else {
            return;
        };
        // Only a bidirectional computer is warned about: manager-initiated, a failed dial is
        // a missed heartbeat; agent-initiated, the manager no longer dials.
        if rules.direction != Direction::Bidirectional && std::mem::take(&mut entry.unreachable) {
            self.out.push_back(Decision::ClearUnreachable { computer });
        }
        // Only a change of what the misses are counted by can make them too few for the
        // alert; any other (a policy edit elsewhere) leaves the count as it was raised.
        let recount = entry.rules.interval != rules.interval
            || entry.rules.missed_before_alert != rules.missed_before_alert;
        entry.rules = rules;
        entry.power = power;
        self.reassess(now, computer, &mut entry, recount);
        self.insert(computer, entry);
    }

    /// Settles the entry under its current rules and power: its state, and whether its offline
    /// alert should exist.
    fn reassess(&mut self, now: Instant, computer: ComputerId, entry: &mut Entry, recount: bool) {
        let judged = self.judged(now);
        if recount {
            // Counted directly: a session in progress holds a verdict, not the count.
            entry.missed = misses(entry, judged);
        }
        self.count_misses(judged, computer, entry);
        if !entry.alerted {
            return;
        }
        let why = forbids(entry).or_else(|| {
            // An alert carried over a restart of the manager stands until the computer is
            // heard from: its misses before the restart are not counted again.
            let threshold = threshold(entry).unwrap_or(u64::MAX);
            (recount && !entry.carried && entry.missed < threshold).then(|| {
                format!(
                    "withdrawn: {} heartbeat(s) missed, fewer than its settings now allow ({})",
                    entry.missed,
                    threshold.saturating_sub(1)
                )
            })
        });
        if let Some(why) = why {
            entry.alerted = false;
            entry.carried = false;
            self.out
                .push_back(Decision::WithdrawOffline { computer, why });
        }
    }

    /// `now` less the time heartbeats currently wait inside the manager, on the clock that
    /// stood still while the manager was frozen.
    fn judged(&self, now: Instant) -> Instant {
        let local = self.local(now);
        local.saturating_sub(self.late_by)
    }

    /// Counts the misses of every computer whose deadline has passed, as of what the manager
    /// has heard by now: `now` less the time heartbeats currently wait inside the manager.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.late_by = self.delay.estimate(now);
        self.delay_falls = self.delay.next_change(now);
        let judged = self.judged(now);
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
    /// by the manager's delay and its freezes, or the moment that delay may fall.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let paused = self.paused.saturating_add(self.late_by);
        let deadline = self
            .deadlines
            .first()
            .map(|(t, _)| t.saturating_add(paused));
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
        if in_session(entry, now) {
            return;
        }
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
        // The alert's words say the count once (`offline_message`); the status history says it.
        let mut reason = entry_reason(entry);
        if let Some(error) = &entry.dial_error {
            reason.push_str(&format!("; the manager's last dial failed: {error}"));
        }
        self.set_state(
            computer,
            entry,
            state,
            format!("{missed} heartbeat(s) missed; {reason}"),
        );
        let Some(threshold) = threshold(entry) else {
            return;
        };
        if missed >= threshold && !entry.alerted && forbids(entry).is_none() {
            entry.alerted = true;
            entry.carried = false;
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
        // Judged once the session ends (or could not still be running).
        if let Some(since) = entry.in_session {
            entry.deadline = entry.deadline.max(since.saturating_add(SESSION_LIMIT));
        }
        self.deadlines.insert((entry.deadline, computer));
        self.entries.insert(computer, entry);
    }
}

/// A session with the computer is inside the manager at `now` (and not for longer than any
/// session could be).
fn in_session(entry: &Entry, now: Instant) -> bool {
    entry
        .in_session
        .is_some_and(|since| now < since.saturating_add(SESSION_LIMIT))
}

/// The misses that raise the offline alert, if the settings allow one at all.
fn threshold(entry: &Entry) -> Option<u64> {
    match entry.rules.missed_before_alert {
        MissedLimit::Unlimited => None,
        MissedLimit::Count(n) => Some(u64::from(n) + 1),
    }
}

/// Why the settings forbid an offline alert for the computer now, if they do.
fn forbids(entry: &Entry) -> Option<String> {
    if entry.rules.missed_before_alert == MissedLimit::Unlimited {
        return Some("withdrawn: missed-before-alert is now unlimited".into());
    }
    let vm_stopped = entry.rules.is_vm && entry.power == PowerState::Stopped;
    (vm_stopped && !entry.rules.offline_errors_for_inactive_vms)
        .then(|| "withdrawn: the VM is stopped and offline errors for inactive VMs are off".into())
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
