//! End-to-end: an agent deployed before protocol 2, played over the raw wire, against this
//! manager. Sites upgrade the manager first: the old agent activates and heartbeats as before,
//! is judged up to date by the fingerprint it computes, and is never sent the firewall, which
//! the manager says it withholds.

use crate::support::Manager;
use crate::support::wire::*;
use hyper::Method;
use picket::clock::WallMs;
use picket::pki::{self, AgentKey};
use picket::policy::Fingerprint;
use picket::proto::{
    ActivationRequest, AgentMsg, AgentMsgV1, AgentStatusV1, ComponentV1, Hello, ManagerMsgV1,
    Purpose, SpoolRange,
};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Activates as a protocol-1 agent does: its `Activate` says 1, and the answer must decode as
/// protocol 1's `Activated`, whose fingerprint is the one such an agent computes.
fn activate_v1(m: &Manager, hostname: &str) -> Identity {
    let (token, _) = new_token(m, &[]);
    let (mut tls, _) = pinned_handshake(m);
    let key = AgentKey::generate().unwrap();
    let request = ActivationRequest {
        protocol: 1,
        agent_version: "0.1.0".into(),
        token,
        hostname: hostname.into(),
        public_key: key.public_key_der(),
    };
    send(&mut tls, &AgentMsg::Activate(request)).unwrap();
    let ManagerMsgV1::Activated(activated) = recv_as(&mut tls).unwrap() else {
        panic!("not activated");
    };
    assert!(activated.config.listener_rules.is_empty());
    assert_eq!(activated.fingerprint, activated.config.fingerprint());
    Identity {
        computer: activated.computer,
        ca: ca_der(m),
        cert: activated.certificate.into(),
        key,
        fingerprint: activated.fingerprint,
    }
}

/// One protocol-1 heartbeat reporting `running`; returns the configuration the manager pushed,
/// if it pushed one (the agent applies it, as a protocol-1 agent would).
fn heartbeat_v1(m: &Manager, id: &Identity, running: Fingerprint) -> Option<Fingerprint> {
    let config = pki::agent_client_config(&id.ca, id.cert.clone(), &id.key).unwrap();
    let (mut tls, _) = handshake(&agent_addr(m), config).unwrap();
    let hello = Hello {
        protocol: 1,
        agent_version: "0.1.0".into(),
        purpose: Purpose::Heartbeat,
    };
    send(&mut tls, &AgentMsg::Hello(hello)).unwrap();
    let answer: ManagerMsgV1 = recv_as(&mut tls).unwrap();
    assert!(
        matches!(answer, ManagerMsgV1::GetStatus { protocol: 1, .. }),
        "a protocol-1 agent refuses any other: {answer:?}"
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    // Protocol 1's status: its components say only on or off.
    let status = AgentStatusV1 {
        wall_clock: WallMs(u64::try_from(now.as_millis()).unwrap()),
        components: vec![ComponentV1 {
            name: "spool".into(),
            on: true,
        }],
        counters: Vec::new(),
        fingerprint: Some(running),
        spool: SpoolRange { first: 1, last: 0 },
        listen_port: None,
    };
    send(&mut tls, &AgentMsgV1::Status(status)).unwrap();
    let mut pushed = None;
    loop {
        match recv_as(&mut tls).unwrap() {
            ManagerMsgV1::SetConfig {
                config,
                fingerprint,
            } => {
                assert_eq!(fingerprint, config.fingerprint());
                pushed = Some(fingerprint);
                send(&mut tls, &AgentMsg::ConfigApplied { fingerprint }).unwrap();
            }
            ManagerMsgV1::Done { .. } => return pushed,
            other => panic!("unexpected in a protocol-1 heartbeat: {other:?}"),
        }
    }
}

fn agent_json(m: &Manager, computer: u64) -> Value {
    let computers = m.computers();
    let found = computers.iter().find(|c| c["id"] == computer).unwrap();
    found["agent"].clone()
}

fn history(m: &Manager, computer: u64) -> Vec<String> {
    let path = format!("/api/v1/computers/{computer}/history");
    let answer = m.client().call(Method::GET, &path, None).unwrap();
    answer["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                h["what"].as_str().unwrap(),
                h["detail"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_protocol_1_agent_is_served_as_before_and_told_apart_when_the_firewall_is_on() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let old = activate_v1(&m, "old-agent");

    // It runs what it was sent at activation: no configuration is pushed, and it is up to date.
    assert_eq!(heartbeat_v1(&m, &old, old.fingerprint), None);
    let agent = wait_for(STEP, "the heartbeat to be recorded", || {
        let agent = agent_json(&m, old.computer);
        agent["last_heartbeat_ms"].is_u64().then_some(agent)
    });
    assert_eq!(agent["protocol"], 1, "{agent}");
    let spool = &agent["components"][0];
    assert_eq!(
        (&spool["name"], &spool["state"]),
        (&"spool".into(), &"on".into()),
        "{agent}"
    );
    assert_eq!(agent["config_up_to_date"], true, "{agent}");
    assert_eq!(agent["expected_fingerprint"], old.fingerprint.to_string());
    assert!(agent["firewall_withheld"].is_null(), "{agent}");

    // A stale one is sent protocol 1's form, and what it then reports is up to date.
    assert_eq!(
        heartbeat_v1(&m, &old, Fingerprint([7; 32])),
        Some(old.fingerprint)
    );

    // The firewall on: nothing the old agent reads changes, so nothing is pushed; it is told
    // apart in the JSON at once, and in the log and the history at its next heartbeat.
    m.cli_json(&["policies", "set", "Base Policy", "firewall.enabled=true"]);
    let agent = agent_json(&m, old.computer);
    assert_eq!(agent["config_up_to_date"], true, "{agent}");
    let withheld = agent["firewall_withheld"].as_str().unwrap_or_default();
    assert!(
        withheld.contains("too old to enforce the firewall"),
        "{agent}"
    );
    assert_eq!(heartbeat_v1(&m, &old, old.fingerprint), None);
    let warning = format!(
        "computer {} (agent 0.1.0): firewall.enabled is on",
        old.computer
    );
    let line = wait_log_line(&m, &[&warning, "speaks protocol 1"]);
    assert!(line.contains("WARN"), "{line}");
    assert_eq!(heartbeat_v1(&m, &old, old.fingerprint), None);
    let said = m.log().lines().filter(|l| l.contains(&warning)).count();
    assert_eq!(said, 1, "said once, not at every heartbeat");
    let lines = history(&m, old.computer);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("firewall-withheld agent 0.1.0: firewall.enabled is on")),
        "{lines:?}"
    );

    // A current agent beside it is sent the firewall, and nothing is withheld from it.
    let (addr, new) = activated(&m, "new-agent");
    assert!(heartbeat(&addr, &new) > 0);
    let agent = wait_for(STEP, "the new agent's heartbeat", || {
        let agent = agent_json(&m, new.computer);
        agent["last_heartbeat_ms"].is_u64().then_some(agent)
    });
    assert_eq!(agent["protocol"], 2, "{agent}");
    assert_eq!(agent["config_up_to_date"], true, "{agent}");
    assert!(agent["firewall_withheld"].is_null(), "{agent}");

    // Off again: the old agent is no longer told apart, and its history says so.
    m.cli_json(&["policies", "set", "Base Policy", "firewall.enabled=false"]);
    assert_eq!(heartbeat_v1(&m, &old, old.fingerprint), None);
    wait_for(STEP, "the end of the withholding in the history", || {
        history(&m, old.computer)
            .iter()
            .any(|l| l.starts_with("firewall-withheld the firewall is no longer withheld"))
            .then_some(())
    });
    assert!(agent_json(&m, old.computer)["firewall_withheld"].is_null());
}
