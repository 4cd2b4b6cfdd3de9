//! The configuration fingerprint: a hash of the canonical encoding of everything an agent is
//! sent, so "up to date" is one comparison and equal configurations give equal fingerprints.

use super::resolve::EffectiveSettings;
use crate::model::{ClockChangeLimit, Direction, ListenerRule, MissedLimit};
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
}

/// SHA-256 of the canonical encoding of an [`AgentConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl AgentConfig {
    pub fn new(
        effective: &EffectiveSettings,
        listener_rules: Vec<ListenerRule>,
        manager_endpoints: Vec<String>,
    ) -> Self {
        AgentConfig {
            interval: effective.interval.value,
            missed_before_alert: effective.missed_before_alert.value,
            max_clock_change: effective.max_clock_change.value,
            offline_errors_for_inactive_vms: effective.offline_errors_for_inactive_vms.value,
            direction: effective.direction.value,
            manager_endpoints,
            listener_rules,
        }
    }

    /// Postcard's encoding is canonical for a given struct (fixed field order, no maps), so it
    /// serves as the hashed form. A domain tag keeps it apart from any other hash we take.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut bytes = b"picket-agent-config-v1\0".to_vec();
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
}
