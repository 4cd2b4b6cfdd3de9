//! Email delivery: a plain-text message to the channel's recipients through its mail server,
//! by lettre's blocking SMTP transport on the blocking pool (lettre's async transports need
//! tokio or async-std; one thread per notice is nothing at notification rates).

use super::{Answer, SendError, bounded, host_port};
use crate::clock::{Clock, WallMs};
use crate::notify::{Email, SmtpSecurity};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::{SmtpTransport, Transport};
use std::io::ErrorKind;
use std::net::ToSocketAddrs;
use std::time::Duration;

/// Sends `subject` and `body` from the channel's sender to all its recipients, within
/// `limit`; the answer is the server's reply to the message.
pub async fn email(
    cfg: &Email,
    subject: &str,
    body: &str,
    clock: &dyn Clock,
    limit: Duration,
) -> Result<Answer, SendError> {
    let target = host_port(&cfg.host, cfg.port);
    let message = message(cfg, subject, body, clock.wall())?;
    let (cfg, job_target) = (cfg.clone(), target.clone());
    // A thread of its own, not the shared blocking pool: heartbeat sessions use that pool,
    // and a tarpitting mail server must not hold its threads. If the limit passes first, the
    // thread still ends by itself: lettre's own timeout (the same limit) bounds each of its
    // connects, reads and writes.
    let (done, result) = smol::channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name("picket-smtp".into())
        .spawn(move || {
            let _ = done.send_blocking(deliver(&cfg, &message, limit, &job_target));
        });
    if let Err(e) = spawned {
        return Err(SendError::Io {
            target,
            source: Box::new(e),
        });
    }
    let job = async move {
        result.recv().await.unwrap_or_else(|_| {
            Err(SendError::Io {
                target: "the SMTP thread".into(),
                source: "it ended without an answer".into(),
            })
        })
    };
    bounded(clock, limit, &target, job).await
}

/// The message, dated by `wall` (the caller's clock, not lettre's reading of the system's).
fn message(cfg: &Email, subject: &str, body: &str, wall: WallMs) -> Result<Message, SendError> {
    let mut builder = Message::builder()
        .from(mailbox("from", &cfg.from)?)
        .subject(subject)
        .date(wall.to_system_time())
        .message_id(None)
        .header(ContentType::TEXT_PLAIN);
    for to in &cfg.to {
        builder = builder.to(mailbox("to", to)?);
    }
    builder
        .body(body.to_string())
        .map_err(|e| SendError::config("to", format!("no message can be made: {e}")))
}

fn mailbox(field: &'static str, address: &str) -> Result<Mailbox, SendError> {
    address
        .parse()
        .map_err(|e| SendError::config(field, format!("'{address}' is not an email address: {e}")))
}

/// The whole SMTP exchange, on a blocking thread.
fn deliver(
    cfg: &Email,
    message: &Message,
    limit: Duration,
    target: &str,
) -> Result<Answer, SendError> {
    // lettre reports a failed lookup as a failed connection; looking up first names it.
    let resolve_error = |source| SendError::Resolve {
        target: target.to_string(),
        source,
    };
    let mut addrs = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| resolve_error(Box::new(e)))?;
    if addrs.next().is_none() {
        return Err(resolve_error("the name has no address".into()));
    }
    let response = transport(cfg, limit)?
        .send(message)
        .map_err(|e| classify(e, target, limit))?;
    Ok(Answer(reply(&response)))
}

fn transport(cfg: &Email, limit: Duration) -> Result<SmtpTransport, SendError> {
    let tls = match cfg.security {
        SmtpSecurity::None => Tls::None,
        // Required, never Opportunistic: a server that stops offering STARTTLS (or a network
        // that strips the offer) fails the delivery rather than getting the alert in clear.
        SmtpSecurity::StartTls => Tls::Required(tls_parameters(cfg)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(cfg)?),
    };
    // "dangerous" only in that lettre leaves the choice of TLS to us, which `tls` just made.
    let mut builder = SmtpTransport::builder_dangerous(cfg.host.as_str())
        .port(cfg.port)
        .tls(tls)
        .timeout(Some(limit));
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// Trusts the channel's CA alone when it has one, else the system's roots.
fn tls_parameters(cfg: &Email) -> Result<TlsParameters, SendError> {
    let mut builder = TlsParameters::builder(cfg.host.clone());
    if let Some(pem) = &cfg.ca_cert {
        let ca = Certificate::from_pem(pem.as_bytes())
            .map_err(|e| SendError::config("ca_cert", format!("is not PEM: {e}")))?;
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(ca);
    }
    builder
        .build_rustls()
        .map_err(|e| SendError::config("ca_cert", format!("cannot be trusted: {e}")))
}

/// "250 2.0.0 Ok: queued as 1234": the code, then the reply's lines on one line.
fn reply(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), lines.join(" "))
        .trim_end()
        .to_string()
}

/// Sorts lettre's error by what the administrator has to look at. lettre meets a bad
/// certificate on its first read after the handshake began, so it reports a network error;
/// the rustls error inside says it was TLS.
fn classify(error: lettre::transport::smtp::Error, target: &str, limit: Duration) -> SendError {
    let target = target.to_string();
    if let Some(code) = error.status() {
        let text = std::error::Error::source(&error)
            .map(|s| s.to_string())
            .unwrap_or_default();
        return SendError::Refused {
            target,
            answer: format!("{code} {text}").trim_end().to_string(),
            permanent: error.is_permanent(),
        };
    }
    let (rustls, io_kind) = causes(&error);
    // lettre 0.11 has no kind of its own for a server without STARTTLS, only these words
    // (`refusals_are_reported_and_nothing_goes_out_in_clear` holds them).
    let starttls_missing = error.is_client() && error.to_string().contains("STARTTLS");
    let source = Box::new(error);
    if rustls || starttls_missing || source.is_tls() {
        return SendError::Tls { target, source };
    }
    match io_kind {
        Some(ErrorKind::TimedOut | ErrorKind::WouldBlock) => SendError::Timeout { target, limit },
        Some(
            ErrorKind::ConnectionRefused
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::AddrNotAvailable,
        ) => SendError::Connect { target, source },
        _ => SendError::Io { target, source },
    }
}

/// Whether a rustls error is among the causes, and the kind of the first I/O error.
fn causes(error: &(dyn std::error::Error + 'static)) -> (bool, Option<ErrorKind>) {
    let (mut rustls, mut kind) = (false, None);
    let mut cause = Some(error);
    while let Some(e) = cause {
        rustls |= e.is::<rustls::Error>();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            kind = kind.or(Some(io.kind()));
            // An I/O error made of a rustls error hides it from `source()`.
            rustls |= io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>());
        }
        cause = e.source();
    }
    (rustls, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::RealClock;
    use crate::notify::send::smtpd::Smtpd;
    use crate::notify::send::testing::{PATIENCE, TestCa, run};

    fn channel(host: &str, port: u16, security: SmtpSecurity, ca: Option<&TestCa>) -> Email {
        Email {
            host: host.into(),
            port,
            security,
            from: "picket@example.com".into(),
            to: vec!["oncall@example.com".into(), "boss@example.org".into()],
            username: None,
            password: None,
            ca_cert: ca.map(|ca| ca.pem.clone()),
        }
    }

    const SUBJECT: &str = "[Picket] Offline: web-1";
    const BODY: &str = "The computer web-1 has missed 3 heartbeats.";

    async fn send(cfg: &Email) -> Result<Answer, SendError> {
        email(cfg, SUBJECT, BODY, &RealClock::new(), PATIENCE).await
    }

    #[test]
    fn plain_smtp_delivers_to_every_recipient_and_reports_the_reply() {
        let ca = TestCa::new();
        run(async {
            let Some(server) = Smtpd::start("plain", &ca.server_cert()).await else {
                return;
            };
            let cfg = channel("127.0.0.1", server.port, SmtpSecurity::None, None);
            let answer = send(&cfg).await.unwrap();
            assert_eq!(answer.0, "250 2.0.0 Ok: queued as 1234");
            let received = server.received();
            assert_eq!(received.len(), 1);
            let got = &received[0];
            assert_eq!(got["from"], "picket@example.com");
            assert_eq!(got["to"], serde_json::json!(cfg.to));
            assert_eq!(got["tls"], false);
            let data = got["data"].as_str().unwrap();
            assert!(data.contains(&format!("Subject: {SUBJECT}\r\n")), "{data}");
            assert!(
                data.contains("To: oncall@example.com, boss@example.org\r\n"),
                "{data}"
            );
            assert!(data.contains("Content-Type: text/plain"), "{data}");
            // SMTP ends the data with a line break, which the server keeps.
            assert!(data.ends_with(&format!("\r\n\r\n{BODY}\r\n")), "{data}");
        });
    }

    #[test]
    fn refusals_are_reported_and_nothing_goes_out_in_clear() {
        let ca = TestCa::new();
        run(async {
            let Some(server) = Smtpd::start("plain", &ca.server_cert()).await else {
                return;
            };
            let mut cfg = channel("127.0.0.1", server.port, SmtpSecurity::None, None);
            cfg.to.push("refuse@example.com".into());
            let err = send(&cfg).await.unwrap_err();
            let SendError::Refused { answer, .. } = &err else {
                panic!("{err:?}")
            };
            assert!(
                answer.starts_with("550 5.1.1 <refuse@example.com>"),
                "{answer}"
            );
            assert!(err.is_permanent());

            // The server offers no STARTTLS: the message must not be sent without it.
            let cfg = channel("127.0.0.1", server.port, SmtpSecurity::StartTls, Some(&ca));
            let err = send(&cfg).await.unwrap_err();
            assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
            assert!(err.chain().contains("STARTTLS"), "{}", err.chain());
            assert_eq!(server.received().len(), 0);
        });
    }

    #[test]
    fn starttls_trusts_the_channel_ca_and_logs_in() {
        let (ca, other) = (TestCa::new(), TestCa::new());
        run(async {
            let Some(server) = Smtpd::start("starttls", &ca.server_cert()).await else {
                return;
            };
            let mut cfg = channel("localhost", server.port, SmtpSecurity::StartTls, Some(&ca));
            cfg.username = Some("picket".into());
            cfg.password = Some("pw-123".into());
            let answer = send(&cfg).await.unwrap();
            assert_eq!(answer.0, "250 2.0.0 Ok: queued as 1234");
            let received = server.received();
            assert_eq!(received[0]["tls"], true);
            assert_eq!(received[0]["login"], "picket");
            assert!(received[0]["data"].as_str().unwrap().contains(BODY));

            cfg.ca_cert = Some(other.pem.clone());
            let err = send(&cfg).await.unwrap_err();
            assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
            assert!(err.chain().contains("UnknownIssuer"), "{}", err.chain());
            assert_eq!(server.received().len(), 1);
        });
    }

    #[test]
    fn implicit_tls_delivers() {
        let ca = TestCa::new();
        run(async {
            let Some(server) = Smtpd::start("tls", &ca.server_cert()).await else {
                return;
            };
            let cfg = channel("127.0.0.1", server.port, SmtpSecurity::Tls, Some(&ca));
            assert_eq!(send(&cfg).await.unwrap().0, "250 2.0.0 Ok: queued as 1234");
            assert_eq!(server.received()[0]["tls"], true);
        });
    }

    #[test]
    fn a_subject_cannot_add_headers_or_recipients() {
        let cfg = channel("127.0.0.1", 25, SmtpSecurity::None, None);
        let subject = "Offline\r\nBcc: thief@example.net";
        let message = message(&cfg, subject, BODY, WallMs(0)).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(!text.contains("\nBcc:"), "{text}");
        let to: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(to, cfg.to);
        assert!(
            text.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_address_is_a_config_error_naming_the_field() {
        let mut cfg = channel("127.0.0.1", 25, SmtpSecurity::None, None);
        cfg.to.push("no-at-sign".into());
        let err = message(&cfg, SUBJECT, BODY, WallMs(0)).unwrap_err();
        assert!(
            matches!(err, SendError::Config { field: "to", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("no-at-sign"), "{err}");
    }
}
