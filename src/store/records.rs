//! Versioned records as stored in redb values, and their typed reads over any readable table.
//!
//! Every value is a postcard-encoded enum whose variant is the record's version, so a later
//! release can add `V2` and still read what this one wrote. A model struct that changes shape
//! needs a new variant and a migration step; the golden vectors in `schema/store.md` fail the
//! tests when it changes without one.

use super::error::StoreError;
use super::legacy::{
    AgentStateV1, AgentStateV2, AlertV1, ComputerV1, ComputerV2, PolicyV1, PolicyV2,
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
    V3(Policy),
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) enum ComputerRecord {
    V1(ComputerV1),
    /// Schema 3: the address the manager dials.
    V2(ComputerV2),
    /// Schema 9: the `firewall.enabled` setting.
    V3(Computer),
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
        PolicyRecord::V3(model.clone())
    }

    fn into_model(self) -> Policy {
        match self {
            PolicyRecord::V1(p) => p.into(),
            PolicyRecord::V2(p) => p.into(),
            PolicyRecord::V3(p) => p,
        }
    }
}

impl Record for ComputerRecord {
    type Model = Computer;
    const TABLE: &'static str = "computers";

    fn current(model: &Computer) -> Self {
        ComputerRecord::V3(model.clone())
    }

    fn into_model(self) -> Computer {
        match self {
            ComputerRecord::V1(c) => c.into(),
            ComputerRecord::V2(c) => c.into(),
            ComputerRecord::V3(c) => c,
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
pub(super) mod tests {
    use super::*;
    use crate::clock::WallMs;
    use crate::model::{
        ClockChangeLimit, ComputerId, ComputerKind, Direction, MissedLimit, PolicyId, Setting,
        Settings, Status, TokenHash,
    };
    use redb::TableHandle;
    use std::time::Duration;

    const SCHEMA: &str = include_str!("../../schema/store.md");

    pub(crate) fn sample_policy() -> Policy {
        Policy {
            rules: vec![crate::model::FirewallRule {
                id: crate::model::RuleId(3),
                name: "agent port from the admin net".into(),
                action: crate::model::RuleAction::Bypass,
                priority: 4,
                direction: crate::model::TrafficDirection::Incoming,
                frame_type: crate::model::FrameType::Ip,
                protocol: crate::model::Protocol::Tcp,
                destination_ports: vec![crate::model::PortRange::parse("4118").unwrap()],
                source_ips: vec![crate::model::IpMatch::parse("10.0.0.0/8").unwrap()],
                source_macs: vec![crate::model::MacAddr([0, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e])],
                destination_ips: vec![crate::model::IpMatch::parse("192.0.2.1-192.0.2.9").unwrap()],
                log: true,
            }],
            id: PolicyId(2),
            name: "Laptops".to_string(),
            parent: Some(PolicyId(1)),
            settings: Settings {
                interval: Setting::Set(Duration::from_secs(300)),
                missed_before_alert: Setting::Set(MissedLimit::Unlimited),
                max_clock_change: Setting::Set(ClockChangeLimit::Max(Duration::from_secs(60))),
                offline_errors_for_inactive_vms: Setting::Inherited,
                direction: Setting::Set(Direction::AgentInitiated),
                firewall_enabled: Setting::Set(true),
            },
        }
    }

    /// `sample_policy` as a schema-8 binary stored it: no destination IPs, no `log`, no
    /// firewall setting.
    fn sample_policy_v2() -> Policy {
        let mut p = sample_policy();
        p.settings.firewall_enabled = Setting::Inherited;
        for r in &mut p.rules {
            r.destination_ips.clear();
            r.log = false;
        }
        p
    }

    pub(crate) fn sample_computer() -> Computer {
        Computer {
            address: Some("web-1.example".into()),
            id: ComputerId(7),
            hostname: "web-1".to_string(),
            kind: ComputerKind::Vm,
            policy: PolicyId(2),
            settings: Settings {
                offline_errors_for_inactive_vms: Setting::Set(true),
                firewall_enabled: Setting::Set(false),
                ..Settings::default()
            },
            status: Status::ActivationRequired,
            created: WallMs(1_700_000_000_000),
            vm_power_state: crate::model::PowerState::Running,
        }
    }

    pub(crate) fn sample_user() -> User {
        User {
            name: "admin".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            must_change_password: true,
            password_changed: WallMs(1_700_000_000_000),
        }
    }

    pub(crate) fn sample_token() -> Token {
        Token {
            hash: TokenHash([0xab; 32]),
            policy: PolicyId(1),
            uses_left: Some(3),
            expires: None,
            created: WallMs(1_700_000_000_000),
        }
    }

    pub(crate) fn sample_agent_state() -> AgentState {
        AgentState {
            computer: ComputerId(7),
            cert_serial: [0x11; 16],
            activated: WallMs(1_700_000_000_000),
            agent_version: "0.1.0".into(),
            address: Some("127.0.0.1:50000".into()),
            listen_port: None,
            last_seq: 3,
            last_heartbeat: Some(WallMs(1_700_000_060_000)),
            clock_offset_ms: Some(-250),
            tls_version: Some("TLSv1.3".into()),
            cipher_suite: Some("TLS13_AES_128_GCM_SHA256".into()),
            applied_fingerprint: Some([0x22; 32]),
            config_rejected: None,
            components: vec![crate::model::Component::from_on("spool".into(), true)],
            counters: vec![("events-spooled".into(), 3)],
            protocol: 2,
            firewall_withheld: true,
        }
    }

    pub(crate) fn sample_alert() -> Alert {
        Alert {
            id: crate::model::AlertId(4),
            kind: crate::model::AlertKind::ClockChanged,
            computer: ComputerId(7),
            raised: WallMs(1_700_000_000_000),
            updated: WallMs(1_700_000_060_000),
            count: 2,
            message: "clock moved".into(),
            cleared: None,
            dismissed: Some(WallMs(1_700_000_120_000)),
            acknowledged: None,
            about: None,
            computers: Vec::new(),
        }
    }

    pub(crate) fn sample_site_alert() -> Alert {
        Alert {
            id: crate::model::AlertId(9),
            kind: crate::model::AlertKind::SiteIncident,
            computer: ComputerId(0),
            raised: WallMs(1_700_000_000_000),
            updated: WallMs(1_700_000_060_000),
            count: 1,
            message: "2 computers offline".into(),
            cleared: None,
            dismissed: None,
            acknowledged: Some(crate::model::Acknowledgement {
                by: "admin".into(),
                at: WallMs(1_700_000_090_000),
                comment: "on it".into(),
            }),
            about: Some("1".into()),
            computers: vec![ComputerId(3), ComputerId(4)],
        }
    }

    pub(crate) fn sample_history() -> HistoryEntry {
        HistoryEntry {
            computer: ComputerId(7),
            at: WallMs(1_700_000_000_000),
            what: "status".into(),
            detail: "online -> offline".into(),
        }
    }

    pub(crate) fn sample_event() -> StoredEvent {
        StoredEvent {
            computer: ComputerId(7),
            seq: 3,
            id: 1000,
            time: WallMs(1_700_000_000_000),
            received: WallMs(1_700_000_060_000),
            fields: vec![("version".into(), "0.1.0".into())],
        }
    }

    /// The hex after `golden NAME ` in schema/store.md.
    pub(crate) fn golden(name: &str) -> Vec<u8> {
        let prefix = format!("golden {name} ");
        let line = SCHEMA
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("schema/store.md has no line `golden {name} ...`"));
        let hex: String = line.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(crate) fn check_golden<R: Record>(name: &str, model: R::Model)
    where
        R::Model: PartialEq + std::fmt::Debug,
    {
        let bytes = golden(name);
        assert_eq!(
            hex(&encode(R::TABLE, &R::current(&model)).unwrap()),
            hex(&bytes),
            "the encoding of {name} changed: add a new record version and update schema/store.md"
        );
        let decoded: R = decode(&bytes, R::TABLE, || name.to_string()).unwrap();
        assert_eq!(
            decoded.into_model(),
            model,
            "stored {name} bytes no longer decode to the same value: add a new record version"
        );
    }

    /// A frozen version's bytes still decode, into the current model with the new fields empty.
    pub(crate) fn check_legacy<R: Record>(name: &str, model: R::Model)
    where
        R::Model: PartialEq + std::fmt::Debug,
    {
        let decoded: R = decode(&golden(name), R::TABLE, || name.to_string()).unwrap();
        assert_eq!(
            decoded.into_model(),
            model,
            "{name} no longer reads as before"
        );
    }

    #[test]
    fn golden_vectors_in_the_schema_still_decode_and_encode_the_same() {
        let computer_v2 = Computer {
            settings: Settings {
                firewall_enabled: Setting::Inherited,
                ..sample_computer().settings
            },
            ..sample_computer()
        };
        check_legacy::<PolicyRecord>(
            "policy-v1",
            Policy {
                rules: Vec::new(),
                ..sample_policy_v2()
            },
        );
        check_legacy::<ComputerRecord>(
            "computer-v1",
            Computer {
                address: None,
                ..computer_v2.clone()
            },
        );
        check_legacy::<PolicyRecord>("policy-v2", sample_policy_v2());
        check_legacy::<ComputerRecord>("computer-v2", computer_v2);
        check_golden::<PolicyRecord>("policy-v3", sample_policy());
        check_golden::<ComputerRecord>("computer-v3", sample_computer());
        check_golden::<TokenRecord>("token-v1", sample_token());
        let agent_state_v1 = AgentState {
            protocol: 1,
            firewall_withheld: false,
            ..sample_agent_state()
        };
        check_legacy::<AgentStateRecord>("agent-state-v1", agent_state_v1);
        let agent_state_v2 = AgentState {
            protocol: 2,
            firewall_withheld: true,
            ..sample_agent_state()
        };
        check_legacy::<AgentStateRecord>("agent-state-v2", agent_state_v2);
        check_golden::<AgentStateRecord>("agent-state-v3", sample_agent_state());
        check_golden::<EventRecord>("event-v1", sample_event());
        check_legacy::<AlertRecord>("alert-v1", sample_alert());
        check_golden::<AlertRecord>("alert-v2", sample_alert());
        check_golden::<AlertRecord>("alert-v2-site", sample_site_alert());
        check_golden::<HistoryRecord>("history-v1", sample_history());
        check_golden::<UserRecord>("user-v1", sample_user());
    }

    #[test]
    fn schema_doc_names_every_table_and_meta_key() {
        for name in [
            META.name(),
            POLICIES.name(),
            COMPUTERS.name(),
            TOKENS.name(),
            AGENTS.name(),
            EVENTS.name(),
            ALERTS.name(),
            HISTORY.name(),
            USERS.name(),
            HOSTNAMES.name(),
            ACTIVE_ALERTS.name(),
            EVENTS_BY_TIME.name(),
            "channels",
            "routes",
            "outbox",
            "deliveries",
            "maintenance",
        ] {
            assert!(SCHEMA.contains(&format!("`{name}`")), "table {name}");
        }
        for key in [
            meta_key::SCHEMA_VERSION,
            meta_key::NEXT_POLICY_ID,
            meta_key::NEXT_COMPUTER_ID,
            meta_key::ADMIN_KEY_SHA256,
            meta_key::NEXT_ALERT_ID,
            meta_key::NEXT_RULE_ID,
            meta_key::NEXT_NOTICE_SEQ,
            meta_key::NOTICES_DROPPED,
            meta_key::NEXT_ROUTE_ID,
            meta_key::NEXT_WINDOW_ID,
        ] {
            assert!(SCHEMA.contains(&format!("`{key}`")), "meta key {key}");
        }
        for record in [
            "PolicyRecord::V1",
            "PolicyRecord::V2",
            "PolicyRecord::V3",
            "ComputerRecord::V1",
            "ComputerRecord::V2",
            "ComputerRecord::V3",
            "TokenRecord::V1",
            "AgentStateRecord::V1",
            "AgentStateRecord::V2",
            "AgentStateRecord::V3",
            "EventRecord::V1",
            "AlertRecord::V1",
            "AlertRecord::V2",
            "HistoryRecord::V1",
            "UserRecord::V1",
            "ChannelRecord::V1",
            "RouteRecord::V1",
            "NoticeRecord::V1",
            "DeliveryRecord::V1",
            "WindowRecord::V1",
        ] {
            assert!(SCHEMA.contains(record), "record {record}");
        }
        assert_eq!(PolicyRecord::TABLE, POLICIES.name());
        assert_eq!(ComputerRecord::TABLE, COMPUTERS.name());
        assert_eq!(TokenRecord::TABLE, TOKENS.name());
        assert_eq!(AgentStateRecord::TABLE, AGENTS.name());
        assert_eq!(EventRecord::TABLE, EVENTS.name());
        assert_eq!(AlertRecord::TABLE, ALERTS.name());
        assert_eq!(HistoryRecord::TABLE, HISTORY.name());
        assert_eq!(UserRecord::TABLE, USERS.name());
    }

    #[test]
    fn trailing_bytes_and_unknown_versions_are_corrupt() {
        let mut bytes = encode("policies", &PolicyRecord::current(&sample_policy())).unwrap();
        bytes.push(0);
        let err = decode::<PolicyRecord>(&bytes, "policies", || "2".into()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { table: "policies", ref key } if key == "2"));

        // Variant index 3 would be a V4 this binary does not know.
        bytes[0] = 3;
        assert!(decode::<PolicyRecord>(&bytes, "policies", || "2".into()).is_err());
    }
}
