//! The agent's durable spool (`A/spool.redb`): events with their sequence numbers until the
//! manager acknowledges them, and the configuration the agent runs. An event leaves the spool
//! only after the manager said it is stored, so a crash of either side loses none.

use crate::clock::WallMs;
use crate::policy::{AgentConfig, Fingerprint};
use crate::proto::{AgentEvent, EventBatch, SpoolRange};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::fmt;
use std::path::Path;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";
const CONFIG: &str = "config";

#[derive(Debug)]
pub struct SpoolError(String);

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent spool: {}", self.0)
    }
}

impl std::error::Error for SpoolError {}

fn err(e: impl fmt::Display) -> SpoolError {
    SpoolError(e.to_string())
}

pub struct Spool {
    db: redb::Database,
}

impl Spool {
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        crate::files::create_private(path)
            .map_err(|e| SpoolError(format!("{}: {e}", path.display())))?;
        let db = redb::Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => SpoolError(format!(
                    "{} is in use by another agent: stop it first",
                    path.display()
                )),
                other => SpoolError(format!("{}: {other}", path.display())),
            })?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(EVENTS).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Spool { db })
    }

    /// Appends an event durably and returns its sequence number (from 1, never reused).
    pub fn append(
        &self,
        id: u32,
        time: WallMs,
        fields: Vec<(String, String)>,
    ) -> Result<u64, SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let seq = {
            let mut meta = txn.open_table(META).map_err(err)?;
            let seq = read_u64(&meta, NEXT_SEQ)?.unwrap_or(1);
            let next = postcard::to_allocvec(&(seq + 1)).map_err(err)?;
            meta.insert(NEXT_SEQ, next.as_slice()).map_err(err)?;
            let event = AgentEvent {
                seq,
                id,
                time,
                fields,
            };
            let bytes = postcard::to_allocvec(&event).map_err(err)?;
            txn.open_table(EVENTS)
                .map_err(err)?
                .insert(seq, bytes.as_slice())
                .map_err(err)?;
            seq
        };
        txn.commit().map_err(err)?;
        Ok(seq)
    }

    /// The sequences still in the spool (`first > last` when empty).
    pub fn range(&self) -> Result<SpoolRange, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(EVENTS).map_err(err)?;
        let first = table.first().map_err(err)?.map(|(k, _)| k.value());
        let last = table.last().map_err(err)?.map(|(k, _)| k.value());
        Ok(match (first, last) {
            (Some(first), Some(last)) => SpoolRange { first, last },
            _ => SpoolRange { first: 1, last: 0 },
        })
    }

    pub fn pending(&self) -> Result<u64, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        txn.open_table(EVENTS).map_err(err)?.len().map_err(err)
    }

    /// Up to `max` events after `after`, and whether more follow.
    pub fn read(&self, after: u64, max: u32) -> Result<EventBatch, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(EVENTS).map_err(err)?;
        let mut events = Vec::new();
        let mut more = false;
        for entry in table.range(after.saturating_add(1)..).map_err(err)? {
            let (key, value) = entry.map_err(err)?;
            if events.len() >= max as usize {
                more = true;
                break;
            }
            let event: AgentEvent = postcard::from_bytes(value.value())
                .map_err(|e| SpoolError(format!("event {} is corrupt: {e}", key.value())))?;
            events.push(event);
        }
        Ok(EventBatch { events, more })
    }

    /// Deletes every event through `seq`: the manager stored them durably.
    pub fn acknowledge(&self, seq: u64) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(EVENTS)
            .map_err(err)?
            .retain_in(..=seq, |_, _| false)
            .map_err(err)?;
        txn.commit().map_err(err)
    }

    /// The configuration the agent runs, if it was ever sent one.
    pub fn config(&self) -> Result<Option<(AgentConfig, Fingerprint)>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        let Some(bytes) = meta.get(CONFIG).map_err(err)? else {
            return Ok(None);
        };
        let config: AgentConfig = postcard::from_bytes(bytes.value())
            .map_err(|e| SpoolError(format!("the stored configuration is corrupt: {e}")))?;
        let fingerprint = config.fingerprint();
        Ok(Some((config, fingerprint)))
    }

    pub fn set_config(&self, config: &AgentConfig) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let bytes = postcard::to_allocvec(config).map_err(err)?;
        txn.open_table(META)
            .map_err(err)?
            .insert(CONFIG, bytes.as_slice())
            .map_err(err)?;
        txn.commit().map_err(err)
    }
}

fn read_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, SpoolError> {
    match table.get(key).map_err(err)? {
        None => Ok(None),
        Some(v) => postcard::from_bytes(v.value())
            .map(Some)
            .map_err(|e| SpoolError(format!("{key} is corrupt: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_survive_reopen_and_acknowledged_events_leave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        {
            let spool = Spool::open(&path).unwrap();
            for i in 0..5 {
                assert_eq!(spool.append(1000, WallMs(i), Vec::new()).unwrap(), i + 1);
            }
            spool.acknowledge(3).unwrap();
            assert_eq!(spool.range().unwrap(), SpoolRange { first: 4, last: 5 });
        }
        let spool = Spool::open(&path).unwrap();
        assert_eq!(
            spool.append(1000, WallMs(9), Vec::new()).unwrap(),
            6,
            "never reused"
        );
        let batch = spool.read(3, 2).unwrap();
        let seqs: Vec<u64> = batch.events.iter().map(|e| e.seq).collect();
        assert_eq!((seqs, batch.more), (vec![4, 5], true));
        spool.acknowledge(6).unwrap();
        assert_eq!(spool.pending().unwrap(), 0);
        assert_eq!(spool.range().unwrap(), SpoolRange { first: 1, last: 0 });
    }
}
