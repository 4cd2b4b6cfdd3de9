//! Clock steps, judged: the agent's own reports (event 5004) and the manager's check of the
//! agent's clock between two heartbeats see the same step, and are one occurrence. Part of the
//! monitor (`Monitor` and its entries), kept apart because it is its own question.

use super::{Decision, Entry, Monitor};
use crate::clock::{Instant, WallMs};
use crate::model::{ClockChangeLimit, ComputerId};

/// Who saw a clock step: the agent (its event 5004), the manager (the agent's clock moved
/// unlike the manager's own between two heartbeats), or both for the same step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Witness {
    Agent,
    Manager,
    Both,
}

impl Witness {
    /// For the alert's words: "seen by ...".
    pub fn words(self) -> &'static str {
        match self {
            Witness::Agent => "the agent",
            Witness::Manager => "the manager",
            Witness::Both => "the agent and the manager",
        }
    }
}

/// Slack for a step report's time against a heartbeat's clock reading: the agent looks, then
/// reads its clock for the status, moments apart.
const SAME_SESSION_MS: u64 = 10_000;
/// Manager-only clock alerts remembered per computer, for their late reports.
const MAX_CHECKED_STEPS: usize = 4;

impl Monitor {
    /// The agent itself reported a step of its clock (event 5004) of `change_ms`, seen when its
    /// clock read `at`. Judged at the heartbeat that follows (the session's own), with the
    /// manager's check of the same step.
    pub fn handle_clock_event(&mut self, computer: ComputerId, change_ms: i64, at: WallMs) {
        if let Some(entry) = self.entries.get_mut(&computer) {
            entry.reported_steps.push((change_ms, at));
        }
    }

    /// One decision per step: the agent's reports since the last heartbeat and the manager's
    /// own check of the agent's clock see the same step, and say so together.
    pub(super) fn judge_clock(
        &mut self,
        now: Instant,
        computer: ComputerId,
        entry: &mut Entry,
        agent_clock: Option<WallMs>,
    ) {
        let reported = std::mem::take(&mut entry.reported_steps);
        let ClockChangeLimit::Max(limit) = entry.rules.max_clock_change else {
            return;
        };
        let beyond = |change: i128| change.unsigned_abs() > limit.as_millis();
        let previous = entry.last_agent_clock;
        let mut window = 0;
        let seen = match (agent_clock, previous) {
            (Some(new), Some((then, old))) => {
                let elapsed = i128::from(now.as_millis()) - i128::from(then.as_millis());
                let change = i128::from(new.0) - i128::from(old.0) - elapsed;
                window = u64::try_from(elapsed).unwrap_or(0) + SAME_SESSION_MS;
                beyond(change).then_some(change)
            }
            _ => None,
        };
        // A report is made on the agent's clock after the step: one made between a checked
        // heartbeat and the one before it (on the new clock, within the time between them) is
        // the step that check saw.
        let checked = &mut entry.checked_steps;
        let mut reports: Vec<i64> = Vec::new();
        for (change, at) in reported {
            let same = checked
                .iter()
                .position(|&(clock, window)| at.0 <= clock.0 && clock.0 - at.0 <= window);
            match same {
                Some(i) => {
                    checked.remove(i);
                }
                None if beyond(i128::from(change)) => reports.push(change),
                None => {}
            }
        }
        let last = reports.pop();
        for change_ms in reports {
            self.out.push_back(Decision::ClockChanged {
                computer,
                change_ms,
                limit,
                seen_by: Witness::Agent,
            });
        }
        let (change_ms, seen_by) = match (last, seen) {
            (Some(change), Some(_)) => (change, Witness::Both),
            (Some(change), None) => (change, Witness::Agent),
            (None, Some(change)) => {
                if let Some(clock) = agent_clock {
                    if entry.checked_steps.len() == MAX_CHECKED_STEPS {
                        entry.checked_steps.remove(0);
                    }
                    entry.checked_steps.push((clock, window));
                }
                (saturate(change), Witness::Manager)
            }
            (None, None) => return,
        };
        self.out.push_back(Decision::ClockChanged {
            computer,
            change_ms,
            limit,
            seen_by,
        });
    }
}

fn saturate(change: i128) -> i64 {
    i64::try_from(change).unwrap_or(if change < 0 { i64::MIN } else { i64::MAX })
}
