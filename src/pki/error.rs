//! `PkiError`: what can go wrong with the CA, the certificates and the TLS configurations,
//! worded for the administrator and naming the file involved.

use rustls::pki_types::pem;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error of the PKI layer.
///
/// The variants about files name the path, because they stop the manager at start-up (or the
/// admin CLI before it connects) and the administrator has to find the file to fix it. Causes
/// from rcgen, rustls and the OS are kept as `source()`, so `main` prints the whole chain.
#[derive(Debug)]
#[non_exhaustive]
pub enum PkiError {
    /// A file or directory could not be created, read, written or renamed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// Some of the PKI files exist and this one does not.
    Missing { path: PathBuf, found: PathBuf },
    /// The file does not hold the PEM object it should (`expected`), or holds several.
    NotPem {
        path: PathBuf,
        expected: &'static str,
        source: Option<pem::Error>,
    },
    /// The file holds a private key that cannot be used to sign.
    BadKey { path: PathBuf, source: rcgen::Error },
    /// A certificate does not parse as X.509 or cannot be a trust anchor. `path` is `None` for a
    /// certificate that came from memory.
    BadCertificate {
        path: Option<PathBuf>,
        source: rustls::Error,
    },
    /// Two files that belong together do not: a key and its certificate, or the manager
    /// certificate and the CA that should have issued it. The cause is boxed to keep every
    /// `Result<_, PkiError>` small.
    Mismatch {
        path: PathBuf,
        problem: &'static str,
        other: PathBuf,
        source: Box<rustls::Error>,
    },
    /// The host name cannot be put in a certificate.
    Hostname { hostname: String },
    /// The system clock is outside what a certificate's validity can express.
    Clock,
    /// rcgen could not generate or sign `what`.
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    /// rustls refused to build `what` (a server or client configuration).
    Tls {
        what: &'static str,
        source: rustls::Error,
    },
    /// The operating system's random number generator failed.
    Random,
    /// The agent's private key (PEM) cannot be used; `problem` says why.
    BadAgentKey { problem: &'static str },
    /// The public key an agent sent for its certificate cannot be used; `problem` says why.
    BadPublicKey { problem: &'static str },
    /// A CA pin (`--ca-sha256`) that is not 64 hex digits.
    BadPin { value: String },
    /// The session-ticket key file is not 32 bytes.
    BadTicketKey { path: PathBuf, len: usize },
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiError::Io { path, action, .. } => write!(f, "cannot {action} {}", path.display()),
            PkiError::Missing { path, found } => write!(
                f,
                "{} is missing but {} exists: restore the missing file from a backup (a new CA \
                 is never generated over an existing one, because activated agents pin it)",
                path.display(),
                found.display()
            ),
            PkiError::NotPem { path, expected, .. } => {
                write!(
                    f,
                    "{} does not hold exactly one PEM {expected}",
                    path.display()
                )
            }
            PkiError::BadKey { path, .. } => {
                write!(f, "{} does not hold a usable private key", path.display())
            }
            PkiError::BadTicketKey { path, len } => write!(
                f,
                "{} holds {len} bytes, not a 32-byte session-ticket key: remove it and restart \
                 (agents then make one full TLS handshake each)",
                path.display()
            ),
            PkiError::BadCertificate {
                path: Some(path), ..
            } => {
                write!(f, "{} does not hold a usable certificate", path.display())
            }
            PkiError::BadCertificate { path: None, .. } => {
                f.write_str("the CA certificate is not usable")
            }
            PkiError::Mismatch {
                path,
                problem,
                other,
                ..
            } => write!(f, "{} {problem} {}", path.display(), other.display()),
            PkiError::Hostname { hostname } => write!(
                f,
                "host name '{hostname}' cannot be put in a certificate (use --hostname NAME)"
            ),
            PkiError::Clock => f.write_str(
                "the system clock is outside the range of certificate dates: set the clock",
            ),
            PkiError::Generate { what, .. } => write!(f, "cannot generate {what}"),
            PkiError::Tls { what, .. } => write!(f, "cannot build {what}"),
            PkiError::Random => f.write_str("the system random number generator failed"),
            PkiError::BadAgentKey { problem } => write!(f, "the agent's private key {problem}"),
            PkiError::BadPublicKey { problem } => write!(f, "the agent's public key {problem}"),
            PkiError::BadPin { value } => write!(
                f,
                "CA pin '{value}' is not 64 hex digits: give the CA SHA-256 the manager prints"
            ),
        }
    }
}

impl std::error::Error for PkiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PkiError::Io { source, .. } => Some(source),
            PkiError::NotPem { source, .. } => source.as_ref().map(|e| e as _),
            PkiError::BadKey { source, .. } | PkiError::Generate { source, .. } => Some(source),
            PkiError::BadCertificate { source, .. } | PkiError::Tls { source, .. } => Some(source),
            PkiError::Mismatch { source, .. } => Some(&**source),
            PkiError::Missing { .. }
            | PkiError::Hostname { .. }
            | PkiError::Clock
            | PkiError::Random
            | PkiError::BadAgentKey { .. }
            | PkiError::BadPublicKey { .. }
            | PkiError::BadPin { .. }
            | PkiError::BadTicketKey { .. } => None,
        }
    }
}
