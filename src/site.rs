//! What a manager's data dir holds, by name, where the data dir is when no flag says, and this
//! host's name: shared by the manager that writes the files, the agent, the admin CLI that finds
//! its key and CA there, and the bench that prepares one. (Neutral ground, so none of them
//! imports another for a file name.)

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// The store, `DIR/picket.redb` (`schema/store.md`).
pub const STORE_FILE: &str = "picket.redb";
/// The CA, the manager's certificate and the ticket key, under `DIR/pki/`.
pub const PKI_DIR: &str = "pki";
/// The admin API key, written once at the first start.
pub const ADMIN_KEY_FILE: &str = "admin-api-key";
/// Where the running manager's listeners are, written once they listen.
pub const PORTS_FILE: &str = "ports.json";

/// The name the manager gives itself (and an agent reports) without `--hostname`: the kernel's
/// host name, else `localhost`.
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The data dir when `--data-dir` is absent: the packages' units set it (`/var/lib/picket`,
/// `/var/lib/picket-agent`), and an administrator can set it once in a shell.
pub const DATA_DIR_ENV: &str = "PICKET_DATA_DIR";

/// Neither `--data-dir` nor `$PICKET_DATA_DIR` says where the data dir is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataDirError {
    Missing,
}

impl fmt::Display for DataDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataDirError::Missing => {
                write!(f, "no data dir: pass --data-dir DIR or set {DATA_DIR_ENV}")
            }
        }
    }
}

impl std::error::Error for DataDirError {}

/// The data dir: `flag` (`--data-dir`), else `env` (`$PICKET_DATA_DIR`) when it is not empty.
pub fn resolve_data_dir(
    flag: Option<PathBuf>,
    env: Option<OsString>,
) -> Result<PathBuf, DataDirError> {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .ok_or(DataDirError::Missing)
}

/// [`resolve_data_dir`] with this process's `$PICKET_DATA_DIR`.
pub fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf, DataDirError> {
    resolve_data_dir(flag, std::env::var_os(DATA_DIR_ENV))
}

/// `$PICKET_DATA_DIR`, if set and not empty: the admin verbs' default data dir.
pub fn env_data_dir() -> Option<PathBuf> {
    data_dir(None).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment_and_neither_is_an_error_naming_both() {
        let flag = Some(PathBuf::from("/srv/flag"));
        let env = Some(OsString::from("/var/lib/picket"));
        assert_eq!(
            resolve_data_dir(flag.clone(), env.clone()),
            Ok("/srv/flag".into())
        );
        assert_eq!(resolve_data_dir(None, env), Ok("/var/lib/picket".into()));
        assert_eq!(resolve_data_dir(flag, None), Ok("/srv/flag".into()));
        let error = resolve_data_dir(None, Some(OsString::new())).unwrap_err();
        assert_eq!(error, DataDirError::Missing);
        let message = error.to_string();
        assert!(
            message.contains("--data-dir") && message.contains("PICKET_DATA_DIR"),
            "{message}"
        );
        assert_eq!(resolve_data_dir(None, None), Err(DataDirError::Missing));
    }
}
