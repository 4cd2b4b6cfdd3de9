//! The configuration the manager sends an agent: the computer's effective settings, the rules
//! that govern its listener, its firewall rules when the firewall is on, and where it reaches
//! the manager; and whether an agent runs it.

use super::{
    AgentConfig, EffectiveSettings, PolicyTree, effective_rules, resolve_computer, resolve_policy,
};
use crate::model::FirewallRule;
use crate::model::{AgentState, Computer, PolicyId};

/// The configuration `computer` should run, from the current policy tree.
pub fn expected_config(
    tree: &PolicyTree,
    computer: &Computer,
    endpoints: &[String],
) -> AgentConfig {
    expected_with_settings(tree, computer, endpoints).0
}

/// [`expected_config`] and the settings it was made from, resolved once: a heartbeat needs both
/// (`agent.auto-upgrade` is not sent to the agent).
pub fn expected_with_settings(
    tree: &PolicyTree,
    computer: &Computer,
    endpoints: &[String],
) -> (AgentConfig, EffectiveSettings) {
    let effective = resolve_computer(tree, computer);
    let config = AgentConfig::new(&effective, rules(tree, computer.policy), endpoints.to_vec());
    (config, effective)
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

/// Whether `agent` runs `expected`, by what it last reported: "up to date" outside a session (the
/// dialer, the API). Its fingerprint is compared in the form its protocol computes, or a
/// protocol-1 agent would look stale forever and be pushed to at every change.
pub fn runs(expected: &AgentConfig, agent: &AgentState) -> bool {
    agent.applied_fingerprint == Some(expected.fingerprint_for(agent.protocol).0)
}

fn rules(tree: &PolicyTree, policy: PolicyId) -> Vec<FirewallRule> {
    effective_rules(tree, policy)
        .into_iter()
        .map(|(_, rule)| rule.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Policy, Settings};

    fn expected() -> AgentConfig {
        let tree = PolicyTree::new([Policy {
            rules: Vec::new(),
            id: PolicyId(1),
            name: "Base Policy".into(),
            parent: None,
            settings: Settings::default(),
        }]);
        expected_config(&tree, &Computer::test(1, "web1"), &["manager:4120".into()])
    }

    fn agent(protocol: u16, applied: crate::policy::Fingerprint) -> AgentState {
        AgentState {
            protocol,
            applied_fingerprint: Some(applied.0),
            ..AgentState::default()
        }
    }

    #[test]
    fn an_agent_is_up_to_date_by_the_fingerprint_its_protocol_computes() {
        let config = expected();
        let (v1, v2) = (config.fingerprint_for(1), config.fingerprint());
        assert!(
            runs(&config, &agent(1, v1)),
            "a protocol-1 agent reports the v1 form"
        );
        assert!(!runs(&config, &agent(1, v2)));
        assert!(runs(&config, &agent(2, v2)));
        assert!(!runs(&config, &agent(2, v1)));
        assert!(
            runs(&config, &agent(0, v2)),
            "not recorded: the current protocol"
        );
        assert!(
            !runs(&config, &AgentState::default()),
            "nothing applied yet"
        );
    }
}
