//! A notification channel: a named place notifications go (a mail server and its recipients, a
//! syslog collector, a webhook receiver) and how to reach it. Built only through [`Channel::new`],
//! which refuses what could never work or would leak a secret, naming the field.

use crate::clock::WallMs;
use crate::model::words::words;
use crate::model::{hidden_character, host_name_problem};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// How long a notice is retried before the channel gives it up, when the channel does not say.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The most recipients one email channel takes; a list longer than this is a mailing list's
/// job.
pub const MAX_RECIPIENTS: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Unique ignoring case; how routes and the CLI name it.
    pub name: String,
    pub target: Target,
    /// A notice still undelivered this long after its alert changed is given up (counted as
    /// failed, and the channel's `notification-failed` alert raised).
    pub give_up_after: Duration,
    pub created: WallMs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Email(Email),
    Syslog(Syslog),
    Webhook(Webhook),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Email(_) => "email",
            Target::Syslog(_) => "syslog",
            Target::Webhook(_) => "webhook",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpSecurity {
    /// Plain SMTP: allowed only to a loopback host (a local relay), since the login and the
    /// alerts would cross the network in clear.
    None,
    StartTls,
    /// Implicit TLS (SMTPS, usually port 465).
    Tls,
}

words!(SmtpSecurity { None => "none", StartTls => "starttls", Tls => "tls" });

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    /// Never returned by the API; the store file is the administrator's only (mode 0600).
    pub password: Option<String>,
    /// PEM of the CA that signs the server's certificate; `None`: the system's roots.
    pub ca_cert: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyslogTransport {
    Udp,
    Tcp,
    /// RFC 5425: TCP in TLS, frames counted by octets.
    Tls,
}

words!(SyslogTransport { Udp => "udp", Tcp => "tcp", Tls => "tls" });

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyslogFormat {
    Cef,
    Leef,
    Text,
}

words!(SyslogFormat { Cef => "cef", Leef => "leef", Text => "text" });

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Syslog {
    pub host: String,
    pub port: u16,
    pub transport: SyslogTransport,
    pub format: SyslogFormat,
    pub ca_cert: Option<String>,
    /// The agent events (ids of `schema/events.md`) this channel forwards besides the alerts,
    /// in ascending order without repeats; empty: alerts only.
    pub events: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// `https://host[:port]/path`.
    pub url: String,
    /// The HMAC-SHA256 key of the signature header; never returned by the API after the
    /// channel is created.
    pub secret: String,
    /// Sent with every request (an API key the receiver wants, say).
    pub headers: Vec<(String, String)>,
    pub ca_cert: Option<String>,
}

/// Where a webhook URL points, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsUrl {
    pub host: String,
    pub port: u16,
    /// Starts with `/`; the query is kept in it.
    pub path: String,
}

/// A field that cannot be what it was given as. `field` is the API's name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError {
    pub field: &'static str,
    pub problem: String,
}

impl ChannelError {
    fn new(field: &'static str, problem: impl Into<String>) -> ChannelError {
        ChannelError {
            field,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ChannelError {}

impl Channel {
    /// Checks every field and builds the channel (a syslog channel's events put in order).
    pub fn new(
        name: &str,
        mut target: Target,
        give_up_after: Duration,
        created: WallMs,
    ) -> Result<Channel, ChannelError> {
        check_name(name)?;
        if give_up_after < Duration::from_secs(60)
            || give_up_after > Duration::from_secs(30 * 86400)
        {
            return Err(ChannelError::new(
                "give_up_after",
                "must be between 1m and 30d",
            ));
        }
        match &mut target {
            Target::Email(email) => check_email(email)?,
            Target::Syslog(syslog) => {
                check_events(&mut syslog.events)?;
                check_host("address", &syslog.host)?;
                check_port("address", syslog.port)?;
                check_ca("ca_cert", syslog.ca_cert.as_deref())?;
                if syslog.ca_cert.is_some() && syslog.transport != SyslogTransport::Tls {
                    return Err(ChannelError::new(
                        "ca_cert",
                        "only the tls transport uses a CA certificate",
                    ));
                }
            }
            Target::Webhook(hook) => {
                https_url(&hook.url)?;
                if hook.secret.len() < 16 {
                    return Err(ChannelError::new(
                        "secret",
                        "must be at least 16 characters",
                    ));
                }
                for (name, value) in &hook.headers {
                    check_header(name, value)?;
                }
                check_ca("ca_cert", hook.ca_cert.as_deref())?;
            }
        }
        Ok(Channel {
            name: name.to_string(),
            target,
            give_up_after,
            created,
        })
    }
}

fn check_name(name: &str) -> Result<(), ChannelError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ChannelError::new("name", "must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ChannelError::new(
            "name",
            "use letters, digits, '-', '_' and '.' (it is typed on command lines)",
        ));
    }
    Ok(())
}

/// Every id must be in the catalogue: an id no agent sends would forward nothing, silently.
/// Sorted and without repeats, so that two channels forwarding the same events compare equal.
fn check_events(events: &mut Vec<u32>) -> Result<(), ChannelError> {
    if let Some(unknown) = events
        .iter()
        .find(|id| crate::model::events::name(**id).is_none())
    {
        let known: Vec<String> = crate::model::events::CATALOGUE
            .iter()
            .map(|k| format!("{} ({})", k.id, k.name))
            .collect();
        return Err(ChannelError::new(
            "events",
            format!(
                "{unknown} is not an agent event id; the ids are {}",
                known.join(", ")
            ),
        ));
    }
    events.sort_unstable();
    events.dedup();
    Ok(())
}

fn check_host(field: &'static str, host: &str) -> Result<(), ChannelError> {
    match host_name_problem(host) {
        Some(problem) => Err(ChannelError::new(field, format!("'{host}': {problem}"))),
        None => Ok(()),
    }
}

fn check_port(field: &'static str, port: u16) -> Result<(), ChannelError> {
    if port == 0 {
        return Err(ChannelError::new(field, "the port must be 1 to 65535"));
    }
    Ok(())
}

/// Whether `host` names this machine, where plain SMTP does not cross a network.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_email(email: &Email) -> Result<(), ChannelError> {
    check_host("smtp", &email.host)?;
    check_port("smtp", email.port)?;
    if email.security == SmtpSecurity::None && !is_loopback(&email.host) {
        return Err(ChannelError::new(
            "security",
            format!(
                "plain SMTP only to this machine (localhost, 127.0.0.1, ::1), not to '{}': use starttls or tls",
                email.host
            ),
        ));
    }
    check_address("from", &email.from)?;
    if email.to.is_empty() {
        return Err(ChannelError::new(
            "to",
            "at least one recipient is required",
        ));
    }
    if email.to.len() > MAX_RECIPIENTS {
        return Err(ChannelError::new(
            "to",
            format!("at most {MAX_RECIPIENTS} recipients"),
        ));
    }
    for to in &email.to {
        check_address("to", to)?;
    }
    if email.username.is_some() != email.password.is_some() {
        return Err(ChannelError::new(
            "username",
            "a login needs both a user name and a password",
        ));
    }
    if let Some(user) = &email.username
        && (user.is_empty() || hidden_character(user).is_some())
    {
        return Err(ChannelError::new(
            "username",
            "must be printable and not empty",
        ));
    }
    check_ca("ca_cert", email.ca_cert.as_deref())?;
    if email.ca_cert.is_some() && email.security == SmtpSecurity::None {
        return Err(ChannelError::new(
            "ca_cert",
            "plain SMTP uses no certificate: use starttls or tls",
        ));
    }
    Ok(())
}

/// An address as `local@domain`: enough to refuse a typo here rather than at 2 a.m.; the mail
/// server has the last word.
fn check_address(field: &'static str, address: &str) -> Result<(), ChannelError> {
    let bad = || ChannelError::new(field, format!("'{address}' is not an email address"));
    let (local, domain) = address.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || address.len() > 254
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        || host_name_problem(domain).is_some()
    {
        return Err(bad());
    }
    Ok(())
}

fn check_ca(field: &'static str, pem: Option<&str>) -> Result<(), ChannelError> {
    let Some(pem) = pem else { return Ok(()) };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        if cert.is_err() {
            return Err(ChannelError::new(field, "is not a PEM certificate"));
        }
        count += 1;
    }
    if count == 0 {
        return Err(ChannelError::new(field, "holds no PEM certificate"));
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), ChannelError> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(ChannelError::new(
            "headers",
            format!("'{name}' is not a header name"),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("x-picket-")
        || [
            "host",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
        ]
        .contains(&lower.as_str())
    {
        return Err(ChannelError::new(
            "headers",
            format!("'{name}' is set by Picket itself"),
        ));
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ChannelError::new(
            "headers",
            format!("the value of '{name}' holds control characters"),
        ));
    }
    Ok(())
}

/// The URL as it may be shown and logged: its host, port and the path's first segment. The
/// rest of the path and the query often are the hook's secret (a chat tool's incoming-webhook
/// URL is its own credential), and the API and the log are read by more people than the one
/// who pasted it.
pub fn shown_url(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let first = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let shown = if first.is_empty() {
        String::new()
    } else {
        format!("/{first}")
    };
    let hidden = path.len() > shown.len() && path != "/";
    format!(
        "https://{authority}{shown}{}",
        if hidden { "/\u{2026}" } else { "" }
    )
}

/// Takes `https://host[:port][/path]` apart; anything but HTTPS is refused, since the body
/// names the site's computers and the signature alone would not hide it.
pub fn https_url(url: &str) -> Result<HttpsUrl, ChannelError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| ChannelError::new("url", format!("'{url}' is not an https:// URL")))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if authority.contains('@') {
        return Err(ChannelError::new(
            "url",
            "credentials in the URL are not supported: use a header",
        ));
    }
    // `[v6]` or `[v6]:port` for an IPv6 address; otherwise the last ':' starts the port.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| ChannelError::new("url", format!("'{url}' has no closing ']'")))?;
            match after.strip_prefix(':') {
                Some(port) => (host, url_port(port)?),
                None if after.is_empty() => (host, 443),
                None => return Err(ChannelError::new("url", format!("'{url}' is not a URL"))),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, url_port(port)?),
            None => (authority, 443),
        },
    };
    check_host("url", host)?;
    check_port("url", port)?;
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
    {
        return Err(ChannelError::new(
            "url",
            "the path holds spaces, '#' or control characters",
        ));
    }
    Ok(HttpsUrl {
        host: host.to_string(),
        port,
        path,
    })
}

fn url_port(port: &str) -> Result<u16, ChannelError> {
    port.parse()
        .map_err(|_| ChannelError::new("url", format!("'{port}' is not a port")))
}

/// `host:port` as the CLI and the API take it (`[v6]:port` for an IPv6 address).
pub fn host_port(field: &'static str, text: &str) -> Result<(String, u16), ChannelError> {
    let bad = || ChannelError::new(field, format!("'{text}' is not HOST:PORT"));
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    check_host(field, host)?;
    check_port(field, port)?;
    Ok((host.to_string(), port))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A channel any test can store: email to a local relay.
    pub(crate) fn sample() -> Channel {
        Channel::new(
            "sample",
            email("127.0.0.1", SmtpSecurity::None),
            DEFAULT_GIVE_UP_AFTER,
            WallMs(0),
        )
        .unwrap()
    }

    fn email(host: &str, security: SmtpSecurity) -> Target {
        Target::Email(Email {
            host: host.into(),
            port: 25,
            security,
            from: "picket@example.com".into(),
            to: vec!["oncall@example.com".into()],
            username: None,
            password: None,
            ca_cert: None,
        })
    }

    fn field_of(name: &str, target: Target) -> &'static str {
        Channel::new(name, target, DEFAULT_GIVE_UP_AFTER, WallMs(0))
            .unwrap_err()
            .field
    }

    #[test]
    fn plain_smtp_is_refused_beyond_this_machine() {
        for host in ["127.0.0.1", "localhost", "::1"] {
            Channel::new(
                "m",
                email(host, SmtpSecurity::None),
                DEFAULT_GIVE_UP_AFTER,
                WallMs(0),
            )
            .unwrap();
        }
        assert_eq!(
            field_of("m", email("mail.example.com", SmtpSecurity::None)),
            "security"
        );
        Channel::new(
            "m",
            email("mail.example.com", SmtpSecurity::StartTls),
            DEFAULT_GIVE_UP_AFTER,
            WallMs(0),
        )
        .unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(
            field_of("a b", email("127.0.0.1", SmtpSecurity::None)),
            "name"
        );
        let Target::Email(mut e) = email("127.0.0.1", SmtpSecurity::None) else {
            unreachable!()
        };
        e.to = vec!["no-at-sign".into()];
        assert_eq!(field_of("m", Target::Email(e.clone())), "to");
        e.to = vec!["a@b.example".into()];
        e.port = 0;
        assert_eq!(field_of("m", Target::Email(e.clone())), "smtp");
        e.port = 25;
        e.username = Some("u".into());
        assert_eq!(field_of("m", Target::Email(e)), "username");
        let hook = |url: &str| {
            Target::Webhook(Webhook {
                url: url.into(),
                secret: "0123456789abcdef".into(),
                headers: vec![],
                ca_cert: None,
            })
        };
        assert_eq!(field_of("w", hook("http://example.com/x")), "url");
        assert_eq!(field_of("w", hook("https://exa mple.com/x")), "url");
        assert_eq!(field_of("w", hook("https://example.com:0/x")), "url");
        Channel::new(
            "w",
            hook("https://example.com:8443/in?k=1"),
            DEFAULT_GIVE_UP_AFTER,
            WallMs(0),
        )
        .unwrap();
        let syslog = Target::Syslog(Syslog {
            host: "siem".into(),
            port: 514,
            transport: SyslogTransport::Udp,
            format: SyslogFormat::Cef,
            ca_cert: Some("junk".into()),
            events: Vec::new(),
        });
        assert_eq!(field_of("s", syslog), "ca_cert");
    }

    fn syslog_forwarding(events: &[u32]) -> Target {
        Target::Syslog(Syslog {
            host: "siem".into(),
            port: 514,
            transport: SyslogTransport::Tcp,
            format: SyslogFormat::Cef,
            ca_cert: None,
            events: events.to_vec(),
        })
    }

    #[test]
    fn forwarded_events_are_catalogue_ids_kept_sorted_once() {
        let channel = Channel::new(
            "s",
            syslog_forwarding(&[5004, 1000, 5004]),
            DEFAULT_GIVE_UP_AFTER,
            WallMs(0),
        )
        .unwrap();
        let Target::Syslog(syslog) = channel.target else {
            unreachable!()
        };
        assert_eq!(syslog.events, [1000, 5004]);
        let err = Channel::new(
            "s",
            syslog_forwarding(&[1000, 4242]),
            DEFAULT_GIVE_UP_AFTER,
            WallMs(0),
        )
        .unwrap_err();
        assert_eq!(err.field, "events");
        assert!(err.problem.contains("4242") && err.problem.contains("1000 (agent-started)"));
    }

    #[test]
    fn a_webhook_url_is_shown_without_what_may_be_its_secret() {
        for (url, shown) in [
            (
                "https://hooks.example.com/services/T0/B0/s3cr3t",
                "https://hooks.example.com/services/\u{2026}",
            ),
            (
                "https://h.example:8443/hook?token=s3cr3t",
                "https://h.example:8443/hook/\u{2026}",
            ),
            (
                "https://h.example/?token=s3cr3t",
                "https://h.example/\u{2026}",
            ),
            ("https://h.example/hook", "https://h.example/hook"),
            ("https://h.example/", "https://h.example"),
            ("https://[::1]:9443", "https://[::1]:9443"),
        ] {
            assert_eq!(shown_url(url), shown, "{url}");
            assert!(!shown_url(url).contains("s3cr3t"));
        }
    }

    #[test]
    fn urls_and_addresses_are_taken_apart() {
        assert_eq!(
            https_url("https://[::1]:9443/hook?x=1").unwrap(),
            HttpsUrl {
                host: "::1".into(),
                port: 9443,
                path: "/hook?x=1".into()
            }
        );
        assert_eq!(https_url("https://example.com").unwrap().port, 443);
        assert_eq!(https_url("https://[::1]/x").unwrap().host, "::1");
        assert_eq!(https_url("https://[::1]/x").unwrap().port, 443);
        assert!(https_url("https://[::1/x").is_err());
        assert_eq!(https_url("https://example.com?a").unwrap().path, "/?a");
        assert_eq!(
            host_port("address", "[::1]:514").unwrap(),
            ("::1".to_string(), 514)
        );
        assert_eq!(
            host_port("address", "siem:99999").unwrap_err().field,
            "address"
        );
        assert_eq!(host_port("address", "siem").unwrap_err().field, "address");
    }
}
