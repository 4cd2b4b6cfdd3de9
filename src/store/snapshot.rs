//! A copy of the whole store as of one read transaction, written to a new file while the
//! manager goes on writing: the store part of a backup (`src/backup/`). Copying the live file
//! byte for byte could catch a commit halfway; a read transaction sees one commit, whole.
//!
//! Every table is copied by name from a list; a table the list lacks is refused rather than
//! left out, so a new table cannot silently be missing from every backup.

use super::event_feed::{EVENT_ARRIVALS, EVENT_CURSORS};
use super::notify::{CHANNELS, DELIVERIES, HELD, MAINTENANCE, OUTBOX, ROUTES};
use super::records::{
    ACTIVE_ALERTS, AGENTS, ALERTS, COMPUTERS, EVENTS, EVENTS_BY_TIME, HISTORY, HOSTNAMES, META,
    POLICIES, TOKENS, USERS,
};
use super::{Store, StoreError};
use redb::{Key, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use std::collections::BTreeSet;
use std::path::Path;

/// Free space kept beyond the store's size for a snapshot (and everything else on the disk).
const SNAPSHOT_HEADROOM: u64 = 64 << 20;

/// What a snapshot holds: the schema it is in, and the records of each table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub schema: u32,
    pub tables: Vec<(String, u64)>,
}

impl Snapshot {
    pub fn records(&self, table: &str) -> Option<u64> {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, n)| *n)
    }
}

fn copy<K: Key + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::WriteTransaction,
    def: TableDefinition<'static, K, &'static [u8]>,
    copied: &mut Vec<(String, u64)>,
) -> Result<(), StoreError> {
    let source = from.open_table(def)?;
    let mut target = to.open_table(def)?;
    for entry in source.iter()? {
        let (key, value) = entry?;
        target.insert(key.value(), value.value())?;
    }
    copied.push((def.name().to_string(), source.len()?));
    Ok(())
}

impl Store {
    /// Writes every table as of now into a new store file at `to` (which must not exist),
    /// mode 0600. The manager's writes go on meanwhile; they are not in the copy.
    pub fn snapshot(&self, to: &Path) -> Result<Snapshot, StoreError> {
        let io = |source| StoreError::Io {
            path: to.to_path_buf(),
            source,
        };
        if to.exists() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a snapshot is never written over a file",
            )));
        }
        // The copy is about the size of the store: refused up front rather than filling the
        // disk the store itself lives on (its reserve kept free too).
        let dir = to.parent().unwrap_or(Path::new("."));
        let needed = std::fs::metadata(&self.path)
            .map(|m| m.len())
            .unwrap_or(0)
            .saturating_add(SNAPSHOT_HEADROOM);
        match super::free_space(dir) {
            Ok(space) if space.free < needed => {
                return Err(StoreError::Unavailable(format!(
                    "no room for a snapshot: {} MiB free, {} MiB needed",
                    space.free >> 20,
                    needed >> 20
                )));
            }
            _ => {}
        }
        crate::files::create_private(to).map_err(io)?;
        let result = self.snapshot_into(to);
        if result.is_err() {
            let _ = std::fs::remove_file(to);
        }
        result
    }

    fn snapshot_into(&self, to: &Path) -> Result<Snapshot, StoreError> {
        let read = self.read()?;
        let from = &read.txn;
        let schema = {
            use super::Reads;
            read.schema_version()?
        };
        let out = redb::Database::create(to).map_err(|e| StoreError::from(e).at_open(to))?;
        let write = out.begin_write()?;
        let mut copied = Vec::new();
        macro_rules! copy_all {
            ($($table:expr),* $(,)?) => {
                $(copy(from, &write, $table, &mut copied)?;)*
            };
        }
        copy_all!(META, POLICIES, COMPUTERS, AGENTS, ALERTS, HISTORY, USERS);
        copy_all!(HELD, ROUTES, OUTBOX, MAINTENANCE, EVENT_ARRIVALS);
        copy_all!(EVENTS, EVENTS_BY_TIME, ACTIVE_ALERTS, HOSTNAMES, TOKENS);
        copy_all!(CHANNELS, DELIVERIES, EVENT_CURSORS);
        let names: BTreeSet<&str> = copied.iter().map(|(t, _)| t.as_str()).collect();
        for table in from.list_tables()? {
            if !names.contains(table.name()) {
                return Err(StoreError::NotInSnapshot(table.name().to_string()));
            }
        }
        write.commit()?;
        Ok(Snapshot {
            schema,
            tables: copied,
        })
    }
}

/// The schema of the store file at `path`, read without opening it as a [`Store`] (which
/// would migrate it): `picket check` and a backup of a stopped manager must not change the
/// file a manager of another version will open. `None` for a file with no schema yet.
pub fn schema_of(path: &Path) -> Result<Option<u32>, StoreError> {
    use redb::ReadableDatabase;
    let db = redb::Database::open(path).map_err(|e| StoreError::from(e).at_open(path))?;
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    super::records::get_meta::<u32>(&meta, super::records::meta_key::SCHEMA_VERSION)
}

impl Store {
    /// Decodes every record of the tables that hold records, as of one read transaction:
    /// what `picket check` runs after the integrity check of the open. Returns the counts.
    pub fn verify_records(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        use super::records::{EventRecord, HistoryRecord};
        use super::{EventFeedReads, NotifyReads, Reads};
        let txn = self.read()?;
        let mut counts = vec![
            ("policies", txn.policies()?.len() as u64),
            ("computers", txn.computers()?.len() as u64),
            ("agents", txn.agent_states()?.len() as u64),
            ("tokens", txn.tokens()?.len() as u64),
            ("alerts", txn.alerts()?.len() as u64),
            ("channels", txn.channels()?.len() as u64),
            ("routes", txn.routes()?.len() as u64),
            ("maintenance windows", txn.windows()?.len() as u64),
            (
                "queued notices",
                txn.notices_after(0, usize::MAX)?.len() as u64,
            ),
            ("held notices", txn.held_notices()?.len() as u64),
        ];
        for channel in txn.channels()? {
            txn.delivery(&channel.name)?;
            txn.event_cursor(&channel.name)?;
        }
        counts.push(("events", decode_all::<EventRecord>(&txn.txn, EVENTS)?));
        counts.push((
            "history entries",
            decode_all::<HistoryRecord>(&txn.txn, HISTORY)?,
        ));
        Ok(counts)
    }
}

/// Decodes every record of a table keyed by (computer, n) as `R`; how many there are. Read by
/// iteration, not loaded: the events table may hold millions.
fn decode_all<R: super::records::Record>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<'static, (u64, u64), &'static [u8]>,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for entry in txn.open_table(def)?.iter()? {
        let (key, value) = entry?;
        let (c, i) = key.value();
        super::records::decode::<R>(value.value(), R::TABLE, || format!("({c}, {i})"))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentState, Computer, ComputerId};
    use crate::store::Reads;
    use redb::ReadableDatabase;

    #[test]
    fn a_snapshot_holds_every_table_as_of_one_moment_and_opens_as_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut txn = store.write().unwrap();
        for id in 1..=3 {
            txn.put_computer(&Computer::test(id, &format!("c{id}")))
                .unwrap();
        }
        txn.put_agent_state(&AgentState {
            computer: ComputerId(1),
            ..AgentState::default()
        })
        .unwrap();
        txn.commit().unwrap();
        let copy = dir.path().join("copy.redb");
        let snapshot = store.snapshot(&copy).unwrap();
        assert_eq!(snapshot.schema, crate::store::CURRENT_SCHEMA_VERSION);
        assert_eq!(snapshot.records("computers"), Some(3));
        assert_eq!(snapshot.records("agents"), Some(1));
        // Every table of the store is in it: a fresh store has them all.
        let db = redb::Database::open(&copy).unwrap();
        let tables: BTreeSet<String> = db
            .begin_read()
            .unwrap()
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        let listed: BTreeSet<String> = snapshot.tables.iter().map(|(t, _)| t.clone()).collect();
        assert_eq!(tables, listed);
        drop(db);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&copy).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let copied = Store::open(&copy).unwrap();
        assert_eq!(copied.read().unwrap().computers().unwrap().len(), 3);
        // Never over a file.
        assert!(store.snapshot(&copy).is_err());
    }
}
