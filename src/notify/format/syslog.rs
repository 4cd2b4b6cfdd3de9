//! RFC 5424 syslog: the message `<PRI>1 TIMESTAMP HOSTNAME picket - MSGID - MSG` with CEF, LEEF
//! or plain text as MSG, its framing per transport, and the plain-text line itself.

use super::{Site, cef, headline, leef, one_line, rfc3339};
use crate::alerts::Severity;
use crate::notify::{Change, Notice, SyslogFormat, SyslogTransport};
use std::borrow::Cow;

/// local0: Picket's alerts are an application's events, not the system's authorisation log
/// (facility 4 or 10, often routed to files only root reads), and collectors are usually set
/// up to accept and route the local facilities an appliance is given.
pub const FACILITY: u8 = 16;

/// The longest alert message a syslog message carries, in bytes; a longer one (a site
/// incident naming a thousand computers) is cut and marked with `…`. Even with every character
/// escaped, the message then stays under the 8 KiB rsyslog accepts by default, and a UDP
/// datagram is not fragmented beyond what collectors take. Email and webhooks carry it whole.
pub const MAX_ALERT_MESSAGE: usize = 2048;

/// RFC 5424 severity: the alert's own while it is raised or repeated, 5 (notice) once it
/// cleared, 6 (informational) for a test.
pub fn severity(notice: &Notice) -> u8 {
    match notice.change {
        Change::Test => 6,
        Change::Cleared => 5,
        Change::Raised | Change::Repeated => match notice.alert.kind.severity() {
            Severity::Critical => 2,
            Severity::Warning => 4,
        },
    }
}

/// The syslog message for a notice, without transport framing ([`frame`] adds it). Always one
/// line: every format escapes or replaces line breaks.
pub fn syslog_message(notice: &Notice, format: SyslogFormat, site: &Site) -> String {
    let notice = clipped(notice);
    let msg = match format {
        SyslogFormat::Cef => cef(&notice, site),
        SyslogFormat::Leef => leef(&notice, site),
        SyslogFormat::Text => text(&notice),
    };
    let msgid = match notice.change {
        Change::Test => "test",
        _ => notice.alert.kind.name(),
    };
    format!(
        "<{}>1 {} {} picket - {} - {msg}",
        FACILITY * 8 + severity(&notice),
        rfc3339(notice.at),
        header_field(&site.manager, 255),
        header_field(msgid, 32),
    )
}

/// The bytes written to the transport: a UDP datagram is the message itself; on TCP and TLS
/// each message is preceded by its length in bytes and a space (RFC 6587 octet counting, the
/// framing RFC 5425 requires), so a message may hold any byte.
pub fn frame(message: &str, transport: SyslogTransport) -> Vec<u8> {
    match transport {
        SyslogTransport::Udp => message.as_bytes().to_vec(),
        SyslogTransport::Tcp | SyslogTransport::Tls => {
            format!("{} {message}", message.len()).into_bytes()
        }
    }
}

/// The plain-text format, one line:
/// `computer-offline raised on web1 (alert 12, critical): MESSAGE`; a repeat says how many
/// times the condition was seen, a test is `test notification: MESSAGE`. Line breaks and other
/// control characters become spaces.
pub fn text(notice: &Notice) -> String {
    let alert = &notice.alert;
    let line = match notice.change {
        Change::Test => format!("{}: {}", headline(notice), alert.message),
        Change::Repeated => format!(
            "{} (alert {}, {}, seen {} times): {}",
            headline(notice),
            alert.id,
            alert.kind.severity().name(),
            alert.count,
            alert.message
        ),
        Change::Raised | Change::Cleared => format!(
            "{} (alert {}, {}): {}",
            headline(notice),
            alert.id,
            alert.kind.severity().name(),
            alert.message
        ),
    };
    one_line(&line)
}

/// The notice with its message cut to [`MAX_ALERT_MESSAGE`] bytes, at a character boundary.
fn clipped(notice: &Notice) -> Cow<'_, Notice> {
    let message = &notice.alert.message;
    if message.len() <= MAX_ALERT_MESSAGE {
        return Cow::Borrowed(notice);
    }
    let mut end = MAX_ALERT_MESSAGE - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut notice = notice.clone();
    notice.alert.message.truncate(end);
    notice.alert.message.push('…');
    Cow::Owned(notice)
}

/// A header field as RFC 5424 allows it: printable US-ASCII without spaces, at most `max`
/// characters, `-` (the nil value) when empty. A host name is already one; this holds the
/// header together should a name ever not be.
pub(crate) fn header_field(text: &str, max: usize) -> String {
    if text.is_empty() {
        return "-".to_string();
    }
    text.chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;
    use crate::clock::WallMs;
    use crate::notify::format::tests::{offline, site};
    use proptest::prelude::*;

    #[test]
    fn golden_text_message() {
        assert_eq!(
            syslog_message(&offline(), SyslogFormat::Text, &site()),
            "<130>1 2026-03-01T14:05:09.123Z dsm1 picket - computer-offline - \
             computer-offline repeated on web1 (alert 12, critical, seen 3 times): offline: 3 \
             heartbeat(s) missed, last heartbeat 2026-03-01 14:03:09 UTC; no goodbye"
        );
    }

    #[test]
    fn golden_cef_and_leef_messages_carry_the_format_after_the_header() {
        let header = "<130>1 2026-03-01T14:05:09.123Z dsm1 picket - computer-offline - ";
        let cef_message = syslog_message(&offline(), SyslogFormat::Cef, &site());
        assert_eq!(cef_message, format!("{header}{}", cef(&offline(), &site())));
        let leef_message = syslog_message(&offline(), SyslogFormat::Leef, &site());
        assert_eq!(
            leef_message,
            format!("{header}{}", leef(&offline(), &site()))
        );
    }

    #[test]
    fn golden_test_message() {
        assert_eq!(
            syslog_message(
                &Notice::test(WallMs(1_772_373_909_123), "siem"),
                SyslogFormat::Text,
                &site()
            ),
            "<134>1 2026-03-01T14:05:09.123Z dsm1 picket - test - test notification: A test \
             notification from Picket through channel 'siem': if you read this, the channel \
             works."
        );
    }

    #[test]
    fn priorities_combine_local0_with_the_severity() {
        let mut notice = offline();
        let pri = |notice: &Notice| {
            let message = syslog_message(notice, SyslogFormat::Text, &site());
            message[1..message.find('>').unwrap()].to_string()
        };
        notice.alert.kind = AlertKind::ClockChanged;
        notice.change = Change::Raised;
        assert_eq!(pri(&notice), "132", "warning");
        notice.change = Change::Cleared;
        assert_eq!(pri(&notice), "133", "notice");
    }

    #[test]
    fn texts_say_what_each_change_is() {
        let mut notice = offline();
        notice.change = Change::Cleared;
        notice.hostname.clear();
        notice.alert.message = "first\nsecond".to_string();
        assert_eq!(
            text(&notice),
            "computer-offline cleared (alert 12, critical): first second"
        );
    }

    #[test]
    fn frames_count_octets_on_streams_only() {
        assert_eq!(
            frame("<134>1 é", SyslogTransport::Udp),
            "<134>1 é".as_bytes()
        );
        assert_eq!(
            frame("<134>1 é", SyslogTransport::Tcp),
            "9 <134>1 é".as_bytes()
        );
        assert_eq!(
            frame("<134>1 é", SyslogTransport::Tls),
            "9 <134>1 é".as_bytes()
        );
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        let mut notice = offline();
        notice.alert.message = "é".repeat(MAX_ALERT_MESSAGE);
        let cut = clipped(&notice);
        assert!(cut.alert.message.len() <= MAX_ALERT_MESSAGE);
        assert!(cut.alert.message.ends_with("é…"));
        notice.alert.message = "a".repeat(MAX_ALERT_MESSAGE);
        assert!(matches!(clipped(&notice), Cow::Borrowed(_)));
    }

    #[test]
    fn an_odd_manager_name_cannot_break_the_header() {
        let odd = Site {
            manager: "my host\n".to_string(),
            version: "0.1.0",
        };
        let message = syslog_message(&offline(), SyslogFormat::Text, &odd);
        assert!(message.contains("Z my_host_ picket - "), "{message}");
        let nameless = Site {
            manager: String::new(),
            version: "0.1.0",
        };
        let message = syslog_message(&offline(), SyslogFormat::Text, &nameless);
        assert!(message.contains("Z - picket - "), "{message}");
    }

    fn formats() -> impl Strategy<Value = SyslogFormat> {
        prop_oneof![
            Just(SyslogFormat::Cef),
            Just(SyslogFormat::Leef),
            Just(SyslogFormat::Text)
        ]
    }

    proptest! {
        #[test]
        fn a_message_is_one_line_and_its_frame_counts_its_bytes(
            message in any::<String>(),
            hostname in any::<String>(),
            manager in any::<String>(),
            format in formats(),
            change in prop::sample::select(Change::ALL.to_vec()),
            kind in prop::sample::select(AlertKind::ALL.to_vec()),
        ) {
            let mut notice = offline();
            notice.alert.message = message;
            notice.alert.kind = kind;
            notice.hostname = hostname;
            notice.change = change;
            let site = Site { manager, version: "0.1.0" };
            let line = syslog_message(&notice, format, &site);
            prop_assert!(!line.contains(['\n', '\r']), "{:?}", line);
            let framed = frame(&line, SyslogTransport::Tcp);
            let (length, rest) = framed.split_at(framed.iter().position(|&b| b == b' ').unwrap());
            let length: usize = std::str::from_utf8(length).unwrap().parse().unwrap();
            prop_assert_eq!(length, line.len());
            prop_assert_eq!(&rest[1..], line.as_bytes());
        }
    }
}
