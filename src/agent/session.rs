//! Runs one `AgentSession` over a TLS connection: the only async code near the agent's
//! protocol decisions. It moves frames and carries out what the session asks (read or forget
//! spooled events, apply a configuration).

use super::error::AgentError;
use super::spool::Spool;
use crate::clock::Clock;
use crate::clock::within;
use crate::framed::{self, FrameError};
use crate::model::events;
use crate::proto::{Activated, AgentOutput, AgentSession, ManagerMsg, ProtoError};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::pki_types::ServerName;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting, the handshake and each step may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// How a session ended well.
pub struct Ended {
    /// The manager's delay until the next heartbeat.
    pub next: Duration,
    pub activated: Option<Activated>,
    /// The configuration interval, if a new configuration was applied.
    pub new_interval: Option<Duration>,
}

pub async fn connect(
    manager: &str,
    tls: Arc<rustls::ClientConfig>,
    clock: &dyn Clock,
) -> Result<TlsStream<TcpStream>, AgentError> {
    let host = manager
        .rsplit_once(':')
        .map_or(manager, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|e| AgentError::Tls {
        manager: manager.to_string(),
        detail: format!("'{host}' is not a host name: {e}"),
    })?;
    let tcp = within(clock, STEP_TIMEOUT, TcpStream::connect(manager))
        .await
        .ok_or(AgentError::Timeout("connecting to the manager"))?
        .map_err(|source| AgentError::Connect {
            manager: manager.to_string(),
            source,
        })?;
    // A session is a few small messages each way: Nagle's algorithm would hold each back until
    // the manager's delayed acknowledgement (40 ms on Linux), as `picket bench` showed.
    if let Err(e) = tcp.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY: {e}");
    }
    within(
        clock,
        STEP_TIMEOUT,
        TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .ok_or(AgentError::Timeout("the TLS handshake"))?
    .map_err(|e| tls_error(manager, e))
}

/// A pin mismatch is reported as such; everything else as a TLS failure.
fn tls_error(manager: &str, e: std::io::Error) -> AgentError {
    let mismatch = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::Other(other) => other.0.downcast_ref::<crate::pki::PinMismatch>(),
            _ => None,
        });
    match mismatch {
        Some(m) => AgentError::PinMismatch(m.to_string()),
        None => AgentError::Tls {
            manager: manager.to_string(),
            detail: e.to_string(),
        },
    }
}

/// Runs `session` to its end over `tls`, a connection the agent dialed or accepted. A new
/// configuration is stored only once `enforce` has applied its firewall.
pub async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut session: AgentSession,
    tls: &mut S,
    spool: &Spool,
    clock: &dyn Clock,
    enforce: &dyn Fn(&crate::policy::AgentConfig) -> Result<(), String>,
    upgrades: Option<&super::upgrade::Upgrades>,
) -> Result<Ended, AgentError> {
    let mut activated = None;
    let mut new_interval = None;
    loop {
        while let Some(output) = session.poll_output() {
            match output {
                AgentOutput::Send(message) => {
                    if let Err(e) = framed::write(tls, &message).await {
                        log::debug!("write to the manager failed: {e}");
                        session.handle_closed();
                    }
                }
                AgentOutput::ReadEvents { after, max } => {
                    let batch = spool.read(after, max)?;
                    session.provide_events(clock.now(), batch);
                }
                AgentOutput::Acked { through } => spool.acknowledge(through)?,
                AgentOutput::Apply {
                    config,
                    fingerprint,
                } => {
                    let result = if config.interval.is_zero() {
                        Err((fingerprint, "a heartbeat interval of zero".to_string()))
                    } else if let Err(e) = enforce(&config) {
                        // Not stored: the agent keeps running the last configuration it could
                        // enforce, and the manager sees the rejection.
                        Err((fingerprint, format!("the firewall: {e}")))
                    } else {
                        spool.set_config(&config)?;
                        new_interval = Some(config.interval);
                        Ok(config.fingerprint())
                    };
                    record_apply(spool, clock, &result)?;
                    session.config_result(clock.now(), result);
                }
                AgentOutput::Activated(a) => activated = Some(a),
                AgentOutput::UpgradeOffered(offer) => {
                    let fetch = upgrades.is_some_and(|u| u.offered(&offer, clock));
                    session.upgrade_answer(clock.now(), fetch);
                }
                AgentOutput::BinaryChunk(data) => {
                    if let Some(upgrades) = upgrades {
                        upgrades.chunk(&data);
                    }
                }
                AgentOutput::Finished(result) => {
                    return match result {
                        Ok(next) => Ok(Ended {
                            next,
                            activated,
                            new_interval,
                        }),
                        Err(ProtoError::Refused(reason)) => Err(AgentError::Refused(reason)),
                        Err(e) => Err(AgentError::Protocol(e.to_string())),
                    };
                }
            }
        }
        let wait = session
            .poll_timeout()
            .map_or(STEP_TIMEOUT, |d| d.saturating_since(clock.now()));
        match within(clock, wait, framed::read::<ManagerMsg, _>(tls)).await {
            None => session.handle_timeout(clock.now()),
            Some(Ok(message)) => session.handle_message(clock.now(), message),
            Some(Err(FrameError::Proto(e))) => return Err(AgentError::Protocol(e.to_string())),
            // Under TLS 1.3 the manager refuses a revoked certificate after the handshake: the
            // alert arrives on the first read, and the administrator must be told in words.
            Some(Err(FrameError::Io(e))) if alert(&e).is_some() => {
                let alert = alert(&e).unwrap_or_default();
                return Err(AgentError::Refused(format!(
                    "this agent's certificate ({alert}): was its computer \
                     deleted? Activate again with a new token"
                )));
            }
            Some(Err(e)) => {
                log::debug!("reading from the manager: {e}");
                session.handle_closed();
            }
        }
    }
}

/// The TLS alert a read failed with, if the manager sent one.
fn alert(e: &std::io::Error) -> Option<String> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
        _ => None,
    }
}

fn record_apply(
    spool: &Spool,
    clock: &dyn Clock,
    result: &Result<crate::policy::Fingerprint, (crate::policy::Fingerprint, String)>,
) -> Result<(), AgentError> {
    let (kind, fields) = match result {
        Ok(fp) => (
            events::CONFIG_APPLIED,
            vec![("fingerprint".to_string(), fp.to_string())],
        ),
        Err((fp, reason)) => (
            events::CONFIG_REJECTED,
            vec![
                ("fingerprint".to_string(), fp.to_string()),
                ("reason".to_string(), reason.clone()),
            ],
        ),
    };
    spool.append(kind.id, clock.wall(), fields)?;
    Ok(())
}
