//! Picket: an all-in-one security manager for small sites.
//!
//! One binary is both the **manager** (keeps computers, policies and events in an embedded store,
//! serves the REST API) and the **agent** (runs on each protected computer). See `DESIGN.md` for
//! the contracts and `schema/` for the formats that outlive a release.
//!
//! # Layout
//! - [`clock`]: real and manual clocks; every decision takes the time as an argument.
//! - [`files`]: atomic, permission-aware writes of data-dir files.
//! - [`framed`]: protocol frames over an async stream (the only I/O of the session shells).
//! - [`liveness`]: sans-io heartbeat monitor: deadlines, missed counts, offline and clock decisions.
//! - [`model`]: plain data: ids, settings, policies, computers, tokens.
//! - [`net`]: the accept loop shared by the listeners, deadlines around futures, and the budget
//!   of connections that have not authenticated yet (`admission`, sans-io; `gate`, its shell;
//!   `tally`, the one-line-a-minute summary of what was closed).
//! - [`tasks`]: the manager's executor, one worker thread per core, and task sets that end
//!   their tasks when dropped.
//! - [`policy`]: inheritance resolution, validation of the policy tree, configuration fingerprint.
//! - [`store`]: the redb file, its tables, versioned records and migrations.
//! - [`pki`]: the private CA, the manager certificate and the rustls configurations.
//! - [`proto`]: the agent-manager protocol: frames, messages, sans-io session state machines.
//! - [`agent`]: the agent process: activation, heartbeat loop, event spool, configuration.
//! - [`alerts`]: the alert lifecycle: raise or update, clear by itself, dismiss.
//! - [`api`]: the console and REST API over HTTPS: router, login sessions, handlers, JSON views,
//!   embedded console assets, errors.
//! - [`metrics`]: the manager's counters and histograms, and their Prometheus text form.
//! - [`manager`]: the manager process: data-dir initialisation, listeners, shutdown, and the
//!   rules of activation tokens (`manager::activation`).
//! - [`admin`]: the admin CLI verbs, each a client of the running manager's REST API.
//! - [`cli`]: the argh definitions of every subcommand.
//! - [`bench`]: `picket bench`, the load generator: an in-process manager, simulated agents over
//!   real mutual TLS, the bare-TLS floor, and the report.

pub mod activation;
pub mod admin;
pub mod agent;
pub mod alerts;
pub mod api;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod files;
pub mod framed;
pub mod handles;
pub mod liveness;
pub mod manager;
pub mod metrics;
pub mod model;
pub mod net;
pub mod password;
pub mod pki;
pub mod policy;
pub mod process;
pub mod proto;
pub mod registry;
pub mod secret;
pub mod site;
pub mod store;
pub mod tasks;
