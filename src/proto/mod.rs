//! The agent–manager protocol: frames, messages, and the session state machines of both sides.
//!
//! Everything here is sans-io. A session takes messages and the time as input and says what to
//! send, what to store and when it would time out; the async shells in `manager/` and `agent/`
//! only move bytes. `schema/wire.md` describes the session step by step and `schema/wire/` holds
//! a golden encoding of every message, checked by the tests in `message.rs`.

mod agent_session;
mod error;
mod frame;
mod manager_session;
mod message;

pub use agent_session::{AgentOutput, AgentSession};
pub use error::ProtoError;
pub use frame::{FrameReader, HEADER_LEN, MAX_FRAME, check_header, decode, encode};
pub use manager_session::{ManagerOutput, ManagerSession, SessionParams, SessionSummary};
#[cfg(test)]
pub(crate) use message::samples;
pub use message::{
    Activated, ActivationRequest, AgentEvent, AgentMsg, AgentStatus, Component, Counter,
    EventBatch, Hello, ManagerMsg, Purpose, Refusal, SpoolRange,
};

/// The protocol version this build speaks, sent in the first message of every connection.
/// 2: the configuration carries the firewall (`firewall_enabled`, `firewall_rules`), so a
/// version-1 agent could not decode it and is refused with a message saying so.
pub const PROTOCOL_VERSION: u16 = 2;

/// ALPN name of the protocol on the agent port, so a stray HTTP or other client is refused at
/// the TLS handshake rather than mid-frame.
pub const ALPN: &[u8] = b"picket/1";

#[cfg(test)]
mod tests;
