//! The channel record as schema 7 wrote it, frozen: read and converted, never written. A
//! syslog channel then had no forwarded events; it reads as one that forwards none.

use super::notify::ChannelRecord;
use super::records::Record;
use crate::clock::WallMs;
use crate::notify::{Channel, Email, Syslog, SyslogFormat, SyslogTransport, Target, Webhook};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `Channel` of schema 7.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ChannelV1 {
    pub(super) name: String,
    pub(super) target: TargetV1,
    pub(super) give_up_after: Duration,
    pub(super) created: WallMs,
}

/// `Target` of schema 7: the email and webhook settings are those of today.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum TargetV1 {
    Email(Email),
    Syslog(SyslogV1),
    Webhook(Webhook),
}

/// `Syslog` of schema 7: no `events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SyslogV1 {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) transport: SyslogTransport,
    pub(super) format: SyslogFormat,
    pub(super) ca_cert: Option<String>,
}

impl From<ChannelV1> for Channel {
    fn from(c: ChannelV1) -> Channel {
        let target = match c.target {
            TargetV1::Email(e) => Target::Email(e),
            TargetV1::Webhook(w) => Target::Webhook(w),
            TargetV1::Syslog(s) => Target::Syslog(Syslog {
                host: s.host,
                port: s.port,
                transport: s.transport,
                format: s.format,
                ca_cert: s.ca_cert,
                events: Vec::new(),
            }),
        };
        Channel {
            name: c.name,
            target,
            give_up_after: c.give_up_after,
            created: c.created,
        }
    }
}

impl Record for ChannelRecord {
    type Model = Channel;
    const TABLE: &'static str = "channels";

    fn current(model: &Channel) -> Self {
        ChannelRecord::V2(model.clone())
    }

    fn into_model(self) -> Channel {
        match self {
            ChannelRecord::V1(c) => c.into(),
            ChannelRecord::V2(c) => c,
        }
    }
}
