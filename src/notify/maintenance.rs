//! Maintenance windows: a computer or a policy subtree being worked on. During a window its
//! computers' alerts are still recorded (the console shows them and the window) but not
//! notified, and neither is the clearing of an alert raised during one. An alert raised during
//! a window and still active when it ends is notified then: the work is over, the problem is
//! not.

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
/// raised or repeated during a window over it, or raised and cleared during one (the all-clear
/// of a page that went out before the window, or at its end, still goes). Other alerts, and those
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
        let quiet = match notice.change {
            // Raised and back during the window. One still active at its end was notified then
            // (`owed_at_end`), and its all-clear goes too.
            Change::Cleared => w.contains(alert.raised) && notice.at < w.end,
            _ => w.contains(notice.at),
        };
        w.covers(alert.computer, ancestors) && quiet
    })
}

/// Whether windows keep a site incident's notice quiet: when every computer it lists was
/// under one at the time (planned work that takes a whole subtree down is no incident).
/// `ancestors` gives a computer's policy chain (empty for one that no longer exists).
pub fn silences_incident(
    windows: &[Window],
    notice: &Notice,
    ancestors: impl Fn(ComputerId) -> Vec<PolicyId>,
) -> bool {
    let alert = &notice.alert;
    if alert.kind != AlertKind::SiteIncident || alert.computers.is_empty() {
        return false;
    }
    alert.computers.iter().all(|computer| {
        let up = ancestors(*computer);
        windows.iter().any(|w| {
            let quiet = match notice.change {
                Change::Cleared => w.contains(alert.raised) && notice.at < w.end,
                _ => w.contains(notice.at),
            };
            quiet && w.covers(*computer, &up)
        })
    })
}

/// How long an ended window is kept: notices from its time may still wait for a channel
/// (at most `give_up_after`, 30 days), and the window must still silence them.
pub const KEEP_ENDED: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// What becomes of the windows once time has moved from `done` (up to when this was last
/// asked; `None`: never) to `now`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ending<'w> {
    /// Ended in between: their alerts still active are owed a notice now.
    pub ended: Vec<&'w Window>,
    /// Ended more than [`KEEP_ENDED`] ago: to delete.
    pub expired: Vec<u64>,
}

pub fn ending(windows: &[Window], done: Option<WallMs>, now: WallMs) -> Ending<'_> {
    let keep = KEEP_ENDED.as_millis() as u64;
    Ending {
        // Never asked before (a store from before this rule): nothing is owed from the past.
        ended: windows
            .iter()
            .filter(|w| done.is_some_and(|d| d < w.end && w.end <= now))
            .collect(),
        expired: windows
            .iter()
            .filter(|w| w.end.0.saturating_add(keep) <= now.0)
            .map(|w| w.id)
            .collect(),
    }
}

/// Whether `alert`, still active as `window` ends, was kept quiet by it and is owed its notice
/// now: a computer's offline or clock alert raised during the window and not acknowledged
/// (somebody has seen it).
pub fn owed_at_end(window: &Window, alert: &crate::model::Alert, ancestors: &[PolicyId]) -> bool {
    let quiet_kind = matches!(
        alert.kind,
        AlertKind::ComputerOffline | AlertKind::ClockChanged
    );
    quiet_kind
        && alert.is_active()
        && alert.acknowledged.is_none()
        && alert.computer != ComputerId(0)
        && window.covers(alert.computer, ancestors)
        && window.contains(alert.raised)
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
        // Raised and back in the window: the page nobody got needs no all-clear.
        assert!(silencing(&windows, &notice(Change::Cleared, 150, 180), &below).is_some());
        // Still active at its end, so paged then: the all-clear goes.
        assert!(silencing(&windows, &notice(Change::Cleared, 150, 300), &below).is_none());
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

    #[test]
    fn an_ended_window_owes_the_notices_of_what_it_kept_quiet_and_is_deleted_a_month_later() {
        let window = |id, end| Window {
            id,
            target: WindowTarget::Computer(ComputerId(7)),
            start: WallMs(100),
            end: WallMs(end),
            reason: "r".into(),
            by: "admin".into(),
        };
        let windows = [window(1, 200), window(2, 400)];
        let month = KEEP_ENDED.as_millis() as u64;
        let ids = |ws: Vec<&Window>| ws.iter().map(|w| w.id).collect::<Vec<_>>();
        assert_eq!(
            ids(ending(&windows, Some(WallMs(150)), WallMs(300)).ended),
            [1]
        );
        assert!(
            ending(&windows, Some(WallMs(200)), WallMs(300))
                .ended
                .is_empty()
        );
        // Never asked before: nothing is owed from the past.
        assert!(ending(&windows, None, WallMs(300)).ended.is_empty());
        assert_eq!(ending(&windows, None, WallMs(200 + month)).expired, [1]);
        let mut alert = notice(Change::Raised, 150, 150).alert;
        let w = &windows[0];
        assert!(owed_at_end(w, &alert, &[]));
        alert.raised = WallMs(50);
        assert!(!owed_at_end(w, &alert, &[]), "notified before the window");
        alert.raised = WallMs(150);
        alert.acknowledged = Some(crate::model::Acknowledgement {
            by: "bob".into(),
            at: WallMs(160),
            comment: String::new(),
        });
        assert!(!owed_at_end(w, &alert, &[]), "somebody has seen it");
        alert.acknowledged = None;
        alert.cleared = Some(WallMs(180));
        assert!(!owed_at_end(w, &alert, &[]), "over before the window ended");
    }

    #[test]
    fn a_site_incident_of_computers_all_in_maintenance_stays_quiet() {
        let windows = [Window {
            id: 1,
            target: WindowTarget::Policy(PolicyId(2)),
            start: WallMs(100),
            end: WallMs(200),
            reason: "rack move".into(),
            by: "admin".into(),
        }];
        let mut incident = notice(Change::Raised, 150, 150);
        incident.alert.kind = AlertKind::SiteIncident;
        incident.alert.computer = ComputerId(0);
        incident.alert.computers = vec![ComputerId(7), ComputerId(8)];
        let under = |_| vec![PolicyId(2), PolicyId(1)];
        let one_outside = |c: ComputerId| {
            if c == ComputerId(8) {
                vec![PolicyId(3), PolicyId(1)]
            } else {
                vec![PolicyId(2), PolicyId(1)]
            }
        };
        assert!(silences_incident(&windows, &incident, under));
        assert!(!silences_incident(&windows, &incident, one_outside));
        // After the window: news.
        incident.at = WallMs(250);
        assert!(!silences_incident(&windows, &incident, under));
        // A computer's own notice is not this rule's.
        assert!(!silences_incident(
            &windows,
            &notice(Change::Raised, 150, 150),
            under
        ));
    }
}
