//! systemd's notification protocol (what `sd_notify` does) without libsystemd: a datagram of
//! `KEY=VALUE` lines sent to the Unix socket `$NOTIFY_SOCKET` names, a path or, after `@`, an
//! abstract name.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// The variable a service manager sets to the socket it listens on.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// Start-up is over: the listeners are bound and the work has begun (`Type=notify`).
pub const READY: &str = "READY=1";
/// Still alive (`WatchdogSec=`): sent no less often than half the watchdog's timeout.
pub const WATCHDOG: &str = "WATCHDOG=1";
/// The process has begun to shut down.
pub const STOPPING: &str = "STOPPING=1";

/// A `$NOTIFY_SOCKET` this process cannot send to.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotifyError {
    /// The value is neither an absolute path nor `@NAME` (systemd's `vsock:` form is for
    /// virtual machines' managers, not a service's).
    BadSocket { value: String },
    /// The address is too long for a Unix socket, or no socket could be made to send from.
    Socket { value: String, source: io::Error },
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::BadSocket { value } => write!(
                f,
                "{NOTIFY_SOCKET}={value:?} is neither an absolute path nor an abstract name (@NAME)"
            ),
            NotifyError::Socket { value, .. } => {
                write!(f, "cannot send to {NOTIFY_SOCKET}={value:?}")
            }
        }
    }
}

impl std::error::Error for NotifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NotifyError::Socket { source, .. } => Some(source),
            NotifyError::BadSocket { .. } => None,
        }
    }
}

/// Where notifications go: an unbound datagram socket and the service manager's address.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names; `Ok(None)` when it is unset or empty (not started
    /// by a service manager that listens, or `Type=` is not `notify`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os(NOTIFY_SOCKET) {
            Some(value) if !value.is_empty() => Notifier::to(&value).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `value`, written as `$NOTIFY_SOCKET` would be.
    pub fn to(value: &OsStr) -> Result<Notifier, NotifyError> {
        let shown = || value.to_string_lossy().into_owned();
        let bytes = value.as_bytes();
        let to = if let Some(name) = bytes.strip_prefix(b"@") {
            SocketAddr::from_abstract_name(name)
        } else if bytes.starts_with(b"/") {
            SocketAddr::from_pathname(Path::new(value))
        } else {
            return Err(NotifyError::BadSocket { value: shown() });
        };
        let socket = to.and_then(|to| {
            let socket = UnixDatagram::unbound()?;
            // A full queue at the service manager must not stall the async thread that sends:
            // the datagram is dropped and the next keep-alive says the same again.
            socket.set_nonblocking(true)?;
            Ok((socket, to))
        });
        match socket {
            Ok((socket, to)) => Ok(Notifier { socket, to }),
            Err(source) => Err(NotifyError::Socket {
                value: shown(),
                source,
            }),
        }
    }

    /// Sends `state` (lines such as `READY=1`) in one datagram.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.to)
            .map(|_| ())
    }

    /// [`Notifier::send`], logging a failure: a lost notification is not worth stopping for
    /// (systemd then times the start or the watchdog out, and says so).
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.send(state) {
            let first = state.lines().next().unwrap_or(state);
            log::warn!("cannot tell the service manager {first}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_notification_is_one_datagram_to_the_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listening = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to(path.as_os_str()).unwrap();
        notifier.send("READY=1\nSTATUS=serving").unwrap();
        notifier.send(WATCHDOG).unwrap();
        assert_eq!(received(&listening), "READY=1\nSTATUS=serving");
        assert_eq!(received(&listening), "WATCHDOG=1");
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        let name = format!("picket-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listening = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::to(OsStr::new(&format!("@{name}"))).unwrap();
        notifier.send(READY).unwrap();
        assert_eq!(received(&listening), "READY=1");
    }

    #[test]
    fn a_relative_or_overlong_socket_is_refused_naming_the_value() {
        let error = Notifier::to(OsStr::new("run/notify")).unwrap_err();
        assert!(matches!(error, NotifyError::BadSocket { .. }));
        assert!(
            error.to_string().contains("NOTIFY_SOCKET=\"run/notify\""),
            "{error}"
        );
        let long = format!("/{}", "x".repeat(200));
        let error = Notifier::to(OsStr::new(&long)).unwrap_err();
        assert!(matches!(error, NotifyError::Socket { .. }), "{error}");
        assert!(error.to_string().contains(&long), "{error}");
    }

    #[test]
    fn sending_to_a_socket_nobody_listens_on_fails_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::to(dir.path().join("gone").as_os_str()).unwrap();
        assert!(notifier.send(READY).is_err());
        notifier.notify(READY); // logs, never panics
    }
}
