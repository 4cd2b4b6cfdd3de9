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
//! A switch is on trial until the new binary completes a session with the manager. It rolls
//! back to the binary it came from when it is not online within [`trial_length`], or when it
//! was started [`MAX_TRIAL_STARTS`] times without getting there (it crashes, and systemd
//! restarts it); a version that failed is not taken again.

use crate::clock::Instant;
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

/// A binary the agent can run: its version and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    pub version: String,
    pub path: PathBuf,
    /// Staged in the data dir by an upgrade, rather than installed by a package or script.
    pub staged: bool,
}

/// A switch not yet confirmed by a session with the manager.
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
    /// The new binary completed a session (`agent-upgraded`).
    Upgraded { from: String, to: String },
    /// It did not: the agent went back (`agent-upgrade-failed`).
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
    /// Versions that failed a trial: not taken again.
    pub refused: Vec<String>,
    /// Said in the history when the spool next opens (a start's rollback happens before it).
    pub report: Option<Outcome>,
}

/// What a start does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Run this binary (the one started).
    Run,
    /// Hand over to this binary, with the same arguments.
    Exec(PathBuf),
}

/// Why an offer is declined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decline {
    OtherArch { offered: String },
    NotNewer { offered: String },
    Refused { offered: String },
    OnTrial,
    TooLarge { size: u64 },
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
            Decline::OnTrial => f.write_str("this version is itself on trial"),
            Decline::TooLarge { size } => write!(f, "{size} bytes is too large for an agent"),
        }
    }
}

/// What a binary started as `own` does with `state`. `exists` says whether a path is there.
pub fn on_start(
    state: &UpgradeState,
    own: &Binary,
    exists: impl Fn(&Path) -> bool,
) -> (UpgradeState, Start) {
    let mut next = state.clone();
    let Some(current) = &state.current else {
        return (next, Start::Run);
    };
    if current.path != own.path {
        if release::is_newer(&current.version, &own.version) && exists(&current.path) {
            return (next, Start::Exec(current.path.clone()));
        }
        // A package installed a version at least as new (or the staged file is gone): the
        // installed binary is what runs, and the staged ones are forgotten.
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
        let reason = format!("started {MAX_TRIAL_STARTS} times without reaching the manager");
        return roll_back(state, &reason);
    }
    (next, Start::Run)
}

/// Whether to take `offer`, running `own_version`.
pub fn consider(
    state: &UpgradeState,
    offer: &UpgradeOffer,
    own_version: &str,
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
        report: Some(outcome),
    }
}

/// A session with the manager completed, running as `own`: its trial is over, and said so.
pub fn confirmed(state: &UpgradeState, own: &Binary) -> Option<(UpgradeState, Outcome)> {
    if !on_trial(state, own) {
        return None;
    }
    let trial = state.trial.as_ref()?;
    let outcome = Outcome::Upgraded {
        from: trial.from.clone(),
        to: trial.to.clone(),
    };
    Some((
        UpgradeState {
            trial: None,
            ..state.clone()
        },
        outcome,
    ))
}

/// Whether the binary running as `own` is the one on trial (not the one that just staged it,
/// which runs on until it hands over).
pub fn on_trial(state: &UpgradeState, own: &Binary) -> bool {
    let current = state.current.as_ref().is_some_and(|c| c.path == own.path);
    current && state.trial.as_ref().is_some_and(|t| t.to == own.version)
}

/// When the trial of a binary started at `start` ends, at `interval` between heartbeats.
pub fn trial_length(interval: Duration) -> Duration {
    interval.saturating_mul(TRIAL_INTERVALS).max(MIN_TRIAL)
}

/// Whether a trial started at `start` has run out at `now` without a session.
pub fn trial_over(start: Instant, interval: Duration, now: Instant) -> bool {
    now >= start.saturating_add(trial_length(interval))
}

/// Back to the binary the trial came from: it runs (`Exec`), the version is refused from now
/// on, and the history is to say why.
pub fn roll_back(state: &UpgradeState, reason: &str) -> (UpgradeState, Start) {
    let mut next = state.clone();
    let Some(trial) = next.trial.take() else {
        return (next, Start::Run);
    };
    if !next.refused.contains(&trial.to) {
        next.refused.push(trial.to.clone());
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
        Some(binary) => (next, Start::Exec(binary.path)),
        None => (next, Start::Run),
    }
}

#[cfg(test)]
mod tests;
