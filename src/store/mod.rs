//! The manager's store: one redb file, its tables, typed transactions and schema migrations.
//!
//! [`Store::open`] opens or creates the file, checks its integrity, and brings its schema up to
//! [`CURRENT_SCHEMA_VERSION`] before anyone reads it. Reads go through a [`ReadTxn`] (a
//! consistent snapshot) or a [`WriteTxn`]; both implement [`Reads`], so code that only reads can
//! take `&impl Reads`. Writes happen in a [`WriteTxn`] and are durable once
//! [`WriteTxn::commit`] returns; dropping a `WriteTxn` without committing discards every change
//! made in it, which is how a refused request leaves the store untouched.
//!
//! Only one `WriteTxn` exists at a time: [`Store::write`] waits for the current one to end, so a
//! thread must not ask for a second while it holds one.
//!
//! Values are postcard-encoded versioned records (see `records.rs` and `schema/store.md`); a value
//! that does not decode is reported as [`StoreError::Corrupt`], never a panic.

mod error;
mod event_feed;
mod health;
mod legacy;
mod migrate;
mod notify;
mod notify_v1;
mod reads;
mod records;
mod snapshot;
#[cfg(test)]
mod tests;
mod writer;
mod writes;

pub use error::StoreError;
pub use event_feed::EventFeedReads;
pub use notify::{NotifyReads, OUTBOX_LIMIT};
pub use reads::Reads;
pub use snapshot::{Snapshot, schema_of};
pub use writes::Deleted;

pub use health::{Report as HealthReport, Reserve, Space};
use migrate::migrate;
pub use writer::Writer;
use writes::{Runs, event_run};

use crate::clock::WallMs;
use crate::model::{
    AgentState, Alert, AlertId, AlertKind, Computer, ComputerId, HistoryEntry, Policy, PolicyId,
    RuleId, StoredEvent, Token, TokenHash, User,
};
use health::{Due, Health};
use records::{
    ACTIVE_ALERTS, AGENTS, ALERTS, AgentStateRecord, AlertRecord, COMPUTERS, ComputerRecord,
    EVENTS, EVENTS_BY_TIME, EventRecord, HISTORY, HOSTNAMES, HistoryRecord, META, POLICIES,
    PolicyRecord, Record, TOKENS, TokenRecord, USERS, UserRecord, meta_key,
};
use redb::{
    Key, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

/// The schema this binary writes. Bump it together with a new arm in `migrate` and a new
/// row in `schema/store.md`.
pub const CURRENT_SCHEMA_VERSION: u32 = 12;

/// The open store file.
///
/// The database sits behind a lock only so that [`Store::tend`] can close and reopen it after an
/// I/O error (redb refuses every transaction after one until then). The lock is held only to
/// clone the handle; every transaction (and a thread waiting in `begin_write`) holds a clone, so
/// a reopen happens only when nobody uses the file, and otherwise waits for the next tend.
/// `None` while a reopen has failed.
pub struct Store {
    db: RwLock<Option<Arc<redb::Database>>>,
    path: PathBuf,
    health: Arc<Health>,
}

/// A consistent snapshot for reading; writes committed after it began are not seen.
pub struct ReadTxn {
    txn: redb::ReadTransaction,
    /// Keeps the file from being reopened under the transaction (dropped after it).
    _db: Arc<redb::Database>,
}

/// The one write transaction; see [`Store::write`].
pub struct WriteTxn {
    txn: redb::WriteTransaction,
    health: Arc<Health>,
    /// Keeps the file from being reopened under the transaction (dropped after it).
    _db: Arc<redb::Database>,
}

impl Store {
    /// Opens or creates the store file at `path` (normally `DIR/picket.redb`) and runs the
    /// migrations its schema needs.
    ///
    /// Every open verifies the checksums of the whole file, so a damaged file is refused here
    /// with [`StoreError::Damaged`] rather than found later in the middle of a request.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, Reserve::Auto)
    }

    /// [`Store::open`], keeping `reserve` free on the filesystem for everything but agent
    /// events (see `health.rs`).
    pub fn open_with(path: &Path, reserve: Reserve) -> Result<Store, StoreError> {
        crate::files::create_private(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let db = redb::Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| StoreError::from(e).at_open(path))?;
        let store = Store {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            health: Arc::new(Health::new(reserve)),
        };
        store
            .bring_schema_up_to_date()
            .map_err(|e| e.at_open(path))?;
        Ok(store)
    }

    pub fn read(&self) -> Result<ReadTxn, StoreError> {
        let db = self.database()?;
        let txn = db
            .begin_read()
            .map_err(|e| self.noted(StoreError::from(e)))?;
        Ok(ReadTxn { txn, _db: db })
    }

    /// Starts the write transaction, waiting while another one is alive. Refused at once while
    /// an I/O error keeps the file shut.
    pub fn write(&self) -> Result<WriteTxn, StoreError> {
        if let Some(reason) = self.health.refusal() {
            return Err(StoreError::Unavailable(reason));
        }
        let db = self.database()?;
        let txn = db
            .begin_write()
            .map_err(|e| self.noted(StoreError::from(e)))?;
        Ok(WriteTxn {
            txn,
            health: self.health.clone(),
            _db: db,
        })
    }

    fn database(&self) -> Result<Arc<redb::Database>, StoreError> {
        let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
        slot.clone().ok_or_else(|| self.unavailable())
    }

    /// Closes the file and releases its lock, reporting what dropping the store would ignore.
    /// Fails if a transaction is still alive; the file then closes when the last one ends.
    pub fn close(self) -> Result<(), StoreError> {
        let db = self.db.into_inner().unwrap_or_else(PoisonError::into_inner);
        match db.map(Arc::try_unwrap) {
            Some(Ok(db)) => db.close()?,
            // A transaction still holds the handle; the file closes when the last one ends.
            Some(Err(_)) => {
                return Err(StoreError::Database(
                    redb::DatabaseError::TransactionInProgress,
                ));
            }
            None => {}
        }
        Ok(())
    }

    /// Why agent events cannot be stored now (an I/O error, or free space below the reserve),
    /// for the agent port to tell agents to keep them.
    pub fn event_refusal(&self) -> Option<String> {
        self.health.event_refusal()
    }

    pub fn health(&self) -> HealthReport {
        self.health.report()
    }

    /// Reads the filesystem's free space and, after an I/O error, reopens the file when its
    /// backoff says so. The manager calls this about once a second, off the async threads.
    pub fn tend(&self, now: crate::clock::Instant) {
        match free_space(&self.path) {
            Ok(space) => self.health.space(space),
            Err(e) => log::debug!("cannot read the store's free space: {e}"),
        }
        if self.health.due(now) == Due::Reopen {
            match self.reopen() {
                Ok(true) => self.health.reopened(now, Ok(())),
                // In use: tried again at the next tend, without growing the backoff.
                Ok(false) => {}
                Err(e) => self.health.reopened(now, Err(e.chain())),
            }
        }
    }

    /// Closes the latched database and opens the file again; redb repairs it on the way if the
    /// failed commit left it marked for recovery. No integrity check of the whole file, unlike
    /// the start: that is a read of all of it, and the file's own checksums still guard every
    /// page read. `false` (nothing done) while a transaction holds the file.
    fn reopen(&self) -> Result<bool, StoreError> {
        let old = {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if slot.as_ref().is_some_and(|db| Arc::strong_count(db) > 1) {
                return Ok(false);
            }
            slot.take()
        };
        // The only handle: dropping it closes the file. The error of a close after an I/O
        // error is that same error, already reported.
        drop(old);
        let db = redb::Database::builder()
            .create(&self.path)
            .map_err(|e| StoreError::from(e).at_open(&self.path))?;
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
        Ok(true)
    }

    /// As if a write had met `detail` from the operating system: for tests of the code that
    /// lives through a failing store.
    #[cfg(test)]
    pub(crate) fn fail_for_test(&self, detail: &str) {
        self.health.io_failed(detail.to_string());
    }

    fn unavailable(&self) -> StoreError {
        StoreError::Unavailable(
            self.health
                .report()
                .reason
                .unwrap_or_else(|| "the store file is being reopened".into()),
        )
    }

    /// Remembers an I/O error in the health before handing the error on.
    fn noted(&self, e: StoreError) -> StoreError {
        note(&self.health, e)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size on disk (0 if it cannot be read: this is for metrics, not decisions).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    fn bring_schema_up_to_date(&self) -> Result<(), StoreError> {
        let txn = self.write()?.txn;
        let found = {
            let meta = txn.open_table(META)?;
            records::get_meta::<u32>(&meta, meta_key::SCHEMA_VERSION)?
        };
        let mut version = match found {
            Some(v) if v > CURRENT_SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found: v,
                    supported: CURRENT_SCHEMA_VERSION,
                });
            }
            Some(CURRENT_SCHEMA_VERSION) => {
                txn.abort()?;
                return Ok(());
            }
            Some(v) => v,
            None => {
                self.check_fresh(&txn)?;
                0
            }
        };
        while version < CURRENT_SCHEMA_VERSION {
            version = migrate(&txn, version)?;
        }
        txn.open_table(META)?.insert(
            meta_key::SCHEMA_VERSION,
            records::encode("meta", &version)?.as_slice(),
        )?;
        txn.commit()?;
        Ok(())
    }

    /// A file without a schema version is only ours to initialise if it holds nothing at all;
    /// otherwise it is some other program's redb database, which must not be written into.
    fn check_fresh(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let meta_is_empty = txn.open_table(META)?.is_empty()?;
        let other = txn
            .list_tables()?
            .map(|t| t.name().to_string())
            .find(|name| name != META.name());
        match (meta_is_empty, other) {
            (true, None) => Ok(()),
            (_, other) => Err(StoreError::Damaged {
                path: self.path.clone(),
                detail: match other {
                    Some(name) => format!("it has a table '{name}' but no schema version"),
                    None => "its meta table has no schema version".to_string(),
                },
            }),
        }
    }
}

/// Tells `health` about an I/O error (redb's own, or its "previous I/O error" latch).
fn note(health: &Health, e: StoreError) -> StoreError {
    if let Some(detail) = e.io_detail() {
        health.io_failed(detail);
    }
    e
}

/// Free and total bytes of the filesystem that holds `path`, as an unprivileged writer sees it.
fn free_space(path: &Path) -> std::io::Result<Space> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(Space {
        free: stat.f_bavail.saturating_mul(stat.f_frsize),
        total: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ReadTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadTxn").finish_non_exhaustive()
    }
}

/// An active-alert index value: the alert id, 8 bytes big-endian.
fn active_alert_id(
    computer: ComputerId,
    kind: AlertKind,
    bytes: &[u8],
) -> Result<AlertId, StoreError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        table: "active_alerts",
        key: format!("({computer}, {})", kind.name()),
    })?;
    Ok(AlertId(u64::from_be_bytes(bytes)))
}

/// The hostname index's key: hostnames are unique ignoring ASCII case, as the API checks them.
fn hostname_key(hostname: &str) -> String {
    hostname.to_ascii_lowercase()
}

fn decode_computer(id: ComputerId, bytes: &[u8]) -> Result<Computer, StoreError> {
    records::decode::<ComputerRecord>(bytes, ComputerRecord::TABLE, || id.to_string())
        .map(ComputerRecord::into_model)
}

impl fmt::Debug for WriteTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteTxn").finish_non_exhaustive()
    }
}
