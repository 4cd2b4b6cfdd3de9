//! CEF (ArcSight Common Event Format), laid out as Trend Micro Deep Security Manager writes its
//! own events, so a SIEM already parsing the DSM finds the same header and keys:
//! `CEF:0|Picket|Picket Manager|VERSION|EVENT_ID|NAME|SEVERITY|EXTENSION`.

use super::{Site, event_id, event_name};
use crate::alerts::Severity;
use crate::notify::{Change, Notice};

/// CEF's 0-10 scale: a critical alert is High (7-8) rather than Very-High (9-10), which SIEMs
/// keep for attacks in progress; a warning is Medium; a cleared alert is Low but not nothing,
/// since someone may be waiting for it; a test is 0.
pub fn severity(notice: &Notice) -> u8 {
    match notice.change {
        Change::Test => 0,
        Change::Cleared => 3,
        Change::Raised | Change::Repeated => match notice.alert.kind.severity() {
            Severity::Critical => 8,
            Severity::Warning => 5,
        },
    }
}

/// The CEF line for a notice (no syslog header: [`super::syslog_message`] adds it).
pub fn cef(notice: &Notice, site: &Site) -> String {
    let header = [
        "Picket",
        "Picket Manager",
        site.version,
        &event_id(notice).to_string(),
        &event_name(notice),
        &severity(notice).to_string(),
    ]
    .map(escape_header)
    .join("|");
    let extension = extension(notice)
        .into_iter()
        .map(|(key, value)| format!("{key}={}", escape_value(&value)))
        .collect::<Vec<_>>()
        .join(" ");
    format!("CEF:0|{header}|{extension}")
}

/// The extension's pairs, in a fixed order with `msg` last (where the longest value reads
/// best). Standard keys where CEF has one; the rest in labelled custom fields, as the DSM does.
fn extension(notice: &Notice) -> Vec<(&'static str, String)> {
    let alert = &notice.alert;
    let mut pairs = vec![("rt", notice.at.0.to_string())];
    if notice.change == Change::Test {
        pairs.push(("cs1", Change::Test.name().to_string()));
        pairs.push(("cs1Label", "change".to_string()));
        pairs.push(("msg", alert.message.clone()));
        return pairs;
    }
    if !notice.hostname.is_empty() {
        pairs.push(("dvchost", notice.hostname.clone()));
    }
    if alert.computer.0 != 0 {
        pairs.push(("deviceExternalId", alert.computer.0.to_string()));
    }
    pairs.extend([
        ("cn1", alert.id.0.to_string()),
        ("cn1Label", "alertId".to_string()),
        ("cs1", notice.change.name().to_string()),
        ("cs1Label", "change".to_string()),
        ("cs2", alert.kind.name().to_string()),
        ("cs2Label", "kind".to_string()),
        ("cs3", alert.kind.severity().name().to_string()),
        ("cs3Label", "alertSeverity".to_string()),
    ]);
    if let Some(policy) = notice.policy {
        pairs.push(("cn2", policy.0.to_string()));
        pairs.push(("cn2Label", "policyId".to_string()));
    }
    pairs.push(("cnt", alert.count.to_string()));
    pairs.push(("start", alert.raised.0.to_string()));
    if let Some(cleared) = alert.cleared {
        pairs.push(("end", cleared.0.to_string()));
    }
    pairs.push(("msg", alert.message.clone()));
    pairs
}

/// A header field: `\` and `|` behind a backslash, as the CEF specification says. Header
/// fields are Picket's own words (never a host name or a message), so they hold no line break
/// to escape.
pub(crate) fn escape_header(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An extension value: `\` and `=` behind a backslash, and line breaks written as `\n` and
/// `\r`, so a value can never end its pair early nor its syslog line.
pub(crate) fn escape_value(text: &str) -> String {
    super::backslash_escape(text, ('=', "\\="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallMs;
    use crate::notify::format::tests::{offline, site, unescape};
    use proptest::prelude::*;

    /// The characters of `text` that no backslash escapes.
    fn unescaped(text: &str) -> Vec<char> {
        let mut out = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                chars.next();
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Reads a CEF line as a receiver does: seven unescaped pipes end the header fields, then
    /// each unescaped `=` ends a key (the word before it) and the value before it.
    fn parse(line: &str) -> (Vec<String>, Vec<(String, String)>) {
        let mut fields = Vec::new();
        let mut rest = line;
        for _ in 0..7 {
            let at = split_at_unescaped(rest, '|').unwrap();
            fields.push(unescape(&rest[..at]));
            rest = &rest[at + 1..];
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut key = None;
        while let Some(at) = split_at_unescaped(rest, '=') {
            let before = &rest[..at];
            let (value, next_key) = match before.rfind(' ') {
                Some(space) if key.is_some() => (&before[..space], &before[space + 1..]),
                _ => ("", before),
            };
            if let Some(k) = key.take() {
                pairs.push((k, unescape(value)));
            }
            key = Some(next_key.to_string());
            rest = &rest[at + 1..];
        }
        if let Some(k) = key {
            pairs.push((k, unescape(rest)));
        }
        (fields, pairs)
    }

    fn split_at_unescaped(text: &str, separator: char) -> Option<usize> {
        let mut chars = text.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                chars.next();
            } else if c == separator {
                return Some(i);
            }
        }
        None
    }

    #[test]
    fn golden_repeated_offline_alert() {
        assert_eq!(
            cef(&offline(), &site()),
            "CEF:0|Picket|Picket Manager|0.1.0|101|computer-offline repeated|8|\
             rt=1772373909123 dvchost=web1 deviceExternalId=7 cn1=12 cn1Label=alertId \
             cs1=repeated cs1Label=change cs2=computer-offline cs2Label=kind cs3=critical \
             cs3Label=alertSeverity cn2=1 cn2Label=policyId cnt=3 start=1772373789000 \
             msg=offline: 3 heartbeat(s) missed, last heartbeat 2026-03-01 14:03:09 UTC; no \
             goodbye"
        );
    }

    #[test]
    fn golden_test_notice() {
        assert_eq!(
            cef(&Notice::test(WallMs(1_772_373_909_123), "siem"), &site()),
            "CEF:0|Picket|Picket Manager|0.1.0|0|test notification|0|rt=1772373909123 \
             cs1=test cs1Label=change msg=A test notification from Picket through channel \
             'siem': if you read this, the channel works."
        );
    }

    #[test]
    fn a_cleared_alert_is_low_and_says_when() {
        let mut notice = offline();
        notice.change = Change::Cleared;
        notice.alert.cleared = Some(WallMs(1_772_374_000_000));
        let line = cef(&notice, &site());
        assert!(line.starts_with("CEF:0|Picket|Picket Manager|0.1.0|102|"));
        assert!(line.contains("|3|rt="), "{line}");
        assert!(line.contains(" end=1772374000000 msg="), "{line}");
    }

    #[test]
    fn escapes_follow_the_cef_specification() {
        assert_eq!(escape_header(r"a|b\c"), r"a\|b\\c");
        assert_eq!(escape_value("a=b\\c\r\nd|e"), r"a\=b\\c\r\nd|e");
    }

    proptest! {
        #[test]
        fn header_escaping_round_trips_and_leaves_no_bare_pipe(text in any::<String>()) {
            let escaped = escape_header(&text);
            prop_assert_eq!(unescape(&escaped), text);
            prop_assert!(!unescaped(&escaped).contains(&'|'));
        }

        #[test]
        fn value_escaping_round_trips_and_leaves_no_bare_equals_or_line_break(
            text in any::<String>()
        ) {
            let escaped = escape_value(&text);
            prop_assert_eq!(unescape(&escaped), text);
            prop_assert!(!unescaped(&escaped).contains(&'='));
            prop_assert!(!escaped.contains(['\n', '\r']));
        }

        #[test]
        fn a_receiver_reads_back_the_message_and_host(
            message in "(.|[|=\\\\\r\n ])*",
            hostname in "[a-z0-9|=\\\\ ]{1,20}",
        ) {
            let mut notice = offline();
            notice.alert.message = message.clone();
            notice.hostname = hostname.clone();
            let (fields, pairs) = parse(&cef(&notice, &site()));
            prop_assert_eq!(fields.len(), 7);
            prop_assert_eq!(&fields[5], &event_name(&notice));
            let value = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            prop_assert_eq!(value("msg"), Some(message));
            prop_assert_eq!(value("dvchost"), Some(hostname));
            prop_assert_eq!(value("cnt"), Some("3".to_string()));
        }
    }
}
