//! Why the agent could not start, activate or complete a session.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
#[non_exhaustive]
pub enum AgentError {
    /// A file of the agent's data dir could not be read or written.
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file of the data dir holds something unusable.
    BadFile {
        path: PathBuf,
        problem: String,
    },
    Spool(super::spool::SpoolError),
    Pki(Box<crate::pki::PkiError>),
    /// No identity yet and not enough to activate.
    NotActivated,
    Connect {
        manager: String,
        source: std::io::Error,
    },
    Tls {
        manager: String,
        detail: String,
    },
    /// The manager's CA is not the one the administrator pinned.
    PinMismatch(String),
    /// The manager refused (activation refused, protocol version, revoked certificate).
    Refused(String),
    Protocol(String),
    Timeout(&'static str),
    Signals(std::io::Error),
    /// An upgrade left the agent no binary it can run on with.
    Upgrade(String),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::File { path, .. } => write!(f, "cannot use {}", path.display()),
            AgentError::BadFile { path, problem } => write!(f, "{}: {problem}", path.display()),
            AgentError::Spool(e) => e.fmt(f),
            AgentError::Pki(_) => f.write_str("certificate or key problem"),
            AgentError::NotActivated => f.write_str(
                "this agent is not activated yet: pass --manager HOST:PORT --token TOKEN \
                 --ca-sha256 HEX (from 'picket token create' on the manager)",
            ),
            AgentError::Connect { manager, .. } => write!(f, "cannot connect to {manager}"),
            AgentError::Tls { manager, detail } => {
                write!(f, "TLS with {manager} failed: {detail}")
            }
            AgentError::PinMismatch(detail) => write!(
                f,
                "refusing the manager: {detail}. Check the --ca-sha256 value printed by \
                 'picket token create'"
            ),
            AgentError::Refused(reason) => write!(f, "the manager refused: {reason}"),
            AgentError::Protocol(detail) => write!(f, "protocol error: {detail}"),
            AgentError::Timeout(what) => write!(f, "timed out: {what}"),
            AgentError::Signals(_) => f.write_str("cannot install the signal handlers"),
            AgentError::Upgrade(detail) => write!(f, "upgrade: {detail}"),
        }
    }
}

impl std::error::Error for AgentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AgentError::File { source, .. }
            | AgentError::Connect { source, .. }
            | AgentError::Signals(source) => Some(source),
            AgentError::Spool(e) => Some(e),
            AgentError::Pki(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl From<super::spool::SpoolError> for AgentError {
    fn from(e: super::spool::SpoolError) -> Self {
        AgentError::Spool(e)
    }
}

impl From<crate::pki::PkiError> for AgentError {
    fn from(e: crate::pki::PkiError) -> Self {
        AgentError::Pki(Box::new(e))
    }
}
