//! `StoreError`: everything that can go wrong with the store file, worded for the administrator.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error of the store layer.
///
/// The variants about the file itself (`Locked`, `Damaged`, `SchemaTooNew`, `Io`) name the path and
/// say what to do, because they stop the manager at start-up and the administrator reads them.
/// The redb variants keep redb's error as their `source()`, so `main` prints the whole chain.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another `Store` in this one) holds the file's lock.
    Locked {
        path: PathBuf,
    },
    /// The file is not a redb database, is not a Picket store, or failed redb's integrity check.
    Damaged {
        path: PathBuf,
        detail: String,
    },
    /// The file was written by a newer Picket whose records this binary cannot read.
    SchemaTooNew {
        found: u32,
        supported: u32,
    },
    /// The stored schema is older than this binary's, but no migration step starts from it.
    /// Only a Picket bug (a bumped schema version without its step) leads here.
    NoMigration {
        from: u32,
    },
    /// The file could not be opened, read or written.
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// A stored value does not decode as the record its table holds.
    Corrupt {
        table: &'static str,
        key: String,
    },
    /// A record could not be encoded; `table` is where it was going.
    Encode {
        table: &'static str,
        source: postcard::Error,
    },
    /// A redb error while opening or closing the database not covered by the variants above.
    Database(redb::DatabaseError),
    Transaction(redb::TransactionError),
    Table(redb::TableError),
    Storage(redb::StorageError),
    Commit(redb::CommitError),
    /// Writes are refused for now (an I/O error not yet recovered from, or low free space for
    /// agent events); the text says why, without paths. The store recovers by itself.
    Unavailable(String),
    /// The group-commit writer thread is gone (the manager is shutting down).
    WriterStopped,
    /// A change handed to the writer failed; the text is the whole cause chain, since the
    /// original error stays with the writer thread.
    WriteFailed(String),
    /// The store has a table the snapshot does not know to copy: a backup would lack it.
    NotInSnapshot(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked { path } => write!(
                f,
                "{} is in use by another Picket manager: stop it first",
                path.display()
            ),
            StoreError::Damaged { path, detail } => write!(
                f,
                "{} is not a Picket store or is damaged ({detail}): move it aside and restore a backup",
                path.display()
            ),
            StoreError::SchemaTooNew { found, supported } => write!(
                f,
                "this data dir was written by a newer Picket (schema {found}, this binary supports \
                 {supported}): run the newer binary or restore a backup"
            ),
            StoreError::NoMigration { from } => write!(
                f,
                "no migration from store schema {from}: this Picket binary is incomplete"
            ),
            StoreError::Io { path, .. } => write!(f, "cannot use the store {}", path.display()),
            StoreError::Corrupt { table, key } => write!(
                f,
                "the stored value for key {key} in table '{table}' is corrupt"
            ),
            StoreError::Encode { table, .. } => {
                write!(f, "cannot encode a record for table '{table}'")
            }
            StoreError::Database(_) => f.write_str("store database error"),
            StoreError::Transaction(_) => f.write_str("cannot start a store transaction"),
            StoreError::Table(_) => f.write_str("cannot open a store table"),
            StoreError::Storage(_) => f.write_str("store storage error"),
            StoreError::Commit(_) => f.write_str("cannot commit to the store"),
            StoreError::Unavailable(reason) => {
                write!(f, "the store refuses writes for now: {reason}")
            }
            StoreError::WriterStopped => f.write_str("the store writer has stopped"),
            StoreError::WriteFailed(chain) => write!(f, "the store write failed: {chain}"),
            StoreError::NotInSnapshot(table) => write!(
                f,
                "the store's table '{table}' is not in the snapshot's list: this Picket binary \
                 cannot back it up"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Encode { source, .. } => Some(source),
            StoreError::Database(e) => Some(e),
            StoreError::Transaction(e) => Some(e),
            StoreError::Table(e) => Some(e),
            StoreError::Storage(e) => Some(e),
            StoreError::Commit(e) => Some(e),
            StoreError::Locked { .. }
            | StoreError::Damaged { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::NoMigration { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Unavailable(_)
            | StoreError::WriterStopped
            | StoreError::WriteFailed(_)
            | StoreError::NotInSnapshot(_) => None,
        }
    }
}

impl StoreError {
    /// The error and its causes on one line, for [`StoreError::WriteFailed`].
    pub fn chain(&self) -> String {
        crate::errors::one_line(self)
    }
}

impl StoreError {
    /// For an I/O error of the file (which latches redb until it is reopened), what the
    /// operating system said; `None` for any other error.
    pub(super) fn io_detail(&self) -> Option<String> {
        let storage = match self {
            StoreError::Storage(s)
            | StoreError::Database(redb::DatabaseError::Storage(s))
            | StoreError::Transaction(redb::TransactionError::Storage(s))
            | StoreError::Table(redb::TableError::Storage(s))
            | StoreError::Commit(redb::CommitError::Storage(s)) => s,
            _ => return None,
        };
        match storage {
            redb::StorageError::Io(e) => Some(e.to_string()),
            redb::StorageError::PreviousIo => Some("an earlier write failed".into()),
            _ => None,
        }
    }

    /// Whether the store will take this write again by itself later (a caller may say "try
    /// later" rather than "failed").
    pub fn is_temporary(&self) -> bool {
        matches!(self, StoreError::Unavailable(_)) || self.io_detail().is_some()
    }
}

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        StoreError::Database(e)
    }
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Transaction(e)
    }
}

impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Table(e)
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Storage(e)
    }
}

impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Commit(e)
    }
}

impl StoreError {
    /// Rewords an error met while opening `path`, so that a file in use, a file that is not a
    /// store and a damaged file each get the message that tells the administrator what to do.
    pub(super) fn at_open(self, path: &std::path::Path) -> StoreError {
        let damaged = |detail: String| StoreError::Damaged {
            path: path.to_path_buf(),
            detail,
        };
        match self {
            StoreError::Database(e) => match e {
                redb::DatabaseError::DatabaseAlreadyOpen
                | redb::DatabaseError::LockProtocolMismatch => StoreError::Locked {
                    path: path.to_path_buf(),
                },
                redb::DatabaseError::UpgradeRequired(_) | redb::DatabaseError::RepairAborted => {
                    damaged(e.to_string())
                }
                redb::DatabaseError::Storage(s) => StoreError::Storage(s).at_open(path),
                other => StoreError::Database(other),
            },
            StoreError::Transaction(redb::TransactionError::Storage(s))
            | StoreError::Table(redb::TableError::Storage(s))
            | StoreError::Commit(redb::CommitError::Storage(s)) => {
                StoreError::Storage(s).at_open(path)
            }
            // A table of the right name but another type was made by some other program.
            StoreError::Table(e @ redb::TableError::TableTypeMismatch { .. })
            | StoreError::Table(e @ redb::TableError::TableIsMultimap(_))
            | StoreError::Table(e @ redb::TableError::TypeDefinitionChanged { .. }) => {
                damaged(e.to_string())
            }
            StoreError::Storage(redb::StorageError::Corrupted(detail)) => damaged(detail),
            StoreError::Storage(redb::StorageError::Io(e)) => {
                // redb reports a file without its magic number as InvalidData.
                if e.kind() == io::ErrorKind::InvalidData {
                    damaged(e.to_string())
                } else {
                    StoreError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    }
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;
    use std::path::Path;

    #[test]
    fn already_open_becomes_locked_naming_the_path() {
        let e = StoreError::from(redb::DatabaseError::DatabaseAlreadyOpen)
            .at_open(Path::new("/d/picket.redb"));
        assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "/d/picket.redb is in use by another Picket manager: stop it first"
        );
    }

    #[test]
    fn invalid_data_is_damaged_and_other_io_keeps_its_source() {
        let path = Path::new("/d/picket.redb");
        let bad = io::Error::new(io::ErrorKind::InvalidData, "magic number mismatch");
        let e = StoreError::from(redb::DatabaseError::from(bad)).at_open(path);
        assert!(matches!(e, StoreError::Damaged { .. }), "{e:?}");
        assert!(e.to_string().contains("restore a backup"), "{e}");

        let denied = io::Error::new(io::ErrorKind::PermissionDenied, "denied");
        let e = StoreError::from(redb::DatabaseError::from(denied)).at_open(path);
        assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
        assert_eq!(e.source().map(|s| s.to_string()), Some("denied".into()));
    }

    #[test]
    fn schema_too_new_tells_the_admin_what_to_do() {
        let e = StoreError::SchemaTooNew {
            found: 3,
            supported: 1,
        };
        assert_eq!(
            e.to_string(),
            "this data dir was written by a newer Picket (schema 3, this binary supports 1): \
             run the newer binary or restore a backup"
        );
    }
}
