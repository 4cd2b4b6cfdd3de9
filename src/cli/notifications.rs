//! `picket alerts ...`, `picket notifications ...` and `picket maintenance ...`: alerts, the
//! channels and routes that carry them, and maintenance windows, as argh definitions.
//!
//! In `notifications add`, `--ca-cert` is the CA of the mail server, syslog collector or
//! webhook receiver and `--url` the webhook's (the command-line contract), so in every verb
//! here the manager's own API is `--api-url` and its CA `--api-ca-cert`.

use super::ClientOptions;
use argh::FromArgs;
use std::path::PathBuf;

/// An admin verb whose `--url` and `--ca-cert` belong to the channel: the API's are
/// `--api-url` and `--api-ca-cert`.
macro_rules! channel_verb {
    ($($verb:tt)*) => {
        admin_verb_with!(api_url, api_ca_cert; $($verb)*);
    };
}

/// Notification channels (email, syslog, webhook) and their routes.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "notifications")]
pub struct NotificationsArgs {
    #[argh(subcommand)]
    pub verb: NotificationsVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum NotificationsVerb {
    Add(AddArgs),
    List(NotificationsList),
    Show(NotificationsShow),
    Remove(NotificationsRemove),
    Test(NotificationsTest),
    Route(RouteArgs),
}

/// Add a channel.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "add")]
pub struct AddArgs {
    #[argh(subcommand)]
    pub kind: AddKind,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum AddKind {
    Email(AddEmail),
    Syslog(AddSyslog),
    Webhook(AddWebhook),
}

channel_verb!(
    /// Add an email channel (SMTP).
    AddEmail, "email" {
        /// the channel's name
        #[argh(positional)]
        pub name: String,
        /// the mail server, HOST:PORT
        #[argh(option)]
        pub smtp: String,
        /// none (only to this machine), starttls or tls
        #[argh(option)]
        pub security: String,
        /// the sender's address
        #[argh(option)]
        pub from: String,
        /// a recipient (repeat for several)
        #[argh(option)]
        pub to: Vec<String>,
        /// the SMTP login's user name
        #[argh(option)]
        pub username: Option<String>,
        /// file holding the SMTP login's password (first line)
        #[argh(option)]
        pub password_file: Option<PathBuf>,
        /// CA certificate (PEM) that signs the mail server's certificate; default: the system's
        #[argh(option)]
        pub ca_cert: Option<PathBuf>,
        /// give a notice up after this long undelivered (default 24h)
        #[argh(option)]
        pub give_up_after: Option<String>,
    }
);

channel_verb!(
    /// Add a syslog channel (RFC 5424 over UDP, TCP or TLS).
    AddSyslog, "syslog" {
        /// the channel's name
        #[argh(positional)]
        pub name: String,
        /// the collector, HOST:PORT
        #[argh(option)]
        pub address: String,
        /// udp, tcp or tls
        #[argh(option)]
        pub transport: String,
        /// cef, leef or text
        #[argh(option)]
        pub format: String,
        /// CA certificate (PEM) of the collector (tls); default: the system's
        #[argh(option)]
        pub ca_cert: Option<PathBuf>,
        /// give a notice up after this long undelivered (default 24h)
        #[argh(option)]
        pub give_up_after: Option<String>,
        /// also forward agent events of this id or name (repeat for several; schema/events.md)
        #[argh(option)]
        pub event: Vec<String>,
    }
);

channel_verb!(
    /// Add a webhook channel (HTTPS POST of a signed JSON body).
    AddWebhook, "webhook" {
        /// the channel's name
        #[argh(positional)]
        pub name: String,
        /// https://HOST[:PORT]/PATH
        #[argh(option)]
        pub url: String,
        /// file holding the signing secret (first line); default: one is made and printed once
        #[argh(option)]
        pub secret_file: Option<PathBuf>,
        /// an extra header, NAME=VALUE (repeat for several)
        #[argh(option)]
        pub header: Vec<String>,
        /// CA certificate (PEM) of the receiver; default: the system's
        #[argh(option)]
        pub ca_cert: Option<PathBuf>,
        /// give a notice up after this long undelivered (default 24h)
        #[argh(option)]
        pub give_up_after: Option<String>,
    }
);

channel_verb!(
    /// List channels, their delivery state and routes.
    NotificationsList, "list" {}
);
channel_verb!(
    /// Show a channel.
    NotificationsShow, "show" {
        /// the channel's name
        #[argh(positional)]
        pub name: String,
    }
);
channel_verb!(
    /// Remove a channel (its routes and queued notices go with it).
    NotificationsRemove, "remove" {
        /// the channel's name
        #[argh(positional)]
        pub name: String,
    }
);
channel_verb!(
    /// Send a test notification now and print the server's answer.
    NotificationsTest, "test" {
        /// the channel's name
        #[argh(positional)]
        pub name: String,
    }
);

/// Routes: which alerts a channel receives (a channel with none receives every raise and clear).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "route")]
pub struct RouteArgs {
    #[argh(subcommand)]
    pub verb: RouteVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum RouteVerb {
    Add(RouteAdd),
    Remove(RouteRemove),
}

channel_verb!(
    /// Add a route to a channel.
    RouteAdd, "add" {
        /// the channel's name
        #[argh(positional)]
        pub name: String,
        /// only this alert kind (e.g. computer-offline)
        #[argh(option)]
        pub kind: Option<String>,
        /// only this severity (critical, warning)
        #[argh(option)]
        pub severity: Option<String>,
        /// only computers in this policy or below it
        #[argh(option)]
        pub policy: Option<String>,
        /// which changes, comma-separated: raised, repeated, cleared (default raised,cleared)
        #[argh(option)]
        pub on: Option<String>,
    }
);
channel_verb!(
    /// Remove a route.
    RouteRemove, "remove" {
        /// the route's id
        #[argh(positional)]
        pub id: u64,
    }
);

/// Maintenance windows: alerts recorded but not notified.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "maintenance")]
pub struct MaintenanceArgs {
    #[argh(subcommand)]
    pub verb: MaintenanceVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum MaintenanceVerb {
    Add(MaintenanceAdd),
    List(MaintenanceList),
    Remove(MaintenanceRemove),
}

channel_verb!(
    /// Open a maintenance window on a computer or a policy subtree, starting now.
    MaintenanceAdd, "add" {
        /// the computer's id
        #[argh(option)]
        pub computer: Option<u64>,
        /// the policy's name or id (it and every policy below it)
        #[argh(option)]
        pub policy: Option<String>,
        /// how long, e.g. 2h
        #[argh(option)]
        pub duration: String,
        /// why
        #[argh(option)]
        pub reason: String,
    }
);
channel_verb!(
    /// List maintenance windows.
    MaintenanceList, "list" {}
);
channel_verb!(
    /// End a maintenance window now.
    MaintenanceRemove, "remove" {
        /// the window's id
        #[argh(positional)]
        pub id: u64,
    }
);

/// Show, acknowledge and dismiss alerts.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "alerts")]
pub struct AlertsArgs {
    #[argh(subcommand)]
    pub verb: AlertsVerb,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum AlertsVerb {
    List(AlertsList),
    Ack(AlertsAck),
    Dismiss(AlertsDismiss),
}

admin_verb!(
    /// List active alerts, newest first.
    AlertsList, "list" {
        /// also cleared and dismissed alerts
        #[argh(switch)]
        pub all: bool,
    }
);
admin_verb!(
    /// Dismiss alerts: they end now (one that comes back is a new alert).
    AlertsDismiss, "dismiss" {
        /// alert ids (several: all in one go)
        #[argh(positional)]
        pub ids: Vec<u64>,
    }
);
admin_verb!(
    /// Acknowledge alerts: still active while their condition lasts, but not notified again.
    AlertsAck, "ack" {
        /// alert ids (several: all in one go)
        #[argh(positional)]
        pub ids: Vec<u64>,
        /// what you are doing about it
        #[argh(option)]
        pub comment: Option<String>,
    }
);
