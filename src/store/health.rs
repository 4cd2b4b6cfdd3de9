//! Whether the store can take writes now, and why not; decided from what the store layer reports
//! and the time the caller gives, so every transition is tested without a disk that fails.
//!
//! Two things stop writes:
//! - **An I/O error** (a full disk, a failing device) latches redb: every later transaction
//!   fails with "previous I/O error" until the file is closed and opened again. The fault is
//!   remembered here, writes are refused at once instead of queueing on a dead file, and
//!   [`Store::tend`](super::Store::tend) reopens the file with a backoff (1 s doubling to 30 s:
//!   each reopen repairs the file, which costs a read of all of it) until a commit works again.
//!   The episode ends only after a minute without a fault: on a disk that stays full, small
//!   commits still fit in the file's own free pages and the next one that grows it fails again,
//!   and that is the same episode, with its backoff still growing and no new error line.
//! - **Low free space** stops only agent events, the bulk of what the store takes: below the
//!   reserve they are refused (the agents keep them in their spools and send them later), so the
//!   disk does not fill in the middle of a commit and alerts, statuses and the administrator's
//!   changes still have room.

use crate::clock::Instant;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// First wait before reopening the store after an I/O error; doubled after each failed attempt.
const FIRST_REOPEN: Duration = Duration::from_secs(1);
/// Longest wait between two reopen attempts.
const LAST_REOPEN: Duration = Duration::from_secs(30);
/// How long a reopened store must write without a fault before the episode is over.
const PROBATION: Duration = Duration::from_secs(60);

/// The default reserve's ceiling; on a small filesystem it is 5 % of its size instead.
const AUTO_RESERVE_CEILING: u64 = 64 << 20;

/// Free space the store keeps on its filesystem for everything but agent events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reserve {
    /// 5 % of the filesystem, at most 64 MiB.
    #[default]
    Auto,
    Bytes(u64),
}

impl Reserve {
    pub fn bytes(self, filesystem_bytes: u64) -> u64 {
        match self {
            Reserve::Auto => (filesystem_bytes / 20).min(AUTO_RESERVE_CEILING),
            Reserve::Bytes(b) => b,
        }
    }
}

/// Free and total bytes of the store's filesystem, as read by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub free: u64,
    pub total: u64,
}

/// What the store's health is, for `/readyz`, the metrics and the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// False while an I/O error keeps every write out.
    pub writable: bool,
    /// False while free space is below the reserve (or writes are refused).
    pub takes_events: bool,
    /// Why writes or events are refused, in words without paths; `None` when all is well.
    pub reason: Option<String>,
    pub space: Option<Space>,
    pub reserve: u64,
}

#[derive(Debug)]
struct IoFault {
    detail: String,
    since: Option<Instant>,
    /// When the next reopen may be tried; `None` until the fault has been seen by `tend`.
    next_attempt: Option<Instant>,
    backoff: Duration,
    /// The file was reopened: writes may try again.
    reopened: bool,
    /// A commit worked since the reopen: writes are taken. The episode ends once this has held
    /// for [`PROBATION`]; a fault meanwhile continues it.
    written_since: Option<Instant>,
    /// Whether a commit has worked since the reopen (stamped with the time by the next `due`).
    written: bool,
}

#[derive(Debug, Default)]
struct State {
    io: Option<IoFault>,
    space: Option<Space>,
    low: bool,
    /// The time the last `due` was told: the store layer has no clock of its own, and a log
    /// line's "how long" may be a second off.
    last_tended: Option<Instant>,
}

/// The health of one store; shared by the store and its write transactions.
#[derive(Debug, Default)]
pub struct Health {
    reserve: Reserve,
    /// Set while an I/O fault's reopened file has not yet been written, so the hot path (every
    /// commit) takes no lock the rest of the time.
    failing: AtomicBool,
    /// Mirrors `state.low`.
    low: AtomicBool,
    state: Mutex<State>,
}

/// What [`Health::due`] asks the shell to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Reopen,
}

impl Health {
    pub fn new(reserve: Reserve) -> Health {
        Health {
            reserve,
            ..Health::default()
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes are refused without trying: the file is latched and not yet reopened.
    pub fn refusal(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let state = self.state();
        match &state.io {
            Some(fault) if !fault.reopened => Some(format!("cannot write: {}", fault.detail)),
            _ => None,
        }
    }

    /// Agent events are refused: writes are, or free space is below the reserve.
    pub fn event_refusal(&self) -> Option<String> {
        if let Some(reason) = self.refusal() {
            return Some(reason);
        }
        if !self.low.load(Ordering::Acquire) {
            return None;
        }
        self.report().reason
    }

    /// An I/O error reached the store: every write is refused until the file is reopened.
    pub fn io_failed(&self, detail: String) {
        let mut state = self.state();
        match &mut state.io {
            Some(fault) => {
                // The same episode: after a reopen the disk was still full, say.
                if fault.written {
                    log::warn!("the store failed again: {detail}; writes are refused again");
                }
                fault.reopened = false;
                fault.written = false;
                fault.written_since = None;
                fault.detail = detail;
            }
            None => {
                log::error!(
                    "the store cannot write: {detail}. Writes are refused and agents keep their \
                     events; the store is reopened by itself once the cause is gone (a full disk: \
                     free some space)"
                );
                state.io = Some(IoFault {
                    detail,
                    since: None,
                    next_attempt: None,
                    backoff: FIRST_REOPEN,
                    reopened: false,
                    written_since: None,
                    written: false,
                });
            }
        }
        self.failing.store(true, Ordering::Release);
    }

    /// A commit worked: a reopened store takes writes again.
    pub fn committed(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state();
        let last_tended = state.last_tended;
        if let Some(fault) = state.io.as_mut()
            && fault.reopened
            && !fault.written
        {
            fault.written = true;
            self.failing.store(false, Ordering::Release);
            let down = fault
                .since
                .zip(last_tended)
                .map_or(Duration::ZERO, |(since, now)| now.saturating_since(since));
            log::warn!(
                "the store writes again, about {:.0} s after it failed",
                down.as_secs_f64()
            );
        }
    }

    /// Whether the shell should reopen the file now; also ends an episode whose probation is
    /// over.
    pub fn due(&self, now: Instant) -> Due {
        let mut state = self.state();
        state.last_tended = Some(now);
        let Some(fault) = state.io.as_mut() else {
            return Due::Nothing;
        };
        fault.since.get_or_insert(now);
        if fault.written {
            let since = *fault.written_since.get_or_insert(now);
            if now.saturating_since(since) >= PROBATION {
                state.io = None;
            }
            return Due::Nothing;
        }
        if fault.reopened {
            return Due::Nothing;
        }
        let backoff = fault.backoff;
        let next = *fault
            .next_attempt
            .get_or_insert_with(|| now.saturating_add(backoff));
        if now < next {
            return Due::Nothing;
        }
        Due::Reopen
    }

    /// The outcome of a reopen [`Health::due`] asked for. The backoff grows either way and
    /// only resets when the episode ends: a disk that stays full fails again after every
    /// reopen, and is then not reopened (and repaired) every second.
    pub fn reopened(&self, now: Instant, result: Result<(), String>) {
        let mut state = self.state();
        let Some(fault) = state.io.as_mut() else {
            return;
        };
        fault.backoff = (fault.backoff * 2).min(LAST_REOPEN);
        match result {
            Ok(()) => {
                fault.reopened = true;
                // Stamped by `due` when the next fault is seen.
                fault.next_attempt = None;
            }
            Err(e) => {
                fault.next_attempt = Some(now.saturating_add(fault.backoff));
                log::debug!(
                    "the store could not be reopened ({e}); next try in {} s",
                    fault.backoff.as_secs()
                );
            }
        }
    }

    /// A fresh reading of the filesystem's free space.
    pub fn space(&self, space: Space) {
        let reserve = self.reserve.bytes(space.total);
        let low = space.free < reserve;
        let mut state = self.state();
        if low && !state.low {
            log::warn!(
                "only {} free on the store's filesystem, less than the {} kept in reserve: agent \
                 events are refused (agents keep them) until space is freed",
                mib(space.free),
                mib(reserve)
            );
        } else if !low && state.low {
            log::warn!(
                "{} free on the store's filesystem again: agent events are taken again",
                mib(space.free)
            );
        }
        state.space = Some(space);
        state.low = low;
        self.low.store(low, Ordering::Release);
    }

    pub fn report(&self) -> Report {
        let state = self.state();
        let reserve = state.space.map_or(0, |s| self.reserve.bytes(s.total));
        // Written since its reopen: fine as far as anyone outside can tell.
        let io = state.io.as_ref().filter(|f| !f.written);
        let reason = match (io, state.space) {
            (Some(fault), _) if fault.reopened => Some(format!(
                "reopened after failing ({}); not yet written",
                fault.detail
            )),
            (Some(fault), _) => Some(format!("cannot write: {}", fault.detail)),
            (None, Some(space)) if state.low => Some(format!(
                "refusing agent events: {} free, {} kept in reserve",
                mib(space.free),
                mib(reserve)
            )),
            _ => None,
        };
        let writable = io.is_none_or(|f| f.reopened);
        Report {
            writable,
            takes_events: writable && !state.low,
            reason,
            space: state.space,
            reserve,
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn an_io_error_refuses_writes_until_a_reopened_file_commits() {
        let h = Health::new(Reserve::Auto);
        assert_eq!(h.refusal(), None);
        h.io_failed("No space left on device".into());
        assert!(h.refusal().unwrap().contains("No space left"));
        assert!(!h.report().writable);
        assert_eq!(h.due(at(10)), Due::Nothing, "the first try waits a second");
        assert_eq!(h.due(at(11)), Due::Reopen);
        h.reopened(at(11), Ok(()));
        assert_eq!(h.refusal(), None, "a reopened file may be tried");
        assert!(h.report().writable);
        assert_eq!(h.due(at(12)), Due::Nothing, "nothing to reopen meanwhile");
        h.committed();
        assert_eq!(h.report().reason, None);
        assert!(h.report().takes_events);
        assert_eq!(h.due(at(13)), Due::Nothing);
        assert!(h.state().io.is_some(), "on probation for a minute");
        assert_eq!(h.due(at(73)), Due::Nothing);
        assert!(h.state().io.is_none(), "the episode is over");
    }

    #[test]
    fn a_reopen_that_fails_backs_off_to_thirty_seconds() {
        let h = Health::new(Reserve::Auto);
        h.io_failed("device gone".into());
        assert_eq!(h.due(at(0)), Due::Nothing);
        let mut now = at(1);
        let mut waits = Vec::new();
        for _ in 0..7 {
            assert_eq!(h.due(now), Due::Reopen);
            h.reopened(now, Err("cannot open".into()));
            let mut next = now;
            while h.due(next) == Due::Nothing {
                next = next.saturating_add(Duration::from_secs(1));
            }
            waits.push(next.saturating_since(now).as_secs());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_fault_after_a_reopen_is_the_same_episode_and_waits_again() {
        let h = Health::new(Reserve::Auto);
        h.io_failed("No space left on device".into());
        assert_eq!(h.due(at(0)), Due::Nothing);
        assert_eq!(h.due(at(1)), Due::Reopen);
        h.reopened(at(1), Ok(()));
        h.io_failed("still no space".into());
        assert!(h.refusal().unwrap().contains("still no space"));
        assert_eq!(h.due(at(1)), Due::Nothing, "not reopened at once");
        assert_eq!(h.due(at(2)), Due::Nothing, "the backoff went on growing");
        assert_eq!(h.due(at(3)), Due::Reopen);
        h.committed();
        assert!(
            h.refusal().is_some(),
            "a commit before the reopen ends nothing"
        );
    }

    #[test]
    fn a_disk_that_stays_full_is_reopened_less_and_less_often() {
        // Each reopen works and one small commit fits; the next one that grows the file fails.
        let h = Health::new(Reserve::Auto);
        h.io_failed("No space left on device".into());
        let mut now = at(0);
        let mut reopens = Vec::new();
        while now < at(120) {
            if h.due(now) == Due::Reopen {
                reopens.push(now.as_millis() / 1000);
                h.reopened(now, Ok(()));
                h.committed();
                h.io_failed("No space left on device".into());
            }
            now = now.saturating_add(Duration::from_secs(1));
        }
        assert_eq!(reopens, [1, 4, 9, 18, 35, 66, 97]);
    }

    #[test]
    fn low_space_refuses_events_only() {
        let h = Health::new(Reserve::Bytes(10 << 20));
        h.space(Space {
            free: 5 << 20,
            total: 1 << 30,
        });
        assert_eq!(h.refusal(), None, "other writes go on");
        let refusal = h.event_refusal().unwrap();
        assert!(refusal.contains("5.0 MiB free, 10.0 MiB kept"), "{refusal}");
        assert!(h.report().writable && !h.report().takes_events);
        h.space(Space {
            free: 11 << 20,
            total: 1 << 30,
        });
        assert_eq!(h.event_refusal(), None);
    }

    #[test]
    fn the_automatic_reserve_is_five_percent_up_to_64_mib() {
        assert_eq!(Reserve::Auto.bytes(20 << 20), 1 << 20);
        assert_eq!(Reserve::Auto.bytes(100 << 30), 64 << 20);
        assert_eq!(Reserve::Bytes(0).bytes(100 << 30), 0);
    }
}
