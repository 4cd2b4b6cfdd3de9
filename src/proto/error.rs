//! What can go wrong on the wire; each error closes that one connection.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoError {
    /// A frame header announced more than [`super::MAX_FRAME`] bytes; refused before allocating.
    FrameTooLarge { len: usize },
    /// The bytes of a frame are not a message of the expected type.
    Malformed { detail: String },
    /// A message arrived that the session does not accept in its current step.
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    /// The peer speaks a protocol version outside `oldest..=newest`, the ones this side speaks.
    Version {
        theirs: u16,
        oldest: u16,
        newest: u16,
    },
    /// The peer broke a rule of a message it may send (e.g. events out of order).
    Violation(String),
    /// The peer did not answer in time.
    Timeout { waiting_for: &'static str },
    /// The peer refused (activation refused, or it closed the session with a reason).
    Refused(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::FrameTooLarge { len } => write!(
                f,
                "frame of {len} bytes refused: the limit is {} bytes",
                super::MAX_FRAME
            ),
            ProtoError::Malformed { detail } => write!(f, "malformed message: {detail}"),
            ProtoError::Unexpected { expected, got } => {
                write!(f, "unexpected {got} message while waiting for {expected}")
            }
            ProtoError::Version {
                theirs,
                oldest,
                newest,
            } if oldest == newest => write!(
                f,
                "protocol version {theirs} is not supported (this build speaks {newest})"
            ),
            ProtoError::Version {
                theirs,
                oldest,
                newest,
            } => write!(
                f,
                "protocol version {theirs} is not supported (this build speaks {oldest} to \
                 {newest})"
            ),
            ProtoError::Violation(rule) => write!(f, "protocol violation: {rule}"),
            ProtoError::Timeout { waiting_for } => {
                write!(f, "timed out waiting for {waiting_for}")
            }
            ProtoError::Refused(reason) => write!(f, "refused: {reason}"),
        }
    }
}

impl std::error::Error for ProtoError {}
