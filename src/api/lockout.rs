//! No silent lock-out: a policy or computer change after which a manager-initiated computer's
//! agent-port rules would refuse the manager is refused (its agent never dials, so nothing could
//! deliver the undo); one whose effect the manager cannot tell is accepted with a `warning` line
//! in the computer's history. The judgement is `policy::port_rule::judge_change`. Likewise a
//! change after which the computer's firewall (`firewall.enabled`) would surely drop its way to
//! the manager (`policy::manager_path`) is refused, naming the rules.

use super::ApiState;
use super::error::ApiError;
use crate::clock::WallMs;
use crate::model::{Computer, HistoryEntry, PolicyId};
use crate::policy::manager_path::{self, Manager, Path};
use crate::policy::port_rule::{self, Access};
use crate::policy::{PolicyError, PolicyTree, expected_config};
use crate::store::{Reads, WriteTxn};

/// One computer as a change leaves it: the tree and record before, and after.
pub struct Changed<'a> {
    pub before: (&'a PolicyTree, &'a Computer),
    pub after: (&'a PolicyTree, &'a Computer),
}

/// Judges a change of `policy` for every computer under it, before anything is written.
pub fn check_policy_change(
    state: &ApiState,
    txn: &mut WriteTxn,
    before: &PolicyTree,
    after: &PolicyTree,
    policy: PolicyId,
    field: &str,
) -> Result<(), ApiError> {
    let under: Vec<Computer> = txn
        .computers()?
        .into_iter()
        .filter(|c| after.chain(c.policy).iter().any(|p| p.id == policy))
        .collect();
    let changed: Vec<Changed> = under
        .iter()
        .map(|c| Changed {
            before: (before, c),
            after: (after, c),
        })
        .collect();
    check(state, txn, &changed, field)
}

/// Refuses the change if it locks the manager out of any of `computers`; otherwise writes a
/// warning into each one's history whose fate the manager cannot tell (or that stays locked
/// out), and logs it. Refusing first and warning after keeps a refused change free of writes.
pub fn check(
    state: &ApiState,
    txn: &mut WriteTxn,
    computers: &[Changed],
    field: &str,
) -> Result<(), ApiError> {
    let endpoints = std::slice::from_ref(&state.agent_endpoint);
    let mut warnings = Vec::new();
    for c in computers {
        let (before_tree, before) = c.before;
        let (after_tree, after) = c.after;
        // A computer without an agent has no port to be locked out of yet.
        let Some(agent) = txn.agent_state(after.id)? else {
            continue;
        };
        let (old, new) = (
            expected_config(before_tree, before, endpoints),
            expected_config(after_tree, after, endpoints),
        );
        let manager = Manager {
            endpoint: manager_path::endpoint(&state.agent_endpoint),
            source: state.dialer.source(after.id),
        };
        if let Path::Cut { what, rules } = manager_path::judge(&new, agent.listen_port, manager) {
            if manager_path::judge(&old, agent.listen_port, manager) == Path::Open {
                let noun = if rules.len() == 1 { "rule" } else { "rules" };
                return Err(PolicyError::CutsManager {
                    what: format!(
                        "firewall {noun} {} would drop {what} on computer '{}'",
                        rules.join(", "),
                        after.hostname
                    ),
                    field: field.to_string(),
                }
                .into());
            }
            warnings.push((
                after.id,
                format!(
                    "after this change the firewall still drops {what} (rules {}): the agent \
                     cannot reach the manager until a rule lets it through",
                    rules.join(", ")
                ),
            ));
        }
        let access = port_rule::judge_change(&old, &new, agent.listen_port, manager.source);
        match access {
            Access::Open => {}
            Access::LockedOut {
                rules,
                manager,
                port,
            } => {
                return Err(PolicyError::LocksOutManager {
                    computer: after.hostname.clone(),
                    rules,
                    manager,
                    port,
                    field: field.to_string(),
                }
                .into());
            }
            Access::StillLockedOut {
                rules,
                manager,
                port,
            } => warnings.push((
                after.id,
                format!(
                    "after this change the agent's firewall rule(s) {} still refuse the manager \
                     at {manager} on port {port}: the manager cannot reach this \
                     manager-initiated computer until a rule admits it",
                    port_rule::quoted(&rules)
                ),
            )),
            Access::Unknown(why) => warnings.push((
                after.id,
                format!(
                    "the manager cannot tell whether it can still reach this manager-initiated \
                     computer's agent after this change: {why}"
                ),
            )),
        }
    }
    let now: WallMs = state.clock.wall();
    for (computer, detail) in warnings {
        log::warn!("computer {computer}: {detail}");
        txn.add_history(&HistoryEntry {
            computer,
            at: now,
            what: "warning".into(),
            detail,
        })?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::{
        AgentState, ComputerId, Direction, FirewallRule, FrameType, IpMatch, Policy, Protocol,
        RuleAction, RuleId, Setting, Settings, TrafficDirection,
    };
    use crate::store::Store;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// An API state over a fresh store in `dir` (other modules' tests use it too).
    pub(in crate::api) fn state(dir: &std::path::Path) -> ApiState {
        let clock = Arc::new(ManualClock::new(WallMs(1_000_000)));
        ApiState {
            store: Arc::new(Store::open(&dir.join("s.redb")).unwrap()),
            clock: clock.clone(),
            admin_key_hash: [0; 32],
            agent_endpoint: "127.0.0.1:4120".into(),
            manager_name: "manager".into(),
            console_url: "https://manager:4119".into(),
            key_pin: String::new(),
            ca_sha256: String::new(),
            registry: Arc::default(),
            liveness: crate::handles::Liveness::channel(clock).0,
            dialer: crate::handles::Dialer::channel().0,
            console: super::super::Console::default(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            ready: AtomicBool::new(true),
        }
    }

    fn base(rules: Vec<FirewallRule>) -> Policy {
        Policy {
            id: PolicyId(1),
            name: "Base Policy".into(),
            parent: None,
            settings: Settings {
                direction: Setting::Set(Direction::ManagerInitiated),
                ..Settings::default()
            },
            rules,
        }
    }

    fn admin_host_only() -> FirewallRule {
        FirewallRule {
            id: RuleId(1),
            name: "admin host".into(),
            action: RuleAction::Bypass,
            priority: 4,
            direction: TrafficDirection::Incoming,
            frame_type: FrameType::Ip,
            protocol: Protocol::Tcp,
            destination_ports: vec![],
            source_ips: vec![IpMatch::parse("10.0.0.2").unwrap()],
            source_macs: vec![],
            destination_ips: vec![],
            log: false,
        }
    }

    /// A manager-initiated computer whose agent listens on 4118, and the rule's addition to
    /// the Base Policy judged for it.
    fn add_the_rule(state: &ApiState) -> (Result<(), ApiError>, Vec<HistoryEntry>) {
        let mut txn = state.store.write().unwrap();
        txn.put_policy(&base(vec![])).unwrap();
        txn.put_computer(&Computer::test(1, "kiosk")).unwrap();
        txn.put_agent_state(&AgentState {
            computer: ComputerId(1),
            listen_port: Some(4118),
            ..AgentState::default()
        })
        .unwrap();
        let before = PolicyTree::new([base(vec![])]);
        let after = PolicyTree::new([base(vec![admin_host_only()])]);
        let judged = check_policy_change(state, &mut txn, &before, &after, PolicyId(1), "f");
        let history = txn.history(ComputerId(1), 10).unwrap();
        (judged, history)
    }

    #[test]
    fn a_rule_refusing_the_managers_known_address_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        state
            .dialer
            .note_source(ComputerId(1), "10.0.0.1".parse().unwrap());
        let (judged, history) = add_the_rule(&state);
        let err = judged.unwrap_err();
        assert_eq!(err.status, hyper::StatusCode::CONFLICT);
        assert_eq!(err.field.as_deref(), Some("f"));
        assert!(
            err.message.contains("'admin host'")
                && err.message.contains("10.0.0.1")
                && err.message.contains("'kiosk'"),
            "{}",
            err.message
        );
        assert!(history.is_empty(), "a refused change writes nothing");
    }

    #[test]
    fn an_unknown_manager_address_accepts_the_change_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let (judged, history) = add_the_rule(&state);
        assert!(judged.is_ok());
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].what, "warning");
        assert!(history[0].detail.contains("not dialed"), "{history:?}");
    }

    /// An agent-initiated computer with its firewall on, and a rule added to the Base Policy.
    fn add_outgoing(state: &ApiState, rule: FirewallRule) -> Result<(), ApiError> {
        let mut txn = state.store.write().unwrap();
        let mut policy = base(vec![]);
        policy.settings.direction = Setting::Set(Direction::AgentInitiated);
        policy.settings.firewall_enabled = Setting::Set(true);
        txn.put_policy(&policy).unwrap();
        txn.put_computer(&Computer::test(1, "web1")).unwrap();
        txn.put_agent_state(&AgentState {
            computer: ComputerId(1),
            ..AgentState::default()
        })
        .unwrap();
        let before = PolicyTree::new([policy.clone()]);
        policy.rules.push(rule);
        let after = PolicyTree::new([policy]);
        check_policy_change(state, &mut txn, &before, &after, PolicyId(1), "action")
    }

    fn outgoing(port: u16) -> FirewallRule {
        FirewallRule {
            id: RuleId(9),
            name: "web only".into(),
            action: crate::model::RuleAction::Allow,
            direction: TrafficDirection::Outgoing,
            priority: 0,
            destination_ports: vec![crate::model::PortRange::single(port).unwrap()],
            source_ips: vec![],
            ..admin_host_only()
        }
    }

    #[test]
    fn a_rule_that_cuts_an_agent_from_its_manager_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = state(dir.path());
        state.agent_endpoint = "192.0.2.10:4120".into();
        let err = add_outgoing(&state, outgoing(443)).unwrap_err();
        assert_eq!(err.status, hyper::StatusCode::CONFLICT);
        assert_eq!(err.field.as_deref(), Some("action"));
        assert!(
            err.message.contains("9 'web only'")
                && err.message.contains("port 4120")
                && err.message.contains("'web1'"),
            "{}",
            err.message
        );
        assert!(add_outgoing(&state, outgoing(4120)).is_ok());
    }

    #[test]
    fn a_rule_that_cuts_nothing_on_loopback_passes() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        assert!(
            add_outgoing(&state, outgoing(443)).is_ok(),
            "the manager is on 127.0.0.1"
        );
    }

    #[test]
    fn a_rule_admitting_the_manager_passes_without_a_word() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        state
            .dialer
            .note_source(ComputerId(1), "10.0.0.2".parse().unwrap());
        let (judged, history) = add_the_rule(&state);
        assert!(judged.is_ok());
        assert!(history.is_empty(), "{history:?}");
    }
}
