//! The command line: argh definitions of every subcommand (DESIGN.md fixes the names).
//!
//! Parsing only; `main` dispatches and `admin` runs the client verbs.

use crate::service::logging::{LogFormat, parse_log_format};
use argh::FromArgs;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Picket: an all-in-one security manager for small sites (`picket --version` prints its
/// version).
#[derive(FromArgs, Debug)]
pub struct Picket {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Manager(ManagerArgs),
    Computers(ComputersArgs),
    Policies(PoliciesArgs),
    Token(TokenArgs),
    Agent(AgentArgs),
    Events(EventsArgs),
    Alerts(AlertsArgs),
    Notifications(notifications::NotificationsArgs),
    Maintenance(notifications::MaintenanceArgs),
    Backup(backup::BackupArgs),
    Restore(backup::RestoreArgs),
    Check(backup::CheckArgs),
    Bench(BenchArgs),
}

/// Run the agent: activate once with a token, then heartbeat to the manager.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "agent")]
pub struct AgentArgs {
    /// directory for the agent's key, certificate, pinned CA and event spool; default:
    /// $PICKET_DATA_DIR
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// the manager's agent port, HOST:PORT (activation only)
    #[argh(option)]
    pub manager: Option<String>,
    /// activation token from 'picket token create' (activation only; visible in `ps` while
    /// the agent runs: prefer PICKET_TOKEN or --token-file)
    #[argh(option)]
    pub token: Option<String>,
    /// file holding the activation token (activation only); PICKET_TOKEN works too
    #[argh(option)]
    pub token_file: Option<PathBuf>,
    /// SHA-256 of the manager's CA, from 'picket token create' (activation only)
    #[argh(option)]
    pub ca_sha256: Option<String>,
    /// the name this computer activates as; default: the system's host name
    #[argh(option)]
    pub hostname: Option<String>,
    /// where to listen for the manager (bidirectional and manager-initiated); default 0.0.0.0:4118
    #[argh(option, default = "default_agent_listen()")]
    pub listen: SocketAddr,
    /// activate (if not yet) and exit: what the install script runs before it starts the
    /// service
    #[argh(switch)]
    pub activate_only: bool,
    /// how log lines look on stderr: auto (journal under journald, else text), text, journal
    /// (syslog priority prefixes, no timestamp) or json (one object a line)
    #[argh(option, from_str_fn(parse_log_format), default = "LogFormat::Auto")]
    pub log_format: LogFormat,
}

fn default_agent_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4118))
}

impl AgentArgs {
    /// The activation token: `--token`, else the first line of `--token-file`, else the
    /// environment's `PICKET_TOKEN`; `Err` names the file that cannot be read.
    pub fn token(&self) -> Result<Option<String>, String> {
        if let Some(token) = &self.token {
            return Ok(Some(token.clone()));
        }
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                return Err(format!(
                    "--token-file {}: the file is empty",
                    path.display()
                ));
            }
            return Ok(Some(token));
        }
        Ok(std::env::var("PICKET_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }
}

/// Show the events agents reported.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "events")]
pub struct EventsArgs {
    #[argh(subcommand)]
    pub verb: EventsVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum EventsVerb {
    List(EventsList),
}

/// Where the manager is and how to trust and authenticate to it: the options every admin verb
/// takes, as parsed (the admin client resolves the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    pub json: bool,
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
}

/// Defines an admin verb: its own fields plus the options every client of the API takes. The
/// API's URL and CA options are named by the caller: `url` and `ca_cert` in most verbs,
/// `api_url` and `api_ca_cert` where the verb's own `--url` and `--ca-cert` mean something else.
macro_rules! admin_verb_with {
    ($url:ident, $ca_cert:ident; $(#[$doc:meta])* $name:ident, $verb:literal { $($fields:tt)* }) => {
        $(#[$doc])*
        #[derive(FromArgs, Debug)]
        #[argh(subcommand, name = $verb)]
        pub struct $name {
            $($fields)*
            /// print the API's JSON instead of a table
            #[argh(switch)]
            pub json: bool,
            /// manager API URL; default: from DIR/ports.json, else https://127.0.0.1:4119
            #[argh(option)]
            pub $url: Option<String>,
            /// admin API key; default: $PICKET_API_KEY, else DIR/admin-api-key
            #[argh(option)]
            pub api_key: Option<String>,
            /// the manager's data dir: its API key, CA and port are read from it; default:
            /// $PICKET_DATA_DIR
            #[argh(option)]
            pub data_dir: Option<PathBuf>,
            /// CA certificate (PEM) to trust for the manager's API; default: DIR/pki/ca.crt
            #[argh(option)]
            pub $ca_cert: Option<PathBuf>,
        }

        impl $name {
            pub fn client(&self) -> ClientOptions {
                ClientOptions {
                    json: self.json,
                    url: self.$url.clone(),
                    api_key: self.api_key.clone(),
                    data_dir: self.data_dir.clone(),
                    ca_cert: self.$ca_cert.clone(),
                }
            }
        }
    };
}

macro_rules! admin_verb {
    ($($verb:tt)*) => {
        admin_verb_with!(url, ca_cert; $($verb)*);
    };
}

pub mod backup;
mod manager;
pub mod notifications;

pub use manager::{EventRetention, ManagerArgs};
pub use notifications::{AlertsArgs, AlertsVerb};

/// Manage computers.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "computers")]
pub struct ComputersArgs {
    #[argh(subcommand)]
    pub verb: ComputersVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ComputersVerb {
    List(ComputersList),
    Show(ComputersShow),
    Rules(ComputersRules),
    Add(ComputersAdd),
    Set(ComputersSet),
    Delete(ComputersDelete),
    SendPolicy(ComputersSendPolicy),
    CheckStatus(ComputersCheckStatus),
}

admin_verb!(
    /// List computers.
    ComputersList, "list" {}
);
admin_verb!(
    /// Show a computer with its effective settings and where each comes from.
    ComputersShow, "show" {
        /// computer id
        #[argh(positional)]
        pub id: u64,
    }
);
admin_verb!(
    /// List the firewall rules a computer runs, in the order its agent evaluates them, each with the policy it comes from (hidden: the manager's rules for the agent's port; implicit: the drop an allow rule implies).
    ComputersRules, "rules" {
        /// computer id
        #[argh(positional)]
        pub id: u64,
    }
);
admin_verb!(
    /// Add a computer by hostname, to be activated later.
    ComputersAdd, "add" {
        /// the computer's hostname (or IP address)
        #[argh(positional)]
        pub hostname: String,
        /// policy name or id; default: Base Policy
        #[argh(option)]
        pub policy: Option<String>,
        /// server, laptop, vm or appliance; default: server
        #[argh(option)]
        pub kind: Option<String>,
        /// where the manager dials the agent (host name or IP); default: where it connects from
        #[argh(option)]
        pub address: Option<String>,
    }
);
admin_verb!(
    /// Change a computer: hostname=, policy=, kind=, vm_power_state=, address=, or a setting KEY=VALUE (VALUE `inherited` removes the override).
    ComputersSet, "set" {
        /// computer id
        #[argh(positional)]
        pub id: u64,
        /// KEY=VALUE pairs
        #[argh(positional)]
        pub pairs: Vec<String>,
    }
);
admin_verb!(
    /// Delete a computer.
    ComputersDelete, "delete" {
        /// computer id
        #[argh(positional)]
        pub id: u64,
    }
);
admin_verb!(
    /// Send the computer its configuration now (queued until its next heartbeat if agent-initiated).
    ComputersSendPolicy, "send-policy" {
        /// computer id
        #[argh(positional)]
        pub id: u64,
    }
);
admin_verb!(
    /// Contact the computer now for a heartbeat (queued until its next one if agent-initiated).
    ComputersCheckStatus, "check-status" {
        /// computer id
        #[argh(positional)]
        pub id: u64,
    }
);

/// Manage policies.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "policies")]
pub struct PoliciesArgs {
    #[argh(subcommand)]
    pub verb: PoliciesVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum PoliciesVerb {
    List(PoliciesList),
    Show(PoliciesShow),
    Create(PoliciesCreate),
    Set(PoliciesSet),
    Delete(PoliciesDelete),
    Rules(RulesArgs),
}

/// Firewall rules of a policy (inherited by the policies and computers below it).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rules")]
pub struct RulesArgs {
    #[argh(subcommand)]
    pub verb: RulesVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum RulesVerb {
    List(RulesList),
    Add(RulesAdd),
    Edit(RulesEdit),
    Remove(RulesRemove),
}

admin_verb!(
    /// List a policy's firewall rules, with those it inherits.
    RulesList, "list" {
        /// policy name or id
        #[argh(positional)]
        pub policy: String,
    }
);
admin_verb!(
    /// Add a firewall rule to a policy. A priority-4 force-allow or bypass rule for incoming IP TCP to the agent's port restricts who may connect to it.
    RulesAdd, "add" {
        /// policy name or id
        #[argh(positional)]
        pub policy: String,
        /// the rule's name
        #[argh(option)]
        pub name: String,
        /// allow, deny, force-allow, bypass or log-only
        #[argh(option)]
        pub action: String,
        /// priority 0 to 4 (4 highest); default 0
        #[argh(option)]
        pub priority: Option<String>,
        /// incoming or outgoing; default incoming
        #[argh(option)]
        pub direction: Option<String>,
        /// ip, arp or any; default ip
        #[argh(option)]
        pub frame_type: Option<String>,
        /// tcp, udp, icmp or any; default any
        #[argh(option)]
        pub protocol: Option<String>,
        /// destination port or FROM-TO (repeat for more); default any
        #[argh(option)]
        pub port: Vec<String>,
        /// source IP, CIDR or FROM-TO (repeat for more); default any
        #[argh(option)]
        pub source_ip: Vec<String>,
        /// source MAC (repeat for more); default any
        #[argh(option)]
        pub source_mac: Vec<String>,
        /// destination IP, CIDR or FROM-TO (repeat for more); default any
        #[argh(option)]
        pub destination_ip: Vec<String>,
        /// log what the rule matches, so the agent reports it as events
        #[argh(switch)]
        pub log: bool,
    }
);
admin_verb!(
    /// Change a firewall rule of a policy: the flags given replace its values, the others stay. The rule keeps its id and its place.
    RulesEdit, "edit" {
        /// policy name or id
        #[argh(positional)]
        pub policy: String,
        /// rule id
        #[argh(positional)]
        pub rule: u64,
        /// the rule's name
        #[argh(option)]
        pub name: Option<String>,
        /// allow, deny, force-allow, bypass or log-only
        #[argh(option)]
        pub action: Option<String>,
        /// priority 0 to 4 (4 highest)
        #[argh(option)]
        pub priority: Option<String>,
        /// incoming or outgoing
        #[argh(option)]
        pub direction: Option<String>,
        /// ip, arp or any
        #[argh(option)]
        pub frame_type: Option<String>,
        /// tcp, udp, icmp or any
        #[argh(option)]
        pub protocol: Option<String>,
        /// destination port or FROM-TO (repeat for more; `any` for every port)
        #[argh(option)]
        pub port: Vec<String>,
        /// source IP, CIDR or FROM-TO (repeat for more; `any` for every source)
        #[argh(option)]
        pub source_ip: Vec<String>,
        /// source MAC (repeat for more; `any` for every MAC)
        #[argh(option)]
        pub source_mac: Vec<String>,
        /// destination IP, CIDR or FROM-TO (repeat for more; `any` for every destination)
        #[argh(option)]
        pub destination_ip: Vec<String>,
        /// log what the rule matches, so the agent reports it as events
        #[argh(switch)]
        pub log: bool,
        /// stop logging what the rule matches
        #[argh(switch)]
        pub no_log: bool,
    }
);
admin_verb!(
    /// Remove a firewall rule from the policy that holds it.
    RulesRemove, "remove" {
        /// policy name or id
        #[argh(positional)]
        pub policy: String,
        /// rule id
        #[argh(positional)]
        pub rule: u64,
    }
);

admin_verb!(
    /// List policies.
    PoliciesList, "list" {}
);
admin_verb!(
    /// Show a policy with its effective settings and where each comes from.
    PoliciesShow, "show" {
        /// policy name or id
        #[argh(positional)]
        pub policy: String,
    }
);
admin_verb!(
    /// Create a policy.
    PoliciesCreate, "create" {
        /// the new policy's name
        #[argh(positional)]
        pub name: String,
        /// parent policy name or id; default: Base Policy
        #[argh(option)]
        pub parent: Option<String>,
    }
);
admin_verb!(
    /// Change a policy: name=, parent=, or a setting KEY=VALUE (VALUE `inherited` removes the override).
    PoliciesSet, "set" {
        /// policy name or id
        #[argh(positional)]
        pub policy: String,
        /// KEY=VALUE pairs
        #[argh(positional)]
        pub pairs: Vec<String>,
    }
);
admin_verb!(
    /// Delete a policy (not the Base Policy, nor one with sub-policies or computers).
    PoliciesDelete, "delete" {
        /// policy name or id
        #[argh(positional)]
        pub policy: String,
    }
);

/// Manage activation tokens (what a new agent presents to join).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "token")]
pub struct TokenArgs {
    #[argh(subcommand)]
    pub verb: TokenVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum TokenVerb {
    Create(TokenCreate),
    List(TokenList),
    Delete(TokenDelete),
}

admin_verb!(
    /// Create an activation token and print the agent command that uses it (shown only once).
    TokenCreate, "create" {
        /// policy name or id that activated computers join; default: Base Policy
        #[argh(option)]
        pub policy: Option<String>,
        /// how many activations it allows, 1 to 100000 or `unlimited`; default: 10
        #[argh(option)]
        pub uses: Option<String>,
        /// how long it works, 1m to 365d (e.g. 30m, 24h, 7d); default: 24h
        #[argh(option)]
        pub expires: Option<String>,
    }
);
admin_verb!(
    /// List activation tokens (their ids, never their secrets).
    TokenList, "list" {}
);
admin_verb!(
    /// Revoke an activation token.
    TokenDelete, "delete" {
        /// token id (16 hex digits, from `picket token list`)
        #[argh(positional)]
        pub id: String,
    }
);

admin_verb!(
    /// List events, newest first.
    EventsList, "list" {
        /// only this computer's events
        #[argh(option)]
        pub computer: Option<u64>,
        /// how many (default 100)
        #[argh(option, default = "100")]
        pub limit: u32,
    }
);

/// Load-test a manager: simulated agents heartbeat over real mutual TLS, then a report.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {
    /// how many simulated agents to register (default 1000)
    #[argh(option, default = "1000")]
    pub agents: u64,
    /// heartbeat interval of every agent, e.g. 30s, 1m (default 1m)
    #[argh(option, default = "String::from(\"1m\")")]
    pub interval: String,
    /// how long to drive heartbeats, e.g. 30s, 10m (default 1m)
    #[argh(option, default = "String::from(\"1m\")")]
    pub duration: String,
    /// events each agent reports per heartbeat (default 1)
    #[argh(option, default = "1")]
    pub events_per_heartbeat: u32,
    /// agent-initiated or manager-initiated (default agent-initiated)
    #[argh(option, default = "String::from(\"agent-initiated\")")]
    pub direction: String,
    /// back-to-back sessions of the saturation and floor phases; 0 skips both (default 2000)
    #[argh(option, default = "2000")]
    pub saturation: u64,
    /// connections in flight during the saturation and floor phases (default 32)
    #[argh(option, default = "32")]
    pub concurrency: u64,
    /// every session a full TLS handshake: agents keep no session ticket (by default each
    /// resumes with the ticket of its previous session, as a real agent does)
    #[argh(switch)]
    pub full_handshakes: bool,
    /// run one interval first, unmeasured, so that every agent holds a TLS ticket as in a
    /// manager's steady state (the first interval after a manager start is all full handshakes)
    #[argh(switch)]
    pub warmup: bool,
    /// agent-initiated: first give every agent one session (back to back, --concurrency at a
    /// time), then restart the manager, so the run measures a fleet that holds TLS tickets
    /// after a manager restart instead of a fleet's very first interval
    #[argh(switch)]
    pub prime: bool,
    /// print the report as JSON
    #[argh(switch)]
    pub json: bool,
    /// print the report as a markdown table (header and one row), as `make bench` collects it
    #[argh(switch)]
    pub markdown: bool,
    /// load a manager that is already running instead of one started in-process: its agent
    /// port (HOST:PORT); default with --url or --data-dir: the address its tokens name
    #[argh(option)]
    pub manager: Option<String>,
    /// the running manager's API URL; default: from DIR/ports.json, else https://127.0.0.1:4119
    #[argh(option)]
    pub url: Option<String>,
    /// the running manager's admin API key; default: $PICKET_API_KEY, else DIR/admin-api-key
    #[argh(option)]
    pub api_key: Option<String>,
    /// the running manager's data dir: its API key, CA and port are read from it
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// CA certificate (PEM) to trust for the running manager's API; default: DIR/pki/ca.crt
    #[argh(option)]
    pub ca_cert: Option<PathBuf>,
    /// with a running manager: leave the bench's computers and policies there at the end (its
    /// activation tokens are always revoked)
    #[argh(switch)]
    pub keep: bool,
}
