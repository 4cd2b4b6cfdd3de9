//! Firewall rules on policies: adding and removing them, and the rules a computer inherits down
//! its policy chain (the agent is sent those that govern its listening port, and all of them
//! when its firewall is enabled).

use super::error::PolicyError;
use super::tree::PolicyTree;
use crate::model::{
    FirewallRule, IpMatch, Policy, PolicyId, Protocol, RuleError, RuleId, TrafficDirection,
};

/// Most rules one policy may hold, and most entries in one rule's port, IP or MAC list: what an
/// agent is sent must stay far below the protocol's 1 MiB frame.
pub const MAX_RULES_PER_POLICY: usize = 200;
pub const MAX_LIST_LEN: usize = 64;
const MAX_RULE_NAME_LEN: usize = 100;

/// `policy` with `rule` added under `id`.
pub fn add_rule(policy: &Policy, id: RuleId, rule: FirewallRule) -> Result<Policy, PolicyError> {
    let rule = checked(rule)?;
    if policy.rules.len() >= MAX_RULES_PER_POLICY {
        return Err(PolicyError::TooManyRules {
            policy: policy.name.clone(),
        });
    }
    let mut next = policy.clone();
    next.rules.push(FirewallRule { id, ..rule });
    Ok(next)
}

/// `policy` with its rule `id` replaced by `rule`, checked as an added one. The rule keeps its
/// id, so its counters and log lines keep their name, and its place among the policy's rules,
/// which is its place in the evaluation order among rules of its priority and action.
pub fn replace_rule(
    policy: &Policy,
    id: RuleId,
    rule: FirewallRule,
) -> Result<Policy, PolicyError> {
    let Some(index) = policy.rules.iter().position(|r| r.id == id) else {
        return Err(PolicyError::UnknownRule {
            policy: policy.name.clone(),
            rule: id,
        });
    };
    let rule = checked(rule)?;
    let mut next = policy.clone();
    next.rules[index] = FirewallRule { id, ..rule };
    Ok(next)
}

/// `rule` with its name trimmed, if every field is acceptable.
fn checked(rule: FirewallRule) -> Result<FirewallRule, PolicyError> {
    let name = rule.name.trim();
    if name.is_empty()
        || name.len() > MAX_RULE_NAME_LEN
        || crate::model::hidden_character(name).is_some()
    {
        return Err(PolicyError::InvalidRuleName(rule.name));
    }
    for (field, len) in [
        ("destination_ports", rule.destination_ports.len()),
        ("source_ips", rule.source_ips.len()),
        ("source_macs", rule.source_macs.len()),
        ("destination_ips", rule.destination_ips.len()),
    ] {
        if len > MAX_LIST_LEN {
            return Err(PolicyError::RuleListTooLong { field, len });
        }
    }
    check_expressible(&rule)?;
    Ok(FirewallRule {
        name: name.to_string(),
        ..rule
    })
}

/// Refuses the shapes of rule that could never match a packet (`schema/firewall.md`), so an
/// administrator learns it now rather than from a rule that silently does nothing.
fn check_expressible(rule: &FirewallRule) -> Result<(), RuleError> {
    let refuse = |field, given: String, expected| {
        Err(RuleError {
            field,
            given,
            expected,
        })
    };
    let joined = |items: Vec<String>| items.join(",");
    if rule.protocol == Protocol::Icmp && !rule.destination_ports.is_empty() {
        let ports = rule.destination_ports.iter().map(ToString::to_string);
        return refuse(
            "destination_ports",
            joined(ports.collect()),
            "no ports on an ICMP rule: ICMP has none",
        );
    }
    if rule.direction == TrafficDirection::Outgoing && !rule.source_macs.is_empty() {
        let macs = rule.source_macs.iter().map(ToString::to_string);
        return refuse(
            "source_macs",
            joined(macs.collect()),
            "no MACs on an outgoing rule: an outgoing packet has no source MAC yet",
        );
    }
    let v6 = |m: &IpMatch| m.to_string().contains(':');
    let (src, dst) = (&rule.source_ips, &rule.destination_ips);
    let shared =
        |want: bool| src.iter().any(|m| v6(m) == want) && dst.iter().any(|m| v6(m) == want);
    if !src.is_empty() && !dst.is_empty() && !shared(false) && !shared(true) {
        let ips = dst.iter().map(ToString::to_string);
        return refuse(
            "destination_ips",
            joined(ips.collect()),
            "addresses of the IP version of source_ips (a packet is IPv4 or IPv6)",
        );
    }
    Ok(())
}

/// `policy` without rule `id`; a rule of another policy (even an ancestor) is not found here.
pub fn remove_rule(policy: &Policy, id: RuleId) -> Result<Policy, PolicyError> {
    let mut next = policy.clone();
    let before = next.rules.len();
    next.rules.retain(|r| r.id != id);
    if next.rules.len() == before {
        return Err(PolicyError::UnknownRule {
            policy: policy.name.clone(),
            rule: id,
        });
    }
    Ok(next)
}

/// The API fields in which `after` differs from `before`, in the order the API lists them: what
/// a history line says was edited, and the field a refused edit is blamed on.
pub fn changed_fields(before: &FirewallRule, after: &FirewallRule) -> Vec<&'static str> {
    [
        ("name", before.name != after.name),
        ("action", before.action != after.action),
        ("priority", before.priority != after.priority),
        ("direction", before.direction != after.direction),
        ("frame_type", before.frame_type != after.frame_type),
        ("protocol", before.protocol != after.protocol),
        (
            "destination_ports",
            before.destination_ports != after.destination_ports,
        ),
        ("source_ips", before.source_ips != after.source_ips),
        ("source_macs", before.source_macs != after.source_macs),
        (
            "destination_ips",
            before.destination_ips != after.destination_ips,
        ),
        ("log", before.log != after.log),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect()
}

/// Every rule that applies under `policy`, from the root down (inherited first), each with the
/// policy that holds it.
pub fn effective_rules(tree: &PolicyTree, policy: PolicyId) -> Vec<(PolicyId, &FirewallRule)> {
    let mut chain = tree.chain(policy);
    chain.reverse();
    chain
        .into_iter()
        .flat_map(|p| p.rules.iter().map(move |r| (p.id, r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        FrameType, IpMatch, PortRange, Protocol, RuleAction, Settings, TrafficDirection,
    };

    fn policy(id: u64, parent: Option<u64>, rules: Vec<FirewallRule>) -> Policy {
        Policy {
            id: PolicyId(id),
            name: format!("p{id}"),
            parent: parent.map(PolicyId),
            settings: Settings::default(),
            rules,
        }
    }

    fn rule(id: u64, action: RuleAction, source: &str) -> FirewallRule {
        FirewallRule {
            id: RuleId(id),
            name: format!("rule {id}"),
            action,
            priority: 4,
            direction: TrafficDirection::Incoming,
            frame_type: FrameType::Ip,
            protocol: Protocol::Tcp,
            destination_ports: vec![PortRange::parse("4118").unwrap()],
            source_ips: vec![IpMatch::parse(source).unwrap()],
            source_macs: vec![],
            destination_ips: vec![],
            log: false,
        }
    }

    #[test]
    fn rules_are_inherited_root_first_and_only_the_port_rules_reach_the_agent() {
        let tree = PolicyTree::new([
            policy(1, None, vec![rule(1, RuleAction::Bypass, "10.0.0.0/8")]),
            policy(2, Some(1), vec![rule(2, RuleAction::Deny, "10.1.0.0/16")]),
            policy(
                3,
                Some(2),
                vec![rule(3, RuleAction::ForceAllow, "127.0.0.2")],
            ),
            policy(4, Some(1), vec![rule(4, RuleAction::Bypass, "192.0.2.1")]),
        ]);
        let ids: Vec<u64> = effective_rules(&tree, PolicyId(3))
            .iter()
            .map(|(_, r)| r.id.0)
            .collect();
        assert_eq!(ids, [1, 2, 3], "a sibling's rule is not inherited");
        let names: Vec<String> = effective_rules(&tree, PolicyId(3))
            .into_iter()
            .filter_map(|(_, r)| r.listener_rule())
            .map(|r| r.name)
            .collect();
        assert_eq!(
            names,
            ["rule 1", "rule 3"],
            "a deny rule does not govern the port"
        );
    }

    #[test]
    fn adding_checks_the_name_and_the_sizes_and_removing_needs_the_rule() {
        let base = policy(1, None, vec![]);
        let added = add_rule(&base, RuleId(9), rule(0, RuleAction::Bypass, "127.0.0.2")).unwrap();
        assert_eq!(added.rules[0].id, RuleId(9));
        let mut unnamed = rule(0, RuleAction::Bypass, "127.0.0.2");
        unnamed.name = "  ".into();
        assert!(matches!(
            add_rule(&base, RuleId(10), unnamed),
            Err(PolicyError::InvalidRuleName(_))
        ));
        let mut long = rule(0, RuleAction::Bypass, "127.0.0.2");
        long.source_ips = vec![IpMatch::parse("127.0.0.1").unwrap(); MAX_LIST_LEN + 1];
        let err = add_rule(&base, RuleId(10), long).unwrap_err();
        assert_eq!(err.field(), "source_ips");
        assert!(remove_rule(&added, RuleId(9)).unwrap().rules.is_empty());
        let mut icmp = rule(0, RuleAction::Deny, "127.0.0.2");
        icmp.protocol = Protocol::Icmp;
        assert_eq!(
            add_rule(&base, RuleId(11), icmp).unwrap_err().field(),
            "destination_ports"
        );
        let mut out = rule(0, RuleAction::Deny, "127.0.0.2");
        out.direction = TrafficDirection::Outgoing;
        out.source_macs = vec![crate::model::MacAddr([2, 0, 0, 0, 0, 1])];
        assert_eq!(
            add_rule(&base, RuleId(12), out).unwrap_err().field(),
            "source_macs"
        );
        let mut mixed = rule(0, RuleAction::Deny, "127.0.0.2");
        mixed.destination_ips = vec![IpMatch::parse("::1").unwrap()];
        assert_eq!(
            add_rule(&base, RuleId(13), mixed.clone())
                .unwrap_err()
                .field(),
            "destination_ips"
        );
        mixed
            .destination_ips
            .push(IpMatch::parse("10.0.0.1").unwrap());
        assert!(add_rule(&base, RuleId(13), mixed).is_ok());
        let err = remove_rule(&added, RuleId(8)).unwrap_err();
        assert!(matches!(err, PolicyError::UnknownRule { .. }));
    }

    #[test]
    fn an_edited_rule_keeps_its_id_and_place_and_is_checked_as_an_added_one() {
        let held = policy(
            1,
            None,
            vec![
                rule(1, RuleAction::Bypass, "10.0.0.0/8"),
                rule(2, RuleAction::Deny, "10.1.0.0/16"),
                rule(3, RuleAction::Allow, "10.2.0.0/16"),
            ],
        );
        let mut wanted = rule(0, RuleAction::ForceAllow, "192.0.2.1");
        wanted.name = "  admin host  ".into();
        let edited = replace_rule(&held, RuleId(2), wanted).unwrap();
        let ids: Vec<u64> = edited.rules.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(edited.rules[1].name, "admin host");
        assert_eq!(edited.rules[1].action, RuleAction::ForceAllow);
        assert_eq!(
            changed_fields(&held.rules[1], &edited.rules[1]),
            ["name", "action", "source_ips"]
        );
        assert!(changed_fields(&held.rules[0], &held.rules[0]).is_empty());

        let err = replace_rule(&held, RuleId(9), rule(0, RuleAction::Deny, "10.0.0.1"));
        assert!(matches!(err, Err(PolicyError::UnknownRule { .. })));
        let mut icmp = rule(0, RuleAction::Deny, "10.0.0.1");
        icmp.protocol = Protocol::Icmp;
        let err = replace_rule(&held, RuleId(2), icmp).unwrap_err();
        assert_eq!(err.field(), "destination_ports");
        let mut long = rule(0, RuleAction::Deny, "10.0.0.1");
        long.destination_ips = vec![IpMatch::parse("10.0.0.1").unwrap(); MAX_LIST_LEN + 1];
        let err = replace_rule(&held, RuleId(2), long).unwrap_err();
        assert_eq!(err.field(), "destination_ips");
        // A full policy may still edit its rules: only adding needs room.
        let full = policy(
            1,
            None,
            vec![rule(1, RuleAction::Deny, "10.0.0.1"); MAX_RULES_PER_POLICY],
        );
        assert!(replace_rule(&full, RuleId(1), rule(0, RuleAction::Allow, "10.0.0.1")).is_ok());
    }
}
