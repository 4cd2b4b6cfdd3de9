//! The reads both kinds of transaction offer ([`Reads`]), over the store's tables.

use super::*;

pub(super) mod sealed {
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
        active_indexed(self, computer, kind, None)
    }

    /// The active alert of `kind` about `about` (a channel's name, a policy's id): alerts about
    /// no computer, found like a computer's through the index.
    fn active_site_alert(&self, kind: AlertKind, about: &str) -> Result<Option<Alert>, StoreError> {
        active_indexed(self, ComputerId(0), kind, Some(about))
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

    /// Every active alert, through the index (no scan of ended ones).
    fn active_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let mut ids = Vec::new();
        for entry in self.table(ACTIVE_ALERTS)?.iter()? {
            let (key, value) = entry?;
            let (computer, _) = key.value();
            let bytes: [u8; 8] = value.value().try_into().map_err(|_| StoreError::Corrupt {
                table: "active_alerts",
                key: format!("({computer}, ...)"),
            })?;
            ids.push(AlertId(u64::from_be_bytes(bytes)));
        }
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.alert(id)?.filter(Alert::is_active));
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

/// The active alert the index names for `(computer, kind, about)`.
fn active_indexed<R: Reads + ?Sized>(
    reads: &R,
    computer: ComputerId,
    kind: AlertKind,
    about: Option<&str>,
) -> Result<Option<Alert>, StoreError> {
    let name = crate::model::index_name(kind, about);
    let id = reads
        .table(ACTIVE_ALERTS)?
        .get((computer.0, name.as_str()))?
        .map(|v| active_alert_id(computer, kind, v.value()))
        .transpose()?;
    let Some(id) = id else {
        return Ok(None);
    };
    // The index and the alert are written together; this only guards against a damaged file.
    Ok(reads.alert(id)?.filter(|a| {
        a.is_active() && a.computer == computer && a.kind == kind && a.about.as_deref() == about
    }))
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

impl Reads for ReadTxn {}
impl Reads for WriteTxn {}
