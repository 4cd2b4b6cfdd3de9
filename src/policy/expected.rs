//! The configuration the manager sends an agent: the computer's effective settings, the rules
//! that govern its listener, its firewall rules when the firewall is on, and where it reaches
//! the manager.

use super::{AgentConfig, PolicyTree, effective_rules, resolve_computer, resolve_policy};
use crate::model::FirewallRule;
use crate::model::{Computer, PolicyId};

/// The configuration `computer` should run, from the current policy tree.
pub fn expected_config(
    tree: &PolicyTree,
    computer: &Computer,
    endpoints: &[String],
) -> AgentConfig {
    let effective = resolve_computer(tree, computer);
    AgentConfig::new(&effective, rules(tree, computer.policy), endpoints.to_vec())
}

/// The Base Policy's configuration: what an agent that is not a computer yet (an activation)
/// is told.
pub fn base_config(tree: &PolicyTree, endpoints: &[String]) -> AgentConfig {
    let base = tree.base().map_or(PolicyId(1), |p| p.id);
    AgentConfig::new(
        &resolve_policy(tree, base),
        rules(tree, base),
        endpoints.to_vec(),
    )
}

fn rules(tree: &PolicyTree, policy: PolicyId) -> Vec<FirewallRule> {
    effective_rules(tree, policy)
        .into_iter()
        .map(|(_, rule)| rule.clone())
        .collect()
}
