//! The shells that move a notice's bytes to a mail server, a syslog collector or a webhook
//! receiver, and report what the server answered.
//!
//! The caller (the notifier task, the console's "send a test") formats the bytes
//! (`notify::format`); these functions only deliver them, each within the `limit` it is given,
//! on the clock it is given, and never panic on anything from the network or the channel's
//! settings:
//!
//! - [`email`] (`email.rs`): SMTP through lettre's blocking transport on the blocking pool;
//! - [`syslog`] (`syslog.rs`): UDP, TCP, or TCP in TLS (RFC 5425);
//! - [`webhook`] (`webhook.rs`): an HTTPS POST through hyper;
//! - `tls.rs`: the TLS client configuration syslog and webhooks share;
//! - `error.rs`: [`SendError`], why a delivery failed and where;
//! - `testing.rs`, `smtpd.rs` (tests only): a throwaway CA and its certificates, and a real
//!   mail server (aiosmtpd) to send to.

mod email;
mod error;
#[cfg(test)]
mod smtpd;
mod syslog;
#[cfg(test)]
mod testing;
mod tls;
mod webhook;

pub use email::email;
pub use error::SendError;
pub use syslog::syslog;
pub use webhook::webhook;

use crate::clock::{Clock, within};
use smol::net::TcpStream;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// What the server said, for the console's "send a test" and the delivery log: e.g.
/// "250 2.0.0 Ok: queued as 1234" (SMTP), "HTTP 200 OK" (webhook), "sent 312 bytes over udp
/// to 127.0.0.1:514" (syslog, whose collectors say nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer(pub String);

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `host:port` as errors and answers name a server, with brackets around an IPv6 address so
/// the port stays readable.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs `delivery` for at most `limit` on `clock`; running out is a [`SendError::Timeout`]
/// naming `target`.
async fn bounded<T>(
    clock: &dyn Clock,
    limit: Duration,
    target: &str,
    delivery: impl Future<Output = Result<T, SendError>>,
) -> Result<T, SendError> {
    within(clock, limit, delivery)
        .await
        .unwrap_or_else(|| Err(SendError::timeout(target, limit)))
}

/// The addresses `host` resolves to; smol runs a name lookup on its blocking pool, so the
/// async threads never wait for DNS.
async fn resolve(host: &str, port: u16, target: &str) -> Result<Vec<SocketAddr>, SendError> {
    let addrs = smol::net::resolve((host, port))
        .await
        .map_err(|e| SendError::Resolve {
            target: target.to_string(),
            source: Box::new(e),
        })?;
    if addrs.is_empty() {
        return Err(SendError::Resolve {
            target: target.to_string(),
            source: "the name has no address".into(),
        });
    }
    Ok(addrs)
}

/// A TCP connection to the first of `addrs` that accepts one.
async fn connect(addrs: &[SocketAddr], target: &str) -> Result<TcpStream, SendError> {
    TcpStream::connect(addrs)
        .await
        .map_err(|e| SendError::Connect {
            target: target.to_string(),
            source: Box::new(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_bracketed() {
        assert_eq!(host_port("::1", 514), "[::1]:514");
        assert_eq!(host_port("siem.example", 6514), "siem.example:6514");
    }

    #[test]
    fn a_closed_port_is_a_connect_error_naming_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = smol::block_on(connect(&[addr], &addr.to_string())).unwrap_err();
        assert!(matches!(err, SendError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
