//! Alerts: what needs a human, one active per (kind, computer).

use super::ids::{AlertId, ComputerId};
use crate::clock::WallMs;
use serde::{Deserialize, Serialize};

/// The alert catalogue, as `schema/alerts.md` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertKind {
    /// The N+1th consecutive heartbeat was missed. Clears itself at the next heartbeat.
    ComputerOffline,
    /// The computer's clock moved more than allowed between heartbeats. Only a dismissal ends it.
    ClockChanged,
    /// A bidirectional computer heartbeats, but the manager cannot dial it. Clears itself when a
    /// dial succeeds.
    ManagerCannotReachAgent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    Critical,
    Warning,
}

impl AlertKind {
    pub const ALL: [AlertKind; 3] = [
        AlertKind::ComputerOffline,
        AlertKind::ClockChanged,
        AlertKind::ManagerCannotReachAgent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AlertKind::ComputerOffline => "computer-offline",
            AlertKind::ClockChanged => "clock-changed",
            AlertKind::ManagerCannotReachAgent => "manager-cannot-reach-agent",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            AlertKind::ComputerOffline => Severity::Critical,
            AlertKind::ClockChanged | AlertKind::ManagerCannotReachAgent => Severity::Warning,
        }
    }

    /// Whether the alert ends by itself when its condition does.
    pub fn clears_itself(self) -> bool {
        matches!(
            self,
            AlertKind::ComputerOffline | AlertKind::ManagerCannotReachAgent
        )
    }
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub kind: AlertKind,
    pub computer: ComputerId,
    pub raised: WallMs,
    /// When the condition was last seen again (a repeat updates the alert, never adds one).
    pub updated: WallMs,
    /// How many times it was raised while active.
    pub count: u32,
    pub message: String,
    pub cleared: Option<WallMs>,
    pub dismissed: Option<WallMs>,
}

impl Alert {
    pub fn is_active(&self) -> bool {
        self.cleared.is_none() && self.dismissed.is_none()
    }
}
