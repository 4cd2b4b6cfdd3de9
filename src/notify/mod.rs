//! Notifications: telling someone outside the console that an alert was raised, repeated or
//! cleared, by email, syslog or webhook; and forwarding agent events to syslog.
//!
//! - [`channel`]: where notifications go and how (a channel's settings and their validation);
//! - [`notice`]: what one notification says (the outbox entry);
//! - [`route`] and [`maintenance`]: which notices a channel takes, and the windows that keep a
//!   computer's quiet;
//! - [`delivery`]: a channel's progress through the outbox and its retries (sans-io);
//! - [`feed`]: a syslog channel's progress through the stored agent events it forwards
//!   (sans-io);
//! - [`format`]: the bytes each channel sends (RFC 5424 syslog with CEF, LEEF or plain text,
//!   the webhook's JSON body and signature, the email's subject and text);
//! - [`send`]: the shells that move those bytes to a mail server, a syslog collector or a
//!   webhook receiver, and report the server's answer.
//!
//! Every notice is written to the store's outbox in the transaction that changes its alert
//! (`alerts/record.rs`), and the manager's notifier task delivers it; agent events are read
//! where the manager stored them, each forwarding channel keeping its own place.

pub mod channel;
pub mod deliver;
pub mod delivery;
pub mod feed;
pub mod format;
pub mod maintenance;
pub mod notice;
pub mod route;
pub mod send;

pub use channel::{
    Channel, ChannelError, Email, SmtpSecurity, Syslog, SyslogFormat, SyslogTransport, Target,
    Webhook,
};
pub use delivery::Delivery;
pub use feed::{Cursor, EventNotice, Position};
pub use maintenance::{Window, WindowTarget};
pub use notice::{Change, Notice};
pub use route::Route;
