//! Agent events forwarded to syslog: the RFC 5424 message of a notice, carrying CEF laid out as
//! Deep Security Manager relays its agents' events (product `Picket Agent`, the manager's
//! version, the computer as `cn1` Host ID and `dvchost`), LEEF 2.0, or a line of text.
//!
//! Everything an agent wrote (field names and values) is escaped for its format and clipped,
//! so no event can break a line or grow a message past what collectors take.

use super::cef::{escape_header, escape_value as cef_value};
use super::leef::escape_value as leef_value;
use super::syslog::{FACILITY, header_field};
use super::{Site, one_line, rfc3339};
use crate::model::events::{
    self, AGENT_PORT_REFUSED, AGENT_UPGRADE_FAILED, CLOCK_CHANGED, CONFIG_REJECTED,
    FIREWALL_RESTORED,
};
use crate::notify::{EventNotice, SyslogFormat};
use std::net::IpAddr;

/// The CEF and LEEF product of forwarded events: the DSM's relayed agent events keep the
/// agent's product name and carry the manager's version.
pub const PRODUCT: &str = "Picket Agent";

/// Event fields written as their own CEF custom strings or LEEF attributes; the rest are in
/// `msg` only (CEF has six `cs` keys).
pub const MAX_FIELDS: usize = 6;
/// The longest field name and value, in bytes, before they are cut and marked `…`.
pub const MAX_FIELD_NAME: usize = 32;
pub const MAX_FIELD_VALUE: usize = 128;
/// The longest `msg` (every field as `name=value`), in bytes, before it is cut and marked `…`.
/// With the rest of a line and every character escaped, a message stays under 6 KiB.
pub const MAX_MSG: usize = 1024;

/// How much an event matters to whoever reads a SIEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The agent's life going as it should: started, stopped, activated, configured.
    Info,
    /// Something an administrator should look at: a configuration the agent could not apply,
    /// a clock that jumped, a firewall table someone changed.
    Warning,
}

/// The level of an event id; an id outside the catalogue is `Info`.
pub fn level(id: u32) -> Level {
    // A logged packet is the firewall doing its job (info); a stranger knocking on the agent's
    // own port is worth a look.
    let warnings = [
        CONFIG_REJECTED.id,
        CLOCK_CHANGED.id,
        FIREWALL_RESTORED.id,
        AGENT_PORT_REFUSED.id,
        // An upgrade given up: the computer runs an older version than the site intends.
        AGENT_UPGRADE_FAILED.id,
    ];
    if warnings.contains(&id) {
        Level::Warning
    } else {
        Level::Info
    }
}

/// RFC 5424 severity: 6 (info) or 4 (warning).
pub fn syslog_severity(id: u32) -> u8 {
    match level(id) {
        Level::Info => 6,
        Level::Warning => 4,
    }
}

/// CEF's 0-10: an info event is Low (2), a warning Medium (5), as a warning alert is; nothing an
/// agent reports about itself is High.
pub fn cef_severity(id: u32) -> u8 {
    match level(id) {
        Level::Info => 2,
        Level::Warning => 5,
    }
}

/// LEEF's `sev`, 1-10: the CEF numbers.
pub fn leef_severity(id: u32) -> u8 {
    cef_severity(id)
}

/// The catalogue's name of the event, or `event-ID` for an id it does not know.
pub fn event_name(id: u32) -> String {
    events::name(id).map_or_else(|| format!("event-{id}"), str::to_string)
}

/// The syslog message for an event, without transport framing (`super::frame` adds it): one
/// line, timed when the manager stored the event.
pub fn event_message(notice: &EventNotice, format: SyslogFormat, site: &Site) -> String {
    let msg = match format {
        SyslogFormat::Cef => cef(notice, site),
        SyslogFormat::Leef => leef(notice, site),
        SyslogFormat::Text => text(notice),
    };
    format!(
        "<{}>1 {} {} picket - {} - {msg}",
        FACILITY * 8 + syslog_severity(notice.event.id),
        rfc3339(notice.event.received),
        header_field(&site.manager, 255),
        header_field(&event_name(notice.event.id), 32),
    )
}

/// The CEF line for an event (no syslog header).
pub fn cef(notice: &EventNotice, site: &Site) -> String {
    let e = &notice.event;
    let header = [
        "Picket",
        PRODUCT,
        site.version,
        &e.id.to_string(),
        &event_name(e.id),
        &cef_severity(e.id).to_string(),
    ]
    .map(escape_header)
    .join("|");
    let mut pairs = vec![
        ("cn1".to_string(), e.computer.0.to_string()),
        ("cn1Label".to_string(), "Host ID".to_string()),
    ];
    if !notice.hostname.is_empty() {
        pairs.push((
            device_key(&notice.hostname).to_string(),
            notice.hostname.clone(),
        ));
    }
    if let Some(address) = notice.address {
        pairs.push(("src".to_string(), address.to_string()));
    }
    pairs.extend([
        ("externalId".to_string(), e.seq.to_string()),
        ("rt".to_string(), e.received.0.to_string()),
        ("start".to_string(), e.time.0.to_string()),
    ]);
    for (n, (name, value)) in fields(notice).into_iter().enumerate() {
        pairs.push((format!("cs{}", n + 1), value));
        pairs.push((format!("cs{}Label", n + 1), name));
    }
    if let Some(msg) = msg(notice) {
        pairs.push(("msg".to_string(), msg));
    }
    let extension: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", cef_value(value)))
        .collect();
    format!("CEF:0|{header}|{}", extension.join(" "))
}

/// The LEEF 2.0 line for an event (no syslog header).
pub fn leef(notice: &EventNotice, site: &Site) -> String {
    let e = &notice.event;
    let header = ["Picket", PRODUCT, site.version, &e.id.to_string()]
        .map(escape_header)
        .join("|");
    let mut pairs: Vec<(String, String)> = [
        ("devTime", rfc3339(e.received)),
        ("devTimeFormat", super::leef::DEV_TIME_FORMAT.to_string()),
        ("sev", leef_severity(e.id).to_string()),
        ("cat", event_name(e.id)),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    if !notice.hostname.is_empty() {
        pairs.push(("resource".into(), notice.hostname.clone()));
    }
    if let Some(address) = notice.address {
        pairs.push(("src".into(), address.to_string()));
    }
    pairs.extend([
        ("computerId".into(), e.computer.0.to_string()),
        ("seq".into(), e.seq.to_string()),
        ("agentTime".into(), rfc3339(e.time)),
    ]);
    for (name, value) in fields(notice) {
        // A field named like a key of the line, or not a plain name, is in `msg` only: an
        // agent must not be able to forge `src` or `sev`.
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if plain
            && !RESERVED_LEEF_KEYS.contains(&name.as_str())
            && !pairs.iter().any(|(k, _)| *k == name)
        {
            pairs.push((name, value));
        }
    }
    if let Some(msg) = msg(notice) {
        pairs.push(("msg".into(), msg));
    }
    let attributes: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", leef_value(value)))
        .collect();
    format!("LEEF:2.0|{header}|x09|{}", attributes.join("\t"))
}

/// LEEF 2.0's predefined keys that QRadar gives a meaning, and Picket's own: no event field is
/// written under one of them.
const RESERVED_LEEF_KEYS: [&str; 20] = [
    "cat",
    "devTime",
    "devTimeFormat",
    "sev",
    "proto",
    "src",
    "dst",
    "srcPort",
    "dstPort",
    "usrName",
    "resource",
    "url",
    "policy",
    "role",
    "realm",
    "domain",
    "identSrc",
    "identHostName",
    "name",
    "msg",
];

/// The plain-text line: `clock-changed on web1 (computer 7, event 5004, seq 3): old=..., ...`.
/// Without a host name there is no `on HOST`; without fields no `: ...`.
pub fn text(notice: &EventNotice) -> String {
    let e = &notice.event;
    let mut line = event_name(e.id);
    if !notice.hostname.is_empty() {
        line.push_str(" on ");
        line.push_str(&notice.hostname);
    }
    line.push_str(&format!(
        " (computer {}, event {}, seq {})",
        e.computer, e.id, e.seq
    ));
    if let Some(msg) = msg(notice) {
        line.push_str(": ");
        line.push_str(&msg);
    }
    one_line(&line)
}

/// The DSM's key for the computer an event came from: `dvc` for an IPv4 address, `dvchost` for a
/// host name or an IPv6 address.
fn device_key(hostname: &str) -> &'static str {
    match hostname.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => "dvc",
        _ => "dvchost",
    }
}

/// The first [`MAX_FIELDS`] fields, names and values clipped.
fn fields(notice: &EventNotice) -> Vec<(String, String)> {
    notice
        .event
        .fields
        .iter()
        .take(MAX_FIELDS)
        .map(|(name, value)| (clip(name, MAX_FIELD_NAME), clip(value, MAX_FIELD_VALUE)))
        .collect()
}

/// Every field as `name=value`, joined by `, `, clipped; `None` for an event without fields.
fn msg(notice: &EventNotice) -> Option<String> {
    let fields = &notice.event.fields;
    if fields.is_empty() {
        return None;
    }
    let all: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(clip(&all.join(", "), MAX_MSG))
}

/// `text` cut to at most `max` bytes at a character boundary, ending with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallMs;
    use crate::model::{ComputerId, StoredEvent};
    use crate::notify::format::tests::{site, unescape};
    use proptest::prelude::*;

    /// The event every golden test formats: web1's clock jumped five minutes ahead.
    fn clock_jump() -> EventNotice {
        EventNotice {
            event: StoredEvent {
                computer: ComputerId(7),
                seq: 3,
                id: 5004,
                time: WallMs(1_772_374_200_000),
                received: WallMs(1_772_373_909_123),
                fields: vec![
                    ("old".into(), "1772373900000".into()),
                    ("new".into(), "1772374200000".into()),
                    ("change_ms".into(), "300000".into()),
                ],
            },
            hostname: "web1".into(),
            address: Some(IpAddr::from([10, 0, 0, 5])),
        }
    }

    const GOLDEN_CEF: &str = "CEF:0|Picket|Picket Agent|0.1.0|5004|clock-changed|5|cn1=7 \
        cn1Label=Host ID dvchost=web1 src=10.0.0.5 externalId=3 rt=1772373909123 \
        start=1772374200000 cs1=1772373900000 cs1Label=old cs2=1772374200000 cs2Label=new \
        cs3=300000 cs3Label=change_ms msg=old\\=1772373900000, new\\=1772374200000, \
        change_ms\\=300000";

    const GOLDEN_LEEF: &str = "LEEF:2.0|Picket|Picket Agent|0.1.0|5004|x09|\
        devTime=2026-03-01T14:05:09.123Z\tdevTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSX\tsev=5\t\
        cat=clock-changed\tresource=web1\tsrc=10.0.0.5\tcomputerId=7\tseq=3\t\
        agentTime=2026-03-01T14:10:00.000Z\told=1772373900000\tnew=1772374200000\t\
        change_ms=300000\tmsg=old=1772373900000, new=1772374200000, change_ms=300000";

    const GOLDEN_TEXT: &str = "<132>1 2026-03-01T14:05:09.123Z dsm1 picket - clock-changed - \
        clock-changed on web1 (computer 7, event 5004, seq 3): old=1772373900000, \
        new=1772374200000, change_ms=300000";

    #[test]
    fn golden_cef_leef_and_text() {
        assert_eq!(cef(&clock_jump(), &site()), GOLDEN_CEF);
        assert_eq!(leef(&clock_jump(), &site()), GOLDEN_LEEF);
        assert_eq!(
            event_message(&clock_jump(), SyslogFormat::Text, &site()),
            GOLDEN_TEXT
        );
        let header = "<132>1 2026-03-01T14:05:09.123Z dsm1 picket - clock-changed - ";
        assert_eq!(
            event_message(&clock_jump(), SyslogFormat::Cef, &site()),
            format!("{header}{GOLDEN_CEF}")
        );
    }

    #[test]
    fn the_golden_lines_and_the_level_table_are_in_schema_notifications_md() {
        let doc = include_str!("../../../schema/notifications.md");
        for line in [GOLDEN_CEF, &GOLDEN_LEEF.replace('\t', "→"), GOLDEN_TEXT] {
            assert!(doc.contains(line), "schema/notifications.md lacks {line}");
        }
        for kind in events::CATALOGUE {
            let severity = syslog_severity(kind.id);
            let row = format!(
                "| {} | `{}` | {} | {severity} | {} | {} | {} |",
                kind.id,
                kind.name,
                match level(kind.id) {
                    Level::Info => "info",
                    Level::Warning => "warning",
                },
                FACILITY * 8 + severity,
                cef_severity(kind.id),
                leef_severity(kind.id),
            );
            assert!(doc.contains(&row), "schema/notifications.md lacks {row}");
        }
    }

    #[test]
    fn the_computer_is_dvc_when_its_name_is_an_ipv4_address_and_absent_when_unknown() {
        let mut notice = clock_jump();
        notice.hostname = "10.0.0.7".into();
        assert!(cef(&notice, &site()).contains(" dvc=10.0.0.7 src="));
        notice.hostname = "fe80::1".into();
        assert!(cef(&notice, &site()).contains(" dvchost=fe80::1 src="));
        notice.hostname.clear();
        notice.address = None;
        notice.event.fields.clear();
        notice.event.id = 1000;
        assert_eq!(
            cef(&notice, &site()),
            "CEF:0|Picket|Picket Agent|0.1.0|1000|agent-started|2|cn1=7 cn1Label=Host ID \
             externalId=3 rt=1772373909123 start=1772374200000"
        );
        assert_eq!(
            text(&notice),
            "agent-started (computer 7, event 1000, seq 3)"
        );
        assert!(
            event_message(&notice, SyslogFormat::Leef, &site()).starts_with("<134>1 "),
            "info"
        );
    }

    #[test]
    fn an_agent_cannot_forge_keys_nor_grow_a_line_past_its_bounds() {
        let mut notice = clock_jump();
        notice.event.fields = vec![
            ("sev".into(), "10".into()),
            ("a=b\tc".into(), "x".into()),
            ("src".into(), "6.6.6.6".into()),
            ("note".into(), "é".repeat(MAX_FIELD_VALUE)),
        ];
        let line = leef(&notice, &site());
        let keys: Vec<&str> = line
            .split('|')
            .nth(6)
            .unwrap()
            .split('\t')
            .map(|pair| pair.split_once('=').unwrap().0)
            .collect();
        assert_eq!(
            keys,
            [
                "devTime",
                "devTimeFormat",
                "sev",
                "cat",
                "resource",
                "src",
                "computerId",
                "seq",
                "agentTime",
                "note",
                "msg"
            ],
            "the forged and odd names are in msg only: {line}"
        );
        assert!(line.contains("\tsrc=10.0.0.5\t"), "{line}");
        let note = line
            .split("\tnote=")
            .nth(1)
            .unwrap()
            .split('\t')
            .next()
            .unwrap();
        assert!(
            note.len() <= MAX_FIELD_VALUE && note.ends_with('…'),
            "{note}"
        );
        notice.event.fields = (0..100)
            .map(|n| (format!("f{n}").repeat(40), "=\\\n".repeat(200)))
            .collect();
        for format in [SyslogFormat::Cef, SyslogFormat::Leef, SyslogFormat::Text] {
            let message = event_message(&notice, format, &site());
            assert!(
                message.len() < 6 * 1024,
                "{format:?}: {} bytes",
                message.len()
            );
        }
        let cef_line = cef(&notice, &site());
        assert!(cef_line.contains(" cs6Label=") && !cef_line.contains(" cs7="));
    }

    proptest! {
        #[test]
        fn every_format_is_one_line_and_cef_values_read_back(
            name in any::<String>(),
            value in "(.|[|=\\\\\t\r\n ])*",
            hostname in any::<String>(),
            format in prop_oneof![
                Just(SyslogFormat::Cef), Just(SyslogFormat::Leef), Just(SyslogFormat::Text)
            ],
        ) {
            let mut notice = clock_jump();
            notice.event.fields = vec![(name.clone(), value.clone())];
            notice.hostname = hostname;
            let line = event_message(&notice, format, &site());
            prop_assert!(!line.contains(['\n', '\r']), "{:?}", line);
            let cef_line = cef(&notice, &site());
            let cs1 = cef_line.split(" cs1=").nth(1).unwrap().split(" cs1Label=").next().unwrap();
            prop_assert_eq!(unescape(cs1), clip(&value, MAX_FIELD_VALUE));
        }
    }
}
