//! `SendError`: why a delivery failed, worded for the delivery log and naming the server or the
//! field it failed with.

use std::fmt;
use std::time::Duration;

/// The cause of a failure, as the OS, rustls, hyper or lettre reported it.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a delivery failed. `target` is what was being reached: `host:port`, or the webhook's
/// URL. The cause from below is kept as `source()`; [`SendError::chain`] gives the whole story
/// on one line.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The host name has no address (a typo, or DNS is down).
    Resolve { target: String, source: Cause },
    /// No connection could be opened: nothing listens there, or the network has no way to it.
    Connect { target: String, source: Cause },
    /// The TLS handshake failed (a certificate the channel's CA did not sign, or one for
    /// another name), or the mail server does not offer STARTTLS.
    Tls { target: String, source: Cause },
    /// The server did not finish within the time the caller gave.
    Timeout { target: String, limit: Duration },
    /// The server answered with an error: an SMTP 4xx or 5xx reply, an HTTP status other than
    /// 2xx (with the start of its body). `permanent`: retrying the same bytes will not help.
    Refused {
        target: String,
        answer: String,
        permanent: bool,
    },
    /// The channel's settings cannot work as they are; `field` is the API's name for the one
    /// to fix.
    Config {
        field: &'static str,
        problem: String,
    },
    /// The connection broke while the bytes were being sent, or the answer made no sense.
    Io { target: String, source: Cause },
}

impl SendError {
    /// Whether sending the same bytes again cannot succeed until someone changes something: an
    /// SMTP 5xx, an HTTP 3xx or 4xx other than 408 and 429, settings that cannot work. The
    /// notifier may give such a notice up early; network failures are always worth a retry.
    pub fn is_permanent(&self) -> bool {
        match self {
            SendError::Refused { permanent, .. } => *permanent,
            SendError::Config { .. } => true,
            _ => false,
        }
    }

    /// The error and its causes on one line, for the delivery log.
    pub fn chain(&self) -> String {
        crate::errors::one_line(self)
    }

    pub(super) fn timeout(target: &str, limit: Duration) -> SendError {
        SendError::Timeout {
            target: target.to_string(),
            limit,
        }
    }

    pub(super) fn config(field: &'static str, problem: impl Into<String>) -> SendError {
        SendError::Config {
            field,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Resolve { target, .. } => write!(f, "cannot resolve {target}"),
            SendError::Connect { target, .. } => write!(f, "cannot connect to {target}"),
            SendError::Tls { target, .. } => write!(f, "no secure connection to {target}"),
            SendError::Timeout { target, limit } => {
                write!(f, "{target} did not answer within {}s", limit.as_secs_f32())
            }
            SendError::Refused { target, answer, .. } => {
                write!(f, "{target} refused the notification: {answer}")
            }
            SendError::Config { field, problem } => write!(f, "{field}: {problem}"),
            SendError::Io { target, .. } => write!(f, "the exchange with {target} failed"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Resolve { source, .. }
            | SendError::Connect { source, .. }
            | SendError::Tls { source, .. }
            | SendError::Io { source, .. } => Some(source.as_ref()),
            SendError::Timeout { .. } | SendError::Refused { .. } | SendError::Config { .. } => {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_says_what_where_and_why() {
        let err = SendError::Connect {
            target: "127.0.0.1:514".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(
            err.chain(),
            "cannot connect to 127.0.0.1:514: connection refused"
        );
        assert!(!err.is_permanent());
        let refused = SendError::Refused {
            target: "mail:25".into(),
            answer: "550 5.1.1 no such user".into(),
            permanent: true,
        };
        assert!(refused.is_permanent());
        assert_eq!(
            refused.to_string(),
            "mail:25 refused the notification: 550 5.1.1 no such user"
        );
    }
}
