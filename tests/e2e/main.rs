//! The end-to-end tests: real `picket` processes on 127.0.0.1, driven through the CLI, the API,
//! the wire protocol and a browser. One binary, so that the crate is linked once for all of
//! them (nine binaries linked it nine times on a 2-core CI machine); `support` holds the
//! harness they share.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// helpers of tests may panic
// Real processes in real time: the rule that only src/clock.rs reads the clocks is for src/.
#![allow(clippy::disallowed_methods)]

mod support;

mod agent_port;
mod agents;
mod api;
mod backup;
mod bench;
mod browser;
mod console;
mod direction;
mod firewall;
mod hardening;
mod install;
mod manager;
mod notifications;
mod packages;
mod protocol_v1;
mod service;
mod tokens;
mod upgrade;
