//! End-to-end: communication direction over loopback. Each direction heartbeats and applies a
//! policy change; the manager pushes to agents that listen and dials on request; the agent-port
//! firewall rule keeps the manager out until it is widened. Every wait has a deadline.

use crate::support::Manager;
use crate::support::agent::{Agent, activation, activation_for, set_base, wait_for};
use serde_json::Value;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn computer(m: &Manager, hostname: &str) -> Value {
    m.cli_json(&["computers", "list"])["computers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hostname"] == hostname)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until `hostname` has heartbeated and runs the configuration the manager expects.
fn wait_up_to_date(m: &Manager, hostname: &str) -> Value {
    wait_for(LIMIT, || {
        let c = computer(m, hostname);
        (c["agent"]["last_heartbeat_ms"].is_u64() && c["agent"]["config_up_to_date"] == true)
            .then_some(c)
    })
}

fn counter(c: &Value, name: &str) -> u64 {
    c["agent"]["counters"][name].as_u64().unwrap_or(0)
}

fn active_alerts(m: &Manager, kind: &str) -> Vec<Value> {
    m.cli_json(&["alerts", "list"])["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn each_direction_heartbeats_and_applies_a_policy_change() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    let directions = ["bidirectional", "manager-initiated", "agent-initiated"];
    for direction in directions {
        m.cli_json(&["policies", "create", direction]);
        let setting = format!("communication.direction={direction}");
        m.cli_json(&["policies", "set", direction, &setting]);
    }
    let agents: Vec<Agent> = directions
        .iter()
        .map(|d| {
            let a = activation_for(&m, d);
            Agent::start(&tmp.path().join(d), Some(&a), &format!("{d}-host"))
        })
        .collect();
    for d in directions {
        wait_up_to_date(&m, &format!("{d}-host"));
    }

    // Heartbeats keep coming: for the manager-initiated agent, through the manager's dials.
    let before = computer(&m, "manager-initiated-host");
    let later = wait_for(LIMIT, || {
        let c = computer(&m, "manager-initiated-host");
        (c["agent"]["last_heartbeat_ms"].as_u64() > before["agent"]["last_heartbeat_ms"].as_u64()
            && counter(&c, "manager-sessions") >= 2)
            .then_some(c)
    });
    assert_eq!(later["status"], "online");
    assert!(
        counter(&later, "heartbeats-ok") <= 1,
        "a manager-initiated agent only dials to announce its port: {later}"
    );

    // Agent-initiated: nothing listens, and the agent says so.
    let ai = &agents[2];
    assert_eq!(ai.listen_addr(), None, "agent-initiated must not listen");
    assert!(computer(&m, "agent-initiated-host")["agent"]["listen_port"].is_null());
    for agent in &agents[..2] {
        let addr = agent
            .listen_addr()
            .expect("a listening agent writes its address");
        assert!(std::net::TcpStream::connect(&addr).is_ok(), "{addr}");
    }

    // A policy change reaches every direction.
    for d in directions {
        m.cli_json(&["policies", "set", d, "heartbeat.max-clock-change=7m"]);
    }
    for d in directions {
        let c = wait_up_to_date(&m, &format!("{d}-host"));
        assert_eq!(c["effective"]["heartbeat.max-clock-change"]["value"], "7m");
        assert_eq!(c["status"], "online", "{c}");
    }
    drop(agents);
}

#[test]
fn switching_to_agent_initiated_closes_the_port_and_back_opens_it() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    let agent = Agent::start(&tmp.path().join("agent"), Some(&activation(&m)), "flip");
    wait_up_to_date(&m, "flip");
    let addr = wait_for(LIMIT, || agent.listen_addr());

    set_base(&m, "communication.direction=agent-initiated");
    wait_for(LIMIT, || agent.listen_addr().is_none().then_some(()));
    wait_for(LIMIT, || {
        std::net::TcpStream::connect(&addr).is_err().then_some(())
    });
    let c = wait_for(LIMIT, || {
        let c = wait_up_to_date(&m, "flip");
        c["agent"]["listen_port"].is_null().then_some(c)
    });
    assert_eq!(c["status"], "online");

    set_base(&m, "communication.direction=bidirectional");
    wait_for(LIMIT, || agent.listen_addr());
    wait_for(LIMIT, || {
        computer(&m, "flip")["agent"]["listen_port"].as_u64()
    });
}

#[test]
fn send_policy_reaches_a_bidirectional_agent_long_before_its_next_heartbeat() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1h");
    let agent = Agent::start(&tmp.path().join("agent"), Some(&activation(&m)), "web1");
    let c = wait_for(LIMIT, || {
        let c = wait_up_to_date(&m, "web1");
        c["agent"]["listen_port"].is_u64().then_some(c)
    });
    let id = c["id"].to_string();
    // Counters in a view are as the agent reported them at the start of its last session.
    let first = m.cli_json(&["computers", "check-status", &id]);
    assert!(
        first["message"].as_str().unwrap().contains("contacted"),
        "{first}"
    );
    let heartbeats = counter(&first["computer"], "heartbeats-ok");
    let dialed = counter(&first["computer"], "manager-sessions");

    // A change is pushed at once; send-policy then finds it applied, over the manager's dial.
    set_base(&m, "heartbeat.max-clock-change=3m");
    let answer = m.cli_json(&["computers", "send-policy", &id]);
    assert_eq!(answer["queued"], false, "{answer}");
    assert_eq!(answer["config_up_to_date"], true, "{answer}");
    let c = &answer["computer"];
    assert_eq!(c["effective"]["heartbeat.max-clock-change"]["value"], "3m");
    assert_eq!(
        counter(c, "heartbeats-ok"),
        heartbeats,
        "the change came through the manager's dials, not an agent heartbeat: {c}"
    );
    assert!(counter(c, "manager-sessions") > dialed, "{c}");

    // Agent-initiated: the operation is queued until the next heartbeat, and says when.
    set_base(&m, "communication.direction=agent-initiated");
    wait_for(LIMIT, || agent.listen_addr().is_none().then_some(()));
    // The agent announces that it closed its port with a heartbeat of its own.
    wait_for(LIMIT, || {
        computer(&m, "web1")["agent"]["listen_port"]
            .is_null()
            .then_some(())
    });
    let queued = m.cli_json(&["computers", "send-policy", &id]);
    assert_eq!(queued["queued"], true, "{queued}");
    assert!(
        queued["message"]
            .as_str()
            .unwrap()
            .contains("next heartbeat"),
        "{queued}"
    );
}

#[test]
fn an_agent_port_rule_keeps_the_manager_out_until_it_is_widened() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    let agent = Agent::start(&tmp.path().join("agent"), Some(&activation(&m)), "kiosk");
    let port = wait_for(LIMIT, || {
        wait_up_to_date(&m, "kiosk")["agent"]["listen_port"].as_u64()
    })
    .to_string();
    let add_rule = |name: &str, source: &str| {
        let mut args = agent_port_rule("Base Policy", name, source);
        args.extend(["--port", port.as_str()]);
        m.cli_json(&args)
    };
    add_rule("admin host only", "127.0.0.2");
    let alert = wait_for(LIMIT, || {
        active_alerts(&m, "manager-cannot-reach-agent")
            .into_iter()
            .next()
    });
    assert_eq!(alert["hostname"], "kiosk");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("agent-initiated"),
        "the alert suggests the way out: {alert}"
    );
    assert!(
        agent.log().contains("refused a connection from 127.0.0.1"),
        "{}",
        agent.log()
    );
    assert_eq!(
        computer(&m, "kiosk")["status"],
        "online",
        "heartbeats still arrive"
    );

    add_rule("loopback too", "127.0.0.1");
    wait_for(LIMIT, || {
        active_alerts(&m, "manager-cannot-reach-agent")
            .is_empty()
            .then_some(())
    });
    let c = wait_up_to_date(&m, "kiosk");
    assert_eq!(c["firewall_rules"].as_array().unwrap().len(), 2);
}

#[test]
fn a_manager_initiated_computer_the_manager_cannot_resolve_goes_offline_saying_why() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "heartbeat.missed-before-alert=0");
    set_base(&m, "communication.direction=manager-initiated");
    let _agent = Agent::start(&tmp.path().join("agent"), Some(&activation(&m)), "far");
    let id = wait_up_to_date(&m, "far")["id"].to_string();
    m.cli_json(&["computers", "set", &id, "address=no-such-host.invalid"]);
    let alert = wait_for(LIMIT, || {
        active_alerts(&m, "computer-offline").into_iter().next()
    });
    let message = alert["message"].as_str().unwrap();
    assert!(message.contains("no-such-host.invalid"), "{message}");
    assert!(active_alerts(&m, "manager-cannot-reach-agent").is_empty());
    let refused = m.cli(&["computers", "check-status", &id]);
    assert_eq!(refused.status.code(), Some(1), "a failed operation exits 1");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot resolve"));

    // Back to the address it came from: the next scheduled dial brings it online again.
    m.cli_json(&["computers", "set", &id, "address="]);
    wait_for(LIMIT, || {
        active_alerts(&m, "computer-offline")
            .is_empty()
            .then_some(())
    });
}

/// `picket policies rules add POLICY` for a rule that governs the agent port (any port) and
/// admits only `source`.
fn agent_port_rule<'a>(policy: &'a str, name: &'a str, source: &'a str) -> Vec<&'a str> {
    vec![
        "policies",
        "rules",
        "add",
        policy,
        "--name",
        name,
        "--action",
        "bypass",
        "--priority",
        "4",
        "--direction",
        "incoming",
        "--frame-type",
        "ip",
        "--protocol",
        "tcp",
        "--source-ip",
        source,
    ]
}

#[test]
fn a_rule_that_would_shut_the_manager_out_of_a_manager_initiated_computer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "communication.direction=manager-initiated");
    let _agent = Agent::start(&tmp.path().join("agent"), Some(&activation(&m)), "kiosk");
    // The manager has dialed it: it knows the address its dials come from.
    wait_for(LIMIT, || {
        let c = wait_up_to_date(&m, "kiosk");
        (counter(&c, "manager-sessions") >= 1).then_some(())
    });

    let refused = m.cli(&agent_port_rule(
        "Base Policy",
        "admin host only",
        "127.0.0.2",
    ));
    assert_eq!(refused.status.code(), Some(1), "the API refused it");
    let words = String::from_utf8_lossy(&refused.stderr);
    assert!(
        words.contains("'admin host only'")
            && words.contains("127.0.0.1")
            && words.contains("kiosk"),
        "the refusal names the rule, the manager's address and the computer: {words}"
    );
    let rules = m.cli_json(&["policies", "rules", "list", "Base Policy"]);
    assert_eq!(rules["rules"], serde_json::json!([]), "nothing was stored");

    // Beside a rule that admits the manager, the narrow one is fine; removing the wide one
    // would leave the narrow one refusing the manager.
    let wide = m.cli_json(&agent_port_rule("Base Policy", "loopback", "127.0.0.0/8"));
    let wide_id = wide["effective"][0]["id"].to_string();
    m.cli_json(&agent_port_rule(
        "Base Policy",
        "admin host only",
        "127.0.0.2",
    ));
    let removal = m.cli(&["policies", "rules", "remove", "Base Policy", &wide_id]);
    assert_eq!(removal.status.code(), Some(1));
    let words = String::from_utf8_lossy(&removal.stderr);
    assert!(words.contains("'admin host only'"), "{words}");

    // Editing the wide rule away from the manager is refused likewise; an edit that still
    // admits it is not, and the rule keeps its id.
    let edit = |name, source| {
        let mut args = agent_port_rule("Base Policy", name, source);
        args[2] = "edit";
        args.insert(4, &wide_id);
        m.cli(&args)
    };
    let narrowed = edit("loopback", "127.0.0.3");
    assert_eq!(narrowed.status.code(), Some(1));
    let words = String::from_utf8_lossy(&narrowed.stderr);
    assert!(words.contains("'loopback'"), "{words}");
    let renamed = edit("the manager's host", "127.0.0.1");
    assert!(renamed.status.success(), "{renamed:?}");
    let rules = m.cli_json(&["policies", "rules", "list", "Base Policy"]);
    assert_eq!(rules["rules"][0]["id"].to_string(), wide_id, "{rules}");
    assert_eq!(rules["rules"][0]["name"], "the manager's host", "{rules}");

    // What the computer runs: the rule (any port) replaces the hidden agent-port rule, whose
    // reply half stays first; the firewall itself is off.
    let id = computer(&m, "kiosk")["id"].to_string();
    let runs = m.cli_json(&["computers", "rules", &id]);
    assert_eq!(runs["rules"][0]["counter"], "agent-port-reply", "{runs}");
    let own = format!("rule-{wide_id}");
    let rule = runs["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["counter"] == own.as_str());
    assert_eq!(
        rule.map(|r| &r["policy"]),
        Some(&serde_json::json!("Base Policy")),
        "{runs}"
    );
    let table = m.cli(&["computers", "rules", &id]);
    let words = String::from_utf8_lossy(&table.stdout);
    assert!(
        words.starts_with("Firewall: off") && words.contains(&own),
        "{words}"
    );

    // Bidirectional, the agent still heartbeats: the removal is accepted. Going
    // manager-initiated with the narrow rule alone is what would lock the manager out.
    set_base(&m, "communication.direction=bidirectional");
    m.cli_json(&["policies", "rules", "remove", "Base Policy", &wide_id]);
    let switch = m.cli(&[
        "policies",
        "set",
        "Base Policy",
        "communication.direction=manager-initiated",
    ]);
    assert_eq!(switch.status.code(), Some(1));
    let words = String::from_utf8_lossy(&switch.stderr);
    assert!(words.contains("'admin host only'"), "{words}");
}

#[test]
fn a_manager_initiated_agent_its_policy_shuts_out_says_why_and_recovers_once_the_rule_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "communication.direction=manager-initiated");
    // In place before any computer exists: nothing to judge it by, so it is accepted, and the
    // agent activates into it.
    let rule = m.cli_json(&agent_port_rule(
        "Base Policy",
        "admin host only",
        "127.0.0.2",
    ));
    let rule_id = rule["effective"][0]["id"].to_string();
    let agent = Agent::start(&tmp.path().join("agent"), Some(&activation(&m)), "kiosk");
    wait_for(LIMIT, || {
        m.log()
            .contains(
                "the agent's firewall rule 'admin host only' refused the manager at 127.0.0.1",
            )
            .then_some(())
    });
    assert!(
        agent.log().contains("refused a connection from 127.0.0.1"),
        "{}",
        agent.log()
    );
    let sessions = counter(&computer(&m, "kiosk"), "manager-sessions");

    // The removal cannot be dialed in; the agent fetches it after three silent intervals, and
    // the manager's dials get through again.
    m.cli_json(&["policies", "rules", "remove", "Base Policy", &rule_id]);
    let c = wait_for(LIMIT, || {
        let c = wait_up_to_date(&m, "kiosk");
        (counter(&c, "manager-sessions") > sessions).then_some(c)
    });
    assert_eq!(c["firewall_rules"], serde_json::json!([]));
    assert!(
        agent.log().contains("nothing heard from the manager"),
        "{}",
        agent.log()
    );
}
