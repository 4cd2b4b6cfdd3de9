//! How log lines look on stderr: env_logger's text with its own timestamp on a terminal; under
//! journald a syslog priority prefix (`<4>` for a warning) and no timestamp, since the journal
//! stamps and ranks each line itself (so `journalctl -p warning` finds the warnings); or one
//! JSON object a line for log shippers. `RUST_LOG` sets the level in every format.

use crate::clock::{WallMs, real_wall};
use log::Level;
use std::fmt;
use std::io::Write;
use std::str::FromStr;

/// The variable systemd sets to `DEVICE:INODE` of the stream it connected to the journal.
pub const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// `--log-format`: what the log lines look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `journal` when stderr is the journal's stream, `text` otherwise.
    #[default]
    Auto,
    /// env_logger's lines: `[TIME LEVEL target] message`.
    Text,
    /// `<PRIORITY>target: message`, for journald (or any reader of syslog priorities).
    Journal,
    /// `{"level":..,"message":..,"target":..,"time":..}`, one a line.
    Json,
}

/// A `--log-format` that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormatError {
    pub value: String,
}

impl fmt::Display for LogFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a log format; write auto, text, journal or json",
            self.value
        )
    }
}

impl std::error::Error for LogFormatError {}

impl FromStr for LogFormat {
    type Err = LogFormatError;

    fn from_str(text: &str) -> Result<LogFormat, LogFormatError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(LogFormat::Auto),
            "text" => Ok(LogFormat::Text),
            "journal" => Ok(LogFormat::Journal),
            "json" => Ok(LogFormat::Json),
            _ => Err(LogFormatError {
                value: text.to_string(),
            }),
        }
    }
}

/// For argh's `from_str_fn`.
pub fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    text.parse().map_err(|e: LogFormatError| e.to_string())
}

impl LogFormat {
    /// `Auto` decided: `journal` only when `journal_stream` (`$JOURNAL_STREAM`) names the very
    /// stream stderr is (`stderr`: its `DEVICE:INODE`). A child of a service inherits the
    /// variable with a stderr of its own (a pipe, a file, a terminal), where prefixes would be
    /// noise.
    pub fn resolve(self, journal_stream: Option<&str>, stderr: Option<&str>) -> LogFormat {
        match self {
            LogFormat::Auto => match (journal_stream, stderr) {
                (Some(journal), Some(stderr)) if same_stream(journal, stderr) => LogFormat::Journal,
                _ => LogFormat::Text,
            },
            chosen => chosen,
        }
    }
}

/// Whether two `DEVICE:INODE` texts name the same file (numbers compared, not spellings).
fn same_stream(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Option<(u64, u64)> {
        let (dev, ino) = s.trim().split_once(':')?;
        Some((dev.parse().ok()?, ino.parse().ok()?))
    };
    matches!((parse(a), parse(b)), (Some(x), Some(y)) if x == y)
}

/// stderr's `DEVICE:INODE`, as systemd writes `$JOURNAL_STREAM`.
fn stderr_id() -> Option<String> {
    let stat = rustix::fs::fstat(std::io::stderr()).ok()?;
    Some(format!("{}:{}", stat.st_dev, stat.st_ino))
}

/// The syslog priority journald reads from a `<N>` prefix: err, warning, info, debug.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// A message as journal lines: journald makes an entry of each line of a stream, so every
/// line of a message that has several carries the prefix.
pub fn journal_lines(level: Level, target: &str, message: &str) -> String {
    let prefix = priority(level);
    let mut out = String::with_capacity(message.len() + target.len() + 8);
    for line in message.split('\n') {
        out.push_str(&format!("<{prefix}>{target}: {line}\n"));
    }
    out
}

/// A message as one JSON object on one line (serde_json escapes the line breaks).
pub fn json_line(time: WallMs, level: Level, target: &str, message: &str) -> String {
    serde_json::json!({
        "time": crate::notify::format::rfc3339(time),
        "level": level.as_str().to_ascii_lowercase(),
        "target": target,
        "message": message,
    })
    .to_string()
}

/// Sets up the process's logger on stderr in `format` (`Auto` decided from the environment).
pub fn init(format: LogFormat) {
    let journal = std::env::var(JOURNAL_STREAM).ok();
    let format = format.resolve(journal.as_deref(), stderr_id().as_deref());
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match format {
        LogFormat::Auto | LogFormat::Text => {}
        LogFormat::Journal => {
            builder
                .write_style(env_logger::WriteStyle::Never)
                .format(|out, record| {
                    let message = record.args().to_string();
                    out.write_all(
                        journal_lines(record.level(), record.target(), &message).as_bytes(),
                    )
                });
        }
        LogFormat::Json => {
            builder
                .write_style(env_logger::WriteStyle::Never)
                .format(|out, record| {
                    let message = record.args().to_string();
                    let line = json_line(real_wall(), record.level(), record.target(), &message);
                    writeln!(out, "{line}")
                });
        }
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_journal_only_when_stderr_is_the_journal_stream() {
        let auto = LogFormat::Auto;
        assert_eq!(
            auto.resolve(Some("8:1234"), Some("8:1234")),
            LogFormat::Journal
        );
        assert_eq!(
            auto.resolve(Some(" 8:1234\n"), Some("8:1234")),
            LogFormat::Journal
        );
        assert_eq!(auto.resolve(Some("8:1234"), Some("8:999")), LogFormat::Text);
        assert_eq!(auto.resolve(None, Some("8:1234")), LogFormat::Text);
        assert_eq!(
            auto.resolve(Some("garbage"), Some("garbage")),
            LogFormat::Text
        );
        assert_eq!(auto.resolve(Some("8:1234"), None), LogFormat::Text);
        assert_eq!(
            LogFormat::Json.resolve(Some("8:1"), Some("8:1")),
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::Text.resolve(Some("8:1"), Some("8:1")),
            LogFormat::Text
        );
    }

    #[test]
    fn the_formats_are_named_in_words_and_a_bad_one_is_refused_naming_it() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("Journal".parse(), Ok(LogFormat::Journal));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("auto".parse(), Ok(LogFormat::Auto));
        let error = parse_log_format("xml").unwrap_err();
        assert!(error.contains("'xml'") && error.contains("json"), "{error}");
    }

    #[test]
    fn journal_lines_carry_the_syslog_priority_and_no_timestamp() {
        assert_eq!(
            journal_lines(Level::Warn, "picket::manager", "disk low"),
            "<4>picket::manager: disk low\n"
        );
        assert_eq!(
            journal_lines(Level::Error, "t", "two\nlines"),
            "<3>t: two\n<3>t: lines\n"
        );
        assert!(journal_lines(Level::Info, "t", "m").starts_with("<6>"));
        assert!(journal_lines(Level::Debug, "t", "m").starts_with("<7>"));
        assert!(journal_lines(Level::Trace, "t", "m").starts_with("<7>"));
    }

    #[test]
    fn a_json_line_is_one_object_with_time_level_target_and_message() {
        let line = json_line(
            WallMs(1_772_373_909_123),
            Level::Warn,
            "picket::agent",
            "a \"quoted\"\nmessage",
        );
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["time"], "2026-03-01T14:05:09.123Z");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["target"], "picket::agent");
        assert_eq!(value["message"], "a \"quoted\"\nmessage");
    }
}
