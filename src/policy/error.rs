//! Why a policy or computer change was refused, and which field to blame.

use crate::model::SettingError;
use std::fmt;

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
        )
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Setting(e) => e.fmt(f),
            PolicyError::InvalidName { name, reason } => {
                write!(f, "invalid policy name '{name}': {reason}")
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
                write!(f, "invalid hostname '{hostname}': {reason}")
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
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Setting(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SettingError> for PolicyError {
    fn from(e: SettingError) -> Self {
        PolicyError::Setting(e)
    }
}
