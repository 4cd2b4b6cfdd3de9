//! The records' golden vectors (`schema/store.md`) and the samples other store tests use.

use super::*;
use crate::clock::WallMs;
use crate::model::{
    ClockChangeLimit, ComputerId, ComputerKind, Direction, MissedLimit, PolicyId, Setting,
    Settings, Status, TokenHash,
};
use redb::TableHandle;
use std::time::Duration;

const SCHEMA: &str = include_str!("../../../schema/store.md");

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
            agent_auto_upgrade: Setting::Set(true),
        },
    }
}

/// `sample_policy` as a schema-11 binary stored it: no upgrade setting.
fn sample_policy_v3() -> Policy {
    let mut p = sample_policy();
    p.settings.agent_auto_upgrade = Setting::Inherited;
    p
}

/// `sample_policy` as a schema-8 binary stored it: no destination IPs, no `log`, no
/// firewall or upgrade setting.
fn sample_policy_v2() -> Policy {
    let mut p = sample_policy_v3();
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
            agent_auto_upgrade: Setting::Set(false),
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
    let computer_v3 = Computer {
        settings: Settings {
            agent_auto_upgrade: Setting::Inherited,
            ..sample_computer().settings
        },
        ..sample_computer()
    };
    let computer_v2 = Computer {
        settings: Settings {
            firewall_enabled: Setting::Inherited,
            ..computer_v3.settings
        },
        ..computer_v3.clone()
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
    check_legacy::<PolicyRecord>("policy-v3", sample_policy_v3());
    check_legacy::<ComputerRecord>("computer-v3", computer_v3);
    check_golden::<PolicyRecord>("policy-v4", sample_policy());
    check_golden::<ComputerRecord>("computer-v4", sample_computer());
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
        "PolicyRecord::V4",
        "ComputerRecord::V1",
        "ComputerRecord::V2",
        "ComputerRecord::V3",
        "ComputerRecord::V4",
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

    // Variant index 4 would be a V5 this binary does not know.
    bytes[0] = 4;
    assert!(decode::<PolicyRecord>(&bytes, "policies", || "2".into()).is_err());
}
