//! A long-running `picket` (manager or agent) under a service manager: readiness and watchdog
//! keep-alives through systemd's notification socket, the signals it answers, and the form of
//! its log lines. Outside systemd every part of it is a no-op but the logs and the signals.

pub mod logging;
pub mod notify;
pub mod signals;
pub mod watchdog;

pub use logging::LogFormat;
pub use notify::Notifier;
pub use signals::StopSignals;

use crate::clock::Clock;
use std::time::Duration;

/// What the service manager asked of this process: where to say it is ready (`Type=notify`)
/// and how often to say it is alive (`WatchdogSec=`). The default asks nothing.
#[derive(Debug, Default)]
pub struct Systemd {
    notifier: Option<Notifier>,
    keep_alive: Option<Duration>,
}

impl Systemd {
    /// From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`. A bad value is logged
    /// naming it and that part is left off: systemd then reports the start or the watchdog as
    /// timed out, which points at the same place.
    pub fn from_env() -> Systemd {
        let notifier = Notifier::from_env().unwrap_or_else(|e| {
            log::warn!(
                "{}: not telling the service manager anything",
                crate::errors::one_line(&e)
            );
            None
        });
        let keep_alive = match watchdog::keep_alive_interval_from_env() {
            Ok(every) => every,
            Err(e) => {
                log::warn!("{e}: no watchdog keep-alives");
                None
            }
        };
        if notifier.is_none() && keep_alive.is_some() {
            log::warn!(
                "a watchdog is set but no {}: no keep-alives",
                notify::NOTIFY_SOCKET
            );
        }
        Systemd {
            notifier,
            keep_alive,
        }
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=...`) if a service manager listens.
    pub fn notify(&self, state: &str) {
        if let Some(notifier) = &self.notifier {
            notifier.notify(state);
        }
    }

    /// Keeps the watchdog fed while `check` passes (see [`watchdog::keep_alive`]); without a
    /// watchdog it never resolves and does nothing.
    pub async fn keep_alive<F>(&self, clock: &dyn Clock, check: F)
    where
        F: AsyncFn() -> Result<(), String>,
    {
        match (&self.notifier, self.keep_alive) {
            (Some(notifier), Some(every)) => {
                log::debug!("watchdog keep-alive every {every:?}");
                watchdog::keep_alive(notifier, clock, every, check).await
            }
            _ => std::future::pending().await,
        }
    }

    /// How often the watchdog wants to hear from this process, if it does.
    pub fn keep_alive_every(&self) -> Option<Duration> {
        self.notifier.as_ref().and(self.keep_alive)
    }
}
