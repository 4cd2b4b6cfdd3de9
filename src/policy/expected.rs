//! The configuration the manager sends an agent: the computer's effective settings, the rules
//! that govern its listener, and where it reaches the manager.

use super::{AgentConfig, PolicyTree, listener_rules, resolve_computer, resolve_policy};
use crate::model::{Computer, PolicyId};

/// The configuration `computer` should run, from the current policy tree.
pub fn expected_config(
    tree: &PolicyTree,
    computer: &Computer,
    endpoints: &[String],
) -> AgentConfig {
    let effective = resolve_computer(tree, computer);
    let rules = listener_rules(tree, computer.policy);
    AgentConfig::new(&effective, rules, endpoints.to_vec())
}

/// The Base Policy's configuration: what an agent that is not a computer yet (an activation)
/// is told.
pub fn base_config(tree: &PolicyTree, endpoints: &[String]) -> AgentConfig {
    let base = tree.base().map_or(PolicyId(1), |p| p.id);
    AgentConfig::new(
        &resolve_policy(tree, base),
        listener_rules(tree, base),
        endpoints.to_vec(),
    )
}
