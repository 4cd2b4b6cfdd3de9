//! Whether a computer's firewall leaves its agent a way to its manager: the TCP connection its
//! direction uses (the agent's dial to the manager's agent port and the answers, or the
//! manager's dial to the agent's port and the answers) is run through the rules in the
//! reference's order (`firewall::order`). Sans-io: the configuration and what the manager knows
//! of the addresses come in. Only a cut that holds whatever the manager cannot know (the agent's
//! own address, a MAC) is reported: the manager refuses a change on that, and a guess would
//! refuse good changes.

use super::AgentConfig;
use crate::firewall::order::{self, Entry, Fate, Origin, Packet};
use crate::model::{Direction, RuleAction, TrafficDirection};
use std::net::IpAddr;

/// Where the manager is, as far as it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manager {
    /// The agent port agents dial (`host:port` of the endpoint), its address if the host is one.
    pub endpoint: Option<(Option<IpAddr>, u16)>,
    /// The manager's own address toward the agent when it dials it, if it has.
    pub source: Option<IpAddr>,
}

/// The verdict on one configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Path {
    Open,
    /// Surely cut: `what` the packet is, `rules` the rules that drop it (names with ids).
    Cut {
        what: String,
        rules: Vec<String>,
    },
}

/// The `host:port` an agent dials, read as the manager knows it.
pub fn endpoint(text: &str) -> Option<(Option<IpAddr>, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.parse().ok(), port))
}

/// Whether `config` keeps the path its direction uses. Bidirectional counts as the agent's
/// dial: its heartbeats are what keep it online (the agent-port rule's own check is
/// `port_rule::judge_change`).
pub fn judge(config: &AgentConfig, listen_port: Option<u16>, manager: Manager) -> Path {
    if !config.firewall_enabled {
        return Path::Open;
    }
    let entries = order::entries(&config.firewall_rules, listen_port);
    let connection = match config.direction {
        Direction::AgentInitiated | Direction::Bidirectional => {
            let Some((ip, port)) = manager.endpoint else {
                return Path::Open;
            };
            let loopback = ip.is_some_and(|ip| ip.is_loopback());
            let out = Packet {
                direction: TrafficDirection::Outgoing,
                source: None,
                destination: ip,
                source_port: None,
                destination_port: Some(port),
                established: false,
                loopback,
            };
            let back = Packet {
                direction: TrafficDirection::Incoming,
                source: ip,
                destination: None,
                source_port: Some(port),
                destination_port: None,
                established: false,
                loopback,
            };
            (
                out,
                back,
                format!("outgoing TCP to the manager's agent port {port}"),
            )
        }
        Direction::ManagerInitiated => {
            let Some(port) = listen_port else {
                return Path::Open;
            };
            let loopback = manager.source.is_some_and(|ip| ip.is_loopback());
            let source = manager.source;
            let inbound = Packet {
                direction: TrafficDirection::Incoming,
                source,
                destination: None,
                source_port: None,
                destination_port: Some(port),
                established: false,
                loopback,
            };
            let back = Packet {
                direction: TrafficDirection::Outgoing,
                source: None,
                destination: source,
                source_port: Some(port),
                destination_port: None,
                established: false,
                loopback,
            };
            (
                inbound,
                back,
                format!("incoming TCP from the manager to the agent's port {port}"),
            )
        }
    };
    let (first, mut reply, what) = connection;
    let fate = order::judge(&entries, &first);
    if fate.surely_dropped {
        return cut(&entries, &fate, what, first.direction);
    }
    // Answers are established only when a stateful rule let the first packet through.
    reply.established = fate.accepted_statefully;
    let back = order::judge(&entries, &reply);
    if back.surely_dropped {
        return cut(
            &entries,
            &back,
            format!("the answers to {what}"),
            reply.direction,
        );
    }
    Path::Open
}

fn cut(entries: &[Entry], fate: &Fate, what: String, direction: TrafficDirection) -> Path {
    let named = |origin: Origin| {
        entries
            .iter()
            .find(|e| e.origin == origin)
            .map(|e| match origin {
                Origin::Rule(id) => format!("{id} '{}'", e.name),
                _ => e.name.clone(),
            })
    };
    let mut rules: Vec<String> = fate.dropped_by.iter().filter_map(|o| named(*o)).collect();
    if fate.dropped_implicitly {
        // The implicit deny is the allow rules' doing: name them.
        rules.extend(
            entries
                .iter()
                .filter(|e| e.direction == direction && e.action == RuleAction::Allow)
                .filter_map(|e| named(e.origin)),
        );
    }
    Path::Cut { what, rules }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::tests::rule;
    use crate::model::{FirewallRule, IpMatch, PortRange, Protocol};

    fn config(direction: Direction, rules: Vec<FirewallRule>) -> AgentConfig {
        use crate::model::defaults;
        AgentConfig {
            interval: defaults::INTERVAL,
            missed_before_alert: defaults::MISSED_BEFORE_ALERT,
            max_clock_change: defaults::MAX_CLOCK_CHANGE,
            offline_errors_for_inactive_vms: false,
            direction,
            manager_endpoints: vec!["192.0.2.10:4120".into()],
            listener_rules: vec![],
            firewall_enabled: true,
            firewall_rules: rules,
        }
    }

    fn manager() -> Manager {
        Manager {
            endpoint: endpoint("192.0.2.10:4120"),
            source: Some("192.0.2.10".parse().unwrap()),
        }
    }

    fn web_only() -> FirewallRule {
        let mut r = rule(7, "allow", 0, "outgoing");
        r.protocol = Protocol::Tcp;
        r.destination_ports = vec![PortRange::single(443).unwrap()];
        r
    }

    #[test]
    fn an_outgoing_allow_that_misses_the_manager_cuts_an_agent_that_dials() {
        let cut = judge(
            &config(Direction::AgentInitiated, vec![web_only()]),
            None,
            manager(),
        );
        assert_eq!(
            cut,
            Path::Cut {
                what: "outgoing TCP to the manager's agent port 4120".into(),
                rules: vec!["7 'rule 7'".into()],
            }
        );
        // The same rules with one for the manager: open.
        let mut to_manager = web_only();
        to_manager.id = crate::model::RuleId(8);
        to_manager.destination_ports = vec![PortRange::single(4120).unwrap()];
        to_manager.destination_ips = vec![IpMatch::parse("192.0.2.0/24").unwrap()];
        let rules = vec![web_only(), to_manager];
        let open = config(Direction::AgentInitiated, rules);
        assert_eq!(judge(&open, None, manager()), Path::Open);
        // Off, the rules are not enforced; on loopback, never filtered.
        let off = AgentConfig {
            firewall_enabled: false,
            ..config(Direction::AgentInitiated, vec![web_only()])
        };
        assert_eq!(judge(&off, None, manager()), Path::Open);
        let local = Manager {
            endpoint: endpoint("127.0.0.1:4120"),
            source: None,
        };
        let cut_elsewhere = config(Direction::AgentInitiated, vec![web_only()]);
        assert_eq!(judge(&cut_elsewhere, None, local), Path::Open);
    }

    #[test]
    fn a_deny_of_the_managers_answers_cuts_and_an_unknown_address_does_not() {
        let mut deny = rule(3, "deny", 2, "incoming");
        deny.protocol = Protocol::Tcp;
        deny.source_ips = vec![IpMatch::parse("192.0.2.0/24").unwrap()];
        let cut = judge(
            &config(Direction::Bidirectional, vec![deny.clone()]),
            Some(4118),
            manager(),
        );
        assert!(
            matches!(&cut, Path::Cut { what, rules } if what.starts_with("the answers") && rules == &["3 'rule 3'"]),
            "{cut:?}"
        );
        // By host name the manager cannot tell whether the rule covers it: not refused.
        let by_name = Manager {
            endpoint: endpoint("manager.example:4120"),
            source: None,
        };
        let unknown = config(Direction::Bidirectional, vec![deny]);
        assert_eq!(judge(&unknown, Some(4118), by_name), Path::Open);
    }

    #[test]
    fn a_manager_initiated_agent_needs_its_port_and_the_hidden_rule_keeps_it() {
        let deny_all = rule(4, "deny", 3, "incoming");
        let kept = config(Direction::ManagerInitiated, vec![deny_all.clone()]);
        assert_eq!(
            judge(&kept, Some(4118), manager()),
            Path::Open,
            "the hidden bypass is first"
        );
        // A replacement rule that admits only another host leaves the manager to the deny.
        let mut admin = rule(5, "force-allow", 4, "incoming");
        admin.protocol = Protocol::Tcp;
        admin.destination_ports = vec![PortRange::single(4118).unwrap()];
        admin.source_ips = vec![IpMatch::parse("10.9.9.9").unwrap()];
        let locked = config(Direction::ManagerInitiated, vec![admin, deny_all]);
        assert!(matches!(
            judge(&locked, Some(4118), manager()),
            Path::Cut { rules, .. } if rules == ["4 'rule 4'"]
        ));
        assert_eq!(
            endpoint("[::1]:4120"),
            Some((Some("::1".parse().unwrap()), 4120))
        );
        assert_eq!(endpoint("nope"), None);
    }
}
