//! Why a benchmark could not run, naming the option, file or phase involved.

use crate::manager::ManagerError;
use crate::pki::PkiError;
use crate::store::StoreError;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// A command-line option is out of range or unreadable (exit code 2).
    Option {
        name: &'static str,
        problem: String,
    },
    /// The temporary data dir or a file in it.
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    Store(StoreError),
    Pki(Box<PkiError>),
    /// The in-process manager failed to start or stopped with an error.
    Manager(Box<ManagerError>),
    /// The manager did not write its ports file in time.
    ManagerNotListening(PathBuf),
    /// A thread of the load generator could not be started.
    Thread(std::io::Error),
    /// The floor's own TLS listener.
    Floor(std::io::Error),
    /// The simulated agents' listener (manager-initiated runs), or a port for the manager.
    Listen(std::io::Error),
    /// A running manager's API refused or could not be reached while `doing` something.
    Api {
        doing: &'static str,
        source: Box<crate::admin::AdminError>,
    },
    /// A simulated agent's computer could not be made as activation makes it.
    Enrol {
        hostname: String,
        source: crate::policy::PolicyError,
    },
    /// A simulated agent could not activate with a running manager.
    Activation {
        hostname: String,
        tries: u32,
        reason: String,
    },
}

impl BenchError {
    /// 2 for a usage error, 1 for everything else, as for the other subcommands.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Option { .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Option { name, problem } => write!(f, "--{name}: {problem}"),
            BenchError::File { path, .. } => write!(f, "cannot use {}", path.display()),
            BenchError::Store(_) => f.write_str("cannot use the benchmark's store"),
            BenchError::Pki(_) => f.write_str("cannot issue the simulated agents' certificates"),
            BenchError::Manager(_) => f.write_str("the in-process manager failed"),
            BenchError::ManagerNotListening(path) => write!(
                f,
                "the in-process manager did not write {} within 60 s",
                path.display()
            ),
            BenchError::Thread(_) => f.write_str("cannot start a load-generator thread"),
            BenchError::Floor(_) => f.write_str("cannot run the bare-TLS floor's listener"),
            BenchError::Listen(_) => f.write_str("cannot listen for the manager's dials"),
            BenchError::Api { doing, .. } => {
                write!(f, "the running manager's API failed while {doing}")
            }
            BenchError::Enrol { hostname, .. } => {
                write!(f, "cannot enrol simulated agent '{hostname}'")
            }
            BenchError::Activation {
                hostname,
                tries,
                reason,
            } => write!(
                f,
                "simulated agent '{hostname}' could not activate ({tries} tries): {reason}"
            ),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::File { source, .. } => Some(source),
            BenchError::Store(e) => Some(e),
            BenchError::Pki(e) => Some(e.as_ref()),
            BenchError::Manager(e) => Some(e.as_ref()),
            BenchError::Thread(e) | BenchError::Floor(e) | BenchError::Listen(e) => Some(e),
            BenchError::Api { source, .. } => Some(source.as_ref()),
            BenchError::Enrol { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<StoreError> for BenchError {
    fn from(e: StoreError) -> Self {
        BenchError::Store(e)
    }
}

impl From<PkiError> for BenchError {
    fn from(e: PkiError) -> Self {
        BenchError::Pki(Box::new(e))
    }
}

impl From<ManagerError> for BenchError {
    fn from(e: ManagerError) -> Self {
        BenchError::Manager(Box::new(e))
    }
}
