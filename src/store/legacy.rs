//! The frozen shapes of earlier record versions: read and converted into the current model,
//! never written. A model struct that changes shape leaves its old form here, so the bytes an
//! earlier release stored keep decoding exactly as they were written.

use crate::clock::WallMs;
use crate::model::{
    AgentState, Alert, AlertId, AlertKind, ClockChangeLimit, Computer, ComputerId, ComputerKind,
    Direction, FirewallRule, FrameType, IpMatch, MacAddr, MissedLimit, Policy, PolicyId, PortRange,
    PowerState, Protocol, RuleAction, RuleId, Setting, Settings, Status, TrafficDirection,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `Settings` as schemas 2 to 8 wrote it: before `firewall_enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SettingsV1 {
    interval: Setting<Duration>,
    missed_before_alert: Setting<MissedLimit>,
    max_clock_change: Setting<ClockChangeLimit>,
    offline_errors_for_inactive_vms: Setting<bool>,
    direction: Setting<Direction>,
}

impl From<SettingsV1> for Settings {
    /// The firewall setting did not exist: inherited, so the built-in default (off) applies.
    fn from(s: SettingsV1) -> Settings {
        Settings::from(SettingsV2 {
            interval: s.interval,
            missed_before_alert: s.missed_before_alert,
            max_clock_change: s.max_clock_change,
            offline_errors_for_inactive_vms: s.offline_errors_for_inactive_vms,
            direction: s.direction,
            firewall_enabled: Setting::Inherited,
        })
    }
}

/// `Settings` as schemas 9 to 11 wrote it: before `agent_auto_upgrade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SettingsV2 {
    interval: Setting<Duration>,
    missed_before_alert: Setting<MissedLimit>,
    max_clock_change: Setting<ClockChangeLimit>,
    offline_errors_for_inactive_vms: Setting<bool>,
    direction: Setting<Direction>,
    firewall_enabled: Setting<bool>,
}

impl From<SettingsV2> for Settings {
    /// The upgrade setting did not exist: inherited, so the built-in default (off) applies and
    /// no agent of a migrated site is upgraded until the site turns it on.
    fn from(s: SettingsV2) -> Settings {
        Settings {
            interval: s.interval,
            missed_before_alert: s.missed_before_alert,
            max_clock_change: s.max_clock_change,
            offline_errors_for_inactive_vms: s.offline_errors_for_inactive_vms,
            direction: s.direction,
            firewall_enabled: s.firewall_enabled,
            agent_auto_upgrade: Setting::Inherited,
        }
    }
}

/// `FirewallRule` as schemas 3 to 8 wrote it: before `destination_ips` and `log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FirewallRuleV1 {
    id: RuleId,
    name: String,
    action: RuleAction,
    priority: u8,
    direction: TrafficDirection,
    frame_type: FrameType,
    protocol: Protocol,
    destination_ports: Vec<PortRange>,
    source_ips: Vec<IpMatch>,
    source_macs: Vec<MacAddr>,
}

impl From<FirewallRuleV1> for FirewallRule {
    fn from(r: FirewallRuleV1) -> FirewallRule {
        FirewallRule {
            id: r.id,
            name: r.name,
            action: r.action,
            priority: r.priority,
            direction: r.direction,
            frame_type: r.frame_type,
            protocol: r.protocol,
            destination_ports: r.destination_ports,
            source_ips: r.source_ips,
            source_macs: r.source_macs,
            destination_ips: Vec::new(),
            log: false,
        }
    }
}

/// `Policy` as schema 2 wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PolicyV1 {
    id: PolicyId,
    name: String,
    parent: Option<PolicyId>,
    settings: SettingsV1,
}

/// `Policy` as schemas 3 to 8 wrote it: with firewall rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PolicyV2 {
    id: PolicyId,
    name: String,
    parent: Option<PolicyId>,
    settings: SettingsV1,
    rules: Vec<FirewallRuleV1>,
}

/// `Policy` as schemas 9 to 11 wrote it: settings without `agent_auto_upgrade`. Its rules are
/// today's `FirewallRule`; a change to that struct freezes it here too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PolicyV3 {
    id: PolicyId,
    name: String,
    parent: Option<PolicyId>,
    settings: SettingsV2,
    rules: Vec<FirewallRule>,
}

impl From<PolicyV1> for Policy {
    fn from(p: PolicyV1) -> Policy {
        Policy {
            id: p.id,
            name: p.name,
            parent: p.parent,
            settings: p.settings.into(),
            rules: Vec::new(),
        }
    }
}

impl From<PolicyV2> for Policy {
    fn from(p: PolicyV2) -> Policy {
        Policy {
            id: p.id,
            name: p.name,
            parent: p.parent,
            settings: p.settings.into(),
            rules: p.rules.into_iter().map(FirewallRule::from).collect(),
        }
    }
}

impl From<PolicyV3> for Policy {
    fn from(p: PolicyV3) -> Policy {
        Policy {
            id: p.id,
            name: p.name,
            parent: p.parent,
            settings: p.settings.into(),
            rules: p.rules,
        }
    }
}

/// `Computer` as schema 2 wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ComputerV1 {
    id: ComputerId,
    hostname: String,
    kind: ComputerKind,
    policy: PolicyId,
    settings: SettingsV1,
    status: Status,
    created: WallMs,
    vm_power_state: PowerState,
}

/// `Computer` as schemas 3 to 8 wrote it: with the address the manager dials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ComputerV2 {
    id: ComputerId,
    hostname: String,
    kind: ComputerKind,
    policy: PolicyId,
    settings: SettingsV1,
    status: Status,
    created: WallMs,
    vm_power_state: PowerState,
    address: Option<String>,
}

/// `Computer` as schemas 9 to 11 wrote it: settings without `agent_auto_upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ComputerV3 {
    id: ComputerId,
    hostname: String,
    kind: ComputerKind,
    policy: PolicyId,
    settings: SettingsV2,
    status: Status,
    created: WallMs,
    vm_power_state: PowerState,
    address: Option<String>,
}

impl From<ComputerV1> for Computer {
    fn from(c: ComputerV1) -> Computer {
        Computer::from(ComputerV2 {
            id: c.id,
            hostname: c.hostname,
            kind: c.kind,
            policy: c.policy,
            settings: c.settings,
            status: c.status,
            created: c.created,
            vm_power_state: c.vm_power_state,
            address: None,
        })
    }
}

impl From<ComputerV2> for Computer {
    fn from(c: ComputerV2) -> Computer {
        Computer {
            id: c.id,
            hostname: c.hostname,
            kind: c.kind,
            policy: c.policy,
            settings: c.settings.into(),
            status: c.status,
            created: c.created,
            vm_power_state: c.vm_power_state,
            address: c.address,
        }
    }
}

impl From<ComputerV3> for Computer {
    fn from(c: ComputerV3) -> Computer {
        Computer {
            id: c.id,
            hostname: c.hostname,
            kind: c.kind,
            policy: c.policy,
            settings: c.settings.into(),
            status: c.status,
            created: c.created,
            vm_power_state: c.vm_power_state,
            address: c.address,
        }
    }
}

/// `Alert` as schemas 2 to 6 wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct AlertV1 {
    id: AlertId,
    kind: AlertKind,
    computer: ComputerId,
    raised: WallMs,
    updated: WallMs,
    count: u32,
    message: String,
    cleared: Option<WallMs>,
    dismissed: Option<WallMs>,
}

impl From<AlertV1> for Alert {
    fn from(a: AlertV1) -> Alert {
        Alert {
            id: a.id,
            kind: a.kind,
            computer: a.computer,
            raised: a.raised,
            updated: a.updated,
            count: a.count,
            message: a.message,
            cleared: a.cleared,
            dismissed: a.dismissed,
            acknowledged: None,
            about: None,
            computers: Vec::new(),
        }
    }
}

/// `AgentState` as schema 10 wrote it: components said only on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct AgentStateV2 {
    v1: AgentStateV1,
    protocol: u16,
    firewall_withheld: bool,
}

impl From<AgentStateV2> for AgentState {
    fn from(a: AgentStateV2) -> AgentState {
        AgentState {
            protocol: a.protocol,
            firewall_withheld: a.firewall_withheld,
            ..a.v1.into()
        }
    }
}

/// `AgentState` as schemas 2 to 9 wrote it: before the agent's protocol was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct AgentStateV1 {
    computer: ComputerId,
    cert_serial: [u8; 16],
    activated: WallMs,
    agent_version: String,
    address: Option<String>,
    listen_port: Option<u16>,
    last_seq: u64,
    last_heartbeat: Option<WallMs>,
    clock_offset_ms: Option<i64>,
    tls_version: Option<String>,
    cipher_suite: Option<String>,
    applied_fingerprint: Option<[u8; 32]>,
    config_rejected: Option<String>,
    components: Vec<(String, bool)>,
    counters: Vec<(String, u64)>,
}

impl From<AgentStateV1> for AgentState {
    /// The managers that wrote schema 9 and older spoke protocol 1 (protocol 2 ships with schema
    /// 10), so their agents' applied fingerprints are of protocol 1's form. An agent upgraded
    /// since says otherwise at its next session, which records its protocol; until then it costs
    /// at most one needless dial.
    fn from(a: AgentStateV1) -> AgentState {
        AgentState {
            computer: a.computer,
            cert_serial: a.cert_serial,
            activated: a.activated,
            agent_version: a.agent_version,
            address: a.address,
            listen_port: a.listen_port,
            last_seq: a.last_seq,
            last_heartbeat: a.last_heartbeat,
            clock_offset_ms: a.clock_offset_ms,
            tls_version: a.tls_version,
            cipher_suite: a.cipher_suite,
            applied_fingerprint: a.applied_fingerprint,
            config_rejected: a.config_rejected,
            components: a
                .components
                .into_iter()
                .map(|(name, on)| crate::model::Component::from_on(name, on))
                .collect(),
            counters: a.counters,
            protocol: 1,
            firewall_withheld: false,
        }
    }
}
