//! LEEF 2.0 (IBM QRadar's Log Event Extended Format):
//! `LEEF:2.0|Picket|Picket Manager|VERSION|EVENT_ID|x09|` then `key=value` attributes separated
//! by tabs.
//!
//! The delimiter is declared (`x09`, a tab) although a tab is LEEF's default: a parser that
//! meets a 2.0 header without the field has to guess whether the sixth field is a delimiter or
//! the first attribute, and some guess wrong.

use super::cef::escape_header;
use super::{Site, event_id, event_name, rfc3339};
use crate::alerts::Severity;
use crate::notify::{Change, Notice};

/// The attribute delimiter, as the header declares it.
const DELIMITER: char = '\t';

/// The Java `SimpleDateFormat` pattern of `devTime`, which QRadar parses with it.
pub(crate) const DEV_TIME_FORMAT: &str = "yyyy-MM-dd'T'HH:mm:ss.SSSX";

/// LEEF's `sev`, 1-10: the CEF numbers (see [`super::cef::severity`]), with a test at LEEF's
/// lowest, 1, since LEEF has no 0.
pub fn severity(notice: &Notice) -> u8 {
    match notice.change {
        Change::Test => 1,
        Change::Cleared => 3,
        Change::Raised | Change::Repeated => match notice.alert.kind.severity() {
            Severity::Critical => 8,
            Severity::Warning => 5,
        },
    }
}

/// The LEEF line for a notice (no syslog header: [`super::syslog_message`] adds it).
pub fn leef(notice: &Notice, site: &Site) -> String {
    let header = [
        "Picket",
        "Picket Manager",
        site.version,
        &event_id(notice).to_string(),
    ]
    .map(escape_header)
    .join("|");
    let attributes = attributes(notice)
        .into_iter()
        .map(|(key, value)| format!("{key}={}", escape_value(&value)))
        .collect::<Vec<_>>()
        .join(&DELIMITER.to_string());
    format!("LEEF:2.0|{header}|x09|{attributes}")
}

/// The attributes in a fixed order, `msg` last: LEEF's predefined keys (`devTime`, `sev`,
/// `cat`, `resource` for the computer's host name) and Picket's own for the rest.
fn attributes(notice: &Notice) -> Vec<(&'static str, String)> {
    let alert = &notice.alert;
    let test = notice.change == Change::Test;
    let mut pairs = vec![
        ("devTime", rfc3339(notice.at)),
        ("devTimeFormat", DEV_TIME_FORMAT.to_string()),
        ("sev", severity(notice).to_string()),
        (
            "cat",
            if test { "test" } else { alert.kind.name() }.to_string(),
        ),
        ("name", event_name(notice)),
    ];
    if test {
        pairs.push(("msg", alert.message.clone()));
        return pairs;
    }
    if !notice.hostname.is_empty() {
        pairs.push(("resource", notice.hostname.clone()));
    }
    if alert.computer.0 != 0 {
        pairs.push(("computerId", alert.computer.0.to_string()));
    }
    pairs.extend([
        ("alertId", alert.id.0.to_string()),
        ("change", notice.change.name().to_string()),
        ("alertSeverity", alert.kind.severity().name().to_string()),
    ]);
    if let Some(policy) = notice.policy {
        pairs.push(("policyId", policy.0.to_string()));
    }
    pairs.push(("count", alert.count.to_string()));
    pairs.push(("raisedTime", rfc3339(alert.raised)));
    if let Some(cleared) = alert.cleared {
        pairs.push(("clearedTime", rfc3339(cleared)));
    }
    pairs.push(("msg", alert.message.clone()));
    pairs
}

/// An attribute value: LEEF itself escapes nothing and only forbids the delimiter, so tabs and
/// line breaks are written `\t`, `\n`, `\r`, and `\` as `\\` so that those stay readable back.
pub(crate) fn escape_value(text: &str) -> String {
    super::backslash_escape(text, ('\t', "\\t"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallMs;
    use crate::notify::format::tests::{offline, site, unescape};
    use proptest::prelude::*;

    /// Reads a LEEF 2.0 line as QRadar does: five header fields and the delimiter's, then
    /// attributes split at the delimiter and each at its first `=`.
    fn parse(line: &str) -> (Vec<&str>, Vec<(String, String)>) {
        let fields: Vec<&str> = line.splitn(7, '|').collect();
        let attributes = fields[6]
            .split(DELIMITER)
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap();
                (key.to_string(), unescape(value))
            })
            .collect();
        (fields[..6].to_vec(), attributes)
    }

    #[test]
    fn golden_repeated_offline_alert() {
        assert_eq!(
            leef(&offline(), &site()),
            "LEEF:2.0|Picket|Picket Manager|0.1.0|101|x09|\
             devTime=2026-03-01T14:05:09.123Z\tdevTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSX\t\
             sev=8\tcat=computer-offline\tname=computer-offline repeated\tresource=web1\t\
             computerId=7\talertId=12\tchange=repeated\talertSeverity=critical\tpolicyId=1\t\
             count=3\traisedTime=2026-03-01T14:03:09.000Z\t\
             msg=offline: 3 heartbeat(s) missed, last heartbeat 2026-03-01 14:03:09 UTC; no \
             goodbye"
        );
    }

    #[test]
    fn golden_test_notice() {
        assert_eq!(
            leef(&Notice::test(WallMs(1_772_373_909_123), "siem"), &site()),
            "LEEF:2.0|Picket|Picket Manager|0.1.0|0|x09|\
             devTime=2026-03-01T14:05:09.123Z\tdevTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSX\t\
             sev=1\tcat=test\tname=test notification\t\
             msg=A test notification from Picket through channel 'siem': if you read this, \
             the channel works."
        );
    }

    #[test]
    fn a_cleared_warning_is_low_and_says_when() {
        let mut notice = offline();
        notice.alert.kind = crate::alerts::AlertKind::ClockChanged;
        notice.change = Change::Cleared;
        notice.alert.cleared = Some(WallMs(1_772_374_000_000));
        let line = leef(&notice, &site());
        assert!(line.contains("|202|x09|"), "{line}");
        assert!(line.contains("\tsev=3\t"), "{line}");
        assert!(
            line.contains("\tclearedTime=2026-03-01T14:06:40.000Z\t"),
            "{line}"
        );
    }

    proptest! {
        #[test]
        fn value_escaping_round_trips_and_leaves_no_delimiter_or_line_break(
            text in any::<String>()
        ) {
            let escaped = escape_value(&text);
            prop_assert_eq!(unescape(&escaped), text);
            prop_assert!(!escaped.contains([DELIMITER, '\n', '\r']));
        }

        #[test]
        fn a_receiver_reads_back_the_message_and_host(
            message in "(.|[|=\\\\\t\r\n ])*",
            hostname in "[a-z0-9|=\\\\\t ]{1,20}",
        ) {
            let mut notice = offline();
            notice.alert.message = message.clone();
            notice.hostname = hostname.clone();
            let line = leef(&notice, &site());
            let (header, pairs) = parse(&line);
            prop_assert_eq!(header, vec!["LEEF:2.0", "Picket", "Picket Manager", "0.1.0", "101", "x09"]);
            let value = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            prop_assert_eq!(value("msg"), Some(message));
            prop_assert_eq!(value("resource"), Some(hostname));
            prop_assert_eq!(value("count"), Some("3".to_string()));
        }
    }
}
