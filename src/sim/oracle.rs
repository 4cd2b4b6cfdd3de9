//! The ground truth, computed from what really happened (which heartbeats the manager heard,
//! which clocks stepped, when the manager was down or frozen, which settings applied) without
//! the monitor's code, and the checks that hold the manager's alerts to it.
//!
//! The rules it states (`schema/alerts.md`, "Rules"):
//! - A computer is due an offline alert once (N+1) intervals and the grace (a tenth of the
//!   interval, at least 1 s) have passed since the manager last heard from it, since the
//!   manager (re)started, or since it was activated, not counting the time the manager itself
//!   was frozen; never with `missed-before-alert: unlimited` or for a VM its hypervisor reports
//!   stopped when offline errors for inactive VMs are off. Once due it stays due until the
//!   computer is heard from or the settings forbid the alert; a restart of the manager forgives
//!   only a due alert it had not recorded yet.
//! - The alert must be active within 1 s of becoming due, and gone within 1 s of its reason
//!   ending; it must never be raised before it is due.
//! - Every wall-clock step larger than the limit that anyone could see (the agent ran across
//!   it, or the manager kept the computer's previous clock reading) is one clock-changed
//!   occurrence, raised once, by the time the manager hears from the computer after it.
//! - Every event an agent spools is stored once; an acknowledged event is already stored.
//! - Notices (site incidents): every offline alert is told, by its own notice or by an incident
//!   that lists its computer; never are `min_computers` offline alerts raised within one window
//!   of the first, and all still active as that window ends, told one by one (a window with a
//!   manager restart in it excepted: the detector counts again from the start); every incident
//!   has closed once everyone is back.

use super::chaos::Settings;
use crate::model::{ComputerId, MissedLimit, PowerState};
use std::collections::BTreeMap;

/// How late an alert may be, and how long one may outlive its reason.
pub const SLACK_MS: u64 = 1_000;

/// A large step of a computer's clock, and who could have seen it.
#[derive(Debug, Clone, Copy)]
struct Step {
    at: u64,
    /// The agent looked at its clock after it (and spooled its report).
    agent_saw: bool,
    /// The agent's process restarted before it looked: it cannot know.
    agent_restarted: bool,
    /// The manager restarted after it: it lost the computer's previous clock reading.
    manager_restarted: bool,
}

#[derive(Debug)]
struct Truth {
    settings: Settings,
    base: u64,
    /// Due before a restart or a change of base and not heard from since.
    latched: bool,
    /// When the settings last changed: an alert they make due is due from then at the soonest.
    changed_at: u64,
    /// When the offline alert's reason last ended (heard from, or forbidden).
    ended_at: u64,
    /// Large steps not yet reported.
    steps: Vec<Step>,
    /// Clock-changed occurrences owed, and raised.
    clock_owed: u64,
    clock_owed_since: u64,
    clock_raised: u64,
    /// The agent's clock watch has looked since its process started: it can see a step.
    agent_armed: bool,
    /// The manager has a clock reading of the computer since it started: it can see a step.
    manager_armed: bool,
    /// Reports still in the agent's spool when the manager restarted, of steps it may already
    /// have raised: it no longer knows, and may count them again (a known limit).
    clock_repeats_allowed: u64,
}

#[derive(Debug, Default)]
pub struct Oracle {
    truths: BTreeMap<ComputerId, Truth>,
    /// When the manager was frozen: (start, end).
    stalls: Vec<(u64, u64)>,
    pub violations: Vec<String>,
    /// Sessions inside the manager per computer: (began, ended), the last few.
    sessions: BTreeMap<ComputerId, Vec<(u64, Option<u64>)>>,
    /// Waits of heartbeats inside the manager: (when recorded, how long).
    waits: Vec<(u64, u64)>,
    said: std::collections::HashSet<(ComputerId, String)>,
    /// The latest an offline alert came after it was due, over the run.
    pub worst_lateness_ms: u64,
    pub offline_raised: u64,
    pub clock_raised: u64,
    /// When the manager stopped and started: the incident detector's counts start again.
    restarts: Vec<u64>,
}

impl Oracle {
    pub fn watch(&mut self, computer: ComputerId, settings: Settings, now: u64) {
        self.truths.insert(
            computer,
            Truth {
                settings,
                base: now,
                latched: false,
                changed_at: now,
                ended_at: now,
                steps: Vec::new(),
                clock_owed: 0,
                clock_owed_since: now,
                clock_raised: 0,
                agent_armed: false,
                manager_armed: false,
                clock_repeats_allowed: 0,
            },
        );
    }

    /// Says each kind of violation once per computer: a missed alert is missed at every sample.
    fn violation(&mut self, now: u64, computer: ComputerId, what: String) {
        let kind = what.split(':').next().unwrap_or_default().to_string();
        if self.said.insert((computer, kind)) && self.violations.len() < 20 {
            self.violations.push(format!(
                "at {:.3} s, computer {computer}: {what}",
                now as f64 / 1e3
            ));
        }
    }

    fn forbidden(s: &Settings) -> bool {
        s.missed == MissedLimit::Unlimited
            || (s.is_vm && s.power == PowerState::Stopped && !s.offline_errors_for_inactive_vms)
    }

    fn allowance(s: &Settings) -> u64 {
        let MissedLimit::Count(n) = s.missed else {
            return u64::MAX;
        };
        let interval = s.interval.as_millis() as u64;
        (u64::from(n) + 1) * interval + (interval / 10).max(1_000)
    }

    /// When the computer becomes due, if it is not already latched.
    fn due_at(&self, t: &Truth) -> Option<u64> {
        if Self::forbidden(&t.settings) {
            return None;
        }
        if t.latched {
            return Some(t.changed_at.min(t.base));
        }
        // Accountable time runs from the base, and stands still while the manager is frozen.
        let mut cursor = t.base;
        let mut remaining = Self::allowance(&t.settings);
        for (s, e) in self.noticed_stalls() {
            if e <= cursor {
                continue;
            }
            let s = s.max(cursor);
            if s - cursor >= remaining {
                break;
            }
            remaining -= s - cursor;
            cursor = e;
        }
        let at = cursor.saturating_add(remaining);
        Some(at.max(t.changed_at))
    }

    fn due(&self, t: &Truth, now: u64) -> bool {
        self.due_at(t).is_some_and(|at| at <= now)
    }

    fn settle(&mut self, computer: ComputerId, now: u64) {
        let Some(truth) = self.truths.get(&computer) else {
            return;
        };
        let due = self.due(truth, now);
        if let Some(truth) = self.truths.get_mut(&computer) {
            truth.latched = due;
        }
    }

    /// The manager heard from the computer (a heartbeat's status, or a goodbye) whose agent
    /// read its clock at `status_at`: steps after that are for the next heartbeat to show. A
    /// step only the agent saw (the manager restarted since) is known once its report is
    /// stored (`reports_stored`: the session stored every event the agent held; not so when
    /// the disk refused them or the session failed before).
    pub fn heard(&mut self, computer: ComputerId, now: u64, status_at: u64, reports_stored: bool) {
        let Some(t) = self.truths.get_mut(&computer) else {
            return;
        };
        t.ended_at = now;
        t.latched = false;
        t.base = now;
        // The manager's check sees a step unless it restarted since; the agent's report once it
        // is stored. Neither: nobody can know (the step is dropped).
        let known = |s: &Step| {
            s.at <= status_at && (!s.manager_restarted || (s.agent_saw && reports_stored))
        };
        let unknowable = |s: &Step| s.at <= status_at && s.manager_restarted && s.agent_restarted;
        let count = t.steps.iter().filter(|s| known(s)).count() as u64;
        if count > 0 {
            t.clock_owed += count;
            t.clock_owed_since = now;
        }
        t.steps.retain(|s| !known(s) && !unknowable(s));
        // This reading was taken before the steps still pending: the manager's next one shows
        // them (the session began after any restart of the manager).
        for step in t.steps.iter_mut().filter(|s| s.at > status_at) {
            step.manager_restarted = false;
        }
        t.manager_armed = true;
    }

    /// New settings judge the computer from now: an alert they make due is due at once, one
    /// they no longer allow is withdrawn (only one carried over a restart stands while
    /// allowed).
    pub fn settings(&mut self, computer: ComputerId, settings: Settings, now: u64) {
        let Some(t) = self.truths.get_mut(&computer) else {
            return;
        };
        t.settings = settings;
        t.changed_at = now;
        if Self::forbidden(&settings) {
            t.latched = false;
            t.ended_at = now;
        }
    }

    /// The manager's process ends: a freeze it was in ends with it, and so do its sessions.
    pub fn manager_stopped(&mut self, now: u64) {
        self.restarts.push(now);
        for (_, end) in self.sessions.values_mut().flatten() {
            end.get_or_insert(now);
        }
        for stall in &mut self.stalls {
            stall.1 = stall.1.min(now);
        }
    }

    /// The manager starts again: it knows only the alerts it recorded.
    pub fn manager_restarted(&mut self, now: u64, active: &dyn Fn(ComputerId) -> bool) {
        self.restarts.push(now);
        let ids: Vec<ComputerId> = self.truths.keys().copied().collect();
        for id in ids {
            self.settle(id, now);
            if let Some(t) = self.truths.get_mut(&id) {
                t.latched = t.latched && active(id);
                t.base = now;
                t.changed_at = now;
                for step in &mut t.steps {
                    step.manager_restarted = true;
                }
                t.manager_armed = false;
            }
        }
    }

    /// A session with the computer got into the manager: until it ends (at most
    /// `SESSION_LIMIT`), its heartbeat is on its way and the computer is not judged.
    pub fn session_began(&mut self, computer: ComputerId, now: u64) {
        let limit = crate::liveness::SESSION_LIMIT.as_millis() as u64;
        let sessions = self.sessions.entry(computer).or_default();
        // One never heard of again counts no longer than any session could last.
        if let Some((began, end)) = sessions.last_mut()
            && end.is_none()
            && *began + limit <= now
        {
            *end = Some(*began + limit);
        }
        if sessions.last().is_none_or(|(_, end)| end.is_some()) {
            sessions.push((now, None));
        }
        if sessions.len() > 8 {
            sessions.remove(0);
        }
    }

    pub fn session_ended(&mut self, computer: ComputerId, now: u64) {
        if let Some((_, end)) = self
            .sessions
            .get_mut(&computer)
            .and_then(|s| s.last_mut())
            .filter(|(_, end)| end.is_none())
        {
            *end = Some(now);
        }
    }

    /// When an alert due at `at` is owed: later if a session was inside the manager then.
    fn owed_from(&self, computer: ComputerId, at: u64) -> u64 {
        let limit = crate::liveness::SESSION_LIMIT.as_millis() as u64;
        let mut owed = at;
        for &(began, end) in self.sessions.get(&computer).into_iter().flatten() {
            let until = end.unwrap_or(u64::MAX).min(began + limit);
            if began <= owed && owed < until {
                owed = until;
            }
        }
        owed
    }

    /// A heartbeat waited `ms` inside the manager (a short freeze, a dial started late).
    pub fn manager_wait(&mut self, now: u64, ms: u64) {
        if ms > 0 {
            self.waits.push((now, ms));
        }
    }

    /// How much later than due an alert may come: the slack, and as long as heartbeats waited
    /// inside the manager in the last ten seconds (a quarter more: the estimate's resolution),
    /// since its verdicts wait that long so that nobody is blamed for its delay.
    fn allowed_lateness(&self, now: u64) -> u64 {
        let waited = self
            .waits
            .iter()
            .filter(|(at, _)| now.saturating_sub(*at) <= 11_000)
            .map(|(_, ms)| *ms)
            .max()
            .unwrap_or(0);
        SLACK_MS + waited + waited / 4
    }

    /// The manager restarted while the agent still held `reports` clock reports.
    pub fn reports_outlived_manager(&mut self, computer: ComputerId, reports: u64) {
        if let Some(t) = self.truths.get_mut(&computer) {
            t.clock_repeats_allowed += reports;
        }
    }

    /// The manager was frozen. Only a freeze longer than it can tell from a busy moment (it
    /// looks twice a second and calls a wake-up 2 s late a freeze) is forgiven; a shorter one
    /// is the grace's to absorb.
    pub fn manager_stalled(&mut self, from: u64, to: u64) {
        match self.stalls.last_mut() {
            // One freeze that went on.
            Some(last) if last.1 >= from => last.1 = last.1.max(to),
            _ => self.stalls.push((from, to)),
        }
    }

    /// The freezes the manager can notice (see `manager_stalled`).
    fn noticed_stalls(&self) -> Vec<(u64, u64)> {
        let noticed = (crate::liveness::FROZEN_AFTER + crate::liveness::LOOK_EVERY).as_millis();
        let mut stalls: Vec<(u64, u64)> = self
            .stalls
            .iter()
            .copied()
            .filter(|(s, e)| u128::from(e - s) >= noticed)
            .collect();
        stalls.sort_unstable();
        stalls
    }

    pub fn agent_restarted(&mut self, computer: ComputerId) {
        if let Some(t) = self.truths.get_mut(&computer) {
            for step in t.steps.iter_mut().filter(|s| !s.agent_saw) {
                step.agent_restarted = true;
            }
            t.agent_armed = false;
        }
    }

    /// The agent's clock watch looked (before a session).
    pub fn agent_looked(&mut self, computer: ComputerId) {
        if let Some(t) = self.truths.get_mut(&computer) {
            for step in t.steps.iter_mut().filter(|s| !s.agent_restarted) {
                step.agent_saw = true;
            }
            t.agent_armed = true;
        }
    }

    /// The computer's wall clock stepped; `large` when beyond the limit.
    pub fn wall_step(&mut self, computer: ComputerId, now: u64, large: bool) {
        if let Some(t) = self.truths.get_mut(&computer)
            && large
        {
            // A party that has no earlier reading to compare with is as blind as one restarted.
            t.steps.push(Step {
                at: now,
                agent_saw: false,
                agent_restarted: !t.agent_armed,
                manager_restarted: !t.manager_armed,
            });
        }
    }

    /// A large step of the computer's clock is still unreported: another one before it is
    /// would be one step to every witness (they compare readings), so the world makes none.
    pub fn step_pending(&self, computer: ComputerId) -> bool {
        self.truths
            .get(&computer)
            .is_some_and(|t| !t.steps.is_empty())
    }

    /// The manager raised an offline alert now.
    pub fn offline_raised(&mut self, computer: ComputerId, now: u64) {
        self.offline_raised += 1;
        let Some(t) = self.truths.get(&computer) else {
            return;
        };
        match self.due_at(t) {
            Some(at) if at <= now => {
                self.worst_lateness_ms = self.worst_lateness_ms.max(now - at);
            }
            other => {
                let what = format!(
                    "false offline alert: due {other:?}, base {:.3} s, settings {:?}",
                    t.base as f64 / 1e3,
                    t.settings
                );
                self.violation(now, computer, what);
            }
        }
    }

    pub fn clock_raised(&mut self, computer: ComputerId, now: u64) {
        self.clock_raised += 1;
        let Some(t) = self.truths.get_mut(&computer) else {
            return;
        };
        t.clock_raised += 1;
        if t.clock_raised > t.clock_owed + t.clock_repeats_allowed {
            let what = format!(
                "clock-changed raised {} time(s), {} large step(s) seen",
                t.clock_raised, t.clock_owed
            );
            self.violation(now, computer, what);
        }
    }

    /// Holds the alerts active now to the truth.
    pub fn check(&mut self, now: u64, computer: ComputerId, offline_active: bool) {
        let Some(t) = self.truths.get(&computer) else {
            return;
        };
        let due_at = self.due_at(t);
        let due = due_at.is_some_and(|at| at <= now);
        let mut found = Vec::new();
        // The manager judges as late as heartbeats wait inside it; a session that reaches it
        // by then holds the verdict until it ends.
        let waited = self.allowed_lateness(now) - SLACK_MS;
        if let Some(at) = due_at.map(|at| self.owed_from(computer, at + waited))
            && !offline_active
            && now >= at.saturating_add(SLACK_MS)
        {
            found.push(format!(
                "missed offline alert: due at {:.3} s, base {:.3} s, settings {:?}",
                at as f64 / 1e3,
                t.base as f64 / 1e3,
                t.settings
            ));
        }
        if offline_active && !due && now >= t.ended_at + SLACK_MS {
            found.push(format!(
                "offline alert outlived its reason (ended at {:.3} s)",
                t.ended_at as f64 / 1e3
            ));
        }
        if t.clock_raised < t.clock_owed && now >= t.clock_owed_since + SLACK_MS {
            found.push(format!(
                "missed clock-changed alert: {} owed, {} raised",
                t.clock_owed, t.clock_raised
            ));
        }
        for what in found {
            self.violation(now, computer, what);
        }
    }
}

/// An offline alert as the notice checks see it: times in virtual ms.
#[derive(Clone, Copy, Debug)]
pub struct OfflineAlert {
    pub id: crate::model::AlertId,
    pub computer: ComputerId,
    pub raised: u64,
    pub cleared: Option<u64>,
}

impl Oracle {
    /// The notice rules above, over the whole run: `told` is every notice queued, `end` the
    /// end of the run, `open_at_end` whether an incident is still open then.
    pub fn check_notices(
        &mut self,
        alerts: &[OfflineAlert],
        told: &[(u64, super::site::Told)],
        rules: crate::alerts::incident::IncidentRules,
        end: u64,
        open_at_end: bool,
    ) {
        use super::site::Told;
        let window = rules.window.as_millis() as u64;
        let alone: std::collections::HashSet<_> = told
            .iter()
            .filter_map(|(_, t)| match t {
                Told::Raised(id) => Some(*id),
                _ => None,
            })
            .collect();
        let listed = |a: &OfflineAlert| {
            told.iter().any(|(at, t)| match t {
                Told::Incident(cs) | Told::IncidentOver(cs) => {
                    *at >= a.raised && cs.contains(&a.computer)
                }
                _ => false,
            })
        };
        for a in alerts {
            // Still held at the end is not yet owed.
            let owed = a.raised + window <= end || a.cleared.is_some();
            if owed && !alone.contains(&a.id) && !listed(a) {
                self.violations.push(format!(
                    "computer {}: offline alert {} (raised at {} ms) was never told",
                    a.computer, a.id, a.raised
                ));
            }
        }
        let mut by_time: Vec<&OfflineAlert> = alerts.iter().collect();
        by_time.sort_by_key(|a| a.raised);
        // Judged as the first one's hold ends (one told alone and still offline then: its
        // notice was held the whole window): the raises of its window still active then. A
        // manager restart inside the window starts the detector's count again (a held notice
        // it finds is judged a window after the start): such a window is not judged here.
        let held_to_the_end = |a: &&&OfflineAlert| {
            alone.contains(&a.id) && a.cleared.is_none_or(|c| c > a.raised + window)
        };
        for first in by_time.iter().filter(held_to_the_end) {
            let end = first.raised + window;
            if self
                .restarts
                .iter()
                .any(|r| *r >= first.raised && *r <= end)
            {
                continue;
            }
            let storm: Vec<&OfflineAlert> = by_time
                .iter()
                .copied()
                .filter(|a| {
                    a.raised >= first.raised
                        && a.raised < end
                        && a.cleared.is_none_or(|c| c > end)
                        && alone.contains(&a.id)
                })
                .collect();
            if storm.len() >= rules.min_computers {
                self.violations.push(format!(
                    "a storm: {} offline alerts raised within {} ms from {} ms, all still offline \
                     then, were told one by one: {:?}",
                    storm.len(),
                    window,
                    first.raised,
                    storm.iter().map(|a| a.computer).collect::<Vec<_>>()
                ));
                break;
            }
        }
        if open_at_end {
            self.violations
                .push("a site incident is still open at the end".to_string());
        }
    }
}
