//! Who may connect to the agent's listening port (the reference's priority-4 rule), decided
//! before any TLS byte is read: the agent's listener asks it of every peer, and the manager asks
//! it of its own address, so that a change that would lock it out of a manager-initiated
//! computer is refused and a refused dial says which rule refused it. Sans-io: the rules, the
//! port and the peer come in.

use super::AgentConfig;
use crate::model::{Direction, ListenerRule, MacAddr};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule governs the port (the hidden bypass rule: anyone), or one admits the peer.
    Admit,
    /// Rules govern the port and none admits the peer; their names, for the log.
    Refuse { rules: Vec<String> },
}

/// The rules that cover `port`; if any, the peer must match one of them.
pub fn check(rules: &[ListenerRule], port: u16, ip: IpAddr, mac: Option<MacAddr>) -> Verdict {
    let governing: Vec<&ListenerRule> = rules.iter().filter(|r| r.covers_port(port)).collect();
    if governing.is_empty() || governing.iter().any(|r| r.admits(ip, mac)) {
        Verdict::Admit
    } else {
        Verdict::Refuse {
            rules: governing.iter().map(|r| r.name.clone()).collect(),
        }
    }
}

/// Whether deciding needs the peer's MAC: only when a governing rule lists MACs, so the
/// neighbour table is not read for every connection.
pub fn needs_mac(rules: &[ListenerRule], port: u16) -> bool {
    rules
        .iter()
        .any(|r| r.covers_port(port) && !r.source_macs.is_empty())
}

/// How the agent's [`check`] treats a connection from the manager. The manager cannot know the
/// MAC the agent will see (its own on a shared link, a router's otherwise), hence `ByMac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerReach {
    Admitted,
    /// No governing rule admits the manager's address, whatever the MAC; their names.
    Refused {
        rules: Vec<String>,
    },
    /// Only a rule that lists MACs could admit it (their names): it depends on the MAC.
    ByMac {
        rules: Vec<String>,
    },
}

/// The agent's own check of `manager` on `port`, asked once with no MAC and once with each MAC
/// a governing rule lists, so that no second copy of the matching exists.
pub fn manager_reach(rules: &[ListenerRule], port: u16, manager: IpAddr) -> ManagerReach {
    let refused = match check(rules, port, manager, None) {
        Verdict::Admit => return ManagerReach::Admitted,
        Verdict::Refuse { rules } => rules,
    };
    let by_mac: Vec<String> = rules
        .iter()
        .filter(|r| r.covers_port(port))
        .filter(|r| {
            r.source_macs.iter().any(|mac| {
                check(std::slice::from_ref(*r), port, manager, Some(*mac)) == Verdict::Admit
            })
        })
        .map(|r| r.name.clone())
        .collect();
    if by_mac.is_empty() {
        ManagerReach::Refused { rules: refused }
    } else {
        ManagerReach::ByMac { rules: by_mac }
    }
}

/// What a change to one computer's configuration does to the manager's way in to its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The manager still gets in, or need not (the agent dials), or the change left the
    /// agent's port and direction as they were.
    Open,
    /// The change would lock the manager out: `rules` refuse `manager` on `port`.
    LockedOut {
        rules: Vec<String>,
        manager: IpAddr,
        port: u16,
    },
    /// Locked out before the change and still after: not this change's doing, so not refused.
    StillLockedOut {
        rules: Vec<String>,
        manager: IpAddr,
        port: u16,
    },
    /// The manager cannot tell; why, in words.
    Unknown(String),
}

/// Whether going from `before` to `after` locks the manager out of a computer: only a
/// manager-initiated one, whose agent never dials, cannot be reached any other way to undo
/// it. `port` is where its agent listens, `manager` the address the manager's dials to it come
/// from, each if known.
pub fn judge_change(
    before: &AgentConfig,
    after: &AgentConfig,
    port: Option<u16>,
    manager: Option<IpAddr>,
) -> Access {
    let unchanged =
        before.direction == after.direction && before.listener_rules == after.listener_rules;
    if unchanged
        || after.direction != Direction::ManagerInitiated
        || after.listener_rules.is_empty()
    {
        return Access::Open;
    }
    let Some(port) = port else {
        return Access::Unknown("its agent has not reported the port it listens on".into());
    };
    if !after.listener_rules.iter().any(|r| r.covers_port(port)) {
        return Access::Open;
    }
    let Some(manager) = manager else {
        return Access::Unknown(
            "the manager has not dialed it since it started, so it does not know its own \
             address toward it"
                .into(),
        );
    };
    match manager_reach(&after.listener_rules, port, manager) {
        ManagerReach::Admitted => Access::Open,
        ManagerReach::ByMac { rules } => Access::Unknown(format!(
            "firewall rule(s) {} admit by MAC address, and the manager cannot know the MAC its \
             agent sees",
            quoted(&rules)
        )),
        ManagerReach::Refused { rules } => {
            let was_refused = before.direction == Direction::ManagerInitiated
                && matches!(
                    manager_reach(&before.listener_rules, port, manager),
                    ManagerReach::Refused { .. }
                );
            if was_refused {
                Access::StillLockedOut {
                    rules,
                    manager,
                    port,
                }
            } else {
                Access::LockedOut {
                    rules,
                    manager,
                    port,
                }
            }
        }
    }
}

/// `'a', 'b'`: rule names as messages show them.
pub fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IpMatch, PortRange};

    fn rule(name: &str, port: &str, ips: &[&str], macs: &[MacAddr]) -> ListenerRule {
        ListenerRule {
            name: name.into(),
            destination_ports: vec![PortRange::parse(port).unwrap()],
            source_ips: ips.iter().map(|s| IpMatch::parse(s).unwrap()).collect(),
            source_macs: macs.to_vec(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_a_governing_rule_anyone_may_connect() {
        assert_eq!(check(&[], 4118, ip("203.0.113.9"), None), Verdict::Admit);
        let other_port = [rule("web", "443", &["127.0.0.2"], &[])];
        assert_eq!(
            check(&other_port, 4118, ip("203.0.113.9"), None),
            Verdict::Admit
        );
    }

    #[test]
    fn a_governing_rule_admits_only_its_sources_and_rules_add_up() {
        let narrow = [rule("admin host", "4118", &["127.0.0.2"], &[])];
        assert_eq!(
            check(&narrow, 4118, ip("127.0.0.1"), None),
            Verdict::Refuse {
                rules: vec!["admin host".into()]
            }
        );
        assert_eq!(check(&narrow, 4118, ip("127.0.0.2"), None), Verdict::Admit);
        let widened = [
            narrow[0].clone(),
            rule("loopback", "4000-4200", &["127.0.0.1"], &[]),
        ];
        assert_eq!(check(&widened, 4118, ip("127.0.0.1"), None), Verdict::Admit);
    }

    #[test]
    fn a_mac_rule_needs_the_peers_mac() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let by_mac = [rule("console", "4118", &[], &[mac])];
        assert!(needs_mac(&by_mac, 4118) && !needs_mac(&by_mac, 4119));
        assert_eq!(
            check(&by_mac, 4118, ip("10.0.0.5"), Some(mac)),
            Verdict::Admit
        );
        assert!(matches!(
            check(&by_mac, 4118, ip("10.0.0.5"), None),
            Verdict::Refuse { .. }
        ));
    }

    fn config(direction: Direction, rules: &[ListenerRule]) -> AgentConfig {
        use crate::model::defaults;
        AgentConfig {
            interval: defaults::INTERVAL,
            missed_before_alert: defaults::MISSED_BEFORE_ALERT,
            max_clock_change: defaults::MAX_CLOCK_CHANGE,
            offline_errors_for_inactive_vms: false,
            direction,
            manager_endpoints: vec!["manager:4120".into()],
            listener_rules: rules.to_vec(),
            firewall_enabled: false,
            firewall_rules: vec![],
        }
    }

    #[test]
    fn the_managers_reach_is_the_agents_own_check_and_a_mac_rule_leaves_it_open() {
        let narrow = [rule("admin host", "4118", &["127.0.0.2"], &[])];
        assert_eq!(
            manager_reach(&narrow, 4118, ip("127.0.0.1")),
            ManagerReach::Refused {
                rules: vec!["admin host".into()]
            }
        );
        assert_eq!(
            manager_reach(&narrow, 4118, ip("127.0.0.2")),
            ManagerReach::Admitted
        );
        assert_eq!(
            manager_reach(&narrow, 4119, ip("127.0.0.1")),
            ManagerReach::Admitted,
            "a rule on another port leaves the hidden rule in place"
        );
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let by_mac = [
            narrow[0].clone(),
            rule("console by MAC", "4118", &["127.0.0.0/8"], &[mac]),
        ];
        assert_eq!(
            manager_reach(&by_mac, 4118, ip("127.0.0.1")),
            ManagerReach::ByMac {
                rules: vec!["console by MAC".into()]
            }
        );
        let other_net = [rule("console by MAC", "4118", &["10.0.0.0/8"], &[mac])];
        assert!(
            matches!(
                manager_reach(&other_net, 4118, ip("127.0.0.1")),
                ManagerReach::Refused { .. }
            ),
            "a MAC rule whose addresses miss the manager refuses it whatever the MAC"
        );
    }

    #[test]
    fn a_change_that_refuses_the_manager_of_a_manager_initiated_computer_locks_it_out() {
        use Direction::{Bidirectional, ManagerInitiated};
        let open = config(ManagerInitiated, &[]);
        let narrow = [rule("admin host", "4000-4200", &["127.0.0.2"], &[])];
        let blocked = config(ManagerInitiated, &narrow);
        let manager = Some(ip("127.0.0.1"));
        assert_eq!(
            judge_change(&open, &blocked, Some(4118), manager),
            Access::LockedOut {
                rules: vec!["admin host".into()],
                manager: ip("127.0.0.1"),
                port: 4118
            }
        );
        // The same rules on a computer whose agent dials the manager: it still hears it.
        let bidirectional = config(Bidirectional, &narrow);
        assert_eq!(
            judge_change(
                &config(Bidirectional, &[]),
                &bidirectional,
                Some(4118),
                manager
            ),
            Access::Open
        );
        // ...until it is switched to manager-initiated: that change locks it out too.
        assert!(matches!(
            judge_change(&bidirectional, &blocked, Some(4118), manager),
            Access::LockedOut { .. }
        ));
        // A rule that admits the manager, or one on another port, leaves it open.
        let admits = config(
            ManagerInitiated,
            &[rule("mgr", "4118", &["127.0.0.1"], &[])],
        );
        assert_eq!(
            judge_change(&open, &admits, Some(4118), manager),
            Access::Open
        );
        assert_eq!(
            judge_change(&open, &blocked, Some(9000), manager),
            Access::Open
        );
    }

    #[test]
    fn a_lock_out_the_change_did_not_cause_and_a_change_that_left_the_port_alone_pass() {
        let narrow = [rule("admin host", "4118", &["127.0.0.2"], &[])];
        let blocked = config(Direction::ManagerInitiated, &narrow);
        let manager = Some(ip("127.0.0.1"));
        assert_eq!(
            judge_change(&blocked, &blocked, Some(4118), manager),
            Access::Open,
            "nothing of the agent's port changed"
        );
        let narrower = [
            narrow[0].clone(),
            rule("backup host", "4118", &["127.0.0.3"], &[]),
        ];
        assert!(matches!(
            judge_change(
                &blocked,
                &config(Direction::ManagerInitiated, &narrower),
                Some(4118),
                manager
            ),
            Access::StillLockedOut { .. }
        ));
    }

    #[test]
    fn what_the_manager_does_not_know_makes_the_answer_unknown_not_a_refusal() {
        let open = config(Direction::ManagerInitiated, &[]);
        let narrow = [rule("admin host", "4118", &["127.0.0.2"], &[])];
        let blocked = config(Direction::ManagerInitiated, &narrow);
        let no_address = judge_change(&open, &blocked, Some(4118), None);
        assert!(
            matches!(&no_address, Access::Unknown(why) if why.contains("not dialed")),
            "{no_address:?}"
        );
        let no_port = judge_change(&open, &blocked, None, Some(ip("127.0.0.1")));
        assert!(
            matches!(&no_port, Access::Unknown(why) if why.contains("port")),
            "{no_port:?}"
        );
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let by_mac = config(
            Direction::ManagerInitiated,
            &[rule("console", "4118", &[], &[mac])],
        );
        let unknown = judge_change(&open, &by_mac, Some(4118), Some(ip("127.0.0.1")));
        assert!(
            matches!(&unknown, Access::Unknown(why) if why.contains("'console'")),
            "{unknown:?}"
        );
    }
}
