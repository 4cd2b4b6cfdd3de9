//! The stored alert record: what needs a human, one active per (kind, computer). Its kinds and
//! their rules are in `alerts/`.

use super::ids::{AlertId, ComputerId};
use crate::alerts::AlertKind;
use crate::clock::WallMs;
use serde::{Deserialize, Serialize};

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
