//! The email's subject and plain-text body: written for the person on call, who reads the
//! subject on a phone's lock screen and the body when deciding what to do.

use super::webhook::delivery_id;
use super::{Site, headline, one_line};
use crate::clock::format_utc;
use crate::notify::{Change, Notice};
use std::fmt::Write as _;

/// The subject (one line of UTF-8: the sender encodes it for the header) and the body (UTF-8
/// text, lines ended by `\n` alone: the sender writes them as CRLF for SMTP).
///
/// Subject: `[Picket MANAGER] SEVERITY: HEADLINE` while the alert is raised or repeated,
/// `[Picket MANAGER] HEADLINE` once it cleared or for a test.
pub fn email(notice: &Notice, site: &Site) -> (String, String) {
    let subject = match notice.change {
        Change::Raised | Change::Repeated => format!(
            "[Picket {}] {}: {}",
            site.manager,
            notice.alert.kind.severity().name(),
            headline(notice)
        ),
        Change::Cleared | Change::Test => format!("[Picket {}] {}", site.manager, headline(notice)),
    };
    (one_line(&subject), body(notice, site))
}

/// The headline, the alert's message, the alert's facts (for an alert), and who sent it.
fn body(notice: &Notice, site: &Site) -> String {
    let mut body = format!("{}\n\n", headline(notice));
    for line in notice.alert.message.lines() {
        body.push_str(line.trim_end_matches('\r'));
        body.push('\n');
    }
    body.push('\n');
    if notice.change != Change::Test {
        body.push_str(&facts(notice));
        body.push('\n');
    }
    // Writing to a String cannot fail.
    let _ = writeln!(
        body,
        "From the Picket manager {} (version {}), {}.\n\
         Delivery {}: a copy with the same delivery is the same notification.",
        site.manager,
        site.version,
        format_utc(notice.at),
        delivery_id(notice, site)
    );
    body
}

/// The alert's record, one `Label: value` line each, aligned.
fn facts(notice: &Notice) -> String {
    let alert = &notice.alert;
    let state = if alert.dismissed.is_some() {
        "dismissed"
    } else if alert.cleared.is_some() {
        "cleared"
    } else {
        "active"
    };
    let mut rows = vec![(
        "Alert",
        format!(
            "{}, {} ({}), {state}",
            alert.id,
            alert.kind.name(),
            alert.kind.severity().name()
        ),
    )];
    if !notice.hostname.is_empty() {
        rows.push((
            "Computer",
            format!("{} (id {})", notice.hostname, alert.computer),
        ));
    }
    if let Some(policy) = notice.policy {
        rows.push(("Policy", policy.to_string()));
    }
    rows.push(("Raised", format_utc(alert.raised)));
    rows.push(("Last seen", format_utc(alert.updated)));
    rows.push(("Times seen", alert.count.to_string()));
    if let Some(cleared) = alert.cleared {
        rows.push(("Cleared", format_utc(cleared)));
    }
    if let Some(dismissed) = alert.dismissed {
        rows.push(("Dismissed", format_utc(dismissed)));
    }
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{:<12}{}", format!("{label}:"), one_line(&value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallMs;
    use crate::notify::format::tests::{offline, site};

    #[test]
    fn golden_repeated_offline_alert() {
        let (subject, body) = email(&offline(), &site());
        assert_eq!(
            subject,
            "[Picket dsm1] critical: computer-offline repeated on web1"
        );
        assert_eq!(
            body,
            "computer-offline repeated on web1\n\
             \n\
             offline: 3 heartbeat(s) missed, last heartbeat 2026-03-01 14:03:09 UTC; no goodbye\n\
             \n\
             Alert:      12, computer-offline (critical), active\n\
             Computer:   web1 (id 7)\n\
             Policy:     1\n\
             Raised:     2026-03-01 14:03:09 UTC\n\
             Last seen:  2026-03-01 14:05:09 UTC\n\
             Times seen: 3\n\
             \n\
             From the Picket manager dsm1 (version 0.1.0), 2026-03-01 14:05:09 UTC.\n\
             Delivery dsm1-42: a copy with the same delivery is the same notification.\n"
        );
    }

    #[test]
    fn golden_test_notice() {
        let (subject, body) = email(&Notice::test(WallMs(1_772_373_909_123), "mail"), &site());
        assert_eq!(subject, "[Picket dsm1] test notification");
        assert_eq!(
            body,
            "test notification\n\
             \n\
             A test notification from Picket through channel 'mail': if you read this, the \
             channel works.\n\
             \n\
             From the Picket manager dsm1 (version 0.1.0), 2026-03-01 14:05:09 UTC.\n\
             Delivery dsm1-test-1772373909123: a copy with the same delivery is the same \
             notification.\n"
        );
    }

    #[test]
    fn a_cleared_alert_has_no_severity_in_its_subject_and_says_when() {
        let mut notice = offline();
        notice.change = Change::Cleared;
        notice.alert.cleared = Some(WallMs(1_772_374_000_000));
        notice.alert.message = "two\r\nlines".to_string();
        let (subject, body) = email(&notice, &site());
        assert_eq!(subject, "[Picket dsm1] computer-offline cleared on web1");
        assert!(body.contains("\n\ntwo\nlines\n\n"), "{body}");
        assert!(
            body.contains("\nCleared:    2026-03-01 14:06:40 UTC\n"),
            "{body}"
        );
        assert!(body.contains(", cleared\n"), "{body}");
    }
}
