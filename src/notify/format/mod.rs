//! The bytes each channel sends for a notice: pure functions of the notice and the site, with
//! no clock and no I/O, so every format is pinned by a golden test and `schema/notifications.md`.
//!
//! - [`syslog`]: the RFC 5424 message, its framing per transport, and the plain-text line;
//! - [`cef`] and [`leef`]: the SIEM formats a syslog channel can carry;
//! - [`event`]: the same three formats for a forwarded agent event;
//! - [`webhook`]: the JSON body, the delivery id and the HMAC signature header;
//! - [`email`]: the subject and the plain-text body.

pub mod cef;
pub mod email;
pub mod event;
pub mod leef;
pub mod syslog;
pub mod webhook;

pub use cef::cef;
pub use email::email;
pub use event::event_message;
pub use leef::leef;
pub use syslog::{frame, syslog_message, text};
pub use webhook::{
    DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, delivery_id, signature, verify_signature,
    webhook_body,
};

use crate::alerts::AlertKind;
use crate::clock::{WallMs, format_utc};
use crate::notify::{Change, Notice};

/// What the formats say about the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The manager's host name: the syslog HOSTNAME, the webhook's `manager`, the delivery id's
    /// prefix.
    pub manager: String,
    /// `env!("CARGO_PKG_VERSION")`: the CEF and LEEF product version.
    pub version: &'static str,
}

/// The number SIEM rules match on, shared by CEF (signature id) and LEEF (event id): the
/// hundreds say the kind, the units the change, so one rule can take a kind's whole lifecycle
/// (`schema/notifications.md` has the table). An explicit match, not the variant's position,
/// so that a new kind must be given its number here.
pub fn event_id(notice: &Notice) -> u32 {
    let kind = match notice.alert.kind {
        AlertKind::ComputerOffline => 100,
        AlertKind::ClockChanged => 200,
        AlertKind::ManagerCannotReachAgent => 300,
        AlertKind::NotificationFailed => 400,
        AlertKind::SiteIncident => 500,
        AlertKind::DriverOffline => 600,
    };
    match notice.change {
        Change::Raised => kind,
        Change::Repeated => kind + 1,
        Change::Cleared => kind + 2,
        // A test carries a placeholder alert whose kind means nothing.
        Change::Test => 0,
    }
}

/// What happened, without where: `computer-offline raised`, or `test notification`. The CEF
/// name, so a SIEM sees a few names rather than one per host.
pub(crate) fn event_name(notice: &Notice) -> String {
    if notice.change == Change::Test {
        return "test notification".to_string();
    }
    format!("{} {}", notice.alert.kind.name(), notice.change.name())
}

/// What happened and where, as people read it first: `computer-offline raised on web1`.
pub(crate) fn headline(notice: &Notice) -> String {
    let mut line = event_name(notice);
    if !notice.hostname.is_empty() && notice.change != Change::Test {
        line.push_str(" on ");
        line.push_str(&notice.hostname);
    }
    line
}

/// A wall time as RFC 3339 in UTC with milliseconds, `2026-03-01T14:05:09.123Z`: the syslog
/// TIMESTAMP and LEEF's `devTime`. `format_utc` keeps the calendar arithmetic; this changes
/// only its punctuation.
pub(crate) fn rfc3339(t: WallMs) -> String {
    let utc = format_utc(t);
    let utc = utc.strip_suffix(" UTC").unwrap_or(&utc);
    format!("{}.{:03}Z", utc.replacen(' ', "T", 1), t.0 % 1000)
}

/// `text` with every control character (line breaks, tabs) turned into a space: for the places
/// that must stay on one line and that people read, where an escape would only be noise.
/// `text` with `\`, line breaks and `also` behind a backslash (`\n`, `\r`, and `also`'s
/// spelling): what CEF extension values and LEEF attribute values need, each with the one
/// character its own syntax reserves.
pub(crate) fn backslash_escape(text: &str, also: (char, &str)) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == also.0 => out.push_str(also.1),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Alert, AlertId, ComputerId, PolicyId};

    /// The notice every golden test formats: computer 7 (`web1`) offline a third time.
    pub(crate) fn offline() -> Notice {
        Notice {
            seq: 42,
            at: WallMs(1_772_373_909_123),
            change: Change::Repeated,
            alert: Alert {
                id: AlertId(12),
                kind: AlertKind::ComputerOffline,
                computer: ComputerId(7),
                raised: WallMs(1_772_373_789_000),
                updated: WallMs(1_772_373_909_123),
                count: 3,
                message: "offline: 3 heartbeat(s) missed, last heartbeat 2026-03-01 14:03:09 \
                          UTC; no goodbye"
                    .to_string(),
                cleared: None,
                dismissed: None,
                acknowledged: None,
                about: None,
                computers: Vec::new(),
            },
            hostname: "web1".to_string(),
            policy: Some(PolicyId(1)),
        }
    }

    /// A receiver's reading of the backslash escapes CEF and LEEF write (`\\`, `\n`, `\r`,
    /// and `\=` or `\t`): neither format writes a sequence the other gives another meaning.
    pub(crate) fn unescape(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        out
    }

    pub(crate) fn site() -> Site {
        Site {
            manager: "dsm1".to_string(),
            version: "0.1.0",
        }
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(WallMs(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(WallMs(1_772_373_909_123)),
            "2026-03-01T14:05:09.123Z"
        );
        assert_eq!(rfc3339(WallMs(951_868_799_007)), "2000-02-29T23:59:59.007Z");
    }

    #[test]
    fn every_kind_and_change_has_its_own_event_id() {
        let mut seen = std::collections::HashSet::new();
        let mut notice = offline();
        for kind in AlertKind::ALL {
            for change in [Change::Raised, Change::Repeated, Change::Cleared] {
                notice.alert.kind = kind;
                notice.change = change;
                assert!(seen.insert(event_id(&notice)), "{kind:?} {change:?}");
            }
        }
        notice.change = Change::Test;
        assert!(seen.insert(event_id(&notice)), "a test has its own id");
    }

    #[test]
    fn the_event_id_table_matches_schema_notifications_md() {
        let doc = include_str!("../../../schema/notifications.md");
        let mut notice = offline();
        for kind in AlertKind::ALL {
            notice.alert.kind = kind;
            let ids: Vec<String> = [Change::Raised, Change::Repeated, Change::Cleared]
                .into_iter()
                .map(|change| {
                    notice.change = change;
                    event_id(&notice).to_string()
                })
                .collect();
            let row = format!("| `{}` | {} |", kind.name(), ids.join(" | "));
            assert!(doc.contains(&row), "schema/notifications.md lacks {row}");
        }
    }

    #[test]
    fn the_severity_table_matches_schema_notifications_md() {
        let doc = include_str!("../../../schema/notifications.md");
        let mut critical = offline();
        critical.change = Change::Raised;
        let mut warning = critical.clone();
        warning.alert.kind = AlertKind::ClockChanged;
        let mut cleared = critical.clone();
        cleared.change = Change::Cleared;
        let test = Notice::test(WallMs(0), "siem");
        for (row, notice, word) in [
            ("raised or repeated, critical alert", critical, "crit"),
            ("raised or repeated, warning alert", warning, "warning"),
            ("cleared (any alert)", cleared, "notice"),
            ("test", test, "info"),
        ] {
            let severity = syslog::severity(&notice);
            let line = format!(
                "| {row} | {severity} ({word}) | {} | {} | {} |",
                syslog::FACILITY * 8 + severity,
                cef::severity(&notice),
                leef::severity(&notice)
            );
            assert!(doc.contains(&line), "schema/notifications.md lacks {line}");
        }
    }

    #[test]
    fn the_headline_names_the_host_only_when_there_is_one() {
        let mut notice = offline();
        assert_eq!(headline(&notice), "computer-offline repeated on web1");
        notice.hostname.clear();
        assert_eq!(headline(&notice), "computer-offline repeated");
        assert_eq!(
            headline(&Notice::test(WallMs(0), "siem")),
            "test notification"
        );
    }
}
