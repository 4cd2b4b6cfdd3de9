//! The configuration fingerprint: a hash of the canonical encoding of everything an agent is
//! sent, so "up to date" is one comparison and equal configurations give equal fingerprints.

use super::resolve::EffectiveSettings;
use crate::model::{ClockChangeLimit, Direction, FirewallRule, ListenerRule, MissedLimit};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Everything an agent is sent. Only values, never their sources: moving an override from a
/// computer to its policy does not change what the agent runs, so it must not change the hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub interval: Duration,
    pub missed_before_alert: MissedLimit,
    pub max_clock_change: ClockChangeLimit,
    pub offline_errors_for_inactive_vms: bool,
    pub direction: Direction,
    /// Where the agent reaches the manager, `host:port`, in the order to try them.
    pub manager_endpoints: Vec<String>,
    /// The inherited rules that may restrict who connects to the agent's listening port; none:
    /// anyone may (the reference's hidden priority-4 bypass rule).
    pub listener_rules: Vec<ListenerRule>,
    /// `firewall.enabled`: the agent enforces `firewall_rules` with nftables.
    pub firewall_enabled: bool,
    /// Every rule the computer inherits, root first, when the firewall is enabled; empty when it
    /// is not, so an agent is sent (and its fingerprint covers) only rules it enforces.
    pub firewall_rules: Vec<FirewallRule>,
}

/// SHA-256 of the canonical encoding of an [`AgentConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl AgentConfig {
    /// `rules` are every rule the computer inherits; its listener rules are taken from them,
    /// and the whole list is kept only when the firewall is enabled.
    pub fn new(
        effective: &EffectiveSettings,
        rules: Vec<FirewallRule>,
        manager_endpoints: Vec<String>,
    ) -> Self {
        let listener_rules = rules
            .iter()
            .filter_map(FirewallRule::listener_rule)
            .collect();
        let firewall_enabled = effective.firewall_enabled.value;
        AgentConfig {
            interval: effective.interval.value,
            missed_before_alert: effective.missed_before_alert.value,
            max_clock_change: effective.max_clock_change.value,
            offline_errors_for_inactive_vms: effective.offline_errors_for_inactive_vms.value,
            direction: effective.direction.value,
            manager_endpoints,
            listener_rules,
            firewall_enabled,
            firewall_rules: if firewall_enabled { rules } else { Vec::new() },
        }
    }

    /// Postcard's encoding is canonical for a given struct (fixed field order, no maps), so it
    /// serves as the hashed form. A domain tag keeps it apart from any other hash we take.
    pub fn fingerprint(&self) -> Fingerprint {
        // v2: the configuration gained the firewall (protocol 2).
        let mut bytes = b"picket-agent-config-v2\0".to_vec();
        // Encoding into a Vec only fails on allocation failure, which aborts anyway; an empty
        // encoding would still hash deterministically.
        bytes.extend(postcard::to_allocvec(self).unwrap_or_default());
        Fingerprint(crate::secret::sha256(&bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::secret::hex(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{Computer, Policy, PolicyId, Settings, Status};
    use crate::model::{Setting, SettingValue};
    use crate::policy::{PolicyTree, resolve_computer};

    fn tree(base: Settings) -> PolicyTree {
        PolicyTree::new([Policy {
            rules: Vec::new(),
            id: PolicyId(1),
            name: "Base Policy".into(),
            parent: None,
            settings: base,
        }])
    }

    fn computer(settings: Settings) -> Computer {
        Computer {
            settings,
            status: Status::ActivationRequired,
            ..Computer::test(1, "web1")
        }
    }

    fn fingerprint(base: Settings, own: Settings) -> Fingerprint {
        let effective = resolve_computer(&tree(base), &computer(own));
        AgentConfig::new(&effective, vec![], vec!["manager:4120".into()]).fingerprint()
    }

    #[test]
    fn same_values_from_different_sources_give_the_same_fingerprint() {
        let mut five_minutes = Settings::default();
        five_minutes.set(SettingValue::Interval(Duration::from_secs(300)));
        assert_eq!(
            fingerprint(five_minutes, Settings::default()),
            fingerprint(Settings::default(), five_minutes)
        );
    }

    #[test]
    fn any_changed_value_changes_the_fingerprint() {
        let plain = fingerprint(Settings::default(), Settings::default());
        let other = Settings {
            direction: Setting::Set(Direction::AgentInitiated),
            ..Default::default()
        };
        assert_ne!(plain, fingerprint(Settings::default(), other));

        let effective =
            resolve_computer(&tree(Settings::default()), &computer(Settings::default()));
        let moved = AgentConfig::new(&effective, vec![], vec!["other:4120".into()]).fingerprint();
        assert_ne!(plain, moved);
        assert_eq!(plain.to_string().len(), 64);
    }

    fn ssh(log: bool) -> crate::model::FirewallRule {
        use crate::model::{FrameType, PortRange, Protocol, RuleAction, RuleId, TrafficDirection};
        crate::model::FirewallRule {
            id: RuleId(1),
            name: "ssh".into(),
            action: RuleAction::Allow,
            priority: 0,
            direction: TrafficDirection::Incoming,
            frame_type: FrameType::Ip,
            protocol: Protocol::Tcp,
            destination_ports: vec![PortRange::single(22).unwrap()],
            source_ips: vec![],
            source_macs: vec![],
            destination_ips: vec![],
            log,
        }
    }

    fn firewall(enabled: bool, log: bool) -> AgentConfig {
        let own = Settings {
            firewall_enabled: Setting::Set(enabled),
            ..Settings::default()
        };
        let effective = resolve_computer(&tree(Settings::default()), &computer(own));
        AgentConfig::new(&effective, vec![ssh(log)], vec!["manager:4120".into()])
    }

    #[test]
    fn the_firewall_switch_and_a_rules_log_flag_change_the_fingerprint() {
        let on = firewall(true, false);
        assert_eq!(on.firewall_rules, vec![ssh(false)]);
        assert_ne!(on.fingerprint(), firewall(false, false).fingerprint());
        assert_ne!(on.fingerprint(), firewall(true, true).fingerprint());
    }

    #[test]
    fn with_the_firewall_off_its_rules_are_not_sent() {
        let off = firewall(false, false);
        assert!(!off.firewall_enabled && off.firewall_rules.is_empty());
        // What the agent is sent does not move, so neither does its fingerprint.
        assert_eq!(off.fingerprint(), firewall(false, true).fingerprint());
    }
}
