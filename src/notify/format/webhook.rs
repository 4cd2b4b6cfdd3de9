//! The webhook's request: its JSON body, the delivery id a receiver drops duplicates by, and
//! the HMAC-SHA256 signature that proves the body came from this manager, unchanged and recently.

use super::{Site, rfc3339};
use crate::model::Alert;
use crate::notify::{Change, Notice};
use crate::secret::hex;
use ring::hmac;
use serde_json::json;

/// `sha256=` and the lowercase hex of HMAC-SHA256(secret, "{timestamp}." + body).
pub const SIGNATURE_HEADER: &str = "X-Picket-Signature";
/// The Unix time in seconds the signature was made at, in decimal.
pub const TIMESTAMP_HEADER: &str = "X-Picket-Timestamp";
/// The notice's [`delivery_id`], the same at every attempt to deliver it.
pub const DELIVERY_HEADER: &str = "X-Picket-Delivery";

/// The body's `version`: a receiver checks it before reading on. Adding a field keeps it;
/// changing or removing one raises it.
pub const BODY_VERSION: u32 = 1;

/// An id that is the same at every attempt to deliver a notice and differs between notices:
/// delivery is at least once, so a receiver remembers these to drop the repeats.
/// `{manager}-{seq}`; a test, which has no outbox sequence, is `{manager}-test-{at_ms}` so that
/// two tests are not taken for one.
pub fn delivery_id(notice: &Notice, site: &Site) -> String {
    match notice.change {
        Change::Test => format!("{}-test-{}", site.manager, notice.at.0),
        _ => format!("{}-{}", site.manager, notice.seq),
    }
}

/// An alert as the API's ALERT and the webhook body show it, with its computer's host name.
pub fn alert_json(alert: &Alert, hostname: Option<&str>) -> serde_json::Value {
    json!({
        "id": alert.id.0,
        "kind": alert.kind.name(),
        "severity": alert.kind.severity().name(),
        "computer": alert.computer.0,
        "hostname": hostname,
        "message": alert.message,
        "raised_ms": alert.raised.0,
        "updated_ms": alert.updated.0,
        "count": alert.count,
        "cleared_ms": alert.cleared.map(|t| t.0),
        "dismissed_ms": alert.dismissed.map(|t| t.0),
        "active": alert.is_active(),
        "acknowledged": alert.acknowledged.as_ref().map(|ack| json!({
            "by": ack.by,
            "at_ms": ack.at.0,
            "comment": ack.comment,
        })),
        "about": alert.about,
        "computers": alert.computers.iter().map(|c| c.0).collect::<Vec<_>>(),
    })
}

/// The request's body, compact UTF-8 JSON (`schema/notifications.md`, "Webhook body"). The
/// alert has the fields of the API's ALERT, so a receiver can read both with one type.
pub fn webhook_body(notice: &Notice, site: &Site) -> Vec<u8> {
    let alert = &notice.alert;
    let body = json!({
        "version": BODY_VERSION,
        "delivery": delivery_id(notice, site),
        "manager": site.manager,
        "picket_version": site.version,
        "seq": notice.seq,
        "change": notice.change.name(),
        "at_ms": notice.at.0,
        "at": rfc3339(notice.at),
        "alert": alert_json(alert, (!notice.hostname.is_empty()).then_some(&notice.hostname)),
        "policy": notice.policy.map(|p| p.0),
    });
    body.to_string().into_bytes()
}

/// The [`SIGNATURE_HEADER`] value for a body sent at `timestamp_secs` (the value of
/// [`TIMESTAMP_HEADER`]). The timestamp is signed with the body so that a captured request
/// cannot be replayed later under a fresh one.
pub fn signature(secret: &[u8], timestamp_secs: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &signed_bytes(timestamp_secs, body));
    format!("sha256={}", hex(tag.as_ref()))
}

/// Whether `header` is the signature of `body` at `timestamp_secs` under `secret`, compared in
/// constant time, as a receiver should check it. It does not judge the timestamp's age: that
/// takes a clock, the receiver's.
pub fn verify_signature(secret: &[u8], timestamp_secs: u64, body: &[u8], header: &str) -> bool {
    let Some(tag) = header
        .strip_prefix("sha256=")
        .and_then(crate::secret::from_hex)
    else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &signed_bytes(timestamp_secs, body), &tag).is_ok()
}

/// `{timestamp}.` followed by the body.
fn signed_bytes(timestamp_secs: u64, body: &[u8]) -> Vec<u8> {
    let mut signed = format!("{timestamp_secs}.").into_bytes();
    signed.extend_from_slice(body);
    signed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallMs;
    use crate::notify::format::tests::{offline, site};

    #[test]
    fn golden_body() {
        let body = String::from_utf8(webhook_body(&offline(), &site())).unwrap();
        assert_eq!(
            body,
            r#"{"alert":{"about":null,"acknowledged":null,"active":true,"cleared_ms":null,"computer":7,"computers":[],"count":3,"dismissed_ms":null,"hostname":"web1","id":12,"kind":"computer-offline","message":"offline: 3 heartbeat(s) missed, last heartbeat 2026-03-01 14:03:09 UTC; no goodbye","raised_ms":1772373789000,"severity":"critical","updated_ms":1772373909123},"at":"2026-03-01T14:05:09.123Z","at_ms":1772373909123,"change":"repeated","delivery":"dsm1-42","manager":"dsm1","picket_version":"0.1.0","policy":1,"seq":42,"version":1}"#
        );
    }

    #[test]
    fn a_test_has_no_host_and_a_delivery_of_its_own() {
        let first = Notice::test(WallMs(1_000), "hook");
        let second = Notice::test(WallMs(2_000), "hook");
        assert_eq!(delivery_id(&first, &site()), "dsm1-test-1000");
        assert_ne!(delivery_id(&first, &site()), delivery_id(&second, &site()));
        let body: serde_json::Value =
            serde_json::from_slice(&webhook_body(&first, &site())).unwrap();
        assert_eq!(body["change"], "test");
        assert_eq!(body["alert"]["hostname"], serde_json::Value::Null);
        assert_eq!(body["policy"], serde_json::Value::Null);
    }

    /// The numbers of the Python example in `schema/notifications.md`, computed with Python's
    /// `hmac` and `hashlib`: a receiver's reading, not this code's.
    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_dot_body() {
        assert_eq!(
            signature(b"0123456789abcdef", 1_772_373_910, b"{}"),
            "sha256=d685c28363276b6ab8bc47b636a349de9507549491243ea332d14f7d80fb76e1"
        );
    }

    /// Also computed with Python's `hmac`, over the golden body's bytes.
    #[test]
    fn golden_signature() {
        let body = webhook_body(&offline(), &site());
        assert_eq!(
            signature(b"0123456789abcdef", 1_772_373_910, &body),
            "sha256=2dd7e50c495a0c84db36e75548cb2409b621d4774e786525fc18fdbd666b1545"
        );
    }

    #[test]
    fn only_the_same_secret_timestamp_and_body_verify() {
        let secret = b"0123456789abcdef";
        let body = webhook_body(&offline(), &site());
        let header = signature(secret, 1_772_373_910, &body);
        assert!(verify_signature(secret, 1_772_373_910, &body, &header));
        assert!(verify_signature(
            secret,
            1_772_373_910,
            &body,
            &header.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!verify_signature(
            b"another secret!!",
            1_772_373_910,
            &body,
            &header
        ));
        assert!(!verify_signature(secret, 1_772_373_911, &body, &header));
        assert!(!verify_signature(secret, 1_772_373_910, b"{}", &header));
        assert!(!verify_signature(
            secret,
            1_772_373_910,
            &body,
            &header[7..]
        ));
        assert!(!verify_signature(secret, 1_772_373_910, &body, "sha256=zz"));
        assert!(!verify_signature(
            secret,
            1_772_373_910,
            &body,
            "sha256=abc"
        ));
        assert!(!verify_signature(secret, 1_772_373_910, &body, "sha256=é"));
    }
}
