//! Why an admin command failed, and the exit code it maps to.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
#[non_exhaustive]
pub enum AdminError {
    /// The command line is wrong (exit code 2).
    Usage(String),
    /// A file the client needs (API key, CA) cannot be read.
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No way to authenticate or to trust the manager was given.
    Config(String),
    Tls(Box<crate::pki::PkiError>),
    /// The manager could not be reached or the connection broke.
    Connect {
        url: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Some of a bulk request's items could not be done (exit code 1).
    Partial(String),
    /// A backup, restore or check failed.
    Backup(Box<crate::backup::BackupError>),
    /// The manager answered with an error.
    Refused {
        status: u16,
        message: String,
        field: Option<String>,
    },
}

impl AdminError {
    /// 2 for a usage error, 1 for everything else (DESIGN.md's command-line contract).
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Usage(_) | AdminError::Config(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Usage(m) | AdminError::Config(m) | AdminError::Partial(m) => f.write_str(m),
            AdminError::File { path, .. } => write!(f, "cannot read {}", path.display()),
            AdminError::Tls(_) => write!(f, "cannot set up TLS to the manager"),
            AdminError::Connect { url, .. } => write!(f, "cannot talk to the manager at {url}"),
            AdminError::Backup(e) => e.fmt(f),
            AdminError::Refused {
                status,
                message,
                field: Some(field),
            } => write!(f, "refused ({status}): {field}: {message}"),
            AdminError::Refused {
                status, message, ..
            } => write!(f, "refused ({status}): {message}"),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::File { source, .. } => Some(source),
            AdminError::Tls(e) => Some(e.as_ref()),
            AdminError::Connect { source, .. } => Some(source.as_ref()),
            AdminError::Backup(e) => e.source(),
            _ => None,
        }
    }
}

impl From<crate::backup::BackupError> for AdminError {
    fn from(e: crate::backup::BackupError) -> Self {
        AdminError::Backup(Box::new(e))
    }
}
