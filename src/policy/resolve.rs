//! Inheritance: computer override, else the nearest policy up the chain that sets the key, else
//! the built-in default; each effective value says where it came from.

use super::tree::PolicyTree;
use crate::model::{
    ClockChangeLimit, Computer, ComputerKind, Direction, MissedLimit, PolicyId, Setting,
    SettingKey, SettingValue, Settings, defaults,
};
use std::time::Duration;

/// Where an effective value was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// On the computer itself.
    Computer,
    /// Forced by the computer's kind: an appliance is always bidirectional.
    ApplianceKind,
    Policy(PolicyId),
    Default,
}

/// One resolved value and its origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effective<T> {
    pub value: T,
    pub source: Source,
}

/// Every setting, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveSettings {
    pub interval: Effective<Duration>,
    pub missed_before_alert: Effective<MissedLimit>,
    pub max_clock_change: Effective<ClockChangeLimit>,
    pub offline_errors_for_inactive_vms: Effective<bool>,
    pub direction: Effective<Direction>,
    pub firewall_enabled: Effective<bool>,
    /// The manager offers its newer agent binary to the computer's agent.
    pub agent_auto_upgrade: Effective<bool>,
    /// For an appliance whose inheritance says another direction: what was inherited, shown as
    /// overridden so the administrator sees why the policy's value does not apply.
    pub overridden_direction: Option<Effective<Direction>>,
}

impl EffectiveSettings {
    /// The value and source of one key, for views that list every setting.
    pub fn get(&self, key: SettingKey) -> (SettingValue, Source) {
        match key {
            SettingKey::Interval => (
                SettingValue::Interval(self.interval.value),
                self.interval.source,
            ),
            SettingKey::MissedBeforeAlert => (
                SettingValue::MissedBeforeAlert(self.missed_before_alert.value),
                self.missed_before_alert.source,
            ),
            SettingKey::MaxClockChange => (
                SettingValue::MaxClockChange(self.max_clock_change.value),
                self.max_clock_change.source,
            ),
            SettingKey::OfflineErrorsForInactiveVms => (
                SettingValue::OfflineErrorsForInactiveVms(
                    self.offline_errors_for_inactive_vms.value,
                ),
                self.offline_errors_for_inactive_vms.source,
            ),
            SettingKey::Direction => (
                SettingValue::Direction(self.direction.value),
                self.direction.source,
            ),
            SettingKey::FirewallEnabled => (
                SettingValue::FirewallEnabled(self.firewall_enabled.value),
                self.firewall_enabled.source,
            ),
            SettingKey::AgentAutoUpgrade => (
                SettingValue::AgentAutoUpgrade(self.agent_auto_upgrade.value),
                self.agent_auto_upgrade.source,
            ),
        }
    }
}

/// The settings a policy hands down to its computers.
pub fn resolve_policy(tree: &PolicyTree, id: PolicyId) -> EffectiveSettings {
    resolve(None, tree, id)
}

/// The settings a computer runs with.
pub fn resolve_computer(tree: &PolicyTree, computer: &Computer) -> EffectiveSettings {
    let mut effective = resolve(Some(&computer.settings), tree, computer.policy);
    if computer.kind == ComputerKind::Appliance {
        // The reference: an appliance only works bidirectionally, whatever its policy says.
        let inherited = effective.direction;
        effective.direction = Effective {
            value: Direction::Bidirectional,
            source: Source::ApplianceKind,
        };
        effective.overridden_direction =
            (inherited.value != Direction::Bidirectional).then_some(inherited);
    }
    effective
}

fn resolve(own: Option<&Settings>, tree: &PolicyTree, policy: PolicyId) -> EffectiveSettings {
    let chain: Vec<(Source, &Settings)> = own
        .map(|s| (Source::Computer, s))
        .into_iter()
        .chain(
            tree.chain(policy)
                .into_iter()
                .map(|p| (Source::Policy(p.id), &p.settings)),
        )
        .collect();
    EffectiveSettings {
        interval: pick(&chain, |s| s.interval, defaults::INTERVAL),
        missed_before_alert: pick(
            &chain,
            |s| s.missed_before_alert,
            defaults::MISSED_BEFORE_ALERT,
        ),
        max_clock_change: pick(&chain, |s| s.max_clock_change, defaults::MAX_CLOCK_CHANGE),
        offline_errors_for_inactive_vms: pick(
            &chain,
            |s| s.offline_errors_for_inactive_vms,
            defaults::OFFLINE_ERRORS_FOR_INACTIVE_VMS,
        ),
        direction: pick(&chain, |s| s.direction, defaults::DIRECTION),
        firewall_enabled: pick(&chain, |s| s.firewall_enabled, defaults::FIREWALL_ENABLED),
        agent_auto_upgrade: pick(
            &chain,
            |s| s.agent_auto_upgrade,
            defaults::AGENT_AUTO_UPGRADE,
        ),
        overridden_direction: None,
    }
}

/// The first value set along the chain, else the built-in default.
fn pick<T: Copy>(
    chain: &[(Source, &Settings)],
    field: impl Fn(&Settings) -> Setting<T>,
    default: T,
) -> Effective<T> {
    chain
        .iter()
        .find_map(|(source, settings)| match field(settings) {
            Setting::Set(value) => Some(Effective {
                value,
                source: *source,
            }),
            Setting::Inherited => None,
        })
        .unwrap_or(Effective {
            value: default,
            source: Source::Default,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{Policy, Status};
    use proptest::prelude::*;

    #[test]
    fn defaults_match_the_settings_table() {
        let tree = PolicyTree::new([Policy {
            rules: Vec::new(),
            id: PolicyId(1),
            name: "Base Policy".into(),
            parent: None,
            settings: Settings::default(),
        }]);
        let effective = resolve_policy(&tree, PolicyId(1));
        for key in SettingKey::ALL {
            assert_eq!(effective.get(key), (key.default_value(), Source::Default));
        }
    }

    #[test]
    fn appliance_is_bidirectional_whatever_its_policy_says() {
        let mut settings = Settings::default();
        settings.set(SettingValue::Direction(Direction::AgentInitiated));
        let tree = PolicyTree::new([Policy {
            rules: Vec::new(),
            id: PolicyId(1),
            name: "Base Policy".into(),
            parent: None,
            settings,
        }]);
        let mut computer = Computer {
            kind: ComputerKind::Appliance,
            status: Status::ActivationRequired,
            ..Computer::test(1, "fw1")
        };
        let appliance = resolve_computer(&tree, &computer);
        assert_eq!(appliance.direction.value, Direction::Bidirectional);
        assert_eq!(appliance.direction.source, Source::ApplianceKind);
        assert_eq!(
            appliance.overridden_direction,
            Some(Effective {
                value: Direction::AgentInitiated,
                source: Source::Policy(PolicyId(1))
            }),
            "the inherited value is kept to show as overridden"
        );
        computer.kind = ComputerKind::Server;
        assert_eq!(
            resolve_computer(&tree, &computer).direction,
            Effective {
                value: Direction::AgentInitiated,
                source: Source::Policy(PolicyId(1))
            }
        );
    }

    #[test]
    fn agent_auto_upgrade_is_inherited_and_overridden_per_computer() {
        let policy = |id: u64, parent: Option<u64>, upgrade: Option<bool>| {
            let mut settings = Settings::default();
            if let Some(v) = upgrade {
                settings.set(SettingValue::AgentAutoUpgrade(v));
            }
            Policy {
                rules: Vec::new(),
                id: PolicyId(id),
                name: format!("p{id}"),
                parent: parent.map(PolicyId),
                settings,
            }
        };
        // The root turns it on, the child says nothing, the grandchild turns it off again.
        let tree = PolicyTree::new([
            policy(1, None, Some(true)),
            policy(2, Some(1), None),
            policy(3, Some(2), Some(false)),
        ]);
        let upgrade =
            |e: EffectiveSettings| (e.agent_auto_upgrade.value, e.agent_auto_upgrade.source);
        assert_eq!(
            upgrade(resolve_policy(&tree, PolicyId(2))),
            (true, Source::Policy(PolicyId(1)))
        );
        assert_eq!(
            upgrade(resolve_policy(&tree, PolicyId(3))),
            (false, Source::Policy(PolicyId(3)))
        );
        let mut computer = Computer {
            policy: PolicyId(2),
            status: Status::ActivationRequired,
            ..Computer::test(1, "h")
        };
        assert_eq!(
            upgrade(resolve_computer(&tree, &computer)),
            (true, Source::Policy(PolicyId(1)))
        );
        computer.settings.set(SettingValue::AgentAutoUpgrade(false));
        assert_eq!(
            upgrade(resolve_computer(&tree, &computer)),
            (false, Source::Computer)
        );
        computer.policy = PolicyId(3);
        computer.settings.set(SettingValue::AgentAutoUpgrade(true));
        assert_eq!(
            upgrade(resolve_computer(&tree, &computer)),
            (true, Source::Computer)
        );
        // Nothing sets it: off, by default, so a site changes nothing until it opts in.
        let bare = PolicyTree::new([policy(1, None, None)]);
        assert_eq!(
            upgrade(resolve_policy(&bare, PolicyId(1))),
            (false, Source::Default)
        );
        // The firewall is not dragged along.
        assert_eq!(
            resolve_policy(&tree, PolicyId(2)).firewall_enabled.source,
            Source::Default
        );
    }

    /// The obvious recursive definition the resolver must agree with.
    fn naive(
        policies: &[Policy],
        own: &Settings,
        policy: usize,
        key: SettingKey,
    ) -> (SettingValue, Source) {
        if let Some(v) = own.get(key) {
            return (v, Source::Computer);
        }
        let p = &policies[policy];
        if let Some(v) = p.settings.get(key) {
            return (v, Source::Policy(p.id));
        }
        match p.parent {
            Some(parent) => naive(policies, &Settings::default(), parent.0 as usize, key),
            None => (key.default_value(), Source::Default),
        }
    }

    fn any_value() -> impl Strategy<Value = SettingValue> {
        prop_oneof![
            (1u64..=86_400).prop_map(|s| SettingValue::Interval(Duration::from_secs(s))),
            (0u16..=1000).prop_map(|n| SettingValue::MissedBeforeAlert(MissedLimit::Count(n))),
            Just(SettingValue::MissedBeforeAlert(MissedLimit::Unlimited)),
            Just(SettingValue::MaxClockChange(ClockChangeLimit::Unlimited)),
            any::<bool>().prop_map(SettingValue::OfflineErrorsForInactiveVms),
            prop::sample::select(Direction::ALL.to_vec()).prop_map(SettingValue::Direction),
            any::<bool>().prop_map(SettingValue::FirewallEnabled),
            any::<bool>().prop_map(SettingValue::AgentAutoUpgrade),
        ]
    }

    fn any_settings() -> impl Strategy<Value = Settings> {
        prop::collection::vec(any_value(), 0..8).prop_map(|values| {
            let mut s = Settings::default();
            values.into_iter().for_each(|v| s.set(v));
            s
        })
    }

    proptest! {
        #[test]
        fn resolver_agrees_with_the_naive_model(
            // Policy i's parent is some j < i, so every generated tree is acyclic with root 0.
            shape in prop::collection::vec((any::<prop::sample::Index>(), any_settings()), 1..12),
            own in any_settings(),
            pick in any::<prop::sample::Index>(),
        ) {
            let policies: Vec<Policy> = shape.iter().enumerate().map(|(i, (parent, settings))| Policy {
                id: PolicyId(i as u64),
                name: format!("p{i}"),
                rules: Vec::new(),
                parent: (i > 0).then(|| PolicyId(parent.index(i) as u64)),
                settings: *settings,
            }).collect();
            let tree = PolicyTree::new(policies.clone());
            let start = pick.index(policies.len());
            let computer = Computer {
                policy: PolicyId(start as u64),
                settings: own,
                status: Status::ActivationRequired,
                ..Computer::test(1, "h")
            };
            let by_computer = resolve_computer(&tree, &computer);
            let by_policy = resolve_policy(&tree, PolicyId(start as u64));
            for key in SettingKey::ALL {
                prop_assert_eq!(by_computer.get(key), naive(&policies, &own, start, key));
                prop_assert_eq!(by_policy.get(key), naive(&policies, &Settings::default(), start, key));
            }
        }
    }
}
