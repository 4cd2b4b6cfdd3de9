//! Versioned records as stored in redb values, and their typed reads over any readable table.
//!
//! Every value is a postcard-encoded enum whose variant is the record's version, so a later
//! release can add `V2` and still read what this one wrote. A model struct that changes shape
//! needs a new variant and a migration step; the golden vectors in `schema/store.md` fail the
//! tests when it changes without one.

use super::error::StoreError;
use super::legacy::{
    AgentStateV1, AgentStateV2, AlertV1, ComputerV1, ComputerV2, ComputerV3, PolicyV1, PolicyV2,
    PolicyV3,
};
use crate::model::{AgentState, Alert, Computer, HistoryEntry, Policy, StoredEvent, Token, User};
use redb::{Key, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Small fixed values and counters, keyed by name; each value is postcard-encoded.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(super) const POLICIES: TableDefinition<u64, &[u8]> = TableDefinition::new("policies");
pub(super) const COMPUTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("computers");
/// Keyed by the 32-byte SHA-256 of the token.
pub(super) const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");

/// Keyed by computer id: the state of its activated agent. Absent for a computer not activated
/// (or deleted, which is what revokes its certificate).
pub(super) const AGENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("agents");
/// Keyed by `(computer id, event sequence)`, so an event resent after a lost acknowledgement
/// finds its key taken and is not stored twice.
pub(super) const EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("events");
/// Keyed by `(received, computer id)`, the run of sequences that computer's events stored at
/// that time span (16 bytes: first and last sequence, big-endian): the events in the order the
/// manager stored them, one entry per batch rather than per event, so retention deletes the
/// oldest and a listing of every computer's newest events reads only those.
pub(super) const EVENTS_BY_TIME: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("events_by_time");

/// Keyed by alert id: active, cleared and dismissed alerts.
pub(super) const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
/// Keyed by `(computer id, alert kind name)`, the id (8 bytes, big-endian) of that computer's
/// active alert of that kind: raising and clearing find it without reading every alert ever
/// kept. Written with every alert put.
pub(super) const ACTIVE_ALERTS: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("active_alerts");

/// Keyed by `(computer id, n)`, n counting from 1 per computer: what happened to it.
pub(super) const HISTORY: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("history");

/// Keyed by `(hostname in ASCII lowercase, computer id)`, values empty: finds a computer by
/// name (activation, adding a computer) without reading every computer. The id in the key
/// keeps the index exact even if two computers ever shared a name.
pub(super) const HOSTNAMES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("hostnames");

/// Keyed by the console user's name in lowercase, so names are unique ignoring case.
pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// The keys of the `meta` table.
pub(super) mod meta_key {
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const NEXT_POLICY_ID: &str = "next_policy_id";
    pub const NEXT_COMPUTER_ID: &str = "next_computer_id";
    pub const ADMIN_KEY_SHA256: &str = "admin_key_sha256";
    pub const NEXT_ALERT_ID: &str = "next_alert_id";
    pub const NEXT_RULE_ID: &str = "next_rule_id";
    pub const NEXT_NOTICE_SEQ: &str = "next_notice_seq";
    pub const NOTICES_DROPPED: &str = "notices_dropped";
    pub const NEXT_ROUTE_ID: &str = "next_route_id";
    pub const NEXT_WINDOW_ID: &str = "next_window_id";
    pub const WINDOWS_DONE_THROUGH: &str = "windows_done_through";
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum PolicyRecord {
    V1(PolicyV1),
    /// Schema 3: firewall rules.
    V2(PolicyV2),
    /// Schema 9: the `firewall.enabled` setting; rules gain destination IPs and `log`.
    V3(PolicyV3),
    /// Schema 12: the `agent.auto-upgrade` setting.
    V4(Policy),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum ComputerRecord {
    V1(ComputerV1),
    /// Schema 3: the address the manager dials.
    V2(ComputerV2),
    /// Schema 9: the `firewall.enabled` setting.
    V3(ComputerV3),
    /// Schema 12: the `agent.auto-upgrade` setting.
    V4(Computer),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum TokenRecord {
    V1(Token),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum AgentStateRecord {
    V1(AgentStateV1),
    /// Schema 10: the agent's protocol, and whether its firewall was withheld.
    V2(AgentStateV2),
    /// Schema 11: components with a state (on, off, error) and a reason.
    V3(AgentState),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum EventRecord {
    V1(StoredEvent),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum HistoryRecord {
    V1(HistoryEntry),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum AlertRecord {
    V1(AlertV1),
    /// Schema 7: acknowledgement, and alerts about no computer (a channel, a policy).
    V2(Alert),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum UserRecord {
    V1(User),
}

/// A stored record: how the model value is wrapped in the current version, and unwrapped from
/// any version this binary reads.
pub(super) trait Record: Serialize + DeserializeOwned {
    type Model;
    /// The redb table that holds it, for error messages.
    const TABLE: &'static str;

    fn current(model: &Self::Model) -> Self;
    fn into_model(self) -> Self::Model;
}

impl Record for PolicyRecord {
    type Model = Policy;
    const TABLE: &'static str = "policies";

    fn current(model: &Policy) -> Self {
        PolicyRecord::V4(model.clone())
    }

    fn into_model(self) -> Policy {
        match self {
            PolicyRecord::V1(p) => p.into(),
            PolicyRecord::V2(p) => p.into(),
            PolicyRecord::V3(p) => p.into(),
            PolicyRecord::V4(p) => p,
        }
    }
}

impl Record for ComputerRecord {
    type Model = Computer;
    const TABLE: &'static str = "computers";

    fn current(model: &Computer) -> Self {
        ComputerRecord::V4(model.clone())
    }

    fn into_model(self) -> Computer {
        match self {
            ComputerRecord::V1(c) => c.into(),
            ComputerRecord::V2(c) => c.into(),
            ComputerRecord::V3(c) => c.into(),
            ComputerRecord::V4(c) => c,
        }
    }
}

impl Record for TokenRecord {
    type Model = Token;
    const TABLE: &'static str = "tokens";

    fn current(model: &Token) -> Self {
        TokenRecord::V1(model.clone())
    }

    fn into_model(self) -> Token {
        match self {
            TokenRecord::V1(t) => t,
        }
    }
}

impl Record for UserRecord {
    type Model = User;
    const TABLE: &'static str = "users";

    fn current(model: &User) -> Self {
        UserRecord::V1(model.clone())
    }

    fn into_model(self) -> User {
        match self {
            UserRecord::V1(u) => u,
        }
    }
}

impl Record for AgentStateRecord {
    type Model = AgentState;
    const TABLE: &'static str = "agents";

    fn current(model: &AgentState) -> Self {
        AgentStateRecord::V3(model.clone())
    }

    fn into_model(self) -> AgentState {
        match self {
            AgentStateRecord::V1(a) => a.into(),
            AgentStateRecord::V2(a) => a.into(),
            AgentStateRecord::V3(a) => a,
        }
    }
}

impl Record for EventRecord {
    type Model = StoredEvent;
    const TABLE: &'static str = "events";

    fn current(model: &StoredEvent) -> Self {
        EventRecord::V1(model.clone())
    }

    fn into_model(self) -> StoredEvent {
        match self {
            EventRecord::V1(e) => e,
        }
    }
}

impl Record for HistoryRecord {
    type Model = HistoryEntry;
    const TABLE: &'static str = "history";

    fn current(model: &HistoryEntry) -> Self {
        HistoryRecord::V1(model.clone())
    }

    fn into_model(self) -> HistoryEntry {
        match self {
            HistoryRecord::V1(h) => h,
        }
    }
}

impl Record for AlertRecord {
    type Model = Alert;
    const TABLE: &'static str = "alerts";

    fn current(model: &Alert) -> Self {
        AlertRecord::V2(model.clone())
    }

    fn into_model(self) -> Alert {
        match self {
            AlertRecord::V1(a) => a.into(),
            AlertRecord::V2(a) => a,
        }
    }
}

/// Encodes `value` for `table`.
pub(super) fn encode<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|source| StoreError::Encode { table, source })
}

/// Decodes a whole value. Trailing bytes make it corrupt too: they mean the value was not
/// written as this type, and accepting them would hide that.
pub(super) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    table: &'static str,
    key: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(StoreError::Corrupt { table, key: key() }),
    }
}

/// The model value stored under `key`, if any.
pub(super) fn get<'k, K, R>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: K::SelfType<'k>,
    show_key: impl FnOnce() -> String,
) -> Result<Option<R::Model>, StoreError>
where
    K: Key + 'static,
    R: Record,
{
    let Some(guard) = table.get(key)? else {
        return Ok(None);
    };
    let record: R = decode(guard.value(), R::TABLE, show_key)?;
    Ok(Some(record.into_model()))
}

/// Every model value of a table keyed by id, in id order.
pub(super) fn all_by_id<R: Record>(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Vec<R::Model>, StoreError> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        let record: R = decode(value.value(), R::TABLE, || key.value().to_string())?;
        out.push(record.into_model());
    }
    Ok(out)
}

/// Every model value of a table keyed by bytes (a hash), in key order.
pub(super) fn all_by_bytes<R: Record>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<Vec<R::Model>, StoreError> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        let record: R = decode(value.value(), R::TABLE, || hex(key.value()))?;
        out.push(record.into_model());
    }
    Ok(out)
}

/// A value of the `meta` table, decoded.
pub(super) fn get_meta<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &'static str,
) -> Result<Option<T>, StoreError> {
    let Some(guard) = table.get(key)? else {
        return Ok(None);
    };
    decode(guard.value(), "meta", || key.to_string()).map(Some)
}

/// Lower-case hex, for naming a binary key in an error.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(super) mod tests;
