//! The agent events syslog channels forward (schema 8): the order the manager stored events in
//! (`event_arrivals`) and each forwarding channel's cursor over it (`event_cursors`); their
//! reads ([`EventFeedReads`]) and writes.
//!
//! Arrivals are noted only while some channel forwards events, with the events themselves (in
//! [`WriteTxn::insert_events`]), and trimmed once every cursor is past them. The events stay
//! where they are: retention deletes them as it always did, and a channel that reaches an
//! arrival whose events are gone counts them dropped.

use super::records::{self, EVENTS, EventRecord, META, Record};
use super::{ReadTxn, StoreError, WriteTxn, reads::sealed};
use crate::notify::feed::{Arrived, Cursor, Position};
use crate::notify::{Channel, Target};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// Keyed by arrival sequence (from 1, in the order events were stored): one run of a
/// computer's events stored together, 24 bytes big-endian: the computer, the first and the last
/// sequence; every sequence in between was stored then.
pub(super) const EVENT_ARRIVALS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("event_arrivals");
/// Keyed by the channel's name in lowercase, for each channel that forwards agent events.
pub(super) const EVENT_CURSORS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("event_cursors");
/// The `meta` key of the next arrival sequence (a `u64`; absent means 1).
pub(super) const NEXT_EVENT_ARRIVAL: &str = "next_event_arrival";

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum EventCursorRecord {
    V1(Cursor),
}

impl Record for EventCursorRecord {
    type Model = Cursor;
    const TABLE: &'static str = "event_cursors";

    fn current(model: &Cursor) -> Self {
        EventCursorRecord::V1(model.clone())
    }

    fn into_model(self) -> Cursor {
        match self {
            EventCursorRecord::V1(c) => c,
        }
    }
}

/// The migration step from schema 7: the tables, empty.
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(EVENT_ARRIVALS)?;
    txn.open_table(EVENT_CURSORS)?;
    Ok(())
}

/// A run of one computer's events, as `event_arrivals` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    computer: u64,
    first: u64,
    last: u64,
}

impl Run {
    fn encode(self) -> [u8; 24] {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.computer.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.first.to_be_bytes());
        bytes[16..].copy_from_slice(&self.last.to_be_bytes());
        bytes
    }

    fn decode(arrival: u64, bytes: &[u8]) -> Result<Run, StoreError> {
        let corrupt = || StoreError::Corrupt {
            table: "event_arrivals",
            key: arrival.to_string(),
        };
        let bytes: &[u8; 24] = bytes.try_into().map_err(|_| corrupt())?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..(i + 1) * 8]);
            u64::from_be_bytes(w)
        };
        let run = Run {
            computer: word(0),
            first: word(1),
            last: word(2),
        };
        if run.first > run.last {
            return Err(corrupt());
        }
        Ok(run)
    }
}

/// The runs of consecutive sequences in `keys` (computer, sequence), in their order.
fn runs(keys: &[(u64, u64)]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for &(computer, seq) in keys {
        match out.last_mut() {
            Some(run) if run.computer == computer && run.last.checked_add(1) == Some(seq) => {
                run.last = seq;
            }
            _ => out.push(Run {
                computer,
                first: seq,
                last: seq,
            }),
        }
    }
    out
}

/// The first sequence of arrival `arrival`'s run that comes after `after`, if any does.
fn first_after(arrival: u64, run: Run, after: Position) -> Option<u64> {
    let from = if arrival == after.arrival {
        after.seq.checked_add(1)?.max(run.first)
    } else {
        run.first
    };
    (from <= run.last).then_some(from)
}

/// The reads of both kinds of transaction.
pub trait EventFeedReads: sealed::Tables {
    fn event_cursor(&self, channel: &str) -> Result<Option<Cursor>, StoreError> {
        let key = channel.to_lowercase();
        records::get::<&str, EventCursorRecord>(&self.table(EVENT_CURSORS)?, key.as_str(), || {
            key.clone()
        })
    }

    /// Whether any channel forwards agent events (redb keeps the count: no scan).
    fn forwards_events(&self) -> Result<bool, StoreError> {
        Ok(!self.table(EVENT_CURSORS)?.is_empty()?)
    }

    /// The sequence of the newest arrival noted (0 before the first).
    fn last_event_arrival(&self) -> Result<u64, StoreError> {
        let meta = self.table(META)?;
        Ok(records::get_meta::<u64>(&meta, NEXT_EVENT_ARRIVAL)?
            .unwrap_or(1)
            .saturating_sub(1))
    }

    /// What arrived after `after`, in order: up to `limit` items, from at most `limit`
    /// arrivals. Events no longer stored come as [`Arrived::Gone`], a gap at a time; so do the
    /// few that no longer decode (logged), since a channel must not stop at one for ever.
    fn events_after(&self, after: Position, limit: usize) -> Result<Vec<Arrived>, StoreError> {
        let events = self.table(EVENTS)?;
        let mut out = Vec::new();
        for entry in self
            .table(EVENT_ARRIVALS)?
            .range(after.arrival..)?
            .take(limit)
        {
            let (key, value) = entry?;
            let arrival = key.value();
            let run = match Run::decode(arrival, value.value()) {
                Ok(run) => run,
                Err(e) => {
                    log::warn!("{e}: its events cannot be forwarded");
                    out.push(Arrived::Gone {
                        through: Position::end_of(arrival),
                        count: 0,
                    });
                    continue;
                }
            };
            let Some(from) = first_after(arrival, run, after) else {
                continue;
            };
            let gone = |first: u64, last: u64| Arrived::Gone {
                through: Position { arrival, seq: last },
                count: last - first + 1,
            };
            let mut expected = from;
            for stored in events.range((run.computer, from)..=(run.computer, run.last))? {
                let (key, value) = stored?;
                let (computer, seq) = key.value();
                if seq > expected {
                    out.push(gone(expected, seq - 1));
                }
                let at = Position { arrival, seq };
                let key = || format!("({computer}, {seq})");
                match records::decode::<EventRecord>(value.value(), EventRecord::TABLE, key) {
                    Ok(event) => out.push(Arrived::Event(at, event.into_model())),
                    Err(e) => {
                        log::warn!("{e}: it cannot be forwarded");
                        out.push(Arrived::Gone {
                            through: at,
                            count: 1,
                        });
                    }
                }
                if out.len() >= limit {
                    return Ok(out);
                }
                expected = seq.saturating_add(1);
            }
            if expected <= run.last {
                out.push(gone(expected, run.last));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// How many events (stored or since deleted) arrived after `after`, counted from the
    /// arrivals' runs without reading the events.
    fn events_pending(&self, after: Position) -> Result<u64, StoreError> {
        let mut pending = 0u64;
        for entry in self.table(EVENT_ARRIVALS)?.range(after.arrival..)? {
            let (key, value) = entry?;
            let arrival = key.value();
            let Ok(run) = Run::decode(arrival, value.value()) else {
                continue;
            };
            let Some(from) = first_after(arrival, run, after) else {
                continue;
            };
            pending = pending.saturating_add(run.last - from + 1);
        }
        Ok(pending)
    }
}

impl EventFeedReads for ReadTxn {}
impl EventFeedReads for WriteTxn {}

impl WriteTxn {
    /// Notes the arrival of newly stored events, `(computer, sequence)` in the order they were
    /// stored: a run of consecutive sequences is one arrival. Nothing while no channel forwards
    /// events, so a site without one pays nothing for them.
    pub(super) fn note_arrivals(&mut self, stored: &[(u64, u64)]) -> Result<(), StoreError> {
        if stored.is_empty() || !self.forwards_events()? {
            return Ok(());
        }
        for run in runs(stored) {
            let arrival = self.take_next(NEXT_EVENT_ARRIVAL)?;
            self.txn
                .open_table(EVENT_ARRIVALS)?
                .insert(arrival, run.encode().as_slice())?;
        }
        Ok(())
    }

    /// Gives `channel` a cursor at the newest arrival if it forwards events and has none (it
    /// is not sent what was stored before), or takes its cursor away if it forwards none.
    pub(super) fn sync_event_cursor(&mut self, channel: &Channel) -> Result<(), StoreError> {
        let forwards = matches!(&channel.target, Target::Syslog(s) if !s.events.is_empty());
        if !forwards {
            return self.forget_event_cursor(&channel.name);
        }
        if self.event_cursor(&channel.name)?.is_none() {
            let start = Cursor::at(Position::end_of(self.last_event_arrival()?));
            self.put_event_cursor(&channel.name, &start)?;
        }
        Ok(())
    }

    /// Deletes the channel's cursor, if any, and the arrivals nobody needs any more.
    pub(super) fn forget_event_cursor(&mut self, channel: &str) -> Result<(), StoreError> {
        let key = channel.to_lowercase();
        self.txn.open_table(EVENT_CURSORS)?.remove(key.as_str())?;
        self.trim_event_arrivals()?;
        Ok(())
    }

    pub fn put_event_cursor(&mut self, channel: &str, cursor: &Cursor) -> Result<(), StoreError> {
        let key = channel.to_lowercase();
        let bytes = records::encode(
            EventCursorRecord::TABLE,
            &EventCursorRecord::current(cursor),
        )?;
        self.txn
            .open_table(EVENT_CURSORS)?
            .insert(key.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// Deletes the arrivals every cursor is past (all of them when no channel forwards events);
    /// how many.
    pub fn trim_event_arrivals(&mut self) -> Result<u64, StoreError> {
        let mut slowest: Option<Position> = None;
        for entry in self.txn.open_table(EVENT_CURSORS)?.iter()? {
            let (key, value) = entry?;
            let cursor = records::decode::<EventCursorRecord>(
                value.value(),
                EventCursorRecord::TABLE,
                || key.value().to_string(),
            )?
            .into_model();
            slowest = Some(slowest.map_or(cursor.done_through, |s| s.min(cursor.done_through)));
        }
        let slowest = slowest.unwrap_or(Position::end_of(u64::MAX));
        let mut arrivals = self.txn.open_table(EVENT_ARRIVALS)?;
        let mut trimmed = 0;
        loop {
            let first = arrivals
                .first()?
                .map(|(key, value)| (key.value(), Run::decode(key.value(), value.value())));
            let Some((arrival, run)) = first else { break };
            // A run that does not decode is no use to anyone: it goes with the rest.
            let last = run.map_or(u64::MAX, |r| r.last);
            if (Position { arrival, seq: last }) > slowest {
                break;
            }
            arrivals.remove(arrival)?;
            trimmed += 1;
        }
        Ok(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_where_a_sequence_or_the_computer_changes() {
        let run = |computer, first, last| Run {
            computer,
            first,
            last,
        };
        assert_eq!(
            runs(&[(7, 1), (7, 2), (7, 3), (7, 5), (8, 6), (7, 6)]),
            [run(7, 1, 3), run(7, 5, 5), run(8, 6, 6), run(7, 6, 6)]
        );
        assert_eq!(runs(&[(1, u64::MAX), (1, 0)]).len(), 2);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn a_run_round_trips_and_a_bad_one_is_corrupt() {
        let run = Run {
            computer: 7,
            first: 3,
            last: 9,
        };
        assert_eq!(Run::decode(1, &run.encode()).unwrap(), run);
        assert!(Run::decode(1, &run.encode()[..23]).is_err());
        let backwards = Run {
            computer: 7,
            first: 9,
            last: 3,
        };
        assert!(matches!(
            Run::decode(4, &backwards.encode()),
            Err(StoreError::Corrupt { table: "event_arrivals", ref key }) if key == "4"
        ));
    }
}
