//! Why a policy or computer change was refused, and which field to blame.

use crate::model::{RuleError, RuleId, SettingError};
use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    Setting(SettingError),
    InvalidName {
        name: String,
        reason: &'static str,
    },
    NameTaken(String),
    UnknownParent(String),
    UnknownPolicy(String),
    /// Making `parent` the parent of `policy` would put `policy` below itself.
    Cycle {
        policy: String,
        parent: String,
    },
    BaseHasParent,
    ParentRequired,
    BaseUndeletable,
    HasChildren {
        policy: String,
        children: Vec<String>,
    },
    HasComputers {
        policy: String,
        count: usize,
    },
    InvalidHostname {
        hostname: String,
        reason: &'static str,
    },
    HostnameTaken(String),
    InvalidKind(String),
    InvalidPowerState(String),
    /// A power state was given for a computer that is not a VM (its kind's name).
    PowerStateOfNonVm(&'static str),
    /// An appliance only works bidirectionally; `field` is what the request tried to change.
    ApplianceDirection {
        field: &'static str,
        direction: String,
    },
    /// A firewall rule field that does not parse.
    Rule(RuleError),
    InvalidRuleName(String),
    RuleListTooLong {
        field: &'static str,
        len: usize,
    },
    TooManyRules {
        policy: String,
    },
    UnknownRule {
        policy: String,
        rule: RuleId,
    },
    InvalidAddress {
        address: String,
        reason: &'static str,
    },
    /// The change would have the agent-port `rules` of manager-initiated `computer` refuse the
    /// manager's own address: nothing could then reach the agent to undo it. `field` is what
    /// the request changed.
    LocksOutManager {
        computer: String,
        rules: Vec<String>,
        manager: IpAddr,
        port: u16,
        field: String,
    },
    /// With the change, a computer's firewall would surely drop its way to the manager; `what`
    /// says which computer, what is dropped and by which rules (ids and names), in words (one
    /// string keeps the error small). `field` is what the request changed.
    CutsManager {
        what: String,
        field: String,
    },
}

impl PolicyError {
    /// The request field the administrator should fix.
    pub fn field(&self) -> String {
        let field = match self {
            PolicyError::Setting(e) => return e.field(),
            PolicyError::InvalidName { .. } | PolicyError::NameTaken(_) => "name",
            PolicyError::UnknownParent(_)
            | PolicyError::Cycle { .. }
            | PolicyError::BaseHasParent
            | PolicyError::ParentRequired => "parent",
            PolicyError::UnknownPolicy(_) => "policy",
            PolicyError::BaseUndeletable
            | PolicyError::HasChildren { .. }
            | PolicyError::HasComputers { .. } => "id",
            PolicyError::InvalidHostname { .. } | PolicyError::HostnameTaken(_) => "hostname",
            PolicyError::InvalidKind(_) => "kind",
            PolicyError::InvalidPowerState(_) | PolicyError::PowerStateOfNonVm(_) => {
                "vm_power_state"
            }
            PolicyError::ApplianceDirection { field, .. } => field,
            PolicyError::Rule(e) => e.field,
            PolicyError::InvalidRuleName(_) => "name",
            PolicyError::RuleListTooLong { field, .. } => field,
            PolicyError::TooManyRules { .. } => "rules",
            PolicyError::UnknownRule { .. } => "rule",
            PolicyError::InvalidAddress { .. } => "address",
            PolicyError::LocksOutManager { field, .. } | PolicyError::CutsManager { field, .. } => {
                return field.clone();
            }
        };
        field.to_string()
    }

    /// True when the request is well formed but clashes with what is stored (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            PolicyError::NameTaken(_)
                | PolicyError::HostnameTaken(_)
                | PolicyError::BaseUndeletable
                | PolicyError::HasChildren { .. }
                | PolicyError::HasComputers { .. }
                | PolicyError::TooManyRules { .. }
                | PolicyError::LocksOutManager { .. }
                | PolicyError::CutsManager { .. }
        )
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Setting(e) => e.fmt(f),
            PolicyError::InvalidName { name, reason } => {
                // Escaped: a refused name may hold the very characters it was refused for.
                write!(f, "invalid policy name {name:?}: {reason}")
            }
            PolicyError::NameTaken(name) => write!(f, "a policy named '{name}' already exists"),
            PolicyError::UnknownParent(p) => write!(f, "parent policy '{p}' does not exist"),
            PolicyError::UnknownPolicy(p) => write!(f, "policy '{p}' does not exist"),
            PolicyError::Cycle { policy, parent } => write!(
                f,
                "'{parent}' cannot be the parent of '{policy}': it is '{policy}' itself or below it"
            ),
            PolicyError::BaseHasParent => write!(f, "the Base Policy has no parent"),
            PolicyError::ParentRequired => {
                write!(f, "every policy but the Base Policy needs a parent")
            }
            PolicyError::BaseUndeletable => write!(f, "the Base Policy cannot be deleted"),
            PolicyError::HasChildren { policy, children } => write!(
                f,
                "policy '{policy}' still has sub-policies ({}): delete or move them first",
                children.join(", ")
            ),
            PolicyError::HasComputers { policy, count } => write!(
                f,
                "policy '{policy}' is still assigned to {count} computer(s): move them first"
            ),
            PolicyError::InvalidHostname { hostname, reason } => {
                write!(f, "invalid hostname {hostname:?}: {reason}")
            }
            PolicyError::HostnameTaken(h) => write!(f, "a computer named '{h}' already exists"),
            PolicyError::InvalidKind(k) => write!(
                f,
                "unknown computer kind '{k}': expected server, laptop, vm or appliance"
            ),
            PolicyError::InvalidPowerState(p) => {
                write!(f, "unknown power state '{p}': expected running or stopped")
            }
            PolicyError::PowerStateOfNonVm(kind) => {
                write!(f, "only a VM has a power state; this computer is a {kind}")
            }
            PolicyError::ApplianceDirection { direction, .. } => write!(
                f,
                "an appliance is always bidirectional; '{direction}' is not allowed"
            ),
            PolicyError::Rule(e) => e.fmt(f),
            PolicyError::InvalidRuleName(name) => write!(
                f,
                "invalid rule name {name:?}: 1 to 100 characters, no control, bidirectional or \
                 invisible characters"
            ),
            PolicyError::RuleListTooLong { field, len } => write!(
                f,
                "{field} has {len} entries; at most {} are allowed",
                super::MAX_LIST_LEN
            ),
            PolicyError::TooManyRules { policy } => write!(
                f,
                "policy '{policy}' already has {} firewall rules, the most allowed",
                super::MAX_RULES_PER_POLICY
            ),
            PolicyError::UnknownRule { policy, rule } => {
                write!(f, "policy '{policy}' has no firewall rule {rule}")
            }
            PolicyError::InvalidAddress { address, reason } => {
                write!(f, "invalid address '{address}': {reason}")
            }
            PolicyError::LocksOutManager {
                computer,
                rules,
                manager,
                port,
                ..
            } => {
                let noun = if rules.len() == 1 { "rule" } else { "rules" };
                write!(
                    f,
                    "firewall {noun} {} would refuse the manager at {manager} on port {port} of \
                     manager-initiated computer '{computer}', and the manager could then not \
                     reach its agent to undo it: admit {manager} in the rule, or make the \
                     computer bidirectional first",
                    super::port_rule::quoted(rules)
                )
            }
            PolicyError::CutsManager { what, .. } => write!(
                f,
                "{what}, cutting its agent from the manager: add a rule that lets it through, or \
                 set firewall.enabled to false first"
            ),
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Setting(e) => Some(e),
            PolicyError::Rule(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RuleError> for PolicyError {
    fn from(e: RuleError) -> Self {
        PolicyError::Rule(e)
    }
}

impl From<SettingError> for PolicyError {
    fn from(e: SettingError) -> Self {
        PolicyError::Setting(e)
    }
}
