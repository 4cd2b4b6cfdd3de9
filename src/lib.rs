//! Picket: an all-in-one security manager for small sites.
//!
//! One binary is both the **manager** (keeps computers, policies and events in an embedded store,
//! serves the console and the REST API) and the **agent** (runs on each protected computer).
//! `ARCHITECTURE.md` is the map (layers, tasks, where to add what); `schema/` holds the formats
//! that outlive a release.
//!
//! # Layout
//! - [`clock`]: real and manual clocks; every decision takes the time as an argument, and only
//!   this module reads the system's clocks or sets a timer.
//! - [`model`]: plain data: ids, settings, policies, computers, tokens, the event catalogue, the
//!   rules for names and host names.
//! - [`errors`]: an error and its causes on one line.
//! - [`notify`]: notification channels, notices, routing, maintenance windows, the bytes each
//!   channel sends and the shells that send them.
//! - [`command`]: a helper program run with a time limit (`nft`, a new binary's `--version`).
//! - [`secret`], [`password`], [`site`], [`files`]: hashes and random secrets, Argon2id
//!   passwords, a data dir's file names, atomic permission-aware writes.
//! - [`pki`]: the private CA, the manager certificate and the rustls configurations.
//! - [`proto`] and [`framed`]: the agent-manager protocol (sans-io session machines) and its
//!   frames over an async stream.
//! - [`policy`]: inheritance, validation of the policy tree, the configuration an agent is sent.
//! - [`firewall`]: the host firewall's rule order, its translation into one nftables ruleset, the
//!   packets its rules log (nfnetlink_log bytes) and how many become events.
//! - [`liveness`]: the sans-io heartbeat monitor: deadlines, missed counts, offline decisions.
//! - [`alerts`]: the alert catalogue, lifecycle and the store transactions that write alerts.
//! - [`activation`]: token rules and the activation grant.
//! - [`store`]: the redb file, its tables, versioned records, migrations and health.
//! - [`net`]: listeners' shared parts: the budget of unauthenticated connections, the backoff of
//!   failing sources, the one-line-a-minute summary.
//! - [`release`]: this binary's version (from a slot tests can rewrite), architecture, version
//!   order, and its own bytes, which the manager serves to agents.
//! - [`handles`], [`registry`]: the handles to the manager's tasks, and which certificate belongs
//!   to which computer.
//! - [`tasks`]: the manager's executor and task sets that end their tasks when dropped.
//! - [`api`]: the console and REST API over HTTPS.
//! - [`metrics`]: the manager's counters and histograms, and their Prometheus text form.
//! - [`manager`]: the manager process: data dir, listeners, the agent port, dialer, verdicts,
//!   retention and store tasks, shutdown.
//! - [`agent`]: the agent process: activation, heartbeat loop, listener, spool, packet log.
//! - [`service`]: a long-running process under systemd: readiness and watchdog keep-alives over
//!   `$NOTIFY_SOCKET`, the signals it answers (SIGHUP is ignored), its log formats (journal
//!   priorities, JSON).
//! - [`admin`] and [`cli`]: the admin CLI verbs (clients of the REST API) and every subcommand's
//!   argh definitions.
//! - [`bench`]: `picket bench`, the load generator: an in-process manager, simulated agents over
//!   real mutual TLS, the bare-TLS floor, and the report.
//! - `sim` (tests only): the seeded chaos simulation of a whole site in virtual time, which
//!   holds every alert to an oracle (`make sim SEEDS=N`).

pub mod activation;
pub mod admin;
pub mod agent;
pub mod alerts;
pub mod api;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod command;
pub mod errors;
pub mod files;
pub mod firewall;
pub mod framed;
pub mod handles;
pub mod liveness;
pub mod manager;
pub mod metrics;
pub mod model;
pub mod net;
pub mod notify;
pub mod password;
pub mod pki;
pub mod policy;
pub mod process;
pub mod proto;
pub mod registry;
pub mod release;
pub mod secret;
pub mod service;
#[cfg(test)]
mod sim;
pub mod site;
pub mod store;
pub mod tasks;
