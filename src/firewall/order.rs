//! The reference's firewall semantics as data: a computer's rules (plus the hidden agent-port
//! rule) in the order they are evaluated, and what that order decides for one packet. The nft
//! translation follows this order; the manager's safety check asks it whether the agent keeps a
//! path to its manager.

use crate::model::{
    FirewallRule, FrameType, IpMatch, MAX_PRIORITY, MacAddr, PortRange, Protocol, RuleAction,
    RuleId, TrafficDirection,
};
use std::fmt;
use std::net::IpAddr;

/// Where an entry of the ruleset comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Rule(RuleId),
    /// The reference's hidden priority-4 bypass rule: incoming TCP to the agent's port.
    AgentPort,
    /// Its other half: a bypass keeps no state, so the agent's answers from its port need a
    /// rule of their own ("bypassing one direction usually needs a matching rule for the other").
    AgentPortReply,
}

impl Origin {
    /// The name shared by the entry's nft counter and its log prefix (`rule-42`).
    pub fn name(self) -> String {
        match self {
            Origin::Rule(id) => format!("rule-{id}"),
            Origin::AgentPort => "agent-port".into(),
            Origin::AgentPortReply => "agent-port-reply".into(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One rule as evaluated: a user's rule, or a hidden one the manager adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub origin: Origin,
    /// The user's name for it; the hidden rules have theirs.
    pub name: String,
    pub action: RuleAction,
    pub priority: u8,
    pub direction: TrafficDirection,
    pub frame_type: FrameType,
    pub protocol: Protocol,
    /// Only the hidden reply rule has source ports; user rules match any.
    pub source_ports: Vec<PortRange>,
    pub destination_ports: Vec<PortRange>,
    pub source_ips: Vec<IpMatch>,
    pub destination_ips: Vec<IpMatch>,
    pub source_macs: Vec<MacAddr>,
    pub log: bool,
}

impl Entry {
    fn from_rule(rule: &FirewallRule) -> Entry {
        Entry {
            origin: Origin::Rule(rule.id),
            name: rule.name.clone(),
            action: rule.action,
            priority: rule.priority,
            direction: rule.direction,
            frame_type: rule.frame_type,
            protocol: rule.protocol,
            source_ports: Vec::new(),
            destination_ports: rule.destination_ports.clone(),
            source_ips: rule.source_ips.clone(),
            destination_ips: rule.destination_ips.clone(),
            source_macs: rule.source_macs.clone(),
            log: rule.log,
        }
    }

    fn hidden(origin: Origin, direction: TrafficDirection, port: PortRange) -> Entry {
        let (source_ports, destination_ports) = match direction {
            TrafficDirection::Incoming => (Vec::new(), vec![port]),
            TrafficDirection::Outgoing => (vec![port], Vec::new()),
        };
        Entry {
            origin,
            name: match origin {
                Origin::AgentPortReply => "the agent port's answers (hidden)".into(),
                _ => "the agent port (hidden)".into(),
            },
            action: RuleAction::Bypass,
            priority: MAX_PRIORITY,
            direction,
            frame_type: FrameType::Ip,
            protocol: Protocol::Tcp,
            source_ports,
            destination_ports,
            source_ips: Vec::new(),
            destination_ips: Vec::new(),
            source_macs: Vec::new(),
            log: false,
        }
    }

    /// Whether the action ends the evaluation of a packet it matches.
    pub fn decides(&self) -> bool {
        self.action != RuleAction::LogOnly
    }

    /// Whether a packet it decides goes through.
    pub fn accepts(&self) -> bool {
        self.action != RuleAction::Deny
    }
}

/// Within one priority, the reference's order of actions: bypass, log only, force allow, deny,
/// allow.
pub fn precedence(action: RuleAction) -> u8 {
    match action {
        RuleAction::Bypass => 0,
        RuleAction::LogOnly => 1,
        RuleAction::ForceAllow => 2,
        RuleAction::Deny => 3,
        RuleAction::Allow => 4,
    }
}

/// Every entry in evaluation order: priority 4 first, then by [`precedence`]; rules with the
/// same priority and action keep their inherited order (root policy first). With `agent_port`,
/// the hidden rule opens it first unless a user rule replaces it (force-allow or bypass,
/// priority 4, incoming, IP, TCP, its ports covering the agent's), and the hidden reply rule
/// lets the answers out.
pub fn entries(rules: &[FirewallRule], agent_port: Option<u16>) -> Vec<Entry> {
    let mut all = Vec::with_capacity(rules.len() + 2);
    if let Some((number, port)) = agent_port.and_then(|p| Some((p, PortRange::single(p)?))) {
        let replaced = rules
            .iter()
            .filter_map(FirewallRule::listener_rule)
            .any(|r| r.covers_port(number));
        if !replaced {
            all.push(Entry::hidden(
                Origin::AgentPort,
                TrafficDirection::Incoming,
                port,
            ));
        }
        all.push(Entry::hidden(
            Origin::AgentPortReply,
            TrafficDirection::Outgoing,
            port,
        ));
    }
    all.extend(rules.iter().map(Entry::from_rule));
    // Stable: equal keys keep the hidden rules first and the rules in inherited order.
    all.sort_by_key(|e| (std::cmp::Reverse(e.priority), precedence(e.action)));
    all
}

/// Whether an allow rule governs `direction`: then what no rule accepts there is dropped (the
/// reference's "Out of Allowed Policy"). Allow rules nftables cannot match still count: an
/// allow rule that matches nothing still implies the deny.
pub fn implicit_deny(entries: &[Entry], direction: TrafficDirection) -> bool {
    entries
        .iter()
        .any(|e| e.direction == direction && e.action == RuleAction::Allow)
}

/// A TCP packet between the agent and its manager, as far as the manager knows it: `None` is a
/// value it cannot know (the agent's own address, an ephemeral port, a MAC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub direction: TrafficDirection,
    pub source: Option<IpAddr>,
    pub destination: Option<IpAddr>,
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
    /// Part of a connection conntrack already tracks (an answer to an accepted, tracked packet).
    pub established: bool,
    /// Over the loopback interface (the manager on the same host).
    pub loopback: bool,
}

/// Whether an entry matches a packet whose unknown fields could be anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    Yes,
    No,
    Maybe,
}

/// How a packet fares: the possible outcomes over every value of what the manager cannot know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fate {
    /// Some case accepts it, and how: by a stateful action (its answers are then established).
    pub accepted_statefully: bool,
    pub accepted_by_bypass: bool,
    /// The entries that may drop it (a deny rule), in order, and whether the implicit deny may.
    pub dropped_by: Vec<Origin>,
    pub dropped_implicitly: bool,
    /// Every case drops it.
    pub surely_dropped: bool,
}

/// What the ruleset decides for `packet`: loopback and established traffic first (as the
/// translation does), then each entry, then the implicit deny of the packet's direction.
pub fn judge(entries: &[Entry], packet: &Packet) -> Fate {
    let mut fate = Fate {
        accepted_statefully: false,
        accepted_by_bypass: false,
        dropped_by: Vec::new(),
        dropped_implicitly: false,
        surely_dropped: false,
    };
    if packet.loopback {
        fate.accepted_statefully = true;
        return fate;
    }
    for entry in entries.iter().filter(|e| e.direction == packet.direction) {
        let matched = matches(entry, packet);
        if matched == Match::No || !entry.decides() {
            continue;
        }
        if !entry.accepts() {
            fate.dropped_by.push(entry.origin);
        } else if entry.action == RuleAction::Bypass {
            fate.accepted_by_bypass = true;
        } else {
            fate.accepted_statefully = true;
        }
        if matched == Match::Yes {
            fate.surely_dropped =
                !entry.accepts() && !fate.accepted_statefully && !fate.accepted_by_bypass;
            return fate;
        }
    }
    if packet.established || !implicit_deny(entries, packet.direction) {
        fate.accepted_statefully = true;
    } else {
        fate.dropped_implicitly = true;
        fate.surely_dropped = !fate.accepted_statefully && !fate.accepted_by_bypass;
    }
    fate
}

fn matches(entry: &Entry, packet: &Packet) -> Match {
    // Every packet here is IP and TCP: an ARP rule never matches, nor does a UDP or ICMP one.
    if entry.frame_type == FrameType::Arp
        || !matches!(entry.protocol, Protocol::Tcp | Protocol::Any)
    {
        return Match::No;
    }
    // An unknown port is an ephemeral one, which is never the agent's listening port: the
    // hidden rules, which name only that port, do not match it.
    let hidden = !matches!(entry.origin, Origin::Rule(_));
    let ports = |list: &[PortRange], port: Option<u16>| match port {
        _ if list.is_empty() => Match::Yes,
        Some(p) if list.iter().any(|r| r.contains(p)) => Match::Yes,
        Some(_) => Match::No,
        None if hidden => Match::No,
        None => Match::Maybe,
    };
    let ips = |list: &[IpMatch], ip: Option<IpAddr>| match ip {
        _ if list.is_empty() => Match::Yes,
        Some(ip) if list.iter().any(|m| m.contains(ip)) => Match::Yes,
        Some(_) => Match::No,
        None => Match::Maybe,
    };
    // The manager never knows the MAC the agent sees, and outgoing packets have none yet.
    let macs = if entry.source_macs.is_empty() {
        Match::Yes
    } else if packet.direction == TrafficDirection::Outgoing {
        Match::No
    } else {
        Match::Maybe
    };
    [
        ports(&entry.source_ports, packet.source_port),
        ports(&entry.destination_ports, packet.destination_port),
        ips(&entry.source_ips, packet.source),
        ips(&entry.destination_ips, packet.destination),
        macs,
    ]
    .into_iter()
    .fold(Match::Yes, |all, one| match (all, one) {
        (Match::No, _) | (_, Match::No) => Match::No,
        (Match::Maybe, _) | (_, Match::Maybe) => Match::Maybe,
        _ => Match::Yes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::tests::rule;

    #[test]
    fn priority_first_then_the_references_action_order_then_inheritance() {
        let rules = [
            rule(1, "allow", 0, "incoming"),
            rule(2, "deny", 0, "incoming"),
            rule(3, "allow", 4, "incoming"),
            rule(4, "log-only", 0, "incoming"),
            rule(5, "force-allow", 0, "incoming"),
            rule(6, "bypass", 0, "incoming"),
            rule(7, "deny", 0, "incoming"),
        ];
        let order: Vec<Origin> = entries(&rules, None).iter().map(|e| e.origin).collect();
        let ids =
            |ids: &[u64]| -> Vec<Origin> { ids.iter().map(|i| Origin::Rule(RuleId(*i))).collect() };
        assert_eq!(order, ids(&[3, 6, 4, 5, 2, 7, 1]));
    }

    #[test]
    fn the_hidden_rule_opens_the_agent_port_first_unless_a_rule_replaces_it() {
        let plain = entries(&[rule(1, "deny", 4, "incoming")], Some(4118));
        assert_eq!(plain[0].origin, Origin::AgentPort);
        assert!(plain.iter().any(|e| e.origin == Origin::AgentPortReply));
        let mut admin = rule(2, "force-allow", 4, "incoming");
        admin.protocol = Protocol::Tcp;
        admin.destination_ports = vec![PortRange::parse("4000-4200").unwrap()];
        let replaced = entries(std::slice::from_ref(&admin), Some(4118));
        assert!(!replaced.iter().any(|e| e.origin == Origin::AgentPort));
        assert!(replaced.iter().any(|e| e.origin == Origin::AgentPortReply));
        // Another port: the hidden rule stays.
        admin.destination_ports = vec![PortRange::single(22).unwrap()];
        assert_eq!(entries(&[admin], Some(4118))[0].origin, Origin::AgentPort);
        assert!(entries(&[], None).is_empty());
    }

    fn to_manager(established: bool) -> Packet {
        Packet {
            direction: TrafficDirection::Outgoing,
            source: None,
            destination: Some("192.0.2.10".parse().unwrap()),
            source_port: None,
            destination_port: Some(4120),
            established,
            loopback: false,
        }
    }

    #[test]
    fn an_allow_rule_denies_the_rest_of_its_direction_but_not_established_traffic() {
        let web = {
            let mut r = rule(1, "allow", 0, "outgoing");
            r.destination_ports = vec![PortRange::single(443).unwrap()];
            r
        };
        let all = entries(&[web], None);
        let fate = judge(&all, &to_manager(false));
        assert!(fate.surely_dropped && fate.dropped_implicitly);
        assert!(!judge(&all, &to_manager(true)).surely_dropped);
        let loopback = Packet {
            loopback: true,
            ..to_manager(false)
        };
        assert!(!judge(&all, &loopback).surely_dropped);
    }

    #[test]
    fn an_unknown_field_makes_a_deny_possible_not_sure() {
        let mut deny = rule(1, "deny", 1, "outgoing");
        deny.source_ips = vec![IpMatch::parse("10.0.0.0/8").unwrap()];
        let fate = judge(&entries(&[deny.clone()], None), &to_manager(false));
        assert!(!fate.surely_dropped && fate.dropped_by == [Origin::Rule(RuleId(1))]);
        deny.source_ips.clear();
        assert!(judge(&entries(&[deny], None), &to_manager(false)).surely_dropped);
    }
}
