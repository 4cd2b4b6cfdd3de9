//! The agent–manager protocol: frames, messages, and the session state machines of both sides.
//!
//! Everything here is sans-io. A session takes messages and the time as input and says what to
//! send, what to store and when it would time out; the async shells in `manager/` and `agent/`
//! only move bytes. `schema/wire.md` describes the session step by step and `schema/wire/` holds
//! a golden encoding of every message, checked by the tests in `message.rs`; the manager also
//! serves protocol-1 agents in their own form (`v1.rs`, `schema/wire/v1/`).

mod agent_session;
mod error;
mod frame;
mod manager_session;
mod message;
mod v1;

pub use agent_session::{AgentOutput, AgentSession};
pub use error::ProtoError;
pub use frame::{FrameReader, HEADER_LEN, MAX_FRAME, check_header, decode, encode};
pub use manager_session::{
    BINARY_CHUNK, ManagerOutput, ManagerSession, SessionParams, SessionSummary,
};
#[cfg(test)]
pub(crate) use message::samples;
pub use message::{
    Activated, ActivationRequest, AgentEvent, AgentMsg, AgentStatus, Component, Counter,
    EventBatch, Hello, ManagerMsg, Purpose, Refusal, SpoolRange, UpgradeOffer,
};
pub use v1::{
    ActivatedV1, AgentMsgV1, AgentStatusV1, ComponentV1, ManagerMsgV1, Outgoing, decode_agent,
};

/// The protocol version this build speaks, sent in the first message of every connection.
/// 2: the configuration carries the firewall (`firewall_enabled`, `firewall_rules`), which a
/// version-1 agent could not decode. This build's agent speaks only 2.
pub const PROTOCOL_VERSION: u16 = 2;

/// The oldest protocol the manager serves: a protocol-1 agent is sent protocol 1's messages
/// (`v1.rs`), without the firewall, so agents deployed before it keep working while a site
/// upgrades its manager first.
pub const OLDEST_PROTOCOL: u16 = 1;

/// ALPN name of the protocol on the agent port, so a stray HTTP or other client is refused at
/// the TLS handshake rather than mid-frame.
pub const ALPN: &[u8] = b"picket/1";

#[cfg(test)]
mod tests;
