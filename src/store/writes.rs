//! The writes of a [`WriteTxn`]: records, indexes, counters, the events table and its index by
//! time, and the commit.

use super::*;

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
pub(super) struct Runs(std::collections::BTreeMap<(u64, u64), (u64, u64)>);

impl Runs {
    pub(super) fn add(&mut self, received: u64, computer: u64, seq: u64) {
        let run = self.0.entry((received, computer)).or_insert((seq, seq));
        *run = (run.0.min(seq), run.1.max(seq));
    }

    /// Writes the runs, each widened to take in what its key already holds (a second batch of
    /// the same computer in the same millisecond), and forgets them.
    pub(super) fn write(
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
pub(super) fn event_run(
    (received, computer): (u64, u64),
    bytes: &[u8],
) -> Result<(u64, u64), StoreError> {
    let corrupt = || StoreError::Corrupt {
        table: "events_by_time",
        key: format!("({received}, {computer})"),
    };
    let (first, last) = bytes.split_at_checked(8).ok_or_else(corrupt)?;
    let first: [u8; 8] = first.try_into().map_err(|_| corrupt())?;
    let last: [u8; 8] = last.try_into().map_err(|_| corrupt())?;
    Ok((u64::from_be_bytes(first), u64::from_be_bytes(last)))
}

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
    /// events the batch holds; the arrivals of the channels that forward events, one per run
    /// of consecutive sequences.
    pub fn insert_events(&mut self, batch: &[StoredEvent]) -> Result<usize, StoreError> {
        let mut runs = Runs::default();
        let mut new = Vec::new();
        let mut table = self.txn.open_table(EVENTS)?;
        for e in batch {
            let key = (e.computer.0, e.seq);
            if table.get(key)?.is_some() {
                continue;
            }
            let bytes = records::encode(EventRecord::TABLE, &EventRecord::current(e))?;
            table.insert(key, bytes.as_slice())?;
            runs.add(e.received.0, e.computer.0, e.seq);
            new.push(key);
        }
        drop(table);
        runs.write(&mut self.txn.open_table(EVENTS_BY_TIME)?)?;
        self.note_arrivals(&new)?;
        Ok(new.len())
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
        let name = a.index_name();
        let key = (a.computer.0, name.as_str());
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
    pub(super) fn take_next(&mut self, key: &'static str) -> Result<u64, StoreError> {
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

    pub(super) fn put_meta<T: serde::Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = records::encode("meta", value)?;
        self.txn.open_table(META)?.insert(key, bytes.as_slice())?;
        Ok(())
    }
}
