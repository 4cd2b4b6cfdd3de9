//! The agent's side of an upgrade from the manager (`agent.auto-upgrade`): the state file
//! (`DATA/upgrade/state.json`), the download into the staging directory, its checks (size,
//! SHA-256, the new binary's own `--version`), the hand-over at start (exec, same PID, same
//! arguments) and the events that make the computer's history. The decisions are in
//! `upgrade_plan`.

use super::error::AgentError;
use super::spool::Spool;
use super::upgrade_plan::{self as plan, Binary, Outcome, Start, UpgradeState};
use crate::clock::{Clock, Instant};
use crate::command::CommandError;
use crate::model::events;
use crate::proto::UpgradeOffer;
use crate::release;
use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The staging directory in the data dir: the state file and the binaries upgrades brought.
pub const DIR: &str = "upgrade";
const STATE: &str = "state.json";
/// The longest a new binary's `--version` may take before it counts as not running.
const SMOKE_LIMIT: Duration = Duration::from_secs(10);

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR).join(STATE)
}

/// The state, or the empty one when there is none; an unreadable file is said and set aside:
/// the installed binary runs, which is always safe.
fn load(data_dir: &Path) -> UpgradeState {
    let path = state_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            log::error!(
                "{}: not an upgrade state ({e}); running the installed binary",
                path.display()
            );
            UpgradeState::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => UpgradeState::default(),
        Err(e) => {
            log::error!(
                "cannot read {}: {e}; running the installed binary",
                path.display()
            );
            UpgradeState::default()
        }
    }
}

fn save(data_dir: &Path, state: &UpgradeState) -> Result<(), AgentError> {
    let dir = data_dir.join(DIR);
    let file = |source| AgentError::File {
        path: dir.clone(),
        source,
    };
    create_dir(&dir).map_err(file)?;
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| AgentError::BadFile {
        path: state_path(data_dir),
        problem: e.to_string(),
    })?;
    crate::files::write_atomic(&state_path(data_dir), &bytes, 0o600).map_err(file)
}

/// The staging directory, private as the rest of the data dir.
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(crate::files::PRIVATE_DIR)
        .create(dir)
}

/// This process's binary: its version, and where it is (`/proc/self/exe`, resolved).
fn own(data_dir: &Path) -> Binary {
    let path = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let staged = std::fs::canonicalize(data_dir.join(DIR)).is_ok_and(|dir| path.starts_with(dir));
    Binary {
        version: release::version().to_string(),
        path,
        staged,
    }
}

/// At the process's start, before anything is opened: the binary that is to run. Any problem
/// with the state runs this binary.
pub fn at_start(data_dir: &Path) -> Start {
    let state = load(data_dir);
    let (next, start) = plan::on_start(&state, &own(data_dir), |p| p.exists());
    if next != state
        && let Err(e) = save(data_dir, &next)
    {
        log::error!("{e}; running this binary");
        return Start::Run;
    }
    start
}

/// Replaces this process with `path`, with the same arguments and environment: the same PID,
/// so systemd (`Type=notify`, `NotifyAccess=main`) keeps following it. Returns only on failure.
pub fn exec(path: &Path) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    log::info!("running {}", path.display());
    std::process::Command::new(path)
        .args(std::env::args_os().skip(1))
        .exec()
}

/// A binary being received.
struct Download {
    offer: UpgradeOffer,
    part: PathBuf,
    file: File,
    hash: ring::digest::Context,
    received: u64,
    /// Writing failed: the rest is dropped and the download abandoned at the end.
    failed: Option<String>,
}

/// The running agent's upgrades.
pub(super) struct Upgrades {
    data_dir: PathBuf,
    own: Binary,
    state: RefCell<UpgradeState>,
    download: RefCell<Option<Download>>,
    /// The binary to exec once the loops have stopped.
    restart: RefCell<Option<PathBuf>>,
    started: Instant,
}

impl Upgrades {
    pub fn open(data_dir: &Path, started: Instant) -> Self {
        Upgrades {
            data_dir: data_dir.to_path_buf(),
            own: own(data_dir),
            state: RefCell::new(load(data_dir)),
            download: RefCell::new(None),
            restart: RefCell::new(None),
            started,
        }
    }

    /// The binary to run instead of this one, once the loops have stopped.
    pub fn restart(&self) -> Option<PathBuf> {
        self.restart.borrow().clone()
    }

    /// When this binary's trial runs out, if it is on one.
    pub fn trial_deadline(&self, interval: Duration) -> Option<Instant> {
        plan::on_trial(&self.state.borrow(), &self.own)
            .then(|| self.started.saturating_add(plan::trial_length(interval)))
    }

    /// Spools what the state has to say (a rollback at start, before the spool was open).
    pub fn report(&self, spool: &Spool, clock: &dyn Clock) -> Result<(), AgentError> {
        let report = self.state.borrow().report.clone();
        if let Some(outcome) = report {
            record(spool, clock, &outcome)?;
            let mut state = self.state.borrow().clone();
            state.report = None;
            self.set(state)?;
        }
        Ok(())
    }

    fn set(&self, state: UpgradeState) -> Result<(), AgentError> {
        save(&self.data_dir, &state)?;
        *self.state.borrow_mut() = state;
        Ok(())
    }

    /// The manager offers `offer`: whether to fetch it now (a file to receive it is open).
    pub fn offered(&self, offer: &UpgradeOffer) -> bool {
        if let Err(why) = plan::consider(&self.state.borrow(), offer, &self.own.version) {
            log::debug!(
                "the manager offers version {}: declined: {why}",
                offer.version
            );
            return false;
        }
        let dir = self.data_dir.join(DIR);
        let part = dir.join(format!("picket-{}.part", offer.version));
        let opened = create_dir(&dir).and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o700)
                .open(&part)
        });
        match opened {
            Ok(file) => {
                log::info!(
                    "upgrading from {} to {}: fetching it from the manager ({} bytes)",
                    self.own.version,
                    offer.version,
                    offer.size
                );
                *self.download.borrow_mut() = Some(Download {
                    offer: offer.clone(),
                    part,
                    file,
                    hash: ring::digest::Context::new(&ring::digest::SHA256),
                    received: 0,
                    failed: None,
                });
                true
            }
            Err(e) => {
                log::error!("cannot write {}: {e}; not upgrading", part.display());
                false
            }
        }
    }

    pub fn chunk(&self, data: &[u8]) {
        let mut download = self.download.borrow_mut();
        let Some(d) = download.as_mut().filter(|d| d.failed.is_none()) else {
            return;
        };
        match d.file.write_all(data) {
            Ok(()) => {
                d.hash.update(data);
                d.received += data.len() as u64;
            }
            Err(e) => d.failed = Some(format!("cannot write {}: {e}", d.part.display())),
        }
    }

    /// A session ended (`ok`: it completed): a trial is confirmed, a download is checked and
    /// staged, or dropped.
    pub fn session_ended(
        &self,
        ok: bool,
        spool: &Spool,
        clock: &dyn Clock,
    ) -> Result<(), AgentError> {
        if ok {
            let confirmed = plan::confirmed(&self.state.borrow(), &self.own);
            if let Some((state, outcome)) = confirmed {
                self.set(state)?;
                record(spool, clock, &outcome)?;
                log::info!("upgraded: {} is online", self.own.version);
            }
        }
        let Some(download) = self.download.borrow_mut().take() else {
            return Ok(());
        };
        match self.install(download, ok) {
            Ok(Some(new)) => {
                let state = plan::staged(&self.state.borrow(), self.own.clone(), new.clone());
                self.set(state)?;
                self.report(spool, clock)?;
                self.tidy();
                *self.restart.borrow_mut() = Some(new.path);
            }
            Ok(None) => {}
            Err((offer, reason)) => {
                log::error!("upgrade to {} failed: {reason}", offer.version);
                let mut state = self.state.borrow().clone();
                state.refused.push(offer.version.clone());
                self.set(state)?;
                record(
                    spool,
                    clock,
                    &Outcome::Failed {
                        from: self.own.version.clone(),
                        to: offer.version,
                        reason,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Checks and stages a received binary: `Ok(None)` when it is incomplete (the session was
    /// cut, or the manager was busy sending it to others: it is offered again), an error with
    /// the reason when it is not the binary offered or does not run here.
    fn install(&self, d: Download, ok: bool) -> Result<Option<Binary>, (UpgradeOffer, String)> {
        let Download {
            offer,
            part,
            file,
            hash,
            received,
            failed,
        } = d;
        let drop_part = || {
            let _ = std::fs::remove_file(&part);
        };
        if let Some(reason) = failed {
            drop_part();
            log::error!("upgrade to {}: {reason}; trying again later", offer.version);
            return Ok(None);
        }
        if !ok || received != offer.size {
            drop_part();
            log::info!(
                "upgrade to {}: {received} of {} bytes received; offered again at a later \
                 heartbeat",
                offer.version,
                offer.size
            );
            return Ok(None);
        }
        if hash.finish().as_ref() != offer.sha256 {
            drop_part();
            return Err((
                offer,
                "the binary received is not the one offered (SHA-256)".into(),
            ));
        }
        let staged = self
            .data_dir
            .join(DIR)
            .join(format!("picket-{}", offer.version));
        // Closed before it runs: a file open for writing cannot be executed (ETXTBSY).
        let synced = file.sync_all();
        drop(file);
        let placed = synced
            .and_then(|()| std::fs::rename(&part, &staged))
            .and_then(|()| crate::files::sync_dir(&self.data_dir.join(DIR)))
            .and_then(|()| std::fs::canonicalize(&staged));
        let staged = match placed {
            Ok(path) => path,
            Err(e) => {
                drop_part();
                log::error!("cannot stage {}: {e}; trying again later", staged.display());
                return Ok(None);
            }
        };
        // The binary runs here (its libc, its architecture) and is the version offered.
        let said = crate::command::run_within(&staged, &["--version"], None, SMOKE_LIMIT);
        let expected = format!("picket {}", offer.version);
        let why = match said {
            Ok(out) if out.trim() == expected => {
                return Ok(Some(Binary {
                    version: offer.version,
                    path: staged,
                    staged: true,
                }));
            }
            Ok(out) => format!("it says {:?}, not {expected:?}", out.trim()),
            // Still open for writing somewhere (a child forked in between): the moment is
            // wrong, not the binary; offered again later.
            Err(CommandError::Spawn { source, .. })
                if source.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error()) =>
            {
                let _ = std::fs::remove_file(&staged);
                log::warn!("upgrade to {}: {source}; trying again later", offer.version);
                return Ok(None);
            }
            // Another architecture, a libc too old, a data dir mounted noexec: trying again
            // would download it again for nothing. The reason is in the history; removing
            // `upgrade/state.json` lets the agent try again.
            Err(e) => format!("it does not run here: {e}"),
        };
        let _ = std::fs::remove_file(&staged);
        Err((offer, why))
    }

    /// Removes staged binaries neither current nor previous.
    fn tidy(&self) {
        let state = self.state.borrow();
        let keep: Vec<&Path> = [&state.current, &state.previous]
            .into_iter()
            .flatten()
            .map(|b| b.path.as_path())
            .collect();
        let Ok(entries) = std::fs::read_dir(self.data_dir.join(DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let binary = entry.file_name().to_string_lossy().starts_with("picket-");
            let kept = std::fs::canonicalize(&path).is_ok_and(|p| keep.contains(&p.as_path()));
            if binary && !kept {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// At `now`, with no session since this binary started: if its trial ran out, go back.
    pub fn check_trial(
        &self,
        now: Instant,
        interval: Duration,
        spool: &Spool,
        clock: &dyn Clock,
    ) -> Result<(), AgentError> {
        let on_trial = plan::on_trial(&self.state.borrow(), &self.own);
        if !on_trial || !plan::trial_over(self.started, interval, now) {
            return Ok(());
        }
        let reason = format!(
            "not online within {} s of its start",
            plan::trial_length(interval).as_secs()
        );
        log::error!("upgrade to {}: {reason}; going back", self.own.version);
        let (state, start) = plan::roll_back(&self.state.borrow(), &reason);
        self.set(state)?;
        self.report(spool, clock)?;
        if let Start::Exec(path) = start {
            *self.restart.borrow_mut() = Some(path);
        }
        Ok(())
    }
}

/// An outcome as the event the computer's history shows.
fn record(spool: &Spool, clock: &dyn Clock, outcome: &Outcome) -> Result<(), AgentError> {
    let (kind, fields) = match outcome {
        Outcome::Started { from, to } => (
            events::AGENT_UPGRADE_STARTED,
            vec![("from".into(), from.clone()), ("to".into(), to.clone())],
        ),
        Outcome::Upgraded { from, to } => (
            events::AGENT_UPGRADED,
            vec![("from".into(), from.clone()), ("to".into(), to.clone())],
        ),
        Outcome::Failed { from, to, reason } => (
            events::AGENT_UPGRADE_FAILED,
            vec![
                ("from".into(), from.clone()),
                ("to".into(), to.clone()),
                ("reason".into(), reason.clone()),
            ],
        ),
    };
    spool.append(kind.id, clock.wall(), fields)?;
    Ok(())
}
