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
mod health;
mod records;
mod writer;

pub use error::StoreError;
pub use health::{Report as HealthReport, Reserve, Space};
pub use writer::Writer;

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
pub const CURRENT_SCHEMA_VERSION: u32 = 6;

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

/// One migration step: brings the store from schema `from` to the version it returns, inside
/// the open transaction, so a failed step leaves the file as it was.
fn migrate(txn: &redb::WriteTransaction, from: u32) -> Result<u32, StoreError> {
    match from {
        // A fresh file. Every table is created now so that a read transaction, which cannot
        // create tables, never meets a missing one.
        0 => {
            txn.open_table(META)?;
            txn.open_table(POLICIES)?;
            txn.open_table(COMPUTERS)?;
            txn.open_table(TOKENS)?;
            Ok(1)
        }
        // The agent channel: agent state and events, and the liveness statuses (a release that
        // only knows schema 1 must refuse the file rather than meet a status it cannot read).
        1 => {
            txn.open_table(AGENTS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(ALERTS)?;
            txn.open_table(HISTORY)?;
            Ok(2)
        }
        // Communication direction: policies gain firewall rules and computers the address the
        // manager dials (records `V2`). `V1` records are converted as they are read, so nothing
        // is rewritten; the version bump keeps schema-2 binaries from meeting a `V2` record.
        2 => Ok(3),
        // The console: its users and their password hashes.
        3 => {
            txn.open_table(USERS)?;
            Ok(4)
        }
        // Indexes: computers by hostname (activation read every computer to find one by name,
        // 17-25 ms at 100,000 computers with the write lock held) and active alerts by computer
        // and kind (raising or clearing one read every alert ever kept).
        4 => {
            let computers = records::all_by_id::<ComputerRecord>(&txn.open_table(COMPUTERS)?)?;
            let mut index = txn.open_table(HOSTNAMES)?;
            for c in &computers {
                index.insert((hostname_key(&c.hostname).as_str(), c.id.0), [].as_slice())?;
            }
            let alerts = records::all_by_id::<AlertRecord>(&txn.open_table(ALERTS)?)?;
            let mut index = txn.open_table(ACTIVE_ALERTS)?;
            for a in alerts.iter().filter(|a| a.is_active()) {
                index.insert(
                    (a.computer.0, a.kind.name()),
                    a.id.0.to_be_bytes().as_slice(),
                )?;
            }
            Ok(5)
        }
        // Event retention: the events in the order they were stored, so the oldest can be
        // deleted without reading every event at each pass.
        5 => {
            let events = txn.open_table(EVENTS)?;
            let count = events.len()?;
            if count > 0 {
                log::info!("indexing {count} stored events by the time they were stored");
            }
            let mut index = txn.open_table(EVENTS_BY_TIME)?;
            // Events come in key order, a computer's together: its runs are written when the
            // next computer's events begin, so memory holds one computer's runs at a time.
            let mut runs = Runs::default();
            let mut current = None;
            for entry in events.iter()? {
                let (key, value) = entry?;
                let (computer, seq) = key.value();
                if current != Some(computer) {
                    runs.write(&mut index)?;
                    current = Some(computer);
                }
                // An event that does not decode is indexed as the oldest of all: retention's
                // first pass deletes it, instead of this step refusing to open the store.
                let received =
                    match records::decode::<EventRecord>(value.value(), EventRecord::TABLE, || {
                        format!("({computer}, {seq})")
                    }) {
                        Ok(event) => event.into_model().received.0,
                        Err(e) => {
                            log::warn!("{e}: retention will delete it first");
                            0
                        }
                    };
                runs.add(received, computer, seq);
            }
            runs.write(&mut index)?;
            Ok(6)
        }
        _ => Err(StoreError::NoMigration { from }),
    }
}

mod sealed {
    use super::StoreError;
    use redb::{Key, ReadableTable, TableDefinition};

    /// Opens a table for reading in either kind of transaction. Sealed so that [`super::Reads`]
    /// is implemented by the store's own transactions only.
    pub trait Tables {
        fn table<K: Key + 'static>(
            &self,
            def: TableDefinition<'static, K, &'static [u8]>,
        ) -> Result<impl ReadableTable<K, &'static [u8]> + '_, StoreError>;
    }
}

/// The reads offered by both [`ReadTxn`] and [`WriteTxn`]. A `WriteTxn` sees its own
/// uncommitted writes.
pub trait Reads: sealed::Tables {
    /// Every policy, in id order.
    fn policies(&self) -> Result<Vec<Policy>, StoreError> {
        records::all_by_id::<PolicyRecord>(&self.table(POLICIES)?)
    }

    fn policy(&self, id: PolicyId) -> Result<Option<Policy>, StoreError> {
        records::get::<u64, PolicyRecord>(&self.table(POLICIES)?, id.0, || id.to_string())
    }

    /// Every computer, in id order.
    fn computers(&self) -> Result<Vec<Computer>, StoreError> {
        records::all_by_id::<ComputerRecord>(&self.table(COMPUTERS)?)
    }

    fn computer(&self, id: ComputerId) -> Result<Option<Computer>, StoreError> {
        records::get::<u64, ComputerRecord>(&self.table(COMPUTERS)?, id.0, || id.to_string())
    }

    /// The computer named `hostname`, ignoring ASCII case (the lowest id, should two share it).
    /// An index entry whose computer has another name is skipped, so even a stale entry (left
    /// by overwriting a computer whose old record did not decode) cannot give a wrong answer.
    fn computer_by_hostname(&self, hostname: &str) -> Result<Option<Computer>, StoreError> {
        let key = hostname_key(hostname);
        let index = self.table(HOSTNAMES)?;
        for entry in index.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))? {
            let id = ComputerId(entry?.0.value().1);
            if let Some(c) = self.computer(id)?
                && c.hostname.eq_ignore_ascii_case(hostname)
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Every activation token, in hash order.
    fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        records::all_by_bytes::<TokenRecord>(&self.table(TOKENS)?)
    }

    fn token(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        records::get::<&[u8], TokenRecord>(&self.table(TOKENS)?, &hash.0, || records::hex(&hash.0))
    }

    fn agent_state(&self, id: ComputerId) -> Result<Option<AgentState>, StoreError> {
        records::get::<u64, AgentStateRecord>(&self.table(AGENTS)?, id.0, || id.to_string())
    }

    /// Every activated agent's state, in computer id order.
    fn agent_states(&self) -> Result<Vec<AgentState>, StoreError> {
        records::all_by_id::<AgentStateRecord>(&self.table(AGENTS)?)
    }

    /// Up to `limit` events, newest first: of one computer by sequence, or of all computers by
    /// the time they were stored (through `events_by_time`: only those events are read).
    fn events(
        &self,
        computer: Option<ComputerId>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let table = self.table(EVENTS)?;
        let decode = |(key, value): (
            redb::AccessGuard<'_, (u64, u64)>,
            redb::AccessGuard<'_, &[u8]>,
        )| {
            let (c, seq) = key.value();
            records::decode::<EventRecord>(value.value(), EventRecord::TABLE, || {
                format!("({c}, {seq})")
            })
            .map(EventRecord::into_model)
        };
        match computer {
            Some(id) => table
                .range((id.0, 0)..=(id.0, u64::MAX))?
                .rev()
                .take(limit)
                .map(|entry| decode(entry?))
                .collect(),
            None => {
                let mut newest = Vec::new();
                for entry in self.table(EVENTS_BY_TIME)?.iter()?.rev() {
                    let (key, value) = entry?;
                    let (received, computer) = key.value();
                    let (first, last) = event_run(key.value(), value.value())?;
                    for event in table.range((computer, first)..=(computer, last))?.rev() {
                        if newest.len() == limit {
                            return Ok(newest);
                        }
                        let event = decode(event?)?;
                        // A run may span an event stored at another time; it is listed there.
                        if event.received.0 == received {
                            newest.push(event);
                        }
                    }
                }
                Ok(newest)
            }
        }
    }

    /// The highest event sequence stored for `computer`: the last key of its range, a lookup
    /// like any other (events are keyed by computer, then sequence).
    fn newest_event_seq(&self, computer: ComputerId) -> Result<Option<u64>, StoreError> {
        let table = self.table(EVENTS)?;
        let newest = table
            .range((computer.0, 0)..=(computer.0, u64::MAX))?
            .next_back()
            .transpose()?;
        Ok(newest.map(|(key, _)| key.value().1))
    }

    /// How many events the store holds (redb keeps the count: no scan).
    fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self.table(EVENTS)?.len()?)
    }

    /// Up to `limit` lines of a computer's history, newest first.
    fn history(&self, computer: ComputerId, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let table = self.table(HISTORY)?;
        let mut out = Vec::new();
        for entry in table
            .range((computer.0, 0)..=(computer.0, u64::MAX))?
            .rev()
            .take(limit)
        {
            let (key, value) = entry?;
            let (c, n) = key.value();
            let record: HistoryRecord =
                records::decode(value.value(), HistoryRecord::TABLE, || {
                    format!("({c}, {n})")
                })?;
            out.push(record.into_model());
        }
        Ok(out)
    }

    /// Every alert, active or not, in id order.
    fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        records::all_by_id::<AlertRecord>(&self.table(ALERTS)?)
    }

    fn alert(&self, id: AlertId) -> Result<Option<Alert>, StoreError> {
        records::get::<u64, AlertRecord>(&self.table(ALERTS)?, id.0, || id.to_string())
    }

    /// The active alert of `kind` on `computer`, if there is one: an index lookup.
    fn active_alert(
        &self,
        computer: ComputerId,
        kind: AlertKind,
    ) -> Result<Option<Alert>, StoreError> {
        let id = self
            .table(ACTIVE_ALERTS)?
            .get((computer.0, kind.name()))?
            .map(|v| active_alert_id(computer, kind, v.value()))
            .transpose()?;
        let Some(id) = id else {
            return Ok(None);
        };
        // The index and the alert are written together; this only guards against a damaged file.
        Ok(self
            .alert(id)?
            .filter(|a| a.is_active() && a.computer == computer && a.kind == kind))
    }

    /// Every active alert of `computer`, by kind name.
    fn active_alerts_of(&self, computer: ComputerId) -> Result<Vec<Alert>, StoreError> {
        let mut out = Vec::new();
        for kind in AlertKind::ALL {
            if let Some(alert) = self.active_alert(computer, kind)? {
                out.push(alert);
            }
        }
        Ok(out)
    }

    /// How many alerts are active (redb keeps the count: no scan).
    fn active_alert_count(&self) -> Result<u64, StoreError> {
        Ok(self.table(ACTIVE_ALERTS)?.len()?)
    }

    /// The console user of this name, ignoring case.
    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let key = name.to_lowercase();
        records::get::<&str, UserRecord>(&self.table(USERS)?, key.as_str(), || key.clone())
    }

    /// SHA-256 of the admin API key, once the data dir has been initialised.
    fn admin_key_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        records::get_meta(&self.table(META)?, meta_key::ADMIN_KEY_SHA256)
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        records::get_meta(&self.table(META)?, meta_key::SCHEMA_VERSION)?.ok_or(
            StoreError::Corrupt {
                table: "meta",
                key: meta_key::SCHEMA_VERSION.to_string(),
            },
        )
    }
}

impl sealed::Tables for ReadTxn {
    fn table<K: Key + 'static>(
        &self,
        def: TableDefinition<'static, K, &'static [u8]>,
    ) -> Result<impl ReadableTable<K, &'static [u8]> + '_, StoreError> {
        Ok(self.txn.open_table(def)?)
    }
}

impl sealed::Tables for WriteTxn {
    fn table<K: Key + 'static>(
        &self,
        def: TableDefinition<'static, K, &'static [u8]>,
    ) -> Result<impl ReadableTable<K, &'static [u8]> + '_, StoreError> {
        Ok(self.txn.open_table(def)?)
    }
}

/// What one [`WriteTxn::delete_events_received_before`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deleted {
    /// Events deleted.
    pub events: usize,
    /// No event received before the cutoff is left.
    pub done: bool,
}

/// The runs of sequences a batch of events adds to `events_by_time`, by `(received, computer)`.
#[derive(Default)]
struct Runs(std::collections::BTreeMap<(u64, u64), (u64, u64)>);

impl Runs {
    fn add(&mut self, received: u64, computer: u64, seq: u64) {
        let run = self.0.entry((received, computer)).or_insert((seq, seq));
        *run = (run.0.min(seq), run.1.max(seq));
    }

    /// Writes the runs, each widened to take in what its key already holds (a second batch of
    /// the same computer in the same millisecond), and forgets them.
    fn write(
        &mut self,
        index: &mut redb::Table<'_, (u64, u64), &'static [u8]>,
    ) -> Result<(), StoreError> {
        for (key, (first, last)) in std::mem::take(&mut self.0) {
            let held = index
                .get(key)?
                .map(|value| event_run(key, value.value()))
                .transpose()?;
            let (first, last) = held.map_or((first, last), |(f, l)| (f.min(first), l.max(last)));
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&first.to_be_bytes());
            bytes[8..].copy_from_slice(&last.to_be_bytes());
            index.insert(key, bytes.as_slice())?;
        }
        Ok(())
    }
}

/// An `events_by_time` value: the first and last sequence of the run, 8 bytes each, big-endian.
fn event_run((received, computer): (u64, u64), bytes: &[u8]) -> Result<(u64, u64), StoreError> {
    let corrupt = || StoreError::Corrupt {
        table: "events_by_time",
        key: format!("({received}, {computer})"),
    };
    let (first, last) = bytes.split_at_checked(8).ok_or_else(corrupt)?;
    let first: [u8; 8] = first.try_into().map_err(|_| corrupt())?;
    let last: [u8; 8] = last.try_into().map_err(|_| corrupt())?;
    Ok((u64::from_be_bytes(first), u64::from_be_bytes(last)))
}

impl Reads for ReadTxn {}
impl Reads for WriteTxn {}

impl WriteTxn {
    /// Inserts or replaces the policy with `p.id`.
    pub fn put_policy(&mut self, p: &Policy) -> Result<(), StoreError> {
        let bytes = records::encode(PolicyRecord::TABLE, &PolicyRecord::current(p))?;
        self.txn
            .open_table(POLICIES)?
            .insert(p.id.0, bytes.as_slice())?;
        for rule in &p.rules {
            self.keep_counter_above(meta_key::NEXT_RULE_ID, rule.id.0)?;
        }
        self.keep_counter_above(meta_key::NEXT_POLICY_ID, p.id.0)
    }

    /// Whether there was a policy to delete. Its id is not given out again.
    pub fn delete_policy(&mut self, id: PolicyId) -> Result<bool, StoreError> {
        let mut table = self.txn.open_table(POLICIES)?;
        let existed = table.remove(id.0)?.is_some();
        Ok(existed)
    }

    /// Inserts or replaces the computer with `c.id`, and keeps the hostname index with it.
    pub fn put_computer(&mut self, c: &Computer) -> Result<(), StoreError> {
        let bytes = records::encode(ComputerRecord::TABLE, &ComputerRecord::current(c))?;
        let old = self
            .txn
            .open_table(COMPUTERS)?
            .insert(c.id.0, bytes.as_slice())?
            // A record that no longer decodes is being repaired by this write; its index entry,
            // if any, is skipped by `computer_by_hostname`.
            .and_then(|old| decode_computer(c.id, old.value()).ok());
        let new_key = hostname_key(&c.hostname);
        let old_key = old.map(|o| hostname_key(&o.hostname));
        // Status changes rewrite the computer with its name unchanged: no index write then.
        if old_key.as_ref() != Some(&new_key) {
            let mut index = self.txn.open_table(HOSTNAMES)?;
            if let Some(old_key) = old_key {
                index.remove((old_key.as_str(), c.id.0))?;
            }
            index.insert((new_key.as_str(), c.id.0), [].as_slice())?;
        }
        self.keep_counter_above(meta_key::NEXT_COMPUTER_ID, c.id.0)
    }

    /// Whether there was a computer to delete. Its id is not given out again.
    pub fn delete_computer(&mut self, id: ComputerId) -> Result<bool, StoreError> {
        let old = self
            .txn
            .open_table(COMPUTERS)?
            .remove(id.0)?
            .map(|old| decode_computer(id, old.value()).ok());
        if let Some(Some(old)) = &old {
            self.txn
                .open_table(HOSTNAMES)?
                .remove((hostname_key(&old.hostname).as_str(), id.0))?;
        }
        Ok(old.is_some())
    }

    /// Inserts or replaces the state of agent `a.computer`.
    pub fn put_agent_state(&mut self, a: &AgentState) -> Result<(), StoreError> {
        let bytes = records::encode(AgentStateRecord::TABLE, &AgentStateRecord::current(a))?;
        self.txn
            .open_table(AGENTS)?
            .insert(a.computer.0, bytes.as_slice())?;
        Ok(())
    }

    /// Forgets an agent (its certificate stops being accepted). Whether there was one.
    pub fn delete_agent_state(&mut self, id: ComputerId) -> Result<bool, StoreError> {
        let existed = self.txn.open_table(AGENTS)?.remove(id.0)?.is_some();
        Ok(existed)
    }

    /// Stores an event unless `(computer, seq)` is already stored; returns whether it was new.
    /// This is what makes a resend after a lost acknowledgement harmless.
    pub fn insert_event(&mut self, e: &StoredEvent) -> Result<bool, StoreError> {
        Ok(self.insert_events(std::slice::from_ref(e))? == 1)
    }

    /// Stores each event whose `(computer, seq)` is not already stored; returns how many were
    /// new. The time index gets one entry per computer and time of storing, however many
    /// events the batch holds.
    pub fn insert_events(&mut self, batch: &[StoredEvent]) -> Result<usize, StoreError> {
        let mut runs = Runs::default();
        let mut new = 0;
        let mut table = self.txn.open_table(EVENTS)?;
        for e in batch {
            let key = (e.computer.0, e.seq);
            if table.get(key)?.is_some() {
                continue;
            }
            let bytes = records::encode(EventRecord::TABLE, &EventRecord::current(e))?;
            table.insert(key, bytes.as_slice())?;
            runs.add(e.received.0, e.computer.0, e.seq);
            new += 1;
        }
        runs.write(&mut self.txn.open_table(EVENTS_BY_TIME)?)?;
        Ok(new)
    }

    /// Deletes the oldest events the manager received before `cutoff`, a stored batch at a time,
    /// until at least `limit` are deleted or none older is left (then `done`). Retention calls
    /// it repeatedly so that one call never holds the writer for long.
    ///
    /// An agent's state learns the sequence of its stored events when its session is recorded;
    /// if that record was lost (a crash in between), the events table was the only memory of
    /// them. So an agent whose state is behind a deleted event's sequence is brought up to it
    /// here: the manager must never ask an agent again for an event it stored and deleted.
    pub fn delete_events_received_before(
        &mut self,
        cutoff: WallMs,
        limit: usize,
    ) -> Result<Deleted, StoreError> {
        let mut newest_deleted = std::collections::BTreeMap::<u64, u64>::new();
        let mut deleted = Deleted::default();
        {
            let mut events = self.txn.open_table(EVENTS)?;
            let mut index = self.txn.open_table(EVENTS_BY_TIME)?;
            while deleted.events < limit {
                let oldest = index
                    .range(..(cutoff.0, 0))?
                    .next()
                    .transpose()?
                    .map(|(key, value)| (key.value(), event_run(key.value(), value.value())));
                let Some((key, run)) = oldest else {
                    deleted.done = true;
                    break;
                };
                let computer = key.1;
                // A run that does not decode says nothing of its events; only it goes.
                if let Ok((first, last)) = run {
                    events.retain_in((computer, first)..=(computer, last), |(_, seq), _| {
                        deleted.events += 1;
                        let newest = newest_deleted.entry(computer).or_default();
                        *newest = (*newest).max(seq);
                        false
                    })?;
                }
                index.remove(key)?;
            }
        }
        for (computer, seq) in newest_deleted {
            if let Some(mut state) = self.agent_state(ComputerId(computer))?
                && state.last_seq < seq
            {
                state.last_seq = seq;
                self.put_agent_state(&state)?;
            }
        }
        Ok(deleted)
    }

    /// Appends a line to a computer's history.
    pub fn add_history(&mut self, h: &HistoryEntry) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(HISTORY)?;
        let next = table
            .range((h.computer.0, 0)..=(h.computer.0, u64::MAX))?
            .next_back()
            .transpose()?
            .map_or(1, |(key, _)| key.value().1.saturating_add(1));
        let bytes = records::encode(HistoryRecord::TABLE, &HistoryRecord::current(h))?;
        table.insert((h.computer.0, next), bytes.as_slice())?;
        Ok(())
    }

    /// Inserts or replaces the alert with `a.id`, and keeps the active-alert index with it.
    pub fn put_alert(&mut self, a: &Alert) -> Result<(), StoreError> {
        let bytes = records::encode(AlertRecord::TABLE, &AlertRecord::current(a))?;
        self.txn
            .open_table(ALERTS)?
            .insert(a.id.0, bytes.as_slice())?;
        let key = (a.computer.0, a.kind.name());
        let mut index = self.txn.open_table(ACTIVE_ALERTS)?;
        if a.is_active() {
            index.insert(key, a.id.0.to_be_bytes().as_slice())?;
        } else {
            let indexed = index
                .get(key)?
                .map(|v| active_alert_id(a.computer, a.kind, v.value()))
                .transpose()?;
            // Another alert of the kind may be the active one (not by our writers, but the
            // index must not lose it if so).
            if indexed == Some(a.id) {
                index.remove(key)?;
            }
        }
        drop(index);
        self.keep_counter_above(meta_key::NEXT_ALERT_ID, a.id.0)
    }

    /// An alert id never given out before, starting at 1.
    /// A firewall rule id, unique across policies.
    pub fn next_rule_id(&mut self) -> Result<RuleId, StoreError> {
        self.take_next(meta_key::NEXT_RULE_ID).map(RuleId)
    }

    pub fn next_alert_id(&mut self) -> Result<AlertId, StoreError> {
        self.take_next(meta_key::NEXT_ALERT_ID).map(AlertId)
    }

    /// Inserts or replaces the token with `t.hash`.
    pub fn put_token(&mut self, t: &Token) -> Result<(), StoreError> {
        let bytes = records::encode(TokenRecord::TABLE, &TokenRecord::current(t))?;
        self.txn
            .open_table(TOKENS)?
            .insert(t.hash.0.as_slice(), bytes.as_slice())?;
        Ok(())
    }

    pub fn delete_token(&mut self, hash: &TokenHash) -> Result<bool, StoreError> {
        let mut table = self.txn.open_table(TOKENS)?;
        let existed = table.remove(hash.0.as_slice())?.is_some();
        Ok(existed)
    }

    /// A policy id never given out before, starting at 1.
    pub fn next_policy_id(&mut self) -> Result<PolicyId, StoreError> {
        self.take_next(meta_key::NEXT_POLICY_ID).map(PolicyId)
    }

    /// A computer id never given out before, starting at 1.
    pub fn next_computer_id(&mut self) -> Result<ComputerId, StoreError> {
        self.take_next(meta_key::NEXT_COMPUTER_ID).map(ComputerId)
    }

    /// Creates or replaces the user of this name (ignoring case).
    pub fn put_user(&mut self, user: &User) -> Result<(), StoreError> {
        let bytes = records::encode(UserRecord::TABLE, &UserRecord::current(user))?;
        self.txn
            .open_table(USERS)?
            .insert(user.name.to_lowercase().as_str(), bytes.as_slice())?;
        Ok(())
    }

    pub fn set_admin_key_hash(&mut self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.put_meta(meta_key::ADMIN_KEY_SHA256, hash)
    }

    /// Makes every change of this transaction durable (redb's `Durability::Immediate`: the
    /// file is synced before this returns).
    pub fn commit(self) -> Result<(), StoreError> {
        match self.txn.commit() {
            Ok(()) => {
                self.health.committed();
                Ok(())
            }
            Err(e) => Err(note(&self.health, e.into())),
        }
    }

    /// The counter's value, which is then advanced. An absent counter is at 1.
    fn take_next(&mut self, key: &'static str) -> Result<u64, StoreError> {
        let next = self.counter(key)?;
        // A counter at u64::MAX cannot have been reached by counting.
        let after = next.checked_add(1).ok_or_else(|| StoreError::Corrupt {
            table: "meta",
            key: key.to_string(),
        })?;
        self.put_meta(key, &after)?;
        Ok(next)
    }

    /// Moves the counter past `id`, so a record stored under an id the counter did not give out
    /// (the Base Policy's 1, say) is never overwritten by a later "new" record.
    fn keep_counter_above(&mut self, key: &'static str, id: u64) -> Result<(), StoreError> {
        if id >= self.counter(key)? {
            // At u64::MAX the counter stays there and take_next refuses to go on.
            self.put_meta(key, &id.saturating_add(1))?;
        }
        Ok(())
    }

    fn counter(&self, key: &'static str) -> Result<u64, StoreError> {
        let meta = self.txn.open_table(META)?;
        Ok(records::get_meta::<u64>(&meta, key)?.unwrap_or(1))
    }

    fn put_meta<T: serde::Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = records::encode("meta", value)?;
        self.txn.open_table(META)?.insert(key, bytes.as_slice())?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::records::tests::{sample_computer, sample_policy, sample_token};
    use super::*;
    use crate::model::BASE_POLICY_NAME;

    fn temp_store() -> (tempfile::TempDir, PathBuf, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("picket.redb");
        let store = Store::open(&path).unwrap();
        (dir, path, store)
    }

    fn base_policy() -> Policy {
        Policy {
            rules: Vec::new(),
            id: PolicyId(1),
            name: BASE_POLICY_NAME.to_string(),
            parent: None,
            settings: Default::default(),
        }
    }

    fn event_received(computer: u64, seq: u64, received: u64) -> StoredEvent {
        StoredEvent {
            computer: ComputerId(computer),
            seq,
            id: 1000,
            time: WallMs(seq),
            received: WallMs(received),
            fields: Vec::new(),
        }
    }

    fn keys(events: &[StoredEvent]) -> Vec<(u64, u64)> {
        events.iter().map(|e| (e.computer.0, e.seq)).collect()
    }

    #[test]
    fn retention_deletes_the_oldest_events_a_batch_at_a_time_and_keeps_the_rest() {
        let (_dir, _path, store) = temp_store();
        let mut w = store.write().unwrap();
        // Received out of key order: computer 2's events came first.
        for (computer, seq, received) in
            [(1, 1, 30), (1, 2, 40), (2, 1, 10), (2, 2, 20), (3, 1, 50)]
        {
            w.insert_event(&event_received(computer, seq, received))
                .unwrap();
        }
        let cutoff = WallMs(40);
        let deleted = |events, done| Deleted { events, done };
        assert_eq!(
            w.delete_events_received_before(cutoff, 2).unwrap(),
            deleted(2, false)
        );
        assert_eq!(
            keys(&w.events(None, 10).unwrap()),
            [(3, 1), (1, 2), (1, 1)],
            "the two oldest went first"
        );
        assert_eq!(
            w.delete_events_received_before(cutoff, 2).unwrap(),
            deleted(1, true)
        );
        assert_eq!(
            w.delete_events_received_before(cutoff, 2).unwrap(),
            deleted(0, true)
        );
        w.commit().unwrap();
        let r = store.read().unwrap();
        assert_eq!(keys(&r.events(None, 10).unwrap()), [(3, 1), (1, 2)]);
        assert_eq!(r.event_count().unwrap(), 2);
        assert_eq!(keys(&r.events(Some(ComputerId(1)), 10).unwrap()), [(1, 2)]);
        assert!(r.events(Some(ComputerId(2)), 10).unwrap().is_empty());
        assert_eq!(r.txn.open_table(EVENTS_BY_TIME).unwrap().len().unwrap(), 2);
    }

    #[test]
    fn an_agent_state_behind_a_deleted_event_is_brought_up_to_its_sequence() {
        let (_dir, _path, store) = temp_store();
        let mut w = store.write().unwrap();
        let state = |computer, last_seq| AgentState {
            computer: ComputerId(computer),
            last_seq,
            ..records::tests::sample_agent_state()
        };
        // Computer 1's session record was lost after its events 5 and 6 were stored; computer
        // 2's state already knows its event 3.
        w.put_agent_state(&state(1, 4)).unwrap();
        w.put_agent_state(&state(2, 7)).unwrap();
        for (computer, seq, received) in [(1, 5, 10), (1, 6, 11), (2, 3, 12), (1, 7, 90)] {
            w.insert_event(&event_received(computer, seq, received))
                .unwrap();
        }
        // An index entry whose event is gone goes without counting as a deleted event.
        w.txn.open_table(EVENTS).unwrap().remove((2, 3)).unwrap();
        let deleted = w.delete_events_received_before(WallMs(50), 10).unwrap();
        assert_eq!(
            deleted,
            Deleted {
                events: 2,
                done: true
            }
        );
        assert_eq!(w.agent_state(ComputerId(1)).unwrap().unwrap().last_seq, 6);
        assert_eq!(w.agent_state(ComputerId(2)).unwrap().unwrap().last_seq, 7);
        assert_eq!(keys(&w.events(None, 10).unwrap()), [(1, 7)]);
    }

    #[test]
    fn a_batch_is_one_index_entry_per_computer_and_time_and_is_deleted_whole() {
        let (_dir, _path, store) = temp_store();
        let mut w = store.write().unwrap();
        let batch: Vec<_> = (1..=300).map(|seq| event_received(1, seq, 10)).collect();
        assert_eq!(w.insert_events(&batch).unwrap(), 300);
        // The same millisecond again, with a resend: the run widens, nothing is stored twice.
        let more: Vec<_> = (300..=400).map(|seq| event_received(1, seq, 10)).collect();
        assert_eq!(w.insert_events(&more).unwrap(), 100);
        assert_eq!(w.insert_events(&[event_received(2, 1, 20)]).unwrap(), 1);
        assert_eq!(w.txn.open_table(EVENTS_BY_TIME).unwrap().len().unwrap(), 2);
        let newest = w.events(None, 3).unwrap();
        assert_eq!(keys(&newest), [(2, 1), (1, 400), (1, 399)]);

        // A limit smaller than a batch still deletes the whole batch: it is one entry.
        let deleted = w.delete_events_received_before(WallMs(15), 50).unwrap();
        assert_eq!(deleted.events, 400);
        assert_eq!(keys(&w.events(None, 10).unwrap()), [(2, 1)]);
        assert_eq!(w.event_count().unwrap(), 1);
    }

    #[test]
    fn the_newest_events_of_all_computers_come_in_the_order_they_were_received() {
        let (_dir, _path, store) = temp_store();
        let mut w = store.write().unwrap();
        for (computer, seq, received) in [(1, 1, 5), (2, 7, 3), (1, 2, 9), (3, 1, 9), (2, 8, 1)] {
            w.insert_event(&event_received(computer, seq, received))
                .unwrap();
        }
        // A resend is not stored again, so it is not listed twice either.
        assert!(!w.insert_event(&event_received(1, 2, 11)).unwrap());
        w.commit().unwrap();
        let r = store.read().unwrap();
        assert_eq!(keys(&r.events(None, 3).unwrap()), [(3, 1), (1, 2), (1, 1)]);
        assert_eq!(keys(&r.events(None, 99).unwrap()).len(), 5);
        assert!(r.events(None, 0).unwrap().is_empty());
    }

    #[test]
    fn a_schema_5_file_gains_the_index_of_its_events_by_time() {
        let (_dir, path, store) = temp_store();
        let mut w = store.write().unwrap();
        for (computer, seq, received) in [(4, 1, 20), (4, 2, 30), (9, 1, 10)] {
            w.insert_event(&event_received(computer, seq, received))
                .unwrap();
        }
        w.txn.delete_table(EVENTS_BY_TIME).unwrap();
        let store = migrated_from(store, &path, w, 5);
        let r = store.read().unwrap();
        assert_eq!(keys(&r.events(None, 10).unwrap()), [(4, 2), (4, 1), (9, 1)]);
        drop(r);
        let mut w = store.write().unwrap();
        let deleted = w.delete_events_received_before(WallMs(25), 10).unwrap();
        assert_eq!(deleted.events, 2);
        w.commit().unwrap();
        assert_eq!(
            keys(&store.read().unwrap().events(None, 10).unwrap()),
            [(4, 2)]
        );
    }

    #[test]
    fn the_newest_event_sequence_is_per_computer() {
        let (_dir, _path, store) = temp_store();
        let event = |computer, seq| StoredEvent {
            computer: ComputerId(computer),
            seq,
            id: 1000,
            time: crate::clock::WallMs(seq),
            received: crate::clock::WallMs(seq),
            fields: Vec::new(),
        };
        let mut w = store.write().unwrap();
        for (computer, seq) in [(1, 3), (1, 9), (1, 4), (2, 12), (3, u64::MAX)] {
            w.insert_event(&event(computer, seq)).unwrap();
        }
        w.commit().unwrap();
        let r = store.read().unwrap();
        assert_eq!(r.newest_event_seq(ComputerId(1)).unwrap(), Some(9));
        assert_eq!(r.newest_event_seq(ComputerId(2)).unwrap(), Some(12));
        assert_eq!(r.newest_event_seq(ComputerId(3)).unwrap(), Some(u64::MAX));
        assert_eq!(r.newest_event_seq(ComputerId(4)).unwrap(), None);
        assert_eq!(r.newest_event_seq(ComputerId(0)).unwrap(), None);
    }

    fn policy_count(r: &impl Reads) -> usize {
        r.policies().unwrap().len()
    }

    #[test]
    fn every_record_round_trips_through_a_commit_and_a_reopen() {
        let (_dir, path, store) = temp_store();
        let mut w = store.write().unwrap();
        // Put out of id order: the lists must come back in id order.
        w.put_policy(&sample_policy()).unwrap();
        w.put_policy(&base_policy()).unwrap();
        w.put_computer(&sample_computer()).unwrap();
        w.put_token(&sample_token()).unwrap();
        w.set_admin_key_hash(&[0x5a; 32]).unwrap();
        w.commit().unwrap();
        store.close().unwrap();

        let store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path);
        let r = store.read().unwrap();
        assert_eq!(r.policies().unwrap(), vec![base_policy(), sample_policy()]);
        assert_eq!(r.policy(PolicyId(2)).unwrap(), Some(sample_policy()));
        assert_eq!(r.policy(PolicyId(3)).unwrap(), None);
        assert_eq!(r.computers().unwrap(), vec![sample_computer()]);
        assert_eq!(r.computer(ComputerId(7)).unwrap(), Some(sample_computer()));
        assert_eq!(r.computer(ComputerId(1)).unwrap(), None);
        assert_eq!(r.token(&sample_token().hash).unwrap(), Some(sample_token()));
        assert_eq!(r.token(&TokenHash([0; 32])).unwrap(), None);
        assert_eq!(r.admin_key_hash().unwrap(), Some([0x5a; 32]));
        assert_eq!(r.schema_version().unwrap(), CURRENT_SCHEMA_VERSION);
    }

    #[test]
    fn a_fresh_store_is_empty_at_the_current_schema() {
        let (_dir, _path, store) = temp_store();
        let r = store.read().unwrap();
        assert_eq!(r.schema_version().unwrap(), CURRENT_SCHEMA_VERSION);
        assert!(r.policies().unwrap().is_empty());
        assert!(r.computers().unwrap().is_empty());
        assert!(r.tokens().unwrap().is_empty());
        assert_eq!(r.admin_key_hash().unwrap(), None);
    }

    #[test]
    fn ids_are_never_reused_after_a_delete_and_a_reopen() {
        let (_dir, path, store) = temp_store();
        let mut w = store.write().unwrap();
        assert_eq!(w.next_policy_id().unwrap(), PolicyId(1));
        assert_eq!(w.next_policy_id().unwrap(), PolicyId(2));
        assert_eq!(w.next_computer_id().unwrap(), ComputerId(1));
        w.put_computer(&Computer {
            id: ComputerId(1),
            ..sample_computer()
        })
        .unwrap();
        w.commit().unwrap();

        let mut w = store.write().unwrap();
        assert!(w.delete_computer(ComputerId(1)).unwrap());
        assert!(!w.delete_computer(ComputerId(1)).unwrap());
        assert!(!w.delete_policy(PolicyId(2)).unwrap());
        w.commit().unwrap();
        store.close().unwrap();

        let store = Store::open(&path).unwrap();
        let mut w = store.write().unwrap();
        assert_eq!(w.next_policy_id().unwrap(), PolicyId(3));
        assert_eq!(w.next_computer_id().unwrap(), ComputerId(2));
    }

    #[test]
    fn a_put_under_an_id_not_given_out_moves_the_counter_past_it() {
        let (_dir, _path, store) = temp_store();
        let mut w = store.write().unwrap();
        w.put_policy(&base_policy()).unwrap();
        w.put_computer(&sample_computer()).unwrap();
        assert_eq!(w.next_policy_id().unwrap(), PolicyId(2));
        assert_eq!(w.next_computer_id().unwrap(), ComputerId(8));
        // A put below the counter must not move it back.
        w.put_policy(&base_policy()).unwrap();
        assert_eq!(w.next_policy_id().unwrap(), PolicyId(3));
    }

    #[test]
    fn a_dropped_write_leaves_nothing_behind() {
        let (_dir, _path, store) = temp_store();
        {
            let mut w = store.write().unwrap();
            w.next_policy_id().unwrap();
            w.put_policy(&base_policy()).unwrap();
            w.put_computer(&sample_computer()).unwrap();
            w.put_token(&sample_token()).unwrap();
            w.set_admin_key_hash(&[1; 32]).unwrap();
            // A write sees its own changes before commit.
            assert_eq!(policy_count(&w), 1);
        }
        let r = store.read().unwrap();
        assert_eq!(policy_count(&r), 0);
        assert!(r.computers().unwrap().is_empty());
        assert_eq!(r.token(&sample_token().hash).unwrap(), None);
        assert_eq!(r.admin_key_hash().unwrap(), None);
        drop(r);
        let mut w = store.write().unwrap();
        assert_eq!(w.next_policy_id().unwrap(), PolicyId(1));
    }

    #[test]
    fn a_read_is_a_snapshot() {
        let (_dir, _path, store) = temp_store();
        let before = store.read().unwrap();
        let mut w = store.write().unwrap();
        w.put_policy(&base_policy()).unwrap();
        w.commit().unwrap();
        assert_eq!(policy_count(&before), 0);
        assert_eq!(policy_count(&store.read().unwrap()), 1);
    }

    #[test]
    fn tokens_are_listed_in_hash_order() {
        let (_dir, _path, store) = temp_store();
        let low = Token {
            hash: TokenHash([0x01; 32]),
            ..sample_token()
        };
        let mut w = store.write().unwrap();
        w.put_token(&sample_token()).unwrap();
        w.put_token(&low).unwrap();
        w.commit().unwrap();
        let r = store.read().unwrap();
        assert_eq!(r.tokens().unwrap(), vec![low, sample_token()]);
    }

    #[test]
    fn deleting_a_token_removes_it() {
        let (_dir, _path, store) = temp_store();
        let mut w = store.write().unwrap();
        w.put_token(&sample_token()).unwrap();
        assert!(w.delete_token(&sample_token().hash).unwrap());
        assert!(!w.delete_token(&sample_token().hash).unwrap());
        assert_eq!(w.token(&sample_token().hash).unwrap(), None);
    }

    #[test]
    fn a_corrupt_value_is_reported_with_its_table_and_key() {
        let (_dir, _path, store) = temp_store();
        let w = store.write().unwrap();
        w.txn
            .open_table(POLICIES)
            .unwrap()
            .insert(5, [0xff, 0xfe, 0x00].as_slice())
            .unwrap();
        w.commit().unwrap();

        let r = store.read().unwrap();
        let err = r.policy(PolicyId(5)).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { table: "policies", key } if key == "5"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the stored value for key 5 in table 'policies' is corrupt"
        );
        assert!(matches!(
            r.policies().unwrap_err(),
            StoreError::Corrupt {
                table: "policies",
                ..
            }
        ));
        // The other tables still read.
        assert!(r.computers().unwrap().is_empty());
    }

    /// Commits `w` as a binary of schema `from` would have left the file, closes it and opens
    /// it again, so the migrations since run; checks they got to the current schema.
    fn migrated_from(store: Store, path: &Path, w: WriteTxn, from: u32) -> Store {
        set_schema_version(&w, from);
        w.commit().unwrap();
        store.close().unwrap();
        let store = Store::open(path).unwrap();
        let version = store.read().unwrap().schema_version().unwrap();
        assert_eq!(version, CURRENT_SCHEMA_VERSION);
        store
    }

    /// Writes a schema version as another binary would have left it.
    fn set_schema_version(w: &WriteTxn, version: u32) {
        w.txn
            .open_table(META)
            .unwrap()
            .insert(
                meta_key::SCHEMA_VERSION,
                records::encode("meta", &version).unwrap().as_slice(),
            )
            .unwrap();
    }

    fn named(id: u64, hostname: &str) -> Computer {
        Computer {
            id: ComputerId(id),
            hostname: hostname.into(),
            ..sample_computer()
        }
    }

    fn holder(r: &impl Reads, hostname: &str) -> Option<u64> {
        r.computer_by_hostname(hostname).unwrap().map(|c| c.id.0)
    }

    #[test]
    fn computers_are_found_by_hostname_through_renames_and_deletes() {
        let (_dir, path, store) = temp_store();
        let mut w = store.write().unwrap();
        w.put_computer(&named(1, "Web-1")).unwrap();
        w.put_computer(&named(2, "db-1")).unwrap();
        // The writing transaction sees its own index entries.
        assert_eq!(holder(&w, "WEB-1"), Some(1));
        w.commit().unwrap();

        let r = store.read().unwrap();
        assert_eq!(holder(&r, "web-1"), Some(1));
        assert_eq!(holder(&r, "DB-1"), Some(2));
        assert_eq!(holder(&r, "web-"), None, "a prefix is not a match");
        assert_eq!(holder(&r, "web-10"), None);
        drop(r);

        let mut w = store.write().unwrap();
        // A status change keeps the name; a rename moves it.
        w.put_computer(&Computer {
            status: crate::model::Status::Offline,
            ..named(1, "Web-1")
        })
        .unwrap();
        w.put_computer(&named(2, "db-2")).unwrap();
        assert!(w.delete_computer(ComputerId(1)).unwrap());
        assert!(!w.delete_computer(ComputerId(1)).unwrap());
        w.put_computer(&named(3, "db-1")).unwrap();
        w.commit().unwrap();
        store.close().unwrap();

        let store = Store::open(&path).unwrap();
        let r = store.read().unwrap();
        assert_eq!(holder(&r, "web-1"), None);
        assert_eq!(holder(&r, "db-2"), Some(2));
        assert_eq!(holder(&r, "db-1"), Some(3), "the old name is free again");
        // Exactly one index entry per computer: nothing stale is left behind.
        assert_eq!(r.txn.open_table(HOSTNAMES).unwrap().len().unwrap(), 2);
    }

    #[test]
    fn a_schema_4_file_gains_the_indexes_of_its_computers_and_active_alerts() {
        let (_dir, path, store) = temp_store();
        let mut w = store.write().unwrap();
        w.put_computer(&named(4, "Mail")).unwrap();
        w.put_computer(&named(9, "files")).unwrap();
        w.put_alert(&alert(1, 4, AlertKind::ComputerOffline))
            .unwrap();
        w.put_alert(&Alert {
            cleared: Some(crate::clock::WallMs(2)),
            ..alert(2, 9, AlertKind::ComputerOffline)
        })
        .unwrap();
        w.txn.delete_table(HOSTNAMES).unwrap();
        w.txn.delete_table(ACTIVE_ALERTS).unwrap();
        let store = migrated_from(store, &path, w, 4);
        let r = store.read().unwrap();
        assert_eq!(holder(&r, "mail"), Some(4));
        assert_eq!(holder(&r, "FILES"), Some(9));
        assert_eq!(r.computers().unwrap().len(), 2);
        let offline = AlertKind::ComputerOffline;
        assert_eq!(
            r.active_alert(ComputerId(4), offline).unwrap(),
            Some(alert(1, 4, offline))
        );
        assert_eq!(r.active_alert(ComputerId(9), offline).unwrap(), None);
        assert_eq!(r.active_alert_count().unwrap(), 1);
    }

    fn alert(id: u64, computer: u64, kind: AlertKind) -> Alert {
        Alert {
            id: AlertId(id),
            kind,
            computer: ComputerId(computer),
            raised: crate::clock::WallMs(1),
            updated: crate::clock::WallMs(1),
            count: 1,
            message: "m".into(),
            cleared: None,
            dismissed: None,
        }
    }

    #[test]
    fn active_alerts_are_found_by_computer_and_kind_until_they_end() {
        let (_dir, path, store) = temp_store();
        let offline = AlertKind::ComputerOffline;
        let mut w = store.write().unwrap();
        w.put_alert(&alert(1, 7, offline)).unwrap();
        w.put_alert(&alert(2, 7, AlertKind::ClockChanged)).unwrap();
        w.put_alert(&alert(3, 8, offline)).unwrap();
        assert_eq!(
            w.active_alert(ComputerId(7), offline).unwrap(),
            Some(alert(1, 7, offline))
        );
        w.commit().unwrap();

        let mut w = store.write().unwrap();
        // Cleared and dismissed alerts are no longer active; a new one takes the place.
        let cleared = Alert {
            cleared: Some(crate::clock::WallMs(5)),
            ..alert(1, 7, offline)
        };
        w.put_alert(&cleared).unwrap();
        w.put_alert(&Alert {
            dismissed: Some(crate::clock::WallMs(5)),
            ..alert(3, 8, offline)
        })
        .unwrap();
        w.put_alert(&alert(4, 8, offline)).unwrap();
        // Re-putting an old, ended alert does not unindex the active one.
        w.put_alert(&Alert {
            dismissed: Some(crate::clock::WallMs(5)),
            ..alert(3, 8, offline)
        })
        .unwrap();
        w.commit().unwrap();
        store.close().unwrap();

        let store = Store::open(&path).unwrap();
        let r = store.read().unwrap();
        assert_eq!(r.active_alert(ComputerId(7), offline).unwrap(), None);
        assert_eq!(
            r.active_alerts_of(ComputerId(7)).unwrap(),
            vec![alert(2, 7, AlertKind::ClockChanged)]
        );
        assert_eq!(
            r.active_alert(ComputerId(8), offline).unwrap(),
            Some(alert(4, 8, offline))
        );
        assert_eq!(r.active_alert_count().unwrap(), 2);
        assert_eq!(r.alerts().unwrap().len(), 4, "ended alerts are kept");
    }

    #[test]
    fn a_stale_index_entry_never_names_the_wrong_computer() {
        let (_dir, _path, store) = temp_store();
        let mut w = store.write().unwrap();
        w.put_computer(&named(5, "old-name")).unwrap();
        // As if the record had been overwritten without its index entry being moved.
        w.txn
            .open_table(COMPUTERS)
            .unwrap()
            .insert(
                5,
                records::encode(
                    ComputerRecord::TABLE,
                    &ComputerRecord::current(&named(5, "new-name")),
                )
                .unwrap()
                .as_slice(),
            )
            .unwrap();
        assert_eq!(holder(&w, "old-name"), None);
    }

    #[test]
    fn a_schema_3_file_gains_the_users_table_and_keeps_its_records() {
        let (_dir, path, store) = temp_store();
        let mut w = store.write().unwrap();
        w.put_policy(&sample_policy()).unwrap();
        w.txn.delete_table(USERS).unwrap();
        let store = migrated_from(store, &path, w, 3);
        let r = store.read().unwrap();
        assert_eq!(r.policies().unwrap(), vec![sample_policy()]);
        assert_eq!(r.user("admin").unwrap(), None);
    }

    #[test]
    fn users_are_found_ignoring_case_and_replaced_by_name() {
        let (_dir, _path, store) = temp_store();
        let mut w = store.write().unwrap();
        w.put_user(&records::tests::sample_user()).unwrap();
        w.commit().unwrap();
        assert_eq!(
            store.read().unwrap().user("ADMIN").unwrap(),
            Some(records::tests::sample_user())
        );
        let changed = User {
            name: "Admin".into(),
            must_change_password: false,
            ..records::tests::sample_user()
        };
        let mut w = store.write().unwrap();
        w.put_user(&changed).unwrap();
        w.commit().unwrap();
        assert_eq!(store.read().unwrap().user("admin").unwrap(), Some(changed));
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let (_dir, path, store) = temp_store();
        let w = store.write().unwrap();
        set_schema_version(&w, CURRENT_SCHEMA_VERSION + 1);
        w.commit().unwrap();
        store.close().unwrap();

        for _ in 0..2 {
            let err = Store::open(&path).unwrap_err();
            assert!(
                matches!(err, StoreError::SchemaTooNew { found, supported }
                    if found == CURRENT_SCHEMA_VERSION + 1 && supported == CURRENT_SCHEMA_VERSION),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_file_of_garbage_is_damaged_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("picket.redb");
        // A fixed pseudo-random pattern, so a failure reproduces.
        let mut x: u32 = 0x1234_5678;
        let garbage: Vec<u8> = (0..65_536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(&path, &garbage).unwrap();

        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!(
            "{} is not a Picket store or is damaged",
            path.display()
        )));
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    #[test]
    fn another_programs_redb_file_is_damaged_and_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("picket.redb");
        let other: TableDefinition<u64, u64> = TableDefinition::new("other");
        let db = redb::Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(other).unwrap().insert(1, 2).unwrap();
        w.commit().unwrap();
        db.close().unwrap();

        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
        let db = redb::Database::open(&path).unwrap();
        let r = db.begin_read().unwrap();
        assert!(r.open_table(META).is_err(), "the open wrote a meta table");
    }

    #[test]
    fn a_flipped_byte_in_a_record_is_damaged_at_open() {
        let (_dir, path, store) = temp_store();
        let marker = "flip-me-".repeat(64);
        let mut w = store.write().unwrap();
        w.put_policy(&Policy {
            name: marker.clone(),
            ..sample_policy()
        })
        .unwrap();
        w.commit().unwrap();
        store.close().unwrap();

        let mut bytes = std::fs::read(&path).unwrap();
        let mut flipped = 0;
        let mut i = 0;
        while let Some(at) = find(&bytes[i..], marker.as_bytes()) {
            bytes[i + at] ^= 0x20;
            flipped += 1;
            i += at + marker.len();
        }
        assert!(flipped > 0, "the record is not in the file as plain bytes");
        std::fs::write(&path, &bytes).unwrap();

        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn a_second_open_in_the_same_process_is_locked() {
        let (_dir, path, store) = temp_store();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("is in use by another Picket manager: stop it first")
        );
        // Closing releases the lock.
        store.close().unwrap();
        Store::open(&path).unwrap();
    }

    #[test]
    fn closing_with_a_live_write_fails() {
        let (_dir, _path, store) = temp_store();
        let w = store.write().unwrap();
        assert!(store.close().is_err());
        drop(w);
    }

    #[test]
    fn handles_can_move_to_a_blocking_thread() {
        // The manager runs commits through smol::unblock, which needs Send + 'static.
        fn send_static<T: Send + 'static>() {}
        fn shared<T: Send + Sync>() {}
        send_static::<ReadTxn>();
        send_static::<WriteTxn>();
        shared::<Store>();
        shared::<StoreError>();
    }

    #[test]
    fn a_schema_without_a_migration_step_is_an_error() {
        let (_dir, _path, store) = temp_store();
        let txn = store.write().unwrap().txn;
        assert!(matches!(
            migrate(&txn, CURRENT_SCHEMA_VERSION),
            Err(StoreError::NoMigration { from }) if from == CURRENT_SCHEMA_VERSION
        ));
    }

    #[test]
    fn after_an_io_error_writes_are_refused_until_the_file_is_reopened_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(&dir.path().join("s.redb"), Reserve::Bytes(0)).unwrap();
        let token = |n: u8| Token {
            hash: TokenHash([n; 32]),
            ..sample_token()
        };
        let mut txn = store.write().unwrap();
        txn.put_token(&token(1)).unwrap();
        txn.commit().unwrap();

        store
            .health
            .io_failed("No space left on device (os error 28)".into());
        let refused = store.write().unwrap_err();
        assert!(
            matches!(&refused, StoreError::Unavailable(r) if r.contains("No space")),
            "{refused:?}"
        );
        assert!(refused.is_temporary());
        assert!(store.read().is_ok(), "reads go on");
        let at = crate::clock::Instant::from_millis;
        store.tend(at(0));
        assert!(store.write().is_err(), "the reopen waits its backoff");
        let reading = store.read().unwrap();
        store.tend(at(1_000));
        assert!(
            !store.health().writable,
            "not reopened under a live transaction"
        );
        assert!(reading.token(&TokenHash([1; 32])).unwrap().is_some());
        drop(reading);
        store.tend(at(1_000));
        assert!(store.health().writable, "reopened: writes may try");
        let mut txn = store.write().unwrap();
        txn.put_token(&token(2)).unwrap();
        txn.commit().unwrap();
        assert_eq!(store.health().reason, None, "a commit ends the episode");
        let txn = store.read().unwrap();
        assert!(txn.token(&TokenHash([1; 32])).unwrap().is_some(), "kept");
        assert!(txn.token(&TokenHash([2; 32])).unwrap().is_some());
    }
}
