//! `picket backup`, `picket restore` and `picket check`: a manager's data dir into one file and
//! back, and a look at a data dir's health (`src/backup/`).

use argh::FromArgs;
use std::path::PathBuf;

/// Back up a manager's data dir (store, PKI with the CA key, admin key) into one file, while
/// the manager runs.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "backup")]
pub struct BackupArgs {
    /// the manager's data dir; default: $PICKET_DATA_DIR
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// the backup file to write (mode 0600; never over an existing file)
    #[argh(option)]
    pub out: PathBuf,
    /// encrypt with the passphrase in this file (its first line)
    #[argh(option)]
    pub passphrase_file: Option<PathBuf>,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Restore a backup into a new data dir (never over an existing one).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "restore")]
pub struct RestoreArgs {
    /// the backup file
    #[argh(positional)]
    pub file: PathBuf,
    /// the new data dir: must not exist, or be empty
    #[argh(option)]
    pub data_dir: PathBuf,
    /// the passphrase of an encrypted backup, in this file (its first line)
    #[argh(option)]
    pub passphrase_file: Option<PathBuf>,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Check a stopped manager's data dir: the store's integrity and records, the PKI's files.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// the manager's data dir; default: $PICKET_DATA_DIR
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}
