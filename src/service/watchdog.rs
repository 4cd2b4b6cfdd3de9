//! systemd's watchdog (`WatchdogSec=`): how often this process must say `WATCHDOG=1`, read from
//! `$WATCHDOG_USEC` and `$WATCHDOG_PID`, and the keep-alive loop that says it only while a check
//! of the process's main loops passes, so that a wedged process is restarted.

use super::notify::{Notifier, WATCHDOG};
use crate::clock::Clock;
use std::fmt;
use std::time::Duration;

/// The watchdog's timeout in microseconds, set by the service manager.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The process the watchdog watches: when set, only that one sends keep-alives.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// A watchdog variable that is not a number this process can use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchdogError {
    /// `$WATCHDOG_USEC` is not a positive whole number of microseconds.
    BadTimeout { value: String },
    /// `$WATCHDOG_PID` is not a process id.
    BadPid { value: String },
}

impl fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchdogError::BadTimeout { value } => write!(
                f,
                "{WATCHDOG_USEC}={value:?} is not a positive number of microseconds"
            ),
            WatchdogError::BadPid { value } => {
                write!(f, "{WATCHDOG_PID}={value:?} is not a process id")
            }
        }
    }
}

impl std::error::Error for WatchdogError {}

/// How often to send `WATCHDOG=1`: half the timeout, as systemd advises, so one late turn does
/// not cost a restart. `None` when there is no watchdog, or it watches another process (a
/// child that inherited the variables).
pub fn keep_alive_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Result<Option<Duration>, WatchdogError> {
    let Some(usec) = usec.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        let watched: u32 = pid.trim().parse().map_err(|_| WatchdogError::BadPid {
            value: pid.to_string(),
        })?;
        if watched != own_pid {
            return Ok(None);
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(micros) if micros > 0 => Ok(Some(Duration::from_micros(micros) / 2)),
        _ => Err(WatchdogError::BadTimeout {
            value: usec.to_string(),
        }),
    }
}

/// [`keep_alive_interval`] of this process's environment.
pub fn keep_alive_interval_from_env() -> Result<Option<Duration>, WatchdogError> {
    let var = |name| std::env::var(name).ok();
    keep_alive_interval(
        var(WATCHDOG_USEC).as_deref(),
        var(WATCHDOG_PID).as_deref(),
        std::process::id(),
    )
}

/// Says `WATCHDOG=1` every `every` for as long as `check` passes; a failing check is logged and
/// no keep-alive goes out for that turn, so a process whose loops stay dead or stuck is killed
/// and restarted by systemd once the timeout passes. Never returns: it is raced against the
/// process's shutdown. Run it where the loops it vouches for run, so that a stuck thread also
/// stops it.
pub async fn keep_alive<F>(notifier: &Notifier, clock: &dyn Clock, every: Duration, check: F)
where
    F: AsyncFn() -> Result<(), String>,
{
    loop {
        match check().await {
            Ok(()) => notifier.notify(WATCHDOG),
            Err(what) => log::error!(
                "{what}: no watchdog keep-alive this turn; systemd restarts the process if it \
                 stays so"
            ),
        }
        clock.sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, WallMs};
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn the_keep_alive_goes_at_half_the_timeout_for_this_process_only() {
        let half = |usec, pid| keep_alive_interval(usec, pid, 42);
        assert_eq!(half(None, None), Ok(None));
        assert_eq!(half(Some(""), None), Ok(None));
        assert_eq!(
            half(Some("30000000"), None),
            Ok(Some(Duration::from_secs(15)))
        );
        assert_eq!(
            half(Some("200000"), Some("42")),
            Ok(Some(Duration::from_millis(100)))
        );
        assert_eq!(half(Some("200000"), Some("7")), Ok(None));
    }

    #[test]
    fn a_bad_watchdog_variable_is_refused_naming_it() {
        let half = |usec, pid| keep_alive_interval(usec, pid, 42);
        for usec in ["0", "-5", "30s", "lots"] {
            let error = half(Some(usec), None).unwrap_err();
            assert_eq!(
                error,
                WatchdogError::BadTimeout {
                    value: usec.to_string()
                }
            );
            assert!(error.to_string().contains("WATCHDOG_USEC"), "{error}");
        }
        let error = half(Some("1000"), Some("me")).unwrap_err();
        assert!(error.to_string().contains("WATCHDOG_PID=\"me\""), "{error}");
    }

    #[test]
    fn keep_alives_go_out_each_interval_only_while_the_check_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listening = UnixDatagram::bind(&path).unwrap();
        listening.set_nonblocking(true).unwrap();
        let notifier = Notifier::to(path.as_os_str()).unwrap();
        let clock = ManualClock::new(WallMs(0));
        let healthy = AtomicBool::new(true);
        let every = Duration::from_secs(15);
        let check = async || {
            if healthy.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("the API task has ended".to_string())
            }
        };
        let mut loop_ = Box::pin(keep_alive(&notifier, &clock, every, check));
        let count = || {
            let mut buf = [0u8; 64];
            let mut n = 0;
            while let Ok(len) = listening.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1");
                n += 1;
            }
            n
        };
        let turn =
            |future: &mut _| assert!(smol::block_on(smol::future::poll_once(future)).is_none());
        turn(&mut loop_);
        assert_eq!(count(), 1, "one at once");
        turn(&mut loop_);
        assert_eq!(count(), 0, "none before the interval");
        clock.advance(every);
        turn(&mut loop_);
        assert_eq!(count(), 1);
        healthy.store(false, Ordering::SeqCst);
        clock.advance(every);
        turn(&mut loop_);
        assert_eq!(count(), 0, "none while the check fails");
        healthy.store(true, Ordering::SeqCst);
        clock.advance(every);
        turn(&mut loop_);
        assert_eq!(count(), 1, "again once it passes");
    }
}
