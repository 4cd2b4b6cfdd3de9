//! When the agent takes an upgrade the manager offers, which binary a start runs, and when an
//! upgrade is confirmed or rolled back: decisions over the upgrade state the agent keeps in its
//! data dir (`upgrade/state.json`), taking the time and the facts as arguments.
//!
//! A new binary is staged in the data dir, not written over the installed one: the package
//! manager owns `/usr/bin/picket`, and the agent's unit makes it read-only
//! (`ProtectSystem=strict`). The installed binary, when it starts, hands over (exec) to a staged
//! one that is newer; a package that installs a version at least as new wins, and the staged
//! ones are forgotten.
//!
//! A switch is on trial for [`trial_length`] after the new binary starts: it is confirmed when
//! the binary completed a session with the manager and is still running at the end. It rolls
//! back to the binary it came from when it was not online by then, or when it was started
//! [`MAX_TRIAL_STARTS`] times without lasting that long (it crashes, and systemd restarts it);
//! a version that failed is not taken again.

use crate::clock::{Instant, WallMs};
use crate::proto::UpgradeOffer;
use crate::release;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts of a binary on trial before it is rolled back without waiting for its deadline.
pub const MAX_TRIAL_STARTS: u32 = 3;
/// The largest binary taken: the agent's is 14 MB; anything near this is not one.
pub const MAX_BINARY: u64 = 256 * 1024 * 1024;
/// The shortest trial, whatever the interval: time to start, connect and heartbeat.
pub const MIN_TRIAL: Duration = Duration::from_secs(10);
/// Heartbeat intervals a new binary has to come online.
pub const TRIAL_INTERVALS: u32 = 3;
/// A version whose trial ended offline is taken again after this long: the manager may have
/// been away (maintenance, a network cut) rather than the binary broken, and a site should not
/// have to clear every computer's refusal by hand. A binary that is truly broken costs a trial a
/// day until the administrator turns `agent.auto-upgrade` off; each is in the history.
pub const RETRY_OFFLINE_TRIAL: Duration = Duration::from_secs(24 * 3600);

/// A binary the agent can run: its version and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    pub version: String,
    pub path: PathBuf,
    /// Staged in the data dir by an upgrade, rather than installed by a package or script.
    pub staged: bool,
    /// A staged binary's SHA-256 (hex), checked again before each run; empty for the installed.
    #[serde(default)]
    pub sha256: String,
}

/// A switch not yet confirmed: the new binary must be online, and stay up for the whole trial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub from: String,
    pub to: String,
    /// How many times the new binary started on this trial.
    pub starts: u32,
}

/// What the agent's history is to say, in its next heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A new binary is staged and about to run (`agent-upgrade-started`).
    Started { from: String, to: String },
    /// The new binary was online and stayed up for its trial (`agent-upgraded`).
    Upgraded { from: String, to: String },
    /// It did not: the agent went back, or never switched (`agent-upgrade-failed`).
    Failed {
        from: String,
        to: String,
        reason: String,
    },
}

/// The state in `upgrade/state.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeState {
    /// The staged binary to run instead of the installed one.
    pub current: Option<Binary>,
    /// What ran before `current`, to go back to.
    pub previous: Option<Binary>,
    pub trial: Option<Trial>,
    /// Versions that failed a check or crashed through their trial: not taken again.
    pub refused: Vec<String>,
    /// Versions whose trial ended offline, and the wall-clock time (ms) from which they are
    /// taken again.
    #[serde(default)]
    pub waiting: Vec<(String, u64)>,
    /// Said in the history when the spool next opens (a start's rollback happens before it).
    pub report: Option<Outcome>,
}

/// What a start does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Run this binary (the one started).
    Run,
    /// Hand over to this newer binary, with the same arguments.
    Exec(PathBuf),
    /// Go back to this binary, which is not to hand over again in this run: the state that
    /// says so may not have been written (a full disk).
    Back(PathBuf),
}

/// Why an offer is declined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decline {
    OtherArch {
        offered: String,
    },
    NotNewer {
        offered: String,
    },
    Refused {
        offered: String,
    },
    /// Its trial ended offline; it is taken again from this wall-clock time (ms).
    Waiting {
        offered: String,
        until_ms: u64,
    },
    OnTrial,
    TooLarge {
        size: u64,
    },
}

impl std::fmt::Display for Decline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decline::OtherArch { offered } => {
                write!(
                    f,
                    "it is for {offered}, this computer is {}",
                    release::arch()
                )
            }
            Decline::NotNewer { offered } => write!(f, "{offered} is not newer"),
            Decline::Refused { offered } => {
                write!(f, "{offered} failed here before and is not taken again")
            }
            Decline::Waiting { offered, until_ms } => write!(
                f,
                "{offered} was not online through its trial here; taken again from {until_ms} ms \
                 since the epoch"
            ),
            Decline::OnTrial => f.write_str("this version is itself on trial"),
            Decline::TooLarge { size } => write!(f, "{size} bytes is too large for an agent"),
        }
    }
}

/// What a binary started as `own` does with `state`. `intact` says whether a staged binary is
/// still there with its hash; `hold` that a rollback started this run (no hand-over).
pub fn on_start(
    state: &UpgradeState,
    own: &Binary,
    intact: impl Fn(&Binary) -> bool,
    hold: bool,
) -> (UpgradeState, Start) {
    let mut next = state.clone();
    let Some(current) = &state.current else {
        return (next, Start::Run);
    };
    if current.path != own.path {
        if hold {
            return (next, Start::Run);
        }
        if release::is_newer(&current.version, &own.version) {
            if intact(current) {
                return (next, Start::Exec(current.path.clone()));
            }
            let reason = "the staged binary is gone or no longer the one checked".to_string();
            return (refuse_current(state, own, reason), Start::Run);
        }
        // A package installed a version at least as new: it runs, and the staged binaries are
        // forgotten.
        next.current = None;
        next.previous = None;
        next.trial = None;
        return (next, Start::Run);
    }
    let Some(trial) = &mut next.trial else {
        return (next, Start::Run);
    };
    trial.starts += 1;
    if trial.starts > MAX_TRIAL_STARTS {
        let reason = format!("started {MAX_TRIAL_STARTS} times without completing its trial");
        return roll_back(state, &reason);
    }
    (next, Start::Run)
}

/// The staged binary cannot be used (gone, changed, or it would not start): its version is
/// refused and the binary running as `own` keeps running.
fn refuse_current(state: &UpgradeState, own: &Binary, reason: String) -> UpgradeState {
    let mut next = state.clone();
    let Some(current) = next.current.take() else {
        return next;
    };
    if !next.refused.contains(&current.version) {
        next.refused.push(current.version.clone());
    }
    next.report = Some(Outcome::Failed {
        from: own.version.clone(),
        to: current.version,
        reason,
    });
    next.trial = None;
    // Back to what ran before it, when that was itself staged and is what runs now.
    next.current = next
        .previous
        .take()
        .filter(|p| p.staged && p.path == own.path);
    next
}

/// Running `path` failed with `reason`, as `own`. Returns the state and whether this process
/// must end rather than run on: it is a binary that was rolled back from, whose way back failed
/// (under systemd the service then starts the installed binary).
pub fn exec_failed(
    state: &UpgradeState,
    own: &Binary,
    path: &Path,
    reason: &str,
) -> (UpgradeState, bool) {
    if state.current.as_ref().is_some_and(|c| c.path == path) {
        let reason = format!("it could not be run: {reason}");
        return (refuse_current(state, own, reason), false);
    }
    (state.clone(), own.staged)
}

/// Whether to take `offer`, running `own_version`, at wall-clock time `now`.
pub fn consider(
    state: &UpgradeState,
    offer: &UpgradeOffer,
    own_version: &str,
    now: WallMs,
) -> Result<(), Decline> {
    let offered = offer.version.clone();
    if offer.arch != release::arch() {
        return Err(Decline::OtherArch {
            offered: offer.arch.clone(),
        });
    }
    if state.trial.is_some() {
        return Err(Decline::OnTrial);
    }
    if state.refused.contains(&offered) {
        return Err(Decline::Refused { offered });
    }
    if let Some((_, until_ms)) = state
        .waiting
        .iter()
        .find(|(v, until)| *v == offered && now.0 < *until)
    {
        let until_ms = *until_ms;
        return Err(Decline::Waiting { offered, until_ms });
    }
    // Only a version that parses is newer: the offered text becomes a file name.
    if !release::is_newer(&offered, own_version) {
        return Err(Decline::NotNewer { offered });
    }
    if offer.size > MAX_BINARY {
        return Err(Decline::TooLarge { size: offer.size });
    }
    Ok(())
}

/// `new` is staged and checked: it runs next, on trial, with `own` to go back to.
pub fn staged(state: &UpgradeState, own: Binary, new: Binary) -> UpgradeState {
    let outcome = Outcome::Started {
        from: own.version.clone(),
        to: new.version.clone(),
    };
    UpgradeState {
        trial: Some(Trial {
            from: own.version.clone(),
            to: new.version.clone(),
            starts: 0,
        }),
        current: Some(new),
        previous: Some(own),
        refused: state.refused.clone(),
        waiting: state.waiting.clone(),
        report: Some(outcome),
    }
}

/// Whether the binary running as `own` is the one on trial (not the one that just staged it,
/// which runs on until it hands over).
pub fn on_trial(state: &UpgradeState, own: &Binary) -> bool {
    let current = state.current.as_ref().is_some_and(|c| c.path == own.path);
    current && state.trial.as_ref().is_some_and(|t| t.to == own.version)
}

/// The end, at wall-clock time `now`, of the trial of the binary running as `own`, which was
/// `online` (completed a session) since it started: confirmed, or rolled back and taken again
/// after [`RETRY_OFFLINE_TRIAL`].
pub fn trial_ended(
    state: &UpgradeState,
    own: &Binary,
    online: bool,
    length: Duration,
    now: WallMs,
) -> (UpgradeState, Start) {
    if !on_trial(state, own) {
        return (state.clone(), Start::Run);
    }
    if !online {
        let reason = format!(
            "not online within {} s of its start; taken again in {} h",
            length.as_secs(),
            RETRY_OFFLINE_TRIAL.as_secs() / 3600
        );
        let retry = now.0.saturating_add(RETRY_OFFLINE_TRIAL.as_millis() as u64);
        return roll_back_until(state, &reason, Some(retry));
    }
    let mut next = state.clone();
    if let Some(trial) = next.trial.take() {
        next.report = Some(Outcome::Upgraded {
            from: trial.from,
            to: trial.to,
        });
    }
    (next, Start::Run)
}

/// How long the trial of a binary lasts, at `interval` between heartbeats.
pub fn trial_length(interval: Duration) -> Duration {
    interval.saturating_mul(TRIAL_INTERVALS).max(MIN_TRIAL)
}

/// Whether a trial started at `start` has run out at `now`.
pub fn trial_over(start: Instant, interval: Duration, now: Instant) -> bool {
    now >= start.saturating_add(trial_length(interval))
}

/// Back to the binary the trial came from (`Start::Back`), the version refused from now on,
/// and the history to say why.
pub fn roll_back(state: &UpgradeState, reason: &str) -> (UpgradeState, Start) {
    roll_back_until(state, reason, None)
}

/// [`roll_back`], the version refused for good (`None`) or until the wall-clock time `retry`.
fn roll_back_until(
    state: &UpgradeState,
    reason: &str,
    retry: Option<u64>,
) -> (UpgradeState, Start) {
    let mut next = state.clone();
    let Some(trial) = next.trial.take() else {
        return (next, Start::Run);
    };
    next.waiting.retain(|(v, _)| *v != trial.to);
    match retry {
        Some(until) => next.waiting.push((trial.to.clone(), until)),
        None if !next.refused.contains(&trial.to) => next.refused.push(trial.to.clone()),
        None => {}
    }
    next.report = Some(Outcome::Failed {
        from: trial.from,
        to: trial.to,
        reason: reason.to_string(),
    });
    let back = next.previous.take();
    // The previous binary, if it was itself staged, is what runs from now on; if it was the
    // installed one, nothing staged runs.
    next.current = back.clone().filter(|b| b.staged);
    match back {
        Some(binary) => (next, Start::Back(binary.path)),
        None => (next, Start::Run),
    }
}

#[cfg(test)]
mod tests;
