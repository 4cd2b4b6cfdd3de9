//! Why the manager could not start or stopped, with the path or address involved.

use crate::pki::PkiError;
use crate::store::StoreError;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug)]
#[non_exhaustive]
pub enum ManagerError {
    /// The data dir is missing and cannot be created, is not a directory, or is not writable.
    DataDir {
        path: PathBuf,
        problem: &'static str,
        source: Option<std::io::Error>,
    },
    /// The data dir holds a site (CA, admin key) but its store is missing, empty or new.
    StoreLost {
        dir: PathBuf,
        /// What is wrong with the store file ("is missing", "is empty"...).
        state: &'static str,
        /// The site's files that were found.
        found: Vec<&'static str>,
    },
    Store(StoreError),
    Pki(Box<PkiError>),
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    Signals(std::io::Error),
    /// The worker threads that run the listeners and sessions could not be started.
    Workers(std::io::Error),
    /// The store writer's thread could not be started.
    Writer(std::io::Error),
    Password(crate::password::PasswordError),
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::DataDir { path, problem, .. } => {
                write!(f, "data dir {}: {problem}", path.display())
            }
            ManagerError::StoreLost { dir, state, found } => {
                let dir = dir.display();
                write!(
                    f,
                    "{dir}/{} {state}, but {dir} holds an initialised site ({}): starting would \
                     make a new site and every activated agent would be refused. Restore \
                     {} from a backup, or, to start over, move {dir} aside and start again",
                    super::STORE_FILE,
                    found.join(", "),
                    super::STORE_FILE,
                )
            }
            ManagerError::Store(_) => write!(f, "cannot use the store"),
            ManagerError::Pki(_) => write!(f, "cannot set up the manager's certificates"),
            ManagerError::Bind { what, addr, .. } => write!(
                f,
                "cannot listen for {what} on {addr} (is another process using the port?)"
            ),
            ManagerError::File { path, .. } => write!(f, "cannot write {}", path.display()),
            ManagerError::Signals(_) => write!(f, "cannot install the signal handlers"),
            ManagerError::Workers(_) => write!(f, "cannot start the worker threads"),
            ManagerError::Writer(_) => write!(f, "cannot start the store writer's thread"),
            ManagerError::Password(_) => write!(f, "cannot set the console password"),
        }
    }
}

impl std::error::Error for ManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManagerError::DataDir { source, .. } => source.as_ref().map(|e| e as _),
            ManagerError::StoreLost { .. } => None,
            ManagerError::Store(e) => Some(e),
            ManagerError::Pki(e) => Some(e.as_ref()),
            ManagerError::Bind { source, .. }
            | ManagerError::File { source, .. }
            | ManagerError::Signals(source)
            | ManagerError::Workers(source)
            | ManagerError::Writer(source) => Some(source),
            ManagerError::Password(e) => Some(e),
        }
    }
}

impl From<StoreError> for ManagerError {
    fn from(e: StoreError) -> Self {
        ManagerError::Store(e)
    }
}

impl From<PkiError> for ManagerError {
    fn from(e: PkiError) -> Self {
        ManagerError::Pki(Box::new(e))
    }
}

impl From<crate::password::PasswordError> for ManagerError {
    fn from(e: crate::password::PasswordError) -> Self {
        ManagerError::Password(e)
    }
}
