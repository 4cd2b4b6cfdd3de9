//! Maintenance windows: a computer or a policy subtree being worked on. During a window its
//! computers' alerts are still recorded (the console shows them and the window) but not
//! notified, and neither is the clearing of an alert raised during one.

use super::notice::{Change, Notice};
use crate::alerts::AlertKind;
use crate::clock::WallMs;
use crate::model::{ComputerId, PolicyId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub id: u64,
    pub target: WindowTarget,
    pub start: WallMs,
    pub end: WallMs,
    pub reason: String,
    /// Who opened it (a console user, or `admin-key`).
    pub by: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowTarget {
    Computer(ComputerId),
    /// The policy and every policy below it.
    Policy(PolicyId),
}

impl Window {
    pub fn contains(&self, at: WallMs) -> bool {
        self.start <= at && at < self.end
    }

    /// Whether the window covers a computer with `ancestors` (its policy first, up to the
    /// Base Policy).
    pub fn covers(&self, computer: ComputerId, ancestors: &[PolicyId]) -> bool {
        match self.target {
            WindowTarget::Computer(c) => c == computer,
            WindowTarget::Policy(p) => ancestors.contains(&p),
        }
    }
}

/// The window that keeps `notice` quiet, if one does: a computer's offline or clock alert
/// raised or repeated during a window over it, or cleared after being raised during one (the
/// all-clear of a page that went out before the window still goes). Other alerts, and those
/// about no computer (a site incident, a failed channel), are never kept quiet: nobody would
/// hear of them otherwise.
pub fn silencing<'w>(
    windows: &'w [Window],
    notice: &Notice,
    ancestors: &[PolicyId],
) -> Option<&'w Window> {
    let alert = &notice.alert;
    let quiet_kind = matches!(
        alert.kind,
        AlertKind::ComputerOffline | AlertKind::ClockChanged
    );
    if notice.change == Change::Test || alert.computer == ComputerId(0) || !quiet_kind {
        return None;
    }
    windows.iter().find(|w| {
        let when = match notice.change {
            Change::Cleared => alert.raised,
            _ => notice.at,
        };
        w.covers(alert.computer, ancestors) && w.contains(when)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(change: Change, raised: u64, at: u64) -> Notice {
        let mut n = Notice::test(WallMs(at), "c");
        n.change = change;
        n.alert.kind = AlertKind::ComputerOffline;
        n.alert.computer = ComputerId(7);
        n.alert.about = None;
        n.alert.raised = WallMs(raised);
        n
    }

    #[test]
    fn a_window_silences_its_computers_and_the_clears_of_what_it_silenced() {
        let windows = [Window {
            id: 1,
            target: WindowTarget::Policy(PolicyId(2)),
            start: WallMs(100),
            end: WallMs(200),
            reason: "patching".into(),
            by: "admin".into(),
        }];
        let below = [PolicyId(4), PolicyId(2), PolicyId(1)];
        let beside = [PolicyId(3), PolicyId(1)];
        assert!(silencing(&windows, &notice(Change::Raised, 150, 150), &below).is_some());
        assert!(silencing(&windows, &notice(Change::Raised, 150, 150), &beside).is_none());
        assert!(silencing(&windows, &notice(Change::Raised, 250, 250), &below).is_none());
        assert!(silencing(&windows, &notice(Change::Raised, 50, 50), &below).is_none());
        // Raised in the window, cleared after it: the page nobody got needs no all-clear.
        assert!(silencing(&windows, &notice(Change::Cleared, 150, 300), &below).is_some());
        assert!(silencing(&windows, &notice(Change::Cleared, 50, 300), &below).is_none());
        // Paged before the window, back during it: the all-clear goes.
        assert!(silencing(&windows, &notice(Change::Cleared, 50, 150), &below).is_none());
        let mut unreachable = notice(Change::Raised, 150, 150);
        unreachable.alert.kind = AlertKind::ManagerCannotReachAgent;
        assert!(silencing(&windows, &unreachable, &below).is_none());
        let mut site = notice(Change::Raised, 150, 150);
        site.alert.computer = ComputerId(0);
        assert!(silencing(&windows, &site, &below).is_none());
    }
}
