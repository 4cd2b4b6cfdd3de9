//! What the manager keeps about an activated agent: its certificate, its last heartbeat, and
//! the events it reported.

use super::ids::ComputerId;
use crate::clock::WallMs;
use serde::{Deserialize, Serialize};

/// The state of an activated computer's agent, updated at each heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub computer: ComputerId,
    /// Serial of the certificate issued at activation; a handshake with any other is refused.
    pub cert_serial: [u8; 16],
    pub activated: WallMs,
    pub agent_version: String,
    /// Where the agent connected from, as last seen.
    pub address: Option<String>,
    pub listen_port: Option<u16>,
    /// Highest event sequence stored for this agent.
    pub last_seq: u64,
    pub last_heartbeat: Option<WallMs>,
    /// The agent's clock minus the manager's at the last heartbeat, in milliseconds.
    pub clock_offset_ms: Option<i64>,
    pub tls_version: Option<String>,
    pub cipher_suite: Option<String>,
    /// The configuration fingerprint the agent reported running.
    pub applied_fingerprint: Option<[u8; 32]>,
    pub config_rejected: Option<String>,
    /// The agent's components (drivers) as its last heartbeat reported them.
    pub components: Vec<Component>,
    pub counters: Vec<(String, u64)>,
    /// The wire protocol the agent spoke at its last session (its activation's, until then):
    /// which form of the configuration it reads and fingerprints (`policy::reads_v1`). 0: not
    /// recorded, read as the current protocol.
    pub protocol: u16,
    /// The last session found the firewall on for this computer but withheld it, the agent's
    /// protocol being too old to carry it: the history says so when this changes.
    pub firewall_withheld: bool,
}

/// One of the agent's components (the reference's drivers), as the heartbeat reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub state: ComponentState,
    /// Why it is in that state, in words; empty when there is nothing to say.
    pub reason: String,
}

/// A component's state. The variant order is the wire's and the store's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComponentState {
    On,
    Off,
    Error,
}

super::words::words!(ComponentState {
    On => "on",
    Off => "off",
    Error => "error",
});

impl Component {
    /// A protocol-1 agent's component, which said only on or off.
    pub fn from_on(name: String, on: bool) -> Component {
        Component {
            name,
            state: if on {
                ComponentState::On
            } else {
                ComponentState::Off
            },
            reason: String::new(),
        }
    }
}

/// An agent event as stored: `(computer, seq)` is its key and is written once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub computer: ComputerId,
    pub seq: u64,
    /// The event's id in `schema/events.md`.
    pub id: u32,
    /// The agent's clock when it happened.
    pub time: WallMs,
    /// The manager's clock when it was stored.
    pub received: WallMs,
    pub fields: Vec<(String, String)>,
}

/// One line of a computer's history, written by the manager: a status change with its reason,
/// an activation, an alert raised, cleared or dismissed, a change by an administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub computer: ComputerId,
    pub at: WallMs,
    /// What happened, one word from `schema/store.md` (`status`, `activated`, `alert-raised`...).
    pub what: String,
    pub detail: String,
}
