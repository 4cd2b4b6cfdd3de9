//! The agent's durable spool (`A/spool.redb`): events with their sequence numbers until the
//! manager acknowledges them, and the configuration the agent runs. An event leaves the spool
//! only after the manager said it is stored, so a crash of either side loses none.
//!
//! Values are postcard-encoded enums whose variant is the record's version, as in the manager's
//! store (`schema/agent.md`); a spool written before they were (schema 0) is migrated at open.

use crate::clock::WallMs;
use crate::policy::{AgentConfig, AgentConfigV1, Fingerprint};
use crate::proto::{AgentEvent, EventBatch, SpoolRange};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::fmt;
use std::path::Path;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";
const CONFIG: &str = "config";
const SCHEMA_VERSION: &str = "schema_version";

/// The spool schema this binary writes. Schema 0 held the same values without their version.
pub const SPOOL_SCHEMA_VERSION: u32 = 1;

/// An event as the spool stores it.
#[derive(serde::Serialize, serde::Deserialize)]
enum EventRecord {
    V1(AgentEvent),
}

/// The applied configuration as the spool stores it.
#[derive(serde::Serialize, serde::Deserialize)]
enum ConfigRecord {
    /// Protocol 1's configuration (`policy::AgentConfigV1`), read as the current one with the
    /// firewall off.
    V1(AgentConfigV1),
    /// Protocol 2: the firewall.
    V2(AgentConfig),
}

/// An event to append: its id, when it happened and its fields.
pub type NewEvent = (u32, WallMs, Vec<(String, String)>);

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
        bring_up_to_date(&txn, path)?;
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
        self.append_all(vec![(id, time, fields)])
    }

    /// Appends events durably in one transaction (one disk sync for all of them) and returns
    /// the last one's sequence number (the next one's less one when there are none).
    pub fn append_all(&self, events: Vec<NewEvent>) -> Result<u64, SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let last = {
            let mut meta = txn.open_table(META).map_err(err)?;
            let first = read_u64(&meta, NEXT_SEQ)?.unwrap_or(1);
            let mut table = txn.open_table(EVENTS).map_err(err)?;
            let mut seq = first;
            for (id, time, fields) in events {
                let event = AgentEvent {
                    seq,
                    id,
                    time,
                    fields,
                };
                let bytes = postcard::to_allocvec(&EventRecord::V1(event)).map_err(err)?;
                table.insert(seq, bytes.as_slice()).map_err(err)?;
                seq += 1;
            }
            let next = postcard::to_allocvec(&seq).map_err(err)?;
            meta.insert(NEXT_SEQ, next.as_slice()).map_err(err)?;
            seq - 1
        };
        txn.commit().map_err(err)?;
        Ok(last)
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
            let EventRecord::V1(event) = postcard::from_bytes(value.value())
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
        let record = postcard::from_bytes(bytes.value())
            .map_err(|e| SpoolError(format!("the stored configuration is corrupt: {e}")))?;
        let config = match record {
            ConfigRecord::V1(old) => AgentConfig::from(old),
            ConfigRecord::V2(config) => config,
        };
        let fingerprint = config.fingerprint();
        Ok(Some((config, fingerprint)))
    }

    pub fn set_config(&self, config: &AgentConfig) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let bytes = postcard::to_allocvec(&ConfigRecord::V2(config.clone())).map_err(err)?;
        txn.open_table(META)
            .map_err(err)?
            .insert(CONFIG, bytes.as_slice())
            .map_err(err)?;
        txn.commit().map_err(err)
    }
}

/// Brings the spool to [`SPOOL_SCHEMA_VERSION`] inside the open transaction. Schema 0 (no
/// version stored) held each event and the configuration without a version: postcard writes an
/// enum's variant as a varint before its fields, so a V1 record is the old bytes after a 0.
fn bring_up_to_date(txn: &redb::WriteTransaction, path: &Path) -> Result<(), SpoolError> {
    let mut meta = txn.open_table(META).map_err(err)?;
    let version = match meta.get(SCHEMA_VERSION).map_err(err)? {
        None => 0,
        Some(v) => postcard::from_bytes::<u32>(v.value())
            .map_err(|e| SpoolError(format!("schema_version is corrupt: {e}")))?,
    };
    if version > SPOOL_SCHEMA_VERSION {
        return Err(SpoolError(format!(
            "{} was written by a newer Picket agent (spool schema {version}, this one reads \
             {SPOOL_SCHEMA_VERSION}): run the newer agent",
            path.display()
        )));
    }
    if version == 0 {
        let mut events = txn.open_table(EVENTS).map_err(err)?;
        let old: Vec<(u64, Vec<u8>)> = events
            .iter()
            .map_err(err)?
            .map(|entry| entry.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        for (seq, bytes) in old {
            events
                .insert(seq, versioned(&bytes).as_slice())
                .map_err(err)?;
        }
        let config = meta.get(CONFIG).map_err(err)?.map(|v| v.value().to_vec());
        if let Some(bytes) = config {
            meta.insert(CONFIG, versioned(&bytes).as_slice())
                .map_err(err)?;
        }
    }
    if version != SPOOL_SCHEMA_VERSION {
        let bytes = postcard::to_allocvec(&SPOOL_SCHEMA_VERSION).map_err(err)?;
        meta.insert(SCHEMA_VERSION, bytes.as_slice()).map_err(err)?;
    }
    Ok(())
}

/// A schema 0 value as its V1 record.
fn versioned(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.push(0);
    v.extend_from_slice(bytes);
    v
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
        // Several in one transaction take the next sequences in order.
        let several = vec![
            (2001, WallMs(10), Vec::new()),
            (2001, WallMs(11), Vec::new()),
        ];
        assert_eq!(spool.append_all(several).unwrap(), 8);
        assert_eq!(spool.append_all(Vec::new()).unwrap(), 8, "nothing added");
        let batch = spool.read(6, 10).unwrap();
        let seqs: Vec<u64> = batch.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [7, 8]);
        assert_eq!(spool.append(1000, WallMs(12), Vec::new()).unwrap(), 9);
    }

    /// A spool written before its records carried a version (schema 0) is read as it was.
    #[test]
    fn a_schema_0_spool_is_migrated_with_its_events_and_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        let event = AgentEvent {
            seq: 7,
            id: 1000,
            time: WallMs(5),
            fields: vec![("version".into(), "0.1".into())],
        };
        // Schema 0 predates protocol 2: its configuration has the first shape.
        let sample = crate::proto::samples::config();
        let old: AgentConfigV1 = sample.v1();
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let old_event = postcard::to_allocvec(&event).unwrap();
            txn.open_table(EVENTS)
                .unwrap()
                .insert(7, old_event.as_slice())
                .unwrap();
            let mut meta = txn.open_table(META).unwrap();
            let old_config = postcard::to_allocvec(&old).unwrap();
            meta.insert(CONFIG, old_config.as_slice()).unwrap();
            let next = postcard::to_allocvec(&8u64).unwrap();
            meta.insert(NEXT_SEQ, next.as_slice()).unwrap();
            drop(meta);
            txn.commit().unwrap();
        }
        let spool = Spool::open(&path).unwrap();
        assert_eq!(spool.read(0, 10).unwrap().events, vec![event]);
        let read = spool.config().unwrap().unwrap().0;
        assert_eq!(read, AgentConfig::from(old.clone()));
        assert!(!read.firewall_enabled && read.firewall_rules.is_empty());
        assert_eq!(read.listener_rules, sample.listener_rules);
        spool.set_config(&sample).unwrap();
        assert_eq!(spool.config().unwrap().unwrap().0, sample, "written as V2");
        assert_eq!(spool.append(1001, WallMs(6), Vec::new()).unwrap(), 8);
        drop(spool);
        let again = Spool::open(&path).unwrap();
        assert_eq!(again.read(0, 10).unwrap().events.len(), 2, "migrated once");
    }
}
