//! One notification: what happened to an alert, as the outbox keeps it until every channel has
//! delivered it. It carries a copy of the alert and the names it needs, so a computer deleted
//! or renamed meanwhile does not change what is said about the past.

use crate::clock::WallMs;
use crate::model::words::words;
use crate::model::{Alert, PolicyId};
use serde::{Deserialize, Serialize};

/// What happened to the alert. The order is part of the store format: add at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// A new alert.
    Raised,
    /// The condition was seen again while the alert was active (its count grew).
    Repeated,
    /// The condition ended and the alert cleared itself.
    Cleared,
    /// Not an alert: an administrator's "send a test", to see the channel work end to end.
    Test,
}

words!(Change {
    Raised => "raised",
    Repeated => "repeated",
    Cleared => "cleared",
    Test => "test",
});

/// One outbox entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The outbox sequence: notices are delivered in this order on every channel, and a
    /// receiver can use it (with the manager's name) to drop a duplicate, since delivery is at
    /// least once.
    pub seq: u64,
    /// When the alert changed (manager wall clock).
    pub at: WallMs,
    pub change: Change,
    /// The alert as it was after the change.
    pub alert: Alert,
    /// The computer's host name when the alert changed; empty for an alert about no computer.
    pub hostname: String,
    /// The computer's policy when the alert changed, for routing by policy subtree.
    pub policy: Option<PolicyId>,
}

impl Notice {
    /// The notice "send a test" delivers: marked as a test in every format, about no computer,
    /// with sequence 0 (never an outbox entry's).
    pub fn test(at: WallMs, channel: &str) -> Notice {
        Notice {
            seq: 0,
            at,
            change: Change::Test,
            alert: Alert {
                id: crate::model::AlertId(0),
                kind: crate::alerts::AlertKind::NotificationFailed,
                computer: crate::model::ComputerId(0),
                raised: at,
                updated: at,
                count: 1,
                message: format!(
                    "A test notification from Picket through channel '{channel}': if you read this, the channel works."
                ),
                cleared: None,
                dismissed: None,
                acknowledged: None,
                about: Some(channel.to_string()),
                computers: Vec::new(),
            },
            hostname: String::new(),
            policy: None,
        }
    }
}
