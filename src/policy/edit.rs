//! Checked changes: given the current tree and a requested change, the record to store or the
//! reason it is refused. Nothing is stored here, so a refused change cannot leave a half-write.

use super::error::PolicyError;
use super::tree::PolicyTree;
use crate::clock::WallMs;
use crate::model::{
    Computer, ComputerId, ComputerKind, Direction, Policy, PolicyId, PowerState, Setting,
    SettingKey, SettingValue, Settings, Status,
};

/// Setting changes in request order: `Some` sets a value, `None` makes the key inherited again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch(pub Vec<(SettingKey, Option<SettingValue>)>);

impl SettingsPatch {
    /// Reads one `KEY=VALUE` pair as the CLI and API write it; `inherited` removes the override.
    pub fn entry(key: &str, text: &str) -> Result<(SettingKey, Option<SettingValue>), PolicyError> {
        let key = SettingKey::from_name(key)?;
        if text == "inherited" {
            return Ok((key, None));
        }
        Ok((key, Some(SettingValue::parse(key, text)?)))
    }

    /// `KEY=VALUE` for each entry, as histories and logs show a change.
    pub fn describe(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(key, value)| match value {
                Some(v) => format!("{}={v}", key.name()),
                None => format!("{}=inherited", key.name()),
            })
            .collect()
    }

    pub fn apply(&self, settings: &mut Settings) {
        for (key, value) in &self.0 {
            match value {
                Some(v) => settings.set(*v),
                None => settings.inherit(*key),
            }
        }
    }
}

/// A requested change to a policy; `None` fields are left as they are.
#[derive(Clone, Debug, Default)]
pub struct PolicyChange {
    pub name: Option<String>,
    /// A parent by name or id.
    pub parent: Option<String>,
    pub settings: SettingsPatch,
}

/// A requested new computer or change to one; `None` fields are left as they are.
#[derive(Clone, Debug, Default)]
pub struct ComputerChange {
    pub hostname: Option<String>,
    /// A policy by name or id.
    pub policy: Option<String>,
    pub kind: Option<String>,
    /// `running` or `stopped`, for a VM only (a hypervisor hook's report).
    pub vm_power_state: Option<String>,
    /// Where the manager dials the agent: a host name or IP; empty to dial where the agent
    /// last connected from.
    pub address: Option<String>,
    pub settings: SettingsPatch,
}

const MAX_NAME_LEN: usize = 100;
const MAX_HOSTNAME_LEN: usize = 253;

/// A new policy under `change.parent`, or under the Base Policy when no parent is given.
pub fn create_policy(
    tree: &PolicyTree,
    id: PolicyId,
    change: &PolicyChange,
) -> Result<Policy, PolicyError> {
    let name = change.name.as_deref().ok_or(PolicyError::InvalidName {
        name: String::new(),
        reason: "a name is required",
    })?;
    check_name(tree, name, None)?;
    let parent = match change.parent.as_deref() {
        Some(reference) => find_parent(tree, reference)?,
        None => tree.base().ok_or(PolicyError::ParentRequired)?.id,
    };
    let mut policy = Policy {
        rules: Vec::new(),
        id,
        name: name.to_string(),
        parent: Some(parent),
        settings: Settings::default(),
    };
    change.settings.apply(&mut policy.settings);
    Ok(policy)
}

/// `current` with `change` applied, if the tree stays a tree.
pub fn update_policy(
    tree: &PolicyTree,
    current: &Policy,
    change: &PolicyChange,
) -> Result<Policy, PolicyError> {
    let mut next = current.clone();
    if let Some(name) = &change.name {
        check_name(tree, name, Some(current.id))?;
        next.name.clone_from(name);
    }
    if let Some(reference) = &change.parent {
        if current.parent.is_none() {
            return Err(PolicyError::BaseHasParent);
        }
        let parent = find_parent(tree, reference)?;
        if tree.chain(parent).iter().any(|p| p.id == current.id) {
            return Err(PolicyError::Cycle {
                policy: current.name.clone(),
                parent: reference.clone(),
            });
        }
        next.parent = Some(parent);
    }
    change.settings.apply(&mut next.settings);
    Ok(next)
}

/// Whether a policy may be deleted: not the Base Policy, no sub-policies, no computers.
pub fn check_policy_delete(
    tree: &PolicyTree,
    policy: &Policy,
    computers: usize,
) -> Result<(), PolicyError> {
    if policy.parent.is_none() {
        return Err(PolicyError::BaseUndeletable);
    }
    let children: Vec<String> = tree.children(policy.id).map(|p| p.name.clone()).collect();
    if !children.is_empty() {
        return Err(PolicyError::HasChildren {
            policy: policy.name.clone(),
            children,
        });
    }
    if computers > 0 {
        return Err(PolicyError::HasComputers {
            policy: policy.name.clone(),
            count: computers,
        });
    }
    Ok(())
}

/// A computer added by hostname, not yet activated. `taken` says whether a hostname is in use.
pub fn create_computer(
    tree: &PolicyTree,
    taken: impl Fn(&str) -> bool,
    id: ComputerId,
    created: WallMs,
    change: &ComputerChange,
) -> Result<Computer, PolicyError> {
    let base = tree.base().ok_or(PolicyError::ParentRequired)?;
    let blank = Computer {
        address: None,
        id,
        hostname: String::new(),
        kind: ComputerKind::Server,
        policy: base.id,
        settings: Settings::default(),
        status: Status::ActivationRequired,
        created,
        vm_power_state: PowerState::Running,
    };
    if change.hostname.is_none() {
        return Err(PolicyError::InvalidHostname {
            hostname: String::new(),
            reason: "a hostname is required",
        });
    }
    apply_computer_change(tree, taken, &blank, change)
}

/// `current` with `change` applied. `taken` says whether another computer has a hostname.
pub fn apply_computer_change(
    tree: &PolicyTree,
    taken: impl Fn(&str) -> bool,
    current: &Computer,
    change: &ComputerChange,
) -> Result<Computer, PolicyError> {
    let mut next = current.clone();
    if let Some(hostname) = &change.hostname {
        check_hostname(hostname)?;
        if !hostname.eq_ignore_ascii_case(&current.hostname) && taken(hostname) {
            return Err(PolicyError::HostnameTaken(hostname.clone()));
        }
        next.hostname.clone_from(hostname);
    }
    if let Some(reference) = &change.policy {
        next.policy = tree
            .find(reference)
            .ok_or_else(|| PolicyError::UnknownPolicy(reference.clone()))?
            .id;
    }
    if let Some(kind) = &change.kind {
        next.kind =
            ComputerKind::from_name(kind).ok_or_else(|| PolicyError::InvalidKind(kind.clone()))?;
    }
    if let Some(power) = &change.vm_power_state {
        next.vm_power_state = PowerState::from_name(power)
            .ok_or_else(|| PolicyError::InvalidPowerState(power.clone()))?;
    }
    if next.kind != ComputerKind::Vm {
        if change.vm_power_state.is_some() {
            return Err(PolicyError::PowerStateOfNonVm(next.kind.name()));
        }
        next.vm_power_state = PowerState::Running;
    }
    if let Some(address) = &change.address {
        next.address = check_address(address)?;
    }
    change.settings.apply(&mut next.settings);
    if let (ComputerKind::Appliance, Setting::Set(direction)) = (next.kind, next.settings.direction)
        && direction != Direction::Bidirectional
    {
        let by_kind = change.kind.is_some() && current.kind != ComputerKind::Appliance;
        return Err(PolicyError::ApplianceDirection {
            field: if by_kind {
                "kind"
            } else {
                "settings.communication.direction"
            },
            direction: direction.name().to_string(),
        });
    }
    Ok(next)
}

fn find_parent(tree: &PolicyTree, reference: &str) -> Result<PolicyId, PolicyError> {
    tree.find(reference)
        .map(|p| p.id)
        .ok_or_else(|| PolicyError::UnknownParent(reference.to_string()))
}

fn check_name(tree: &PolicyTree, name: &str, except: Option<PolicyId>) -> Result<(), PolicyError> {
    let invalid = |reason| {
        Err(PolicyError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.trim().is_empty() {
        return invalid("a name is required");
    }
    if name.trim() != name {
        return invalid("it must not start or end with spaces");
    }
    if name.chars().count() > MAX_NAME_LEN {
        return invalid("it is longer than 100 characters");
    }
    if let Some(problem) = crate::model::hidden_character(name) {
        return invalid(problem);
    }
    // Policies are addressed by id or name in one URL segment; an all-digit name would be ambiguous.
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return invalid("it must not be only digits");
    }
    if name.contains('/') {
        return invalid("it must not contain '/'");
    }
    if tree.name_clash(name, except).is_some() {
        return Err(PolicyError::NameTaken(name.to_string()));
    }
    Ok(())
}

fn check_hostname(hostname: &str) -> Result<(), PolicyError> {
    let invalid = |reason| {
        Err(PolicyError::InvalidHostname {
            hostname: hostname.to_string(),
            reason,
        })
    };
    match crate::model::host_name_problem(hostname) {
        Some(problem) => invalid(problem),
        None => Ok(()),
    }
}

/// A dial address is a host name or an IP, without a port (the agent reports its own port).
fn check_address(address: &str) -> Result<Option<String>, PolicyError> {
    let address = address.trim();
    if address.is_empty() {
        return Ok(None);
    }
    let invalid = |reason| {
        Err(PolicyError::InvalidAddress {
            address: address.to_string(),
            reason,
        })
    };
    if address.len() > MAX_HOSTNAME_LEN {
        return invalid("it is longer than 253 characters");
    }
    // Resolved by DNS, where a host name has no '_' (a computer's own name may).
    // One dot at the end is a fully qualified name; more is a typo.
    match crate::model::host_name_problem(address.strip_suffix('.').unwrap_or(address)) {
        None if !address.contains('_') => Ok(Some(address.to_string())),
        None => invalid("expected a host name or an IP address, without a port"),
        Some(_) => invalid("expected a host name or an IP address, without a port"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MissedLimit;

    fn base_tree() -> PolicyTree {
        PolicyTree::new([Policy {
            rules: Vec::new(),
            id: PolicyId(1),
            name: "Base Policy".into(),
            parent: None,
            settings: Settings::default(),
        }])
    }

    fn named(name: &str, parent: Option<&str>) -> PolicyChange {
        PolicyChange {
            name: Some(name.into()),
            parent: parent.map(str::to_string),
            settings: SettingsPatch::default(),
        }
    }

    fn tree_with_servers_and_laptops() -> PolicyTree {
        let mut tree = base_tree();
        let servers = create_policy(&tree, PolicyId(2), &named("Servers", None)).unwrap();
        tree.upsert(servers);
        let laptops =
            create_policy(&tree, PolicyId(3), &named("Laptops", Some("Servers"))).unwrap();
        tree.upsert(laptops);
        tree
    }

    #[test]
    fn new_policy_goes_under_base_unless_told() {
        let tree = tree_with_servers_and_laptops();
        assert_eq!(tree.find("Servers").unwrap().parent, Some(PolicyId(1)));
        assert_eq!(tree.find("Laptops").unwrap().parent, Some(PolicyId(2)));
    }

    #[test]
    fn refuses_bad_names() {
        let tree = tree_with_servers_and_laptops();
        for (name, field) in [
            ("", "name"),
            (" x", "name"),
            ("123", "name"),
            ("a/b", "name"),
        ] {
            let err = create_policy(&tree, PolicyId(9), &named(name, None)).unwrap_err();
            assert_eq!(err.field(), field, "{name:?}");
        }
        let err = create_policy(&tree, PolicyId(9), &named("servers", None)).unwrap_err();
        assert!(err.is_conflict());
    }

    #[test]
    fn refuses_unknown_parent_and_cycles() {
        let tree = tree_with_servers_and_laptops();
        let err = create_policy(&tree, PolicyId(9), &named("X", Some("Nope"))).unwrap_err();
        assert_eq!(err, PolicyError::UnknownParent("Nope".into()));

        let servers = tree.find("Servers").unwrap();
        for parent in ["Laptops", "Servers", "2"] {
            let change = PolicyChange {
                parent: Some(parent.into()),
                ..Default::default()
            };
            let err = update_policy(&tree, servers, &change).unwrap_err();
            assert!(
                matches!(err, PolicyError::Cycle { .. }),
                "{parent}: {err:?}"
            );
            assert_eq!(err.field(), "parent");
        }
        let base = tree.find("Base Policy").unwrap();
        let change = PolicyChange {
            parent: Some("Servers".into()),
            ..Default::default()
        };
        assert_eq!(
            update_policy(&tree, base, &change).unwrap_err(),
            PolicyError::BaseHasParent
        );
    }

    #[test]
    fn delete_is_refused_for_base_parents_and_assigned_policies() {
        let tree = tree_with_servers_and_laptops();
        let base = tree.find("Base Policy").unwrap();
        assert_eq!(
            check_policy_delete(&tree, base, 0),
            Err(PolicyError::BaseUndeletable)
        );
        let servers = tree.find("Servers").unwrap();
        assert!(matches!(
            check_policy_delete(&tree, servers, 0),
            Err(PolicyError::HasChildren { .. })
        ));
        let laptops = tree.find("Laptops").unwrap();
        assert!(matches!(
            check_policy_delete(&tree, laptops, 3),
            Err(PolicyError::HasComputers { count: 3, .. })
        ));
        assert_eq!(check_policy_delete(&tree, laptops, 0), Ok(()));
    }

    #[test]
    fn settings_patch_sets_and_inherits() {
        let mut settings = Settings::default();
        let set = SettingsPatch(vec![
            SettingsPatch::entry("heartbeat.missed-before-alert", "unlimited").unwrap(),
        ]);
        set.apply(&mut settings);
        assert_eq!(
            settings.missed_before_alert,
            Setting::Set(MissedLimit::Unlimited)
        );
        let unset = SettingsPatch(vec![
            SettingsPatch::entry("heartbeat.missed-before-alert", "inherited").unwrap(),
        ]);
        unset.apply(&mut settings);
        assert_eq!(settings, Settings::default());
        assert!(SettingsPatch::entry("heartbeat.nope", "1").is_err());
    }

    fn computer_change(hostname: &str, kind: &str, direction: Option<&str>) -> ComputerChange {
        ComputerChange {
            hostname: Some(hostname.into()),
            policy: None,
            kind: Some(kind.into()),
            vm_power_state: None,
            address: None,
            settings: SettingsPatch(
                direction
                    .map(|d| SettingsPatch::entry("communication.direction", d).unwrap())
                    .into_iter()
                    .collect(),
            ),
        }
    }

    #[test]
    fn appliance_refuses_another_direction() {
        let tree = base_tree();
        let free = |_: &str| false;
        let change = computer_change("fw1", "appliance", Some("agent-initiated"));
        let err = create_computer(&tree, free, ComputerId(1), WallMs(0), &change).unwrap_err();
        assert_eq!(err.field(), "kind");

        let server = computer_change("web1", "server", Some("agent-initiated"));
        let web1 = create_computer(&tree, free, ComputerId(2), WallMs(0), &server).unwrap();
        let to_appliance = ComputerChange {
            kind: Some("appliance".into()),
            ..Default::default()
        };
        let err = apply_computer_change(&tree, free, &web1, &to_appliance).unwrap_err();
        assert_eq!(err.field(), "kind");

        let ok = computer_change("fw2", "appliance", Some("bidirectional"));
        assert!(create_computer(&tree, free, ComputerId(3), WallMs(0), &ok).is_ok());
    }

    #[test]
    fn only_a_vm_has_a_power_state() {
        let tree = base_tree();
        let free = |_: &str| false;
        let vm = create_computer(
            &tree,
            free,
            ComputerId(1),
            WallMs(0),
            &computer_change("vm1", "vm", None),
        )
        .unwrap();
        let stop = ComputerChange {
            vm_power_state: Some("stopped".into()),
            ..Default::default()
        };
        assert_eq!(
            apply_computer_change(&tree, free, &vm, &stop)
                .unwrap()
                .vm_power_state,
            PowerState::Stopped
        );
        let server = create_computer(
            &tree,
            free,
            ComputerId(2),
            WallMs(0),
            &computer_change("s1", "server", None),
        )
        .unwrap();
        assert_eq!(
            apply_computer_change(&tree, free, &server, &stop)
                .unwrap_err()
                .field(),
            "vm_power_state"
        );
        let bogus = ComputerChange {
            vm_power_state: Some("paused".into()),
            ..Default::default()
        };
        assert_eq!(
            apply_computer_change(&tree, free, &vm, &bogus)
                .unwrap_err()
                .field(),
            "vm_power_state"
        );
    }

    #[test]
    fn computer_needs_a_free_valid_hostname_and_known_policy() {
        let tree = base_tree();
        let taken = |h: &str| h.eq_ignore_ascii_case("web1");
        let add = |change: &ComputerChange| {
            create_computer(&tree, taken, ComputerId(1), WallMs(0), change).unwrap_err()
        };
        assert!(add(&computer_change("WEB1", "server", None)).is_conflict());
        assert_eq!(
            add(&computer_change("bad host", "server", None)).field(),
            "hostname"
        );
        assert_eq!(
            add(&computer_change("web2", "toaster", None)).field(),
            "kind"
        );
        let missing = ComputerChange::default();
        assert_eq!(add(&missing).field(), "hostname");
        let unknown_policy = ComputerChange {
            policy: Some("Nope".into()),
            ..computer_change("web3", "server", None)
        };
        assert_eq!(add(&unknown_policy).field(), "policy");
    }

    #[test]
    fn a_dial_address_is_a_host_or_an_ip_and_empty_clears_it() {
        let tree = base_tree();
        let free = |_: &str| false;
        let web1 = create_computer(
            &tree,
            free,
            ComputerId(1),
            WallMs(0),
            &computer_change("web1", "server", None),
        )
        .unwrap();
        let set = |address: &str| ComputerChange {
            address: Some(address.into()),
            ..ComputerChange::default()
        };
        for good in ["10.0.0.7", "::1", "web1.example.", "web-1"] {
            let next = apply_computer_change(&tree, free, &web1, &set(good)).unwrap();
            assert_eq!(next.address.as_deref(), Some(good));
        }
        for bad in ["web1:4118", "-web", "a b", "web..example", "exa_mple"] {
            let err = apply_computer_change(&tree, free, &web1, &set(bad)).unwrap_err();
            assert_eq!(err.field(), "address", "{bad}");
        }
        let with = apply_computer_change(&tree, free, &web1, &set("10.0.0.7")).unwrap();
        assert_eq!(
            apply_computer_change(&tree, free, &with, &set(""))
                .unwrap()
                .address,
            None
        );
    }
}
