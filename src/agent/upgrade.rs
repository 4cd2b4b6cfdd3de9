//! The agent's side of an upgrade from the manager (`agent.auto-upgrade`): the state file
//! (`DATA/upgrade/state.json`), the download into the staging directory, its checks (room on
//! the disk, size, SHA-256, the new binary's own `--version`), the hand-over at start (exec,
//! same PID, same arguments), the end of a trial, and the events that make the computer's
//! history. The decisions are in `upgrade_plan`.

use super::error::AgentError;
use super::spool::Spool;
use super::upgrade_plan::{self as plan, Binary, Outcome, Start, UpgradeState};
use crate::clock::{Clock, Instant};
use crate::command::CommandError;
use crate::files::create_private_dir;
use crate::model::events;
use crate::proto::UpgradeOffer;
use crate::release;
use std::cell::{Cell, RefCell};
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
/// Set in the environment of a binary a rollback runs: it does not hand over again in this run,
/// even if the state that says so could not be written.
const HOLD: &str = "PICKET_UPGRADE_HOLD";
/// After a download that failed for a reason that may pass (cut, disk full, a check that timed
/// out), the agent waits this long before it takes the offer again: 14 MB per heartbeat per
/// agent would be the cost otherwise.
const RETRY_AFTER: Duration = Duration::from_secs(600);
/// Room left on the disk besides the binary: the spool must still take events.
const SPARE: u64 = 64 * 1024 * 1024;

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
    create_private_dir(&dir).map_err(file)?;
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| AgentError::BadFile {
        path: state_path(data_dir),
        problem: e.to_string(),
    })?;
    crate::files::write_atomic(&state_path(data_dir), &bytes, 0o600).map_err(file)
}

/// This process's binary: its version, and where it is (`/proc/self/exe`, resolved). A binary
/// a package replaced while it ran reads as `PATH (deleted)`: going back to it means running
/// what is at PATH now, the package's.
fn own(data_dir: &Path) -> Binary {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let path = exe
        .to_str()
        .and_then(|p| p.strip_suffix(" (deleted)"))
        .map_or(exe.clone(), PathBuf::from);
    let staged = std::fs::canonicalize(data_dir.join(DIR)).is_ok_and(|dir| path.starts_with(dir));
    Binary {
        version: release::version().to_string(),
        path,
        staged,
        sha256: String::new(),
    }
}

/// Whether a staged binary is still the one that was checked.
fn intact(binary: &Binary) -> bool {
    std::fs::read(&binary.path)
        .is_ok_and(|bytes| crate::secret::hex(&crate::secret::sha256(&bytes)) == binary.sha256)
}

/// At the process's start, before anything is opened: the binary that is to run. Any problem
/// with the state runs this binary, unless it is the one on trial, which then goes back.
pub fn at_start(data_dir: &Path) -> Start {
    let hold = std::env::var_os(HOLD).is_some();
    let state = load(data_dir);
    let own = own(data_dir);
    let (next, start) = plan::on_start(&state, &own, intact, hold);
    if next != state
        && let Err(e) = save(data_dir, &next)
    {
        log::error!("{e}");
        // A binary on trial whose starts cannot be counted must not run on unchecked.
        if plan::on_trial(&state, &own) {
            let (_, back) = plan::roll_back(&state, "its state cannot be written");
            return back;
        }
        return Start::Run;
    }
    start
}

/// Replaces this process with `path`, with the same arguments and environment (and the hold
/// mark for a rollback): the same PID, so systemd (`Type=notify`, `NotifyAccess=main`) keeps
/// following it. Returns only on failure.
pub fn exec(start: &Start) -> Option<(PathBuf, std::io::Error)> {
    use std::os::unix::process::CommandExt;
    let (path, hold) = match start {
        Start::Run => return None,
        Start::Exec(path) => (path, false),
        Start::Back(path) => (path, true),
    };
    log::info!("running {}", path.display());
    let mut command = std::process::Command::new(path);
    command.args(std::env::args_os().skip(1));
    if hold {
        command.env(HOLD, "1");
    } else {
        command.env_remove(HOLD);
    }
    Some((path.clone(), command.exec()))
}

/// Running `path` failed with `error`: the version is refused and this binary runs on, or, if
/// this is a binary being rolled back from, the process must end (`Err`).
pub fn exec_failed(data_dir: &Path, path: &Path, error: &std::io::Error) -> Result<(), AgentError> {
    log::error!("cannot run {}: {error}", path.display());
    let state = load(data_dir);
    let (next, must_end) = plan::exec_failed(&state, &own(data_dir), path, &error.to_string());
    if next != state
        && let Err(e) = save(data_dir, &next)
    {
        log::error!("{e}");
    }
    if must_end {
        return Err(AgentError::Upgrade(format!(
            "cannot go back to {}: {error}; ending, so that the service starts the installed \
             binary",
            path.display()
        )));
    }
    Ok(())
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

/// How a received binary fared.
enum Installed {
    Staged(Binary),
    /// Not now (cut short, no room, a check that timed out): offered again later.
    Later(String),
    /// Not this binary: the reason, and the version is refused.
    Refused(String),
}

/// The running agent's upgrades.
pub(super) struct Upgrades {
    data_dir: PathBuf,
    own: Binary,
    state: RefCell<UpgradeState>,
    download: RefCell<Option<Download>>,
    /// The binary to run once the loops have stopped.
    restart: RefCell<Option<Start>>,
    started: Instant,
    /// A session with the manager completed since this binary started.
    online: Cell<bool>,
    /// No offer is taken before then.
    retry_after: Cell<Option<Instant>>,
}

impl Upgrades {
    pub fn open(data_dir: &Path, started: Instant) -> Self {
        let upgrades = Upgrades {
            data_dir: data_dir.to_path_buf(),
            own: own(data_dir),
            state: RefCell::new(load(data_dir)),
            download: RefCell::new(None),
            restart: RefCell::new(None),
            started,
            online: Cell::new(false),
            retry_after: Cell::new(None),
        };
        // A download a crash cut short, binaries rolled back from or forgotten.
        upgrades.tidy();
        upgrades
    }

    /// The binary to run instead of this one, once the loops have stopped.
    pub fn restart(&self) -> Option<Start> {
        self.restart.borrow().clone()
    }

    /// When this binary's trial ends, if it is on one.
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
            self.set(state);
        }
        Ok(())
    }

    /// Keeps the new state; one that cannot be written is said, and kept in memory.
    fn set(&self, state: UpgradeState) {
        if let Err(e) = save(&self.data_dir, &state) {
            log::error!("{e}");
        }
        *self.state.borrow_mut() = state;
    }

    /// The manager offers `offer`: whether to fetch it now (a file to receive it is open).
    pub fn offered(&self, offer: &UpgradeOffer, clock: &dyn Clock) -> bool {
        let now = clock.now();
        let considered =
            plan::consider(&self.state.borrow(), offer, &self.own.version, clock.wall());
        if let Err(why) = considered {
            log::debug!(
                "the manager offers version {}: declined: {why}",
                offer.version
            );
            return false;
        }
        if self.retry_after.get().is_some_and(|t| now < t) || self.restart().is_some() {
            return false;
        }
        let dir = self.data_dir.join(DIR);
        if let Err(e) = create_private_dir(&dir) {
            log::error!("cannot make {}: {e}; not upgrading", dir.display());
            return false;
        }
        match rustix::fs::statvfs(&dir) {
            Ok(stat) if stat.f_bavail.saturating_mul(stat.f_frsize) < offer.size + SPARE => {
                log::warn!(
                    "not upgrading to {}: {} bytes free in {}, {} needed",
                    offer.version,
                    stat.f_bavail.saturating_mul(stat.f_frsize),
                    dir.display(),
                    offer.size + SPARE
                );
                self.retry_after.set(Some(now.saturating_add(RETRY_AFTER)));
                return false;
            }
            _ => {}
        }
        // The name comes from a version that parsed (`consider`): digits, letters and dots.
        let part = dir.join(format!("picket-{}.part", offer.version));
        let _ = std::fs::remove_file(&part);
        // Not through a link planted in its place, and not executable while incomplete.
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&part);
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

    /// A session ended (`ok`: it completed): the binary is online, and a download is checked
    /// and staged (off this thread: an fsync and a `--version` must not hold the heartbeat or
    /// the watchdog), or dropped.
    pub async fn session_ended(
        &self,
        ok: bool,
        spool: &Spool,
        clock: &dyn Clock,
    ) -> Result<(), AgentError> {
        if ok {
            self.online.set(true);
        }
        let Some(download) = self.download.borrow_mut().take() else {
            return Ok(());
        };
        let version = download.offer.version.clone();
        let dir = self.data_dir.join(DIR);
        let installed = smol::unblock(move || install(&dir, download, ok)).await;
        match installed {
            Installed::Staged(new) => {
                let state = plan::staged(&self.state.borrow(), self.own.clone(), new.clone());
                self.set(state);
                self.report(spool, clock)?;
                self.tidy();
                *self.restart.borrow_mut() = Some(Start::Exec(new.path));
            }
            Installed::Later(why) => {
                log::warn!("upgrade to {version}: {why}; offered again later");
                self.retry_after
                    .set(Some(clock.now().saturating_add(RETRY_AFTER)));
            }
            Installed::Refused(reason) => {
                log::error!("upgrade to {version} failed: {reason}");
                let mut state = self.state.borrow().clone();
                if !state.refused.contains(&version) {
                    state.refused.push(version.clone());
                }
                self.set(state);
                let from = self.own.version.clone();
                record(
                    spool,
                    clock,
                    &Outcome::Failed {
                        from,
                        to: version,
                        reason,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Removes `.part` files and staged binaries neither current nor previous.
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
            // The running binary is kept even when the state lost track of it.
            let kept = std::fs::canonicalize(&path)
                .is_ok_and(|p| keep.contains(&p.as_path()) || p == self.own.path);
            if binary && !kept {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// At `now`: if this binary's trial has ended, it is confirmed (it was online and is still
    /// running) or rolled back (`restart`). Its events are spooled.
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
        let length = plan::trial_length(interval);
        let (state, start) = plan::trial_ended(
            &self.state.borrow(),
            &self.own,
            self.online.get(),
            length,
            clock.wall(),
        );
        if start == Start::Run {
            log::info!(
                "upgraded: {} has been online through its trial",
                self.own.version
            );
        } else {
            log::error!(
                "upgrade to {}: not online within {} s; going back",
                self.own.version,
                length.as_secs()
            );
            *self.restart.borrow_mut() = Some(start);
        }
        self.set(state);
        self.report(spool, clock)
    }
}

/// Checks and stages a received binary in `dir`.
fn install(dir: &Path, d: Download, ok: bool) -> Installed {
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
        return Installed::Later(reason);
    }
    if !ok || received != offer.size {
        drop_part();
        return Installed::Later(format!(
            "{received} of {} bytes received (the session was cut, or the manager was sending \
             it to others)",
            offer.size
        ));
    }
    if hash.finish().as_ref() != offer.sha256 {
        drop_part();
        return Installed::Refused("the binary received is not the one offered (SHA-256)".into());
    }
    let staged = dir.join(format!("picket-{}", offer.version));
    // Closed before it runs: a file open for writing cannot be executed (ETXTBSY). Made
    // runnable only once whole and checked.
    let synced = file.sync_all();
    drop(file);
    let placed = synced
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o700))
        })
        .and_then(|()| std::fs::rename(&part, &staged))
        .and_then(|()| crate::files::sync_dir(dir))
        .and_then(|()| std::fs::canonicalize(&staged));
    let path = match placed {
        Ok(path) => path,
        Err(e) => {
            drop_part();
            return Installed::Later(format!("cannot stage {}: {e}", staged.display()));
        }
    };
    // The bytes on the disk, not only those received, are the ones offered.
    let on_disk = std::fs::read(&path).map(|bytes| crate::secret::sha256(&bytes));
    if on_disk.as_ref().ok() != Some(&offer.sha256) {
        let _ = std::fs::remove_file(&path);
        return Installed::Later("the staged file does not read back as written".into());
    }
    // The binary runs here (its libc, its architecture) and is the version offered.
    let said = crate::command::run_within(&path, &["--version"], None, SMOKE_LIMIT);
    let expected = format!("picket {}", offer.version);
    let refused = match said {
        Ok(out) if out.trim() == expected => {
            return Installed::Staged(Binary {
                version: offer.version,
                path,
                staged: true,
                sha256: crate::secret::hex(&offer.sha256),
            });
        }
        Ok(out) => format!("it says {:?}, not {expected:?}", out.trim()),
        // A loaded computer, or a file still open somewhere (ETXTBSY): the moment may be
        // wrong, not the binary.
        Err(CommandError::TimedOut { .. }) => {
            let _ = std::fs::remove_file(&path);
            return Installed::Later(format!("--version took over {} s", SMOKE_LIMIT.as_secs()));
        }
        Err(CommandError::Spawn { source, .. })
            if source.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error()) =>
        {
            let _ = std::fs::remove_file(&path);
            return Installed::Later(source.to_string());
        }
        // Another architecture, a libc too old, a data dir mounted noexec: trying again would
        // download it again for nothing. The reason is in the history; removing
        // `upgrade/state.json` lets the agent try again.
        Err(e) => format!("it does not run here: {e}"),
    };
    let _ = std::fs::remove_file(&path);
    Installed::Refused(refused)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn staged_in(dir: &Path, version: &str) -> Binary {
        let path = dir.join(DIR).join(format!("picket-{version}"));
        std::fs::write(&path, version).unwrap();
        Binary {
            version: version.into(),
            path: std::fs::canonicalize(&path).unwrap(),
            staged: true,
            sha256: crate::secret::hex(&crate::secret::sha256(version.as_bytes())),
        }
    }

    #[test]
    fn opening_clears_cut_downloads_and_binaries_nothing_refers_to() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        create_private_dir(&data.join(DIR)).unwrap();
        let current = staged_in(data, "0.3.0");
        let previous = staged_in(data, "0.2.0");
        let stale = staged_in(data, "0.1.0");
        let part = data.join(DIR).join("picket-0.4.0.part");
        std::fs::write(&part, b"half").unwrap();
        let state = UpgradeState {
            current: Some(current.clone()),
            previous: Some(previous.clone()),
            ..UpgradeState::default()
        };
        save(data, &state).unwrap();
        let upgrades = Upgrades::open(data, Instant::from_millis(0));
        assert!(current.path.exists() && previous.path.exists());
        assert!(!stale.path.exists(), "not referred to");
        assert!(!part.exists(), "a download cut short");
        assert!(state_path(data).exists());
        assert_eq!(*upgrades.state.borrow(), state);
        assert!(intact(&current));
        std::fs::write(&current.path, b"changed").unwrap();
        assert!(!intact(&current), "a changed binary is not run");
    }

    #[test]
    fn a_state_that_is_not_json_runs_the_installed_binary() {
        let tmp = tempfile::tempdir().unwrap();
        create_private_dir(&tmp.path().join(DIR)).unwrap();
        std::fs::write(state_path(tmp.path()), b"{not json").unwrap();
        assert_eq!(load(tmp.path()), UpgradeState::default());
        assert_eq!(at_start(tmp.path()), Start::Run);
    }
}
