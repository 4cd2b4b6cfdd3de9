//! Firewall rules on policies: adding and removing them, and the rules a computer inherits down
//! its policy chain (the agent is sent those that govern its listening port, and all of them
//! when its firewall is enabled).

use super::error::PolicyError;
use super::tree::PolicyTree;
use crate::model::{FirewallRule, Policy, PolicyId, RuleId};

/// Most rules one policy may hold, and most entries in one rule's port, IP or MAC list: what an
/// agent is sent must stay far below the protocol's 1 MiB frame.
pub const MAX_RULES_PER_POLICY: usize = 200;
pub const MAX_LIST_LEN: usize = 64;
const MAX_RULE_NAME_LEN: usize = 100;

/// `policy` with `rule` added under `id`.
pub fn add_rule(policy: &Policy, id: RuleId, rule: FirewallRule) -> Result<Policy, PolicyError> {
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
    ] {
        if len > MAX_LIST_LEN {
            return Err(PolicyError::RuleListTooLong { field, len });
        }
    }
    if policy.rules.len() >= MAX_RULES_PER_POLICY {
        return Err(PolicyError::TooManyRules {
            policy: policy.name.clone(),
        });
    }
    let mut next = policy.clone();
    next.rules.push(FirewallRule {
        id,
        name: name.to_string(),
        ..rule
    });
    Ok(next)
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
        let err = remove_rule(&added, RuleId(8)).unwrap_err();
        assert!(matches!(err, PolicyError::UnknownRule { .. }));
    }
}
