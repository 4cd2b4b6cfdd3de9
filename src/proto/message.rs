//! The messages. Postcard encodes enums by variant index and structs by field order, so a new
//! variant goes at the end and a changed field means a new protocol version, with the old form
//! frozen for the peers that still speak it (`v1.rs`); the golden vectors in `schema/wire/` make
//! any such change visible in review.

use crate::clock::WallMs;
use crate::policy::{AgentConfig, Fingerprint};
use serde::{Deserialize, Serialize};

/// Agent to manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsg {
    /// First message of every session, whoever dialed.
    Hello(Hello),
    /// First message of an activation connection, which has no client certificate.
    Activate(ActivationRequest),
    Status(AgentStatus),
    Events(EventBatch),
    ConfigApplied {
        fingerprint: Fingerprint,
    },
    ConfigRejected {
        fingerprint: Fingerprint,
        reason: String,
    },
    /// The answer to `Upgrade`: whether the manager is to stream the binary now.
    UpgradeAnswer {
        fetch: bool,
    },
}

/// Manager to agent. The manager drives every session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagerMsg {
    GetStatus {
        protocol: u16,
        manager_time: WallMs,
    },
    /// Events with a sequence number above `after`, at most `max` of them.
    GetEvents {
        after: u64,
        max: u32,
    },
    /// Every event up to and including `through` is stored durably; the agent may forget them.
    Ack {
        through: u64,
    },
    SetConfig {
        config: AgentConfig,
        fingerprint: Fingerprint,
    },
    /// The session is over; the next heartbeat is due in this many milliseconds.
    Done {
        next_heartbeat_ms: u64,
    },
    Activated(Activated),
    Refused(Refusal),
    /// The manager carries a newer agent binary than the agent reported, and the computer's
    /// `agent.auto-upgrade` is on: the agent answers `UpgradeAnswer`. Sent only to protocol 2.
    Upgrade(UpgradeOffer),
    /// The next piece of the offered binary, in order, after the agent asked for it; the
    /// pieces add up to the offer's size, then `Done` ends the session.
    BinaryChunk {
        data: Vec<u8>,
    },
}

/// A binary the manager carries, for an agent to upgrade to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOffer {
    pub version: String,
    /// The architecture it runs on (`x86_64`): an agent on another one declines.
    pub arch: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Purpose {
    Heartbeat,
    /// The agent is shutting down cleanly: the manager records it as stopped, not missing.
    Goodbye,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u16,
    pub agent_version: String,
    pub purpose: Purpose,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationRequest {
    pub protocol: u16,
    pub agent_version: String,
    /// The activation token, in clear: the connection is TLS to a CA the agent pinned.
    pub token: String,
    pub hostname: String,
    /// The agent's public key (SubjectPublicKeyInfo DER) for its certificate.
    pub public_key: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activated {
    pub computer: u64,
    /// The agent's certificate (DER), signed by the manager's CA.
    pub certificate: Vec<u8>,
    pub config: AgentConfig,
    pub fingerprint: Fingerprint,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: String,
}

/// What the reference says a heartbeat collects: driver status, agent status with its clock,
/// counters, the configuration fingerprint, and (separately) the events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub wall_clock: WallMs,
    pub components: Vec<Component>,
    pub counters: Vec<Counter>,
    /// The fingerprint of the configuration the agent runs; `None` before it has one.
    pub fingerprint: Option<Fingerprint>,
    pub spool: SpoolRange,
    /// The port the agent listens on for the manager, if it listens.
    pub listen_port: Option<u16>,
}

/// A component as protocol 2 reports it: `name`, `state` (on, off, error) and `reason`.
pub use crate::model::Component;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub name: String,
    pub value: u64,
}

/// The sequence numbers in the agent's spool: `first..=last`, empty when `first > last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolRange {
    pub first: u64,
    pub last: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// Per-agent sequence number, from 1, never reused.
    pub seq: u64,
    /// The event's id in `schema/events.md`.
    pub id: u32,
    /// The agent's wall clock when it happened.
    pub time: WallMs,
    pub fields: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<AgentEvent>,
    /// More events wait in the spool after this batch.
    pub more: bool,
}

#[cfg(test)]
pub(crate) mod samples {
    //! One sample of every message, shared by the golden-vector test and the session tests.
    use super::*;
    use crate::model::{ClockChangeLimit, Direction, MissedLimit};
    use std::time::Duration;

    pub fn config() -> AgentConfig {
        AgentConfig {
            interval: Duration::from_secs(600),
            missed_before_alert: MissedLimit::Count(2),
            max_clock_change: ClockChangeLimit::Max(Duration::from_secs(900)),
            offline_errors_for_inactive_vms: false,
            direction: Direction::AgentInitiated,
            manager_endpoints: vec!["manager.example:4120".into()],
            listener_rules: vec![crate::model::ListenerRule {
                name: "admin net".into(),
                destination_ports: vec![crate::model::PortRange::parse("4118").unwrap()],
                source_ips: vec![crate::model::IpMatch::parse("10.0.0.0/8").unwrap()],
                source_macs: vec![],
            }],
            firewall_enabled: true,
            firewall_rules: vec![crate::model::FirewallRule {
                id: crate::model::RuleId(3),
                name: "ssh from the admin net".into(),
                action: crate::model::RuleAction::Allow,
                priority: 0,
                direction: crate::model::TrafficDirection::Incoming,
                frame_type: crate::model::FrameType::Ip,
                protocol: crate::model::Protocol::Tcp,
                destination_ports: vec![crate::model::PortRange::parse("22").unwrap()],
                source_ips: vec![crate::model::IpMatch::parse("10.0.0.0/8").unwrap()],
                source_macs: vec![],
                destination_ips: vec![],
                log: true,
            }],
        }
    }

    pub fn status() -> AgentStatus {
        AgentStatus {
            wall_clock: WallMs(1_796_000_000_000),
            components: vec![
                Component::from_on("spool".into(), true),
                Component {
                    name: "firewall".into(),
                    state: crate::model::ComponentState::Error,
                    reason: "nft is not installed".into(),
                },
            ],
            counters: vec![Counter {
                name: "events-spooled".into(),
                value: 3,
            }],
            fingerprint: Some(Fingerprint([7; 32])),
            spool: SpoolRange { first: 1, last: 3 },
            listen_port: None,
        }
    }

    pub fn event(seq: u64) -> AgentEvent {
        AgentEvent {
            seq,
            id: 1000,
            time: WallMs(1_796_000_000_000 + seq),
            fields: vec![("version".into(), "0.1.0".into())],
        }
    }

    /// The messages protocol 1 never had: they have no vector in `schema/wire/v1/`.
    pub const PROTOCOL_2_ONLY: [&str; 3] = [
        "agent-upgrade-answer",
        "manager-upgrade",
        "manager-binary-chunk",
    ];

    pub fn offer() -> UpgradeOffer {
        UpgradeOffer {
            version: "0.2.0".into(),
            arch: "x86_64".into(),
            size: 4,
            sha256: [5; 32],
        }
    }

    /// Every message variant, with the file name of its golden vector.
    pub fn all() -> Vec<(&'static str, Vec<u8>)> {
        let agent = |m: AgentMsg| postcard::to_allocvec(&m).unwrap();
        let manager = |m: ManagerMsg| postcard::to_allocvec(&m).unwrap();
        vec![
            (
                "agent-hello",
                agent(AgentMsg::Hello(Hello {
                    protocol: 2,
                    agent_version: "0.1.0".into(),
                    purpose: Purpose::Heartbeat,
                })),
            ),
            (
                "agent-activate",
                agent(AgentMsg::Activate(ActivationRequest {
                    protocol: 2,
                    agent_version: "0.1.0".into(),
                    token: "t0k3n".into(),
                    hostname: "web1".into(),
                    public_key: vec![0x30, 0x59],
                })),
            ),
            ("agent-status", agent(AgentMsg::Status(status()))),
            (
                "agent-events",
                agent(AgentMsg::Events(EventBatch {
                    events: vec![event(1), event(2)],
                    more: false,
                })),
            ),
            (
                "agent-config-applied",
                agent(AgentMsg::ConfigApplied {
                    fingerprint: Fingerprint([9; 32]),
                }),
            ),
            (
                "agent-config-rejected",
                agent(AgentMsg::ConfigRejected {
                    fingerprint: Fingerprint([9; 32]),
                    reason: "cannot listen on 4118".into(),
                }),
            ),
            (
                "manager-get-status",
                manager(ManagerMsg::GetStatus {
                    protocol: 2,
                    manager_time: WallMs(1_796_000_000_000),
                }),
            ),
            (
                "manager-get-events",
                manager(ManagerMsg::GetEvents { after: 0, max: 500 }),
            ),
            ("manager-ack", manager(ManagerMsg::Ack { through: 2 })),
            (
                "manager-set-config",
                manager(ManagerMsg::SetConfig {
                    config: config(),
                    fingerprint: config().fingerprint(),
                }),
            ),
            (
                "manager-done",
                manager(ManagerMsg::Done {
                    next_heartbeat_ms: 600_000,
                }),
            ),
            (
                "manager-activated",
                manager(ManagerMsg::Activated(Activated {
                    computer: 1,
                    certificate: vec![0x30, 0x82],
                    config: config(),
                    fingerprint: config().fingerprint(),
                })),
            ),
            (
                "manager-refused",
                manager(ManagerMsg::Refused(Refusal {
                    reason: "token expired".into(),
                })),
            ),
            (
                "agent-upgrade-answer",
                agent(AgentMsg::UpgradeAnswer { fetch: true }),
            ),
            ("manager-upgrade", manager(ManagerMsg::Upgrade(offer()))),
            (
                "manager-binary-chunk",
                manager(ManagerMsg::BinaryChunk {
                    data: vec![0x7f, b'E', b'L', b'F'],
                }),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::hex;

    fn golden_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema/wire")
            .join(format!("{name}.hex"))
    }

    /// The encoding of every message is a contract with agents already deployed. Set
    /// `PICKET_BLESS=1` to rewrite the vectors after a deliberate change (and bump
    /// `PROTOCOL_VERSION` if old peers cannot read the new form).
    #[test]
    fn every_message_matches_its_golden_vector() {
        let bless = std::env::var_os("PICKET_BLESS").is_some();
        for (name, bytes) in samples::all() {
            let path = golden_path(name);
            if bless {
                std::fs::write(&path, format!("{}\n", hex(&bytes))).unwrap();
                continue;
            }
            let golden = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(hex(&bytes), golden.trim(), "encoding of {name} changed");
        }
    }

    #[test]
    fn golden_vectors_decode_back() {
        for (name, bytes) in samples::all() {
            let decoded = if name.starts_with("agent-") {
                crate::proto::decode::<AgentMsg>(&bytes).map(|m| postcard::to_allocvec(&m))
            } else {
                crate::proto::decode::<ManagerMsg>(&bytes).map(|m| postcard::to_allocvec(&m))
            };
            assert_eq!(decoded.unwrap().unwrap(), bytes, "{name}");
        }
    }

    #[test]
    fn wire_md_names_every_message() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/wire.md"),
        )
        .unwrap();
        for (name, _) in samples::all() {
            assert!(
                doc.contains(&format!("`{name}`")),
                "schema/wire.md lacks `{name}`"
            );
        }
    }
}
