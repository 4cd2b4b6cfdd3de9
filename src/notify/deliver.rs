//! One notice (or one forwarded agent event) to one channel: formats it the channel's way and
//! hands the bytes to the channel's sender. Shared by the notifier task and the API's "send a
//! test".

use super::format::{self, Site};
use super::send::{self, Answer, SendError};
use super::{Channel, EventNotice, Notice, Syslog, Target};
use crate::clock::Clock;
use std::time::Duration;

/// How long one delivery may take, connection and TLS included, before it counts as failed.
pub const SEND_LIMIT: Duration = Duration::from_secs(30);

pub async fn deliver(
    channel: &Channel,
    notice: &Notice,
    site: &Site,
    clock: &dyn Clock,
) -> Result<Answer, SendError> {
    match &channel.target {
        Target::Email(email) => {
            let (subject, body) = format::email(notice, site);
            send::email(email, &subject, &body, clock, SEND_LIMIT).await
        }
        Target::Syslog(syslog) => {
            let message = format::syslog_message(notice, syslog.format, site);
            let framed = format::frame(&message, syslog.transport);
            send::syslog(syslog, &framed, clock, SEND_LIMIT).await
        }
        Target::Webhook(hook) => {
            let body = format::webhook_body(notice, site);
            let timestamp = clock.wall().0 / 1000;
            let headers = [
                (
                    format::SIGNATURE_HEADER,
                    format::signature(hook.secret.as_bytes(), timestamp, &body),
                ),
                (format::TIMESTAMP_HEADER, timestamp.to_string()),
                (format::DELIVERY_HEADER, format::delivery_id(notice, site)),
            ];
            send::webhook(hook, &body, &headers, clock, SEND_LIMIT).await
        }
    }
}

/// An agent event to a syslog channel that forwards it.
pub async fn deliver_event(
    syslog: &Syslog,
    notice: &EventNotice,
    site: &Site,
    clock: &dyn Clock,
) -> Result<Answer, SendError> {
    let message = format::event_message(notice, syslog.format, site);
    let framed = format::frame(&message, syslog.transport);
    send::syslog(syslog, &framed, clock, SEND_LIMIT).await
}
