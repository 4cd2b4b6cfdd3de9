//! Running a helper program (`nft`, a downloaded binary's `--version`) with a time limit: one
//! that hangs is killed, so the agent's loops, which wait behind it, are never held for ever.

use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What went wrong running a program, naming the command.
#[derive(Debug)]
pub enum CommandError {
    /// The program does not exist (not installed, not on `PATH`).
    NotFound,
    /// It could not be started or talked to.
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// It ran and failed: its own words.
    Failed { command: String, stderr: String },
    /// It did not end within the limit and was killed.
    TimedOut { command: String, limit: Duration },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NotFound => f.write_str("the program does not exist"),
            CommandError::Spawn { command, source } => write!(f, "cannot run {command}: {source}"),
            CommandError::Failed { command, stderr } => {
                write!(f, "{command} failed: {}", stderr.trim())
            }
            CommandError::TimedOut { command, limit } => write!(
                f,
                "{command} did not end within {} s and was killed",
                limit.as_secs()
            ),
        }
    }
}

impl std::error::Error for CommandError {}

/// Runs `program` with `args`, `input` on its standard input, and answers its standard output;
/// kills it if it has not ended within `limit`.
pub fn run_within(
    program: &std::path::Path,
    args: &[&str],
    input: Option<&str>,
    limit: Duration,
) -> Result<String, CommandError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let spawn_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => CommandError::NotFound,
        _ => CommandError::Spawn {
            command: command.clone(),
            source,
        },
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(spawn_error)?;
    }
    // Waited for on a thread of its own, so that a call that hangs can be given up on.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(spawn_error)?,
        Err(_) => {
            if let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return Err(CommandError::TimedOut { command, limit });
        }
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CommandError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
