//! Protocol 1's manager messages, frozen, and the form each peer is sent: a manager serves the
//! agents deployed before the firewall (protocol 1) beside the current ones, since sites upgrade
//! the manager first (`schema/wire.md`, Versions). Agents' messages changed only in `Status`,
//! whose components said on or off: [`decode_agent`] reads an agent's message in its protocol's
//! form.

use super::ProtoError;
use super::message::{
    Activated, ActivationRequest, AgentMsg, AgentStatus, Component, Counter, EventBatch, Hello,
    ManagerMsg, Refusal, SpoolRange,
};
use crate::clock::WallMs;
use crate::policy::{AgentConfigV1, Fingerprint, reads_v1};
use serde::{Deserialize, Serialize};

/// `ManagerMsg` as protocol 1 encodes it: the same variants in the same order, with protocol 1's
/// configuration in `SetConfig` and `Activated`. Never change it: `schema/wire/v1/` pins its
/// bytes, which protocol-1 agents decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagerMsgV1 {
    GetStatus {
        protocol: u16,
        manager_time: WallMs,
    },
    GetEvents {
        after: u64,
        max: u32,
    },
    Ack {
        through: u64,
    },
    SetConfig {
        config: AgentConfigV1,
        fingerprint: Fingerprint,
    },
    Done {
        next_heartbeat_ms: u64,
    },
    Activated(ActivatedV1),
    Refused(Refusal),
}

/// `AgentMsg` as protocol 1 encodes it: the same variants, with protocol 1's `Status`. Never
/// change it: `schema/wire/v1/agent-*.hex` pin what protocol-1 agents send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsgV1 {
    Hello(Hello),
    Activate(ActivationRequest),
    Status(AgentStatusV1),
    Events(EventBatch),
    ConfigApplied {
        fingerprint: Fingerprint,
    },
    ConfigRejected {
        fingerprint: Fingerprint,
        reason: String,
    },
}

/// `AgentStatus` as protocol 1 encodes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatusV1 {
    pub wall_clock: WallMs,
    pub components: Vec<ComponentV1>,
    pub counters: Vec<Counter>,
    pub fingerprint: Option<Fingerprint>,
    pub spool: SpoolRange,
    pub listen_port: Option<u16>,
}

/// A component as protocol 1 reports it: on or off, no reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentV1 {
    pub name: String,
    pub on: bool,
}

impl From<AgentMsgV1> for AgentMsg {
    fn from(message: AgentMsgV1) -> AgentMsg {
        match message {
            AgentMsgV1::Hello(hello) => AgentMsg::Hello(hello),
            AgentMsgV1::Activate(request) => AgentMsg::Activate(request),
            AgentMsgV1::Status(s) => AgentMsg::Status(AgentStatus {
                wall_clock: s.wall_clock,
                components: s
                    .components
                    .into_iter()
                    .map(|c| Component::from_on(c.name, c.on))
                    .collect(),
                counters: s.counters,
                fingerprint: s.fingerprint,
                spool: s.spool,
                listen_port: s.listen_port,
            }),
            AgentMsgV1::Events(batch) => AgentMsg::Events(batch),
            AgentMsgV1::ConfigApplied { fingerprint } => AgentMsg::ConfigApplied { fingerprint },
            AgentMsgV1::ConfigRejected {
                fingerprint,
                reason,
            } => AgentMsg::ConfigRejected {
                fingerprint,
                reason,
            },
        }
    }
}

/// An agent's message in the form of `protocol`, the one its session speaks. Before its first
/// message the session assumes this build's; `Hello` and `Activate`, the only first messages,
/// have the same form in every protocol.
pub fn decode_agent(protocol: u16, body: &[u8]) -> Result<AgentMsg, ProtoError> {
    if reads_v1(protocol) {
        super::decode::<AgentMsgV1>(body).map(AgentMsg::from)
    } else {
        super::decode(body)
    }
}

/// `Activated` as protocol 1 encodes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivatedV1 {
    pub computer: u64,
    pub certificate: Vec<u8>,
    pub config: AgentConfigV1,
    pub fingerprint: Fingerprint,
}

impl From<ManagerMsg> for ManagerMsgV1 {
    /// A configuration loses its firewall, and carries protocol 1's fingerprint of what is left:
    /// the one the agent computes once it applies it, and reports at its next heartbeat.
    fn from(message: ManagerMsg) -> ManagerMsgV1 {
        match message {
            ManagerMsg::GetStatus {
                protocol,
                manager_time,
            } => ManagerMsgV1::GetStatus {
                protocol,
                manager_time,
            },
            ManagerMsg::GetEvents { after, max } => ManagerMsgV1::GetEvents { after, max },
            ManagerMsg::Ack { through } => ManagerMsgV1::Ack { through },
            ManagerMsg::SetConfig { config, .. } => {
                let config = config.v1();
                ManagerMsgV1::SetConfig {
                    fingerprint: config.fingerprint(),
                    config,
                }
            }
            ManagerMsg::Done { next_heartbeat_ms } => ManagerMsgV1::Done { next_heartbeat_ms },
            ManagerMsg::Activated(Activated {
                computer,
                certificate,
                config,
                ..
            }) => {
                let config = config.v1();
                ManagerMsgV1::Activated(ActivatedV1 {
                    computer,
                    certificate,
                    fingerprint: config.fingerprint(),
                    config,
                })
            }
            ManagerMsg::Refused(refusal) => ManagerMsgV1::Refused(refusal),
            // Protocol 1 has no upgrade: the session never offers one to its agents
            // (`ManagerSession::offer`), and would refuse rather than send bytes it cannot read.
            ManagerMsg::Upgrade(_) | ManagerMsg::BinaryChunk { .. } => {
                ManagerMsgV1::Refused(Refusal {
                    reason: "upgrades need protocol 2".into(),
                })
            }
        }
    }
}

/// A manager message in the form its peer reads, chosen by the protocol the peer's first
/// message named. It encodes as the form it holds, so the shells send it as they would any
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    Current(ManagerMsg),
    V1(ManagerMsgV1),
}

impl Outgoing {
    /// `message` for a peer speaking `protocol` (one the manager accepted).
    pub fn for_peer(protocol: u16, message: ManagerMsg) -> Outgoing {
        if reads_v1(protocol) {
            Outgoing::V1(message.into())
        } else {
            Outgoing::Current(message)
        }
    }

    /// The message, if it is in the current form (what this build's agent reads).
    pub fn current(&self) -> Option<&ManagerMsg> {
        match self {
            Outgoing::Current(message) => Some(message),
            Outgoing::V1(_) => None,
        }
    }
}

impl Serialize for Outgoing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Outgoing::Current(message) => message.serialize(serializer),
            Outgoing::V1(message) => message.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Instant;
    use crate::proto::samples;
    use crate::proto::{
        ActivationRequest, AgentMsg, AgentOutput, AgentSession, AgentStatus, EventBatch, Hello,
        ManagerOutput, ManagerSession, ProtoError, Purpose, SessionParams, SessionSummary,
        SpoolRange,
    };
    use crate::secret::hex;
    use std::time::Duration;

    const NOW: Instant = Instant::from_millis(0);

    /// Protocol 1's golden vector `name`, as the last protocol-1 build wrote it (`a8df219^`).
    fn golden(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema/wire/v1")
            .join(format!("{name}.hex"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.trim().to_string()
    }

    fn unhex(text: &str) -> Vec<u8> {
        crate::secret::from_hex(text).unwrap()
    }

    /// The session the golden vectors were sampled from: protocol 1's sample configuration is
    /// `samples::config()` without its firewall.
    fn session(authenticated: bool) -> ManagerSession {
        let params = SessionParams {
            authenticated,
            expected: samples::config(),
            last_seq: 0,
            next_heartbeat: Duration::from_secs(600),
            step_timeout: Duration::from_secs(30),
            max_batch: 500,
            manager_time: WallMs(1_796_000_000_000),
            upgrade: Some(samples::offer()),
        };
        ManagerSession::new(NOW, params)
    }

    fn hello(protocol: u16) -> AgentMsg {
        AgentMsg::Hello(Hello {
            protocol,
            agent_version: "0.1.0".into(),
            purpose: Purpose::Heartbeat,
        })
    }

    /// The bytes of every message the session sends next, and its summary if it closed.
    fn sent(session: &mut ManagerSession) -> (Vec<String>, Option<SessionSummary>) {
        let (mut bytes, mut summary) = (Vec::new(), None);
        while let Some(output) = session.poll_output() {
            match output {
                ManagerOutput::Send(m) => bytes.push(hex(&postcard::to_allocvec(&m).unwrap())),
                ManagerOutput::Close(s) => summary = Some(s),
                other => panic!("unexpected {other:?}"),
            }
        }
        (bytes, summary)
    }

    #[test]
    fn protocol_1s_vectors_are_kept_and_its_agents_messages_still_decode() {
        for (name, _) in samples::all() {
            if samples::PROTOCOL_2_ONLY.contains(&name) {
                continue;
            }
            let bytes = unhex(&golden(name));
            if let Some(rest) = name.strip_prefix("agent-") {
                // What a protocol-1 agent sends, the manager reads and would encode the same.
                let message: AgentMsgV1 = crate::proto::decode(&bytes).unwrap();
                assert_eq!(postcard::to_allocvec(&message).unwrap(), bytes, "{rest}");
                assert_eq!(decode_agent(1, &bytes).unwrap(), message.clone().into());
                if let AgentMsgV1::Hello(Hello { protocol, .. })
                | AgentMsgV1::Activate(ActivationRequest { protocol, .. }) = message
                {
                    assert_eq!(protocol, 1, "{name}");
                }
            } else {
                let message: ManagerMsgV1 = crate::proto::decode(&bytes).unwrap();
                assert_eq!(postcard::to_allocvec(&message).unwrap(), bytes, "{name}");
            }
        }
    }

    #[test]
    fn a_protocol_1_heartbeat_is_sent_protocol_1s_bytes() {
        let mut manager = session(true);
        manager.handle_message(NOW, hello(1));
        assert_eq!(sent(&mut manager).0, [golden("manager-get-status")]);
        let status = AgentStatus {
            fingerprint: None,
            spool: SpoolRange { first: 1, last: 2 },
            ..samples::status()
        };
        manager.handle_message(NOW, AgentMsg::Status(status));
        assert_eq!(sent(&mut manager).0, [golden("manager-get-events")]);
        let events = vec![samples::event(1), samples::event(2)];
        manager.handle_message(
            NOW,
            AgentMsg::Events(EventBatch {
                events,
                more: false,
            }),
        );
        assert!(matches!(
            manager.poll_output(),
            Some(ManagerOutput::StoreEvents(_))
        ));
        manager.handle_committed(NOW);
        let (bytes, _) = sent(&mut manager);
        assert_eq!(bytes, [golden("manager-ack"), golden("manager-set-config")]);

        // It decodes as protocol 1's configuration, the firewall left out, with the fingerprint
        // a protocol-1 agent computes.
        let ManagerMsgV1::SetConfig {
            config,
            fingerprint,
        } = crate::proto::decode(&unhex(&bytes[1])).unwrap()
        else {
            panic!("not a SetConfig: {}", bytes[1]);
        };
        assert_eq!(config, samples::config().v1());
        assert_eq!(fingerprint, config.fingerprint());

        manager.handle_message(NOW, AgentMsg::ConfigApplied { fingerprint });
        let (bytes, summary) = sent(&mut manager);
        assert_eq!(bytes, [golden("manager-done")]);
        let summary = summary.unwrap();
        assert_eq!(summary.result, Ok(()));
        assert_eq!(summary.protocol, Some(1));
        assert_eq!(summary.applied, Some(fingerprint));
        assert_eq!(
            summary.firewall_withheld,
            Some(true),
            "the sample turns the firewall on, which protocol 1 cannot carry"
        );
    }

    #[test]
    fn a_protocol_1_agent_running_the_v1_fingerprint_is_up_to_date() {
        let mut manager = session(true);
        manager.handle_message(NOW, hello(1));
        sent(&mut manager);
        let status = AgentStatus {
            fingerprint: Some(samples::config().fingerprint_for(1)),
            spool: SpoolRange { first: 1, last: 0 },
            ..samples::status()
        };
        manager.handle_message(NOW, AgentMsg::Status(status));
        let (bytes, summary) = sent(&mut manager);
        assert_eq!(
            bytes,
            [golden("manager-done")],
            "no configuration is pushed"
        );
        assert_eq!(
            summary.unwrap().applied,
            Some(samples::config().fingerprint_for(1))
        );
    }

    #[test]
    fn a_protocol_1_activation_is_answered_in_protocol_1s_form() {
        let request = ActivationRequest {
            protocol: 1,
            agent_version: "0.1.0".into(),
            token: "t0k3n".into(),
            hostname: "web1".into(),
            public_key: vec![0x30, 0x59],
        };
        let mut manager = session(false);
        manager.handle_message(NOW, AgentMsg::Activate(request.clone()));
        assert!(matches!(
            manager.poll_output(),
            Some(ManagerOutput::Activate(_))
        ));
        manager.handle_activation(Ok(Activated {
            computer: 1,
            certificate: vec![0x30, 0x82],
            config: samples::config(),
            fingerprint: samples::config().fingerprint(),
        }));
        let (bytes, summary) = sent(&mut manager);
        assert_eq!(bytes, [golden("manager-activated")]);
        assert_eq!(summary.unwrap().protocol, Some(1));

        let mut manager = session(false);
        manager.handle_message(NOW, AgentMsg::Activate(request));
        manager.poll_output();
        manager.handle_activation(Err("token expired".into()));
        assert_eq!(sent(&mut manager).0, [golden("manager-refused")]);
    }

    #[test]
    fn protocols_outside_1_to_2_are_refused_in_words() {
        for theirs in [0, 3] {
            let mut manager = session(true);
            manager.handle_message(NOW, hello(theirs));
            let outputs: Vec<_> = std::iter::from_fn(|| manager.poll_output()).collect();
            let [
                ManagerOutput::Send(Outgoing::Current(ManagerMsg::Refused(refusal))),
                ManagerOutput::Close(summary),
            ] = outputs.as_slice()
            else {
                panic!("{outputs:?}");
            };
            assert_eq!(
                refusal.reason,
                format!("protocol version {theirs} is not supported (this build speaks 1 to 2)")
            );
            assert_eq!(
                summary.result,
                Err(ProtoError::Version {
                    theirs,
                    oldest: 1,
                    newest: 2
                })
            );
            assert_eq!(summary.protocol, None);
        }
        // The current protocol is served in the current form.
        let mut manager = session(true);
        manager.handle_message(NOW, hello(2));
        assert_eq!(
            manager.poll_output(),
            Some(ManagerOutput::Send(Outgoing::Current(
                ManagerMsg::GetStatus {
                    protocol: 2,
                    manager_time: WallMs(1_796_000_000_000),
                }
            )))
        );
    }

    #[test]
    fn an_agent_refused_by_a_protocol_1_manager_says_to_upgrade_the_manager() {
        let hello = Hello {
            protocol: crate::proto::PROTOCOL_VERSION,
            agent_version: "0.2.0".into(),
            purpose: Purpose::Heartbeat,
        };
        let mut agent =
            AgentSession::heartbeat(NOW, hello, samples::status(), Duration::from_secs(30));
        agent.poll_output();
        // Protocol 1's manager refused a `Hello` of protocol 2 in these words.
        let reason = "protocol version 2 is not supported (this build speaks 1)";
        agent.handle_message(
            NOW,
            ManagerMsg::Refused(Refusal {
                reason: reason.into(),
            }),
        );
        let Some(AgentOutput::Finished(Err(ProtoError::Refused(words)))) = agent.poll_output()
        else {
            panic!("the agent did not stop");
        };
        assert!(words.starts_with(reason), "{words}");
        assert!(words.contains("upgrade the manager"), "{words}");
    }
}
