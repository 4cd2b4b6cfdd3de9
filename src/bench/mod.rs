//! `picket bench`: a manager in-process on a temporary data dir (or one already running),
//! simulated agents heartbeating to it over real mutual TLS, the bare-TLS floor, and a report.
//!
//! - `options`: the command line, validated.
//! - `enroll`: bulk registration (keys, certificates, computers) before the manager starts.
//! - `connect`: loopback connections from source addresses spread over 127.0.0.0/8.
//! - `agent`: one simulated agent running the real `proto::AgentSession`; `tickets`: its own
//!   TLS session ticket, so its next session resumes as a real agent's does.
//! - `load`: sessions at the agents' interval, and back to back for saturation.
//! - `dialed`: manager-initiated runs, where the agents listen and the manager dials them.
//! - `remote`: a manager already running: set up through its API, agents activated with a
//!   token, measured through its metrics.
//! - `floor`: bare mutual-TLS handshakes with the same certificates.
//! - `histogram`, `tally`: latencies and counts; `probe`: CPU and memory from /proc.
//! - `report`: the result as text, JSON or a markdown row.

mod agent;
mod connect;
mod dialed;
mod enroll;
mod error;
mod floor;
mod histogram;
mod load;
mod options;
mod probe;
mod remote;
mod report;
mod run;
mod tally;
mod tickets;

pub use error::BenchError;
pub use options::{Direction, Options, Output};
pub use run::run;
