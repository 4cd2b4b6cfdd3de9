//! Policies, computers and activation tokens as the rest of the code sees them.

use super::firewall::FirewallRule;
use super::ids::{ComputerId, PolicyId};
use super::settings::Settings;
use crate::clock::WallMs;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The root of every policy tree, created when a data dir is initialised.
pub const BASE_POLICY_NAME: &str = "Base Policy";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: PolicyId,
    pub name: String,
    /// `None` only for the Base Policy.
    pub parent: Option<PolicyId>,
    pub settings: Settings,
    /// Firewall rules, inherited by every policy and computer below this one.
    pub rules: Vec<FirewallRule>,
}

/// What kind of machine a computer is; decides some rules (an appliance is always bidirectional).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ComputerKind {
    Server,
    Laptop,
    Vm,
    Appliance,
}

impl ComputerKind {
    pub const ALL: [ComputerKind; 4] = [
        ComputerKind::Server,
        ComputerKind::Laptop,
        ComputerKind::Vm,
        ComputerKind::Appliance,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ComputerKind::Server => "server",
            ComputerKind::Laptop => "laptop",
            ComputerKind::Vm => "vm",
            ComputerKind::Appliance => "appliance",
        }
    }

    pub fn from_name(name: &str) -> Option<ComputerKind> {
        ComputerKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What the manager believes about a computer right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Added by an administrator; no agent has activated as it yet.
    ActivationRequired,
    /// Its agent completed a heartbeat within its allowance.
    Online,
    /// It missed at least one heartbeat.
    Offline,
    /// A VM its hypervisor reports stopped, past its allowance.
    VmStopped,
    /// Its agent said goodbye on a clean shutdown.
    Stopped,
    /// Not heard from since the manager started, still within its allowance.
    Unknown,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::ActivationRequired => "activation-required",
            Status::Online => "online",
            Status::Offline => "offline",
            Status::VmStopped => "vm-stopped",
            Status::Stopped => "stopped",
            Status::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Computer {
    pub id: ComputerId,
    pub hostname: String,
    pub kind: ComputerKind,
    pub policy: PolicyId,
    pub settings: Settings,
    pub status: Status,
    pub created: WallMs,
    /// What a hypervisor hook last said about a VM (always `Running` for other kinds).
    pub vm_power_state: PowerState,
    /// Where the manager dials the agent (host name or IP, resolved at each dial), as the
    /// administrator set it; `None`: the address the agent last connected from.
    pub address: Option<String>,
}

#[cfg(test)]
impl Computer {
    /// A computer for tests: an online server in policy 1, no settings or address of its own.
    pub fn test(id: u64, hostname: &str) -> Computer {
        Computer {
            id: ComputerId(id),
            hostname: hostname.into(),
            kind: ComputerKind::Server,
            policy: PolicyId(1),
            settings: Settings::default(),
            status: Status::Online,
            created: WallMs(0),
            vm_power_state: PowerState::Running,
            address: None,
        }
    }
}

/// A VM's power state, as a hypervisor hook reports it through the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerState {
    #[default]
    Running,
    Stopped,
}

impl PowerState {
    pub fn name(self) -> &'static str {
        match self {
            PowerState::Running => "running",
            PowerState::Stopped => "stopped",
        }
    }

    pub fn from_name(name: &str) -> Option<PowerState> {
        [PowerState::Running, PowerState::Stopped]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// SHA-256 of an activation token; the token itself is never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

/// An activation token: which policy new computers join, how often and until when it works.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub hash: TokenHash,
    pub policy: PolicyId,
    /// Activations left; `None` for a token without a use limit.
    pub uses_left: Option<u32>,
    pub expires: Option<WallMs>,
    pub created: WallMs,
}
