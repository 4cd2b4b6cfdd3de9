//! What every module's error enum shares: saying an error and all its causes on one line, for
//! a log line or a record (`StoreError::WriteFailed`, a channel's last delivery error) where
//! the root cause must not be lost.

use std::error::Error;

/// `top: cause: root cause`.
pub fn one_line(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_is_said_in_order() {
        #[derive(Debug)]
        struct Top(std::io::Error);
        impl std::fmt::Display for Top {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("cannot write")
            }
        }
        impl Error for Top {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            one_line(&Top(std::io::Error::other("disk full"))),
            "cannot write: disk full"
        );
    }
}
