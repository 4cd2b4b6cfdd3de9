//! Routing: which notices a channel receives. A channel with no route receives every alert's
//! raise and, for kinds that clear themselves, its clear; routes narrow that to alert kinds,
//! severities and a policy subtree, and choose which changes (raised, repeated, cleared) go
//! out. A notice goes out when any of the channel's routes takes it.

use super::notice::{Change, Notice};
use crate::alerts::{AlertKind, Severity};
use crate::model::PolicyId;
use serde::{Deserialize, Serialize};

/// What a channel receives when it has no route of its own.
pub const DEFAULT_CHANGES: [Change; 2] = [Change::Raised, Change::Cleared];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub id: u64,
    /// The channel's name as it was written.
    pub channel: String,
    /// `None`: every kind.
    pub kind: Option<AlertKind>,
    /// `None`: every severity.
    pub severity: Option<Severity>,
    /// Only alerts of computers in this policy or below it. `None`: every policy, and the
    /// alerts about no computer (a failed channel), which a route with a policy never takes.
    pub policy: Option<PolicyId>,
    /// Which changes go out (never empty).
    pub on: Vec<Change>,
}

impl Route {
    /// Whether this route takes `notice`, whose computer's policy has `ancestors` (the policy
    /// itself first, then up to the Base Policy).
    pub fn takes(&self, notice: &Notice, ancestors: &[PolicyId]) -> bool {
        let alert = &notice.alert;
        self.on.contains(&notice.change)
            && self.kind.is_none_or(|k| k == alert.kind)
            && self.severity.is_none_or(|s| s == alert.kind.severity())
            && self.policy.is_none_or(|p| ancestors.contains(&p))
    }
}

/// Whether a channel whose routes are `routes` sends `notice`. A test notice always goes.
pub fn wanted(routes: &[&Route], notice: &Notice, ancestors: &[PolicyId]) -> bool {
    if notice.change == Change::Test {
        return true;
    }
    if routes.is_empty() {
        return DEFAULT_CHANGES.contains(&notice.change);
    }
    routes.iter().any(|r| r.takes(notice, ancestors))
}

/// Whether any route anywhere asks for repeats: if none does, a repeat is not even queued.
pub fn any_wants_repeats(routes: &[Route]) -> bool {
    routes.iter().any(|r| r.on.contains(&Change::Repeated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallMs;

    fn notice(kind: AlertKind, change: Change, policy: Option<u64>) -> Notice {
        let mut n = Notice::test(WallMs(1), "c");
        n.change = change;
        n.alert.kind = kind;
        n.policy = policy.map(PolicyId);
        n
    }

    fn route(kind: Option<AlertKind>, policy: Option<u64>, on: &[Change]) -> Route {
        Route {
            id: 1,
            channel: "c".into(),
            kind,
            severity: None,
            policy: policy.map(PolicyId),
            on: on.to_vec(),
        }
    }

    #[test]
    fn no_route_takes_raises_and_clears_of_everything() {
        let offline = AlertKind::ComputerOffline;
        assert!(wanted(&[], &notice(offline, Change::Raised, Some(3)), &[]));
        assert!(wanted(&[], &notice(offline, Change::Cleared, Some(3)), &[]));
        assert!(!wanted(
            &[],
            &notice(offline, Change::Repeated, Some(3)),
            &[]
        ));
        assert!(wanted(&[], &notice(offline, Change::Test, None), &[]));
    }

    #[test]
    fn routes_narrow_by_kind_severity_policy_subtree_and_change() {
        let offline = AlertKind::ComputerOffline;
        let servers = route(Some(offline), Some(2), &[Change::Raised, Change::Repeated]);
        let routes = [&servers];
        let in_servers = [PolicyId(5), PolicyId(2), PolicyId(1)];
        let elsewhere = [PolicyId(3), PolicyId(1)];
        let raised = notice(offline, Change::Raised, Some(5));
        assert!(wanted(&routes, &raised, &in_servers));
        assert!(!wanted(&routes, &raised, &elsewhere));
        assert!(wanted(
            &routes,
            &notice(offline, Change::Repeated, Some(5)),
            &in_servers
        ));
        assert!(!wanted(
            &routes,
            &notice(offline, Change::Cleared, Some(5)),
            &in_servers
        ));
        let clock = notice(AlertKind::ClockChanged, Change::Raised, Some(5));
        assert!(!wanted(&routes, &clock, &in_servers));
        let warnings = Route {
            severity: Some(Severity::Warning),
            ..route(None, None, &[Change::Raised])
        };
        assert!(wanted(&[&servers, &warnings], &clock, &in_servers));
        assert!(!wanted(&[&warnings], &raised, &in_servers));
        assert!(any_wants_repeats(&[servers]));
        assert!(!any_wants_repeats(&[warnings]));
    }
}
