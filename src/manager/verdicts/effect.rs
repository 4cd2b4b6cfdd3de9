//! What each monitor decision means for the records, sans-io: a computer's status, or an alert
//! to raise with its words or to clear with a reason for the history. `writes.rs` turns this
//! into store writes; the simulation (`src/sim/`) applies the same to its alerts, so both
//! follow one mapping.

use crate::alerts::{AlertKind, catalogue};
use crate::clock::WallMs;
use crate::liveness::{Decision, State, Witness};
use crate::model::ComputerId;
use std::time::Duration;

/// A decision's effect on the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Status {
        computer: ComputerId,
        state: State,
        reason: String,
    },
    Raise {
        computer: ComputerId,
        kind: AlertKind,
        words: Words,
    },
    Clear {
        computer: ComputerId,
        kind: AlertKind,
        why: String,
    },
}

/// What a raised alert says, before the computer's last heartbeat (from the store) is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Words {
    Offline {
        missed: u64,
        reason: String,
    },
    Unreachable {
        reason: String,
    },
    Clock {
        change_ms: i64,
        limit: Duration,
        seen_by: Witness,
    },
}

impl Words {
    /// The alert's message; `last` is the computer's last heartbeat, if it had one.
    pub(crate) fn message(&self, last: Option<WallMs>) -> String {
        match self {
            Words::Offline { missed, reason } => catalogue::offline_message(*missed, reason, last),
            Words::Unreachable { reason } => catalogue::unreachable_message(reason),
            Words::Clock {
                change_ms,
                limit,
                seen_by,
            } => catalogue::clock_changed_message(*change_ms, *limit, seen_by.words()),
        }
    }

    /// For the log line that says the alert was raised.
    pub(crate) fn detail(&self) -> String {
        match self {
            Words::Offline { reason, .. } | Words::Unreachable { reason } => reason.clone(),
            Words::Clock {
                change_ms, seen_by, ..
            } => format!("{change_ms} ms, seen by {}", seen_by.words()),
        }
    }
}

/// The status a decision sets, or the alert it raises or clears.
pub(crate) fn effect(decision: Decision) -> Effect {
    let raise = |computer, kind, words| Effect::Raise {
        computer,
        kind,
        words,
    };
    let clear = |computer, kind, why: &str| Effect::Clear {
        computer,
        kind,
        why: why.into(),
    };
    match decision {
        Decision::State {
            computer,
            state,
            reason,
        } => Effect::Status {
            computer,
            state,
            reason,
        },
        Decision::RaiseOffline {
            computer,
            missed,
            reason,
        } => raise(
            computer,
            AlertKind::ComputerOffline,
            Words::Offline { missed, reason },
        ),
        Decision::ClearOffline { computer } => clear(
            computer,
            AlertKind::ComputerOffline,
            catalogue::CLEARED_BY_HEARTBEAT,
        ),
        Decision::WithdrawOffline { computer, why } => {
            clear(computer, AlertKind::ComputerOffline, &why)
        }
        Decision::RaiseUnreachable { computer, reason } => raise(
            computer,
            AlertKind::ManagerCannotReachAgent,
            Words::Unreachable { reason },
        ),
        Decision::ClearUnreachable { computer } => clear(
            computer,
            AlertKind::ManagerCannotReachAgent,
            catalogue::CLEARED_BY_DIAL,
        ),
        Decision::ClockChanged {
            computer,
            change_ms,
            limit,
            seen_by,
        } => raise(
            computer,
            AlertKind::ClockChanged,
            Words::Clock {
                change_ms,
                limit,
                seen_by,
            },
        ),
    }
}
