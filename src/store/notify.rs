//! The notification tables (schema 7): channels, routes, the outbox of notices, each channel's
//! delivery progress, maintenance windows, and (schema 8) the notices held for the incident
//! detector; their records, reads ([`NotifyReads`]) and
//! writes.
//!
//! The outbox is a log: a notice is appended in the transaction that changes its alert, each
//! channel keeps how far it has got (`deliveries`), and what every channel is done with is
//! trimmed. It is bounded: at [`OUTBOX_LIMIT`] notices the oldest is dropped and counted, so a
//! channel dead for weeks cannot fill the disk.

use super::records::{self, Record, meta_key};
use super::{ReadTxn, StoreError, WriteTxn, reads::sealed};
use crate::clock::WallMs;
use crate::model::ComputerId;
use crate::notify::{Channel, Delivery, Notice, Route, Window};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// The most notices the outbox holds; at about 300 bytes each, some 30 MB.
pub const OUTBOX_LIMIT: u64 = 100_000;

/// Keyed by the channel's name in lowercase (names are unique ignoring case).
pub(super) const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");
/// Keyed by route id.
pub(super) const ROUTES: TableDefinition<u64, &[u8]> = TableDefinition::new("routes");
/// Keyed by the notice's sequence, from 1, in the order the alerts changed.
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Keyed by the channel's name in lowercase: how far it has got through the outbox.
pub(super) const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");
/// Keyed by window id.
pub(super) const MAINTENANCE: TableDefinition<u64, &[u8]> = TableDefinition::new("maintenance");
/// Keyed by computer id: offline notices held back while the incident detector waits to see
/// whether they are part of a site incident (schema 8). At most one per computer (its active
/// offline alert's raise), so bounded by the computers.
pub(super) const HELD: TableDefinition<u64, &[u8]> = TableDefinition::new("held_notices");

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ChannelRecord {
    V1(super::notify_v1::ChannelV1),
    /// Schema 8: a syslog channel's forwarded agent events (read and write in `notify_v1.rs`).
    V2(Channel),
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum RouteRecord {
    V1(Route),
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum NoticeRecord {
    V1(Notice),
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum DeliveryRecord {
    V1(Delivery),
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum WindowRecord {
    V1(Window),
}

macro_rules! v1_record {
    ($record:ident, $model:ty, $table:literal) => {
        impl Record for $record {
            type Model = $model;
            const TABLE: &'static str = $table;

            fn current(model: &$model) -> Self {
                $record::V1(model.clone())
            }

            fn into_model(self) -> $model {
                match self {
                    $record::V1(m) => m,
                }
            }
        }
    };
}

v1_record!(RouteRecord, Route, "routes");
v1_record!(NoticeRecord, Notice, "outbox");
v1_record!(DeliveryRecord, Delivery, "deliveries");
v1_record!(WindowRecord, Window, "maintenance");

/// The migration step from schema 6: the tables, empty.
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CHANNELS)?;
    txn.open_table(ROUTES)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(MAINTENANCE)?;
    Ok(())
}

/// The migration step from schema 7: the held notices, none.
pub(super) fn create_held_table(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(HELD)?;
    Ok(())
}

/// The notification reads of both kinds of transaction.
pub trait NotifyReads: sealed::Tables {
    /// Every channel, by name ignoring case.
    fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        all_by_name::<ChannelRecord>(&self.table(CHANNELS)?)
    }

    fn channel(&self, name: &str) -> Result<Option<Channel>, StoreError> {
        let key = name.to_lowercase();
        records::get::<&str, ChannelRecord>(&self.table(CHANNELS)?, key.as_str(), || key.clone())
    }

    /// Whether any channel exists (redb keeps the count: no scan): without one, nothing is
    /// queued.
    fn has_channels(&self) -> Result<bool, StoreError> {
        Ok(!self.table(CHANNELS)?.is_empty()?)
    }

    /// Every route, in id order.
    fn routes(&self) -> Result<Vec<Route>, StoreError> {
        records::all_by_id::<RouteRecord>(&self.table(ROUTES)?)
    }

    /// Up to `limit` notices after sequence `after`, in order.
    fn notices_after(&self, after: u64, limit: usize) -> Result<Vec<Notice>, StoreError> {
        let table = self.table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in table.range(after.saturating_add(1)..)?.take(limit) {
            let (key, value) = entry?;
            let seq = key.value();
            let notice =
                records::decode::<NoticeRecord>(value.value(), NoticeRecord::TABLE, || {
                    seq.to_string()
                })?;
            out.push(notice.into_model());
        }
        Ok(out)
    }

    /// How many notices wait in the outbox, for some channel or other.
    fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self.table(OUTBOX)?.len()?)
    }

    /// The sequence of the newest notice ever queued (0 before the first).
    fn last_notice_seq(&self) -> Result<u64, StoreError> {
        let meta = self.table(super::records::META)?;
        Ok(records::get_meta::<u64>(&meta, meta_key::NEXT_NOTICE_SEQ)?
            .unwrap_or(1)
            .saturating_sub(1))
    }

    /// How many notices the full outbox has dropped, ever.
    fn notices_dropped(&self) -> Result<u64, StoreError> {
        let meta = self.table(super::records::META)?;
        Ok(records::get_meta::<u64>(&meta, meta_key::NOTICES_DROPPED)?.unwrap_or(0))
    }

    fn delivery(&self, channel: &str) -> Result<Option<Delivery>, StoreError> {
        let key = channel.to_lowercase();
        records::get::<&str, DeliveryRecord>(&self.table(DELIVERIES)?, key.as_str(), || key.clone())
    }

    /// The offline notices held back for the incident detector, in computer order.
    fn held_notices(&self) -> Result<Vec<Notice>, StoreError> {
        let mut out = Vec::new();
        for entry in self.table(HELD)?.iter()? {
            let (key, value) = entry?;
            let computer = key.value();
            let notice = records::decode::<NoticeRecord>(value.value(), "held_notices", || {
                computer.to_string()
            })?;
            out.push(notice.into_model());
        }
        Ok(out)
    }

    /// Up to when ended maintenance windows have been dealt with (`None`: never yet).
    fn windows_done_through(&self) -> Result<Option<WallMs>, StoreError> {
        let meta = self.table(super::records::META)?;
        Ok(records::get_meta::<u64>(&meta, meta_key::WINDOWS_DONE_THROUGH)?.map(WallMs))
    }

    /// Every maintenance window, in id order (ended ones too, until deleted).
    fn windows(&self) -> Result<Vec<Window>, StoreError> {
        records::all_by_id::<WindowRecord>(&self.table(MAINTENANCE)?)
    }
}

impl NotifyReads for ReadTxn {}
impl NotifyReads for WriteTxn {}

fn all_by_name<R: Record>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<R::Model>, StoreError> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        let record: R = records::decode(value.value(), R::TABLE, || key.value().to_string())?;
        out.push(record.into_model());
    }
    Ok(out)
}

impl WriteTxn {
    /// Creates or replaces the channel of this name (ignoring case). A new channel starts after
    /// the newest notice: it is not sent what happened before it existed.
    pub fn put_channel(&mut self, channel: &Channel) -> Result<(), StoreError> {
        let key = channel.name.to_lowercase();
        if self.delivery(&key)?.is_none() {
            let start = Delivery {
                done_through: self.last_notice_seq()?,
                ..Delivery::default()
            };
            self.put_delivery(&key, &start)?;
        }
        self.sync_event_cursor(channel)?;
        let bytes = records::encode(ChannelRecord::TABLE, &ChannelRecord::current(channel))?;
        self.txn
            .open_table(CHANNELS)?
            .insert(key.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// Deletes the channel, its routes and its progress; whether it existed.
    pub fn delete_channel(&mut self, name: &str) -> Result<bool, StoreError> {
        let key = name.to_lowercase();
        let existed = self
            .txn
            .open_table(CHANNELS)?
            .remove(key.as_str())?
            .is_some();
        self.txn.open_table(DELIVERIES)?.remove(key.as_str())?;
        self.forget_event_cursor(&key)?;
        for route in self.routes()? {
            if route.channel.eq_ignore_ascii_case(name) {
                self.txn.open_table(ROUTES)?.remove(route.id)?;
            }
        }
        self.trim_outbox()?;
        Ok(existed)
    }

    pub fn put_route(&mut self, route: &Route) -> Result<(), StoreError> {
        let bytes = records::encode(RouteRecord::TABLE, &RouteRecord::current(route))?;
        self.txn
            .open_table(ROUTES)?
            .insert(route.id, bytes.as_slice())?;
        Ok(())
    }

    pub fn delete_route(&mut self, id: u64) -> Result<bool, StoreError> {
        Ok(self.txn.open_table(ROUTES)?.remove(id)?.is_some())
    }

    pub fn next_route_id(&mut self) -> Result<u64, StoreError> {
        self.take_next(meta_key::NEXT_ROUTE_ID)
    }

    /// Appends `notice` to the outbox under the next sequence (which it returns), dropping the
    /// oldest notice if the outbox is full. Nothing is queued while no channel exists.
    pub fn enqueue_notice(&mut self, notice: Notice) -> Result<Option<u64>, StoreError> {
        self.enqueue_within(notice, OUTBOX_LIMIT)
    }

    pub(super) fn enqueue_within(
        &mut self,
        mut notice: Notice,
        limit: u64,
    ) -> Result<Option<u64>, StoreError> {
        if !self.has_channels()? {
            return Ok(None);
        }
        notice.seq = self.take_next(meta_key::NEXT_NOTICE_SEQ)?;
        let mut outbox = self.txn.open_table(OUTBOX)?;
        if outbox.len()? >= limit {
            let oldest = outbox.pop_first()?.map(|(key, _)| key.value());
            drop(outbox);
            let dropped = self.notices_dropped()?.saturating_add(1);
            self.put_meta(meta_key::NOTICES_DROPPED, &dropped)?;
            // Once per power of two: a full outbox drops a notice per alert, and the log must
            // not drown in them.
            if let Some(seq) = oldest.filter(|_| dropped.is_power_of_two()) {
                log::warn!(
                    "notifications: the outbox holds {limit} notices: notice {seq} was \
                     dropped undelivered ({dropped} so far); a channel is failing for long"
                );
            }
            outbox = self.txn.open_table(OUTBOX)?;
        }
        let bytes = records::encode(NoticeRecord::TABLE, &NoticeRecord::current(&notice))?;
        outbox.insert(notice.seq, bytes.as_slice())?;
        Ok(Some(notice.seq))
    }

    /// Holds `notice` (an offline raise) back instead of queueing it; it replaces any other
    /// held for the same computer.
    pub fn hold_notice(&mut self, notice: &Notice) -> Result<(), StoreError> {
        let bytes = records::encode(NoticeRecord::TABLE, &NoticeRecord::current(notice))?;
        self.txn
            .open_table(HELD)?
            .insert(notice.alert.computer.0, bytes.as_slice())?;
        Ok(())
    }

    /// Takes the notice held for `computer` out of the held table, if there is one.
    pub fn take_held(&mut self, computer: ComputerId) -> Result<Option<Notice>, StoreError> {
        let mut held = self.txn.open_table(HELD)?;
        let Some(value) = held.remove(computer.0)? else {
            return Ok(None);
        };
        let notice = records::decode::<NoticeRecord>(value.value(), "held_notices", || {
            computer.to_string()
        })?;
        Ok(Some(notice.into_model()))
    }

    pub fn put_delivery(&mut self, channel: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let key = channel.to_lowercase();
        let bytes = records::encode(DeliveryRecord::TABLE, &DeliveryRecord::current(delivery))?;
        self.txn
            .open_table(DELIVERIES)?
            .insert(key.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// Deletes the notices every channel is done with; how many.
    pub fn trim_outbox(&mut self) -> Result<u64, StoreError> {
        let mut done = None::<u64>;
        for channel in self.channels()? {
            let through = self.delivery(&channel.name)?.map_or(0, |d| d.done_through);
            done = Some(done.map_or(through, |d| d.min(through)));
        }
        // With no channel left, nobody will ever want what is queued.
        let done = done.unwrap_or(u64::MAX);
        let mut outbox = self.txn.open_table(OUTBOX)?;
        let mut trimmed = 0;
        loop {
            let first = outbox.first()?.map(|(key, _)| key.value());
            match first {
                Some(seq) if seq <= done => {
                    outbox.remove(seq)?;
                    trimmed += 1;
                }
                _ => break,
            }
        }
        Ok(trimmed)
    }

    pub fn put_window(&mut self, window: &Window) -> Result<(), StoreError> {
        let bytes = records::encode(WindowRecord::TABLE, &WindowRecord::current(window))?;
        self.txn
            .open_table(MAINTENANCE)?
            .insert(window.id, bytes.as_slice())?;
        Ok(())
    }

    pub fn delete_window(&mut self, id: u64) -> Result<bool, StoreError> {
        Ok(self.txn.open_table(MAINTENANCE)?.remove(id)?.is_some())
    }

    pub fn set_windows_done_through(&mut self, at: WallMs) -> Result<(), StoreError> {
        self.put_meta(meta_key::WINDOWS_DONE_THROUGH, &at.0)
    }

    pub fn next_window_id(&mut self) -> Result<u64, StoreError> {
        self.take_next(meta_key::NEXT_WINDOW_ID)
    }
}
