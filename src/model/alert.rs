//! The stored alert record: what needs a human, one active per (kind, computer) — or, for an
//! alert about the site rather than one computer, per (kind, what it is about). Its kinds and
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
    /// Someone on call has seen it: it stays active while its condition lasts, but repeats are
    /// not notified. (Schema 7.)
    pub acknowledged: Option<Acknowledgement>,
    /// What an alert about no computer is about (`computer` is 0): a notification channel's
    /// name, a policy's id. `None` for a computer's alert.
    pub about: Option<String>,
    /// The computers a site-wide alert covers (a site incident's), in id order.
    pub computers: Vec<ComputerId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// The console user, or `admin-key` for the API key.
    pub by: String,
    pub at: WallMs,
    pub comment: String,
}

impl Alert {
    pub fn is_active(&self) -> bool {
        self.cleared.is_none() && self.dismissed.is_none()
    }

    /// The alert's key among the active ones: its kind's name, with what it is about for an
    /// alert about no computer (`notification-failed/mail`), so that each channel or policy has
    /// its own.
    pub fn index_name(&self) -> String {
        index_name(self.kind, self.about.as_deref())
    }
}

/// See [`Alert::index_name`].
pub fn index_name(kind: AlertKind, about: Option<&str>) -> String {
    match about {
        None => kind.name().to_string(),
        Some(about) => format!("{}/{about}", kind.name()),
    }
}
