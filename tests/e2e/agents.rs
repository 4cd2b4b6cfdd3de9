//! End-to-end: a real manager and real `picket agent` processes over loopback mutual TLS, with
//! one-second heartbeats. Every wait is on a condition with a deadline.

use crate::support::Manager;
use crate::support::agent::{Agent, activation, set_base, wait_for};
use hyper::Method;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Waits until the first computer has completed a heartbeat; its id.
fn first_heartbeat(m: &Manager) -> u64 {
    wait_for(Duration::from_secs(30), || {
        computers(m)
            .first()
            .filter(|c| c["agent"]["last_heartbeat_ms"].is_u64())
            .and_then(|c| c["id"].as_u64())
    })
}

fn computers(m: &Manager) -> Vec<Value> {
    m.computers()
}

fn events(m: &Manager, computer: u64) -> Vec<Value> {
    m.cli_json(&[
        "events",
        "list",
        "--computer",
        &computer.to_string(),
        "--limit",
        "10000",
    ])["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until computer `id` has reported `n` events named `name`; all its events then.
fn wait_for_events(m: &Manager, id: u64, name: &str, n: usize) -> Vec<Value> {
    wait_for(Duration::from_secs(30), || {
        let events = events(m, id);
        (count(&events, name) == n).then_some(events)
    })
}

fn count(events: &[Value], name: &str) -> usize {
    events.iter().filter(|e| e["name"] == name).count()
}

/// Every sequence number from 1 to the highest appears exactly once: nothing lost, nothing
/// stored twice.
fn assert_exactly_once(events: &[Value]) {
    let mut seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "event sequences stored");
}

#[test]
fn three_agents_come_online_and_a_policy_change_reaches_all_within_an_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    // One of the three was added by hostname beforehand: activation must match it.
    let added = m.cli_json(&["computers", "add", "web2", "--kind", "vm"]);
    let a = activation(&m);
    let agents: Vec<Agent> = ["web1", "web2", "web3"]
        .iter()
        .map(|h| Agent::start(&tmp.path().join(h), Some(&a), h))
        .collect();

    let online = wait_for(Duration::from_secs(30), || {
        let all = computers(&m);
        let ready = all.len() == 3
            && all.iter().all(|c| {
                c["status"] == "online"
                    && c["agent"]["last_heartbeat_ms"].is_u64()
                    && c["agent"]["config_up_to_date"] == true
            });
        ready.then_some(all)
    });
    let web2 = online.iter().find(|c| c["hostname"] == "web2").unwrap();
    assert_eq!(
        web2["id"], added["id"],
        "the computer added by hostname was activated"
    );
    assert_eq!(web2["kind"], "vm");
    for c in &online {
        let agent = &c["agent"];
        assert!(
            matches!(agent["tls_version"].as_str(), Some("TLSv1.3" | "TLSv1.2")),
            "{agent}"
        );
        assert!(
            agent["cipher_suite"].as_str().unwrap().starts_with("TLS"),
            "{agent}"
        );
        let offset = agent["clock_offset_ms"].as_i64().unwrap();
        assert!(offset.abs() < 5_000, "same machine, offset {offset} ms");
        assert_eq!(agent["applied_fingerprint"], agent["expected_fingerprint"]);
    }

    // A policy change: the expected fingerprint changes at once, and each agent applies it at
    // its next heartbeat (one interval, plus slack for a loaded CI machine). These agents listen
    // (bidirectional), so the manager may push it before the list below is even read: what is
    // checked at once is the expected fingerprint, not that the agents are still behind.
    let before: Vec<Value> = online
        .iter()
        .map(|c| c["agent"]["expected_fingerprint"].clone())
        .collect();
    set_base(&m, "heartbeat.max-clock-change=5m");
    for (c, old) in computers(&m).iter().zip(&before) {
        assert_ne!(
            &c["agent"]["expected_fingerprint"], old,
            "{}",
            c["hostname"]
        );
    }
    wait_for(Duration::from_secs(5), || {
        computers(&m)
            .iter()
            .all(|c| {
                c["agent"]["config_up_to_date"] == true
                    && !before.contains(&c["agent"]["applied_fingerprint"])
            })
            .then_some(())
    });
    // The agent spools "configuration-applied" while applying, so it travels with the next
    // heartbeat.
    for c in computers(&m) {
        let id = c["id"].as_u64().unwrap();
        let events = wait_for_events(&m, id, "configuration-applied", 1);
        assert_exactly_once(&events);
    }
    drop(agents);
}

#[test]
fn restarts_while_the_manager_is_down_are_each_reported_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let manager_dir = tmp.path().join("manager");
    let m = Manager::start(&manager_dir);
    set_base(&m, "heartbeat.interval=1s");
    let a = activation(&m);
    let agent_dir = tmp.path().join("agent");
    let agent = Agent::start(&agent_dir, Some(&a), "laptop1");
    let id = first_heartbeat(&m);
    wait_for_events(&m, id, "agent-started", 1);
    agent.stop();
    m.stop();

    // Five restarts with no manager: each spools a start and a stop that nobody acknowledges.
    for round in 1..=5 {
        let agent = Agent::start(&agent_dir, None, "laptop1");
        agent.wait_until_running(round + 1);
        agent.stop();
    }

    let m = Manager::start(&manager_dir);
    let agent = Agent::start(&agent_dir, None, "laptop1");
    // 1 before the outage, 5 during it, 1 now.
    let events = wait_for_events(&m, id, "agent-started", 7);
    assert_eq!(count(&events, "agent-stopped"), 6);
    assert_exactly_once(&events);
    drop(agent);
}

#[test]
fn killing_the_manager_mid_delivery_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let manager_dir = tmp.path().join("manager");
    let m = Manager::start(&manager_dir);
    set_base(&m, "heartbeat.interval=1s");
    let a = activation(&m);
    let dirs: Vec<PathBuf> = (1..=3).map(|i| tmp.path().join(format!("a{i}"))).collect();
    let agents: Vec<Agent> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| Agent::start(d, Some(&a), &format!("host{i}")))
        .collect();
    wait_for(Duration::from_secs(30), || {
        let all = computers(&m);
        (all.len() == 3 && all.iter().all(|c| c["agent"]["last_heartbeat_ms"].is_u64()))
            .then_some(())
    });
    // Restart the agents a few times so each has events in flight, and SIGKILL the manager
    // while they deliver them.
    let mut agents = agents;
    for round in 2..=4 {
        for agent in agents.drain(..) {
            agent.stop();
        }
        agents = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| Agent::start(d, None, &format!("host{i}")))
            .collect();
        for agent in &agents {
            agent.wait_until_running(round);
        }
    }
    m.kill();
    let m = Manager::start(&manager_dir);
    for c in computers(&m) {
        let id = c["id"].as_u64().unwrap();
        // 1 at activation start + 3 restarts = 4 starts and 3 stops per agent, however the
        // kill cut the deliveries.
        let events = wait_for_events(&m, id, "agent-started", 4);
        assert_eq!(count(&events, "agent-stopped"), 3, "{events:?}");
        assert_exactly_once(&events);
    }
    drop(agents);
}

#[test]
fn a_token_cannot_take_over_a_computer_that_already_has_an_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    let a = activation(&m);
    let first = Agent::start(&tmp.path().join("first"), Some(&a), "web1");
    let id = first_heartbeat(&m);
    // Were it let in, the intruder would run on; so wait for its exit with a deadline.
    let intruder_dir = tmp.path().join("intruder");
    let mut intruder = Agent::start(&intruder_dir, Some(&a), "WEB1");
    let status = wait_for(Duration::from_secs(30), || {
        intruder.child.as_mut().unwrap().try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1));
    let stderr = intruder.log();
    assert!(stderr.contains("already activated"), "{stderr}");
    // The first agent keeps its identity: still one computer, still heartbeating.
    let before = computers(&m)[0]["agent"]["counters"]["heartbeats-ok"]
        .as_u64()
        .unwrap_or(0);
    wait_for(Duration::from_secs(30), || {
        let all = computers(&m);
        let ok = all[0]["agent"]["counters"]["heartbeats-ok"]
            .as_u64()
            .unwrap_or(0);
        (all.len() == 1 && all[0]["id"] == id && ok > before).then_some(())
    });
    drop(first);
}

fn status(m: &Manager, id: u64) -> String {
    m.cli_json(&["computers", "show", &id.to_string()])["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn status_follows_the_agent_offline_online_stopped_and_unknown_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let manager_dir = tmp.path().join("manager");
    let m = Manager::start(&manager_dir);
    set_base(&m, "heartbeat.interval=1s");
    let a = activation(&m);
    let dir = tmp.path().join("agent");
    let agent = Agent::start(&dir, Some(&a), "db1");
    let id = wait_for(Duration::from_secs(30), || {
        computers(&m)
            .first()
            .filter(|c| c["status"] == "online")
            .and_then(|c| c["id"].as_u64())
    });
    // SIGKILL: no goodbye, so it is offline once a heartbeat is missed (1 s + 1 s grace).
    drop(agent);
    wait_for(Duration::from_secs(30), || {
        (status(&m, id) == "offline").then_some(())
    });
    let agent = Agent::start(&dir, None, "db1");
    wait_for(Duration::from_secs(30), || {
        (status(&m, id) == "online").then_some(())
    });
    // A clean stop says goodbye: stopped, not offline, and it stays so.
    agent.stop();
    wait_for(Duration::from_secs(30), || {
        (status(&m, id) == "stopped").then_some(())
    });
    // After a manager restart nobody is blamed for its downtime: unknown until heard from.
    m.stop();
    let m = Manager::start(&manager_dir);
    assert_eq!(status(&m, id), "unknown");
    let agent = Agent::start(&dir, None, "db1");
    wait_for(Duration::from_secs(30), || {
        (status(&m, id) == "online").then_some(())
    });
    drop(agent);

    // Each change is in the computer's history, with its reason.
    let history = m
        .client()
        .call(
            Method::GET,
            &format!("/api/v1/computers/{id}/history"),
            None,
        )
        .unwrap();
    let lines: Vec<String> = history["history"]
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
        .collect();
    for expected in [
        "activated agent",
        "status online -> offline: 1 heartbeat(s) missed",
        "status offline -> online",
        "status online -> stopped",
        "status stopped -> unknown: the manager started",
        "status unknown -> online",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "no '{expected}' in {lines:#?}"
        );
    }
    let shown = m.cli(&["computers", "show", &id.to_string()]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("unknown -> online"));

    // A policy above it changing is in its history too, with what changed.
    set_base(&m, "heartbeat.max-clock-change=1h");
    let history = m
        .client()
        .call(
            Method::GET,
            &format!("/api/v1/computers/{id}/history"),
            None,
        )
        .unwrap();
    assert_eq!(
        history["history"][0]["what"], "policy-changed",
        "{history:#}"
    );
    let detail = history["history"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("heartbeat.max-clock-change=1h"), "{detail}");
}

fn alerts(m: &Manager, all: bool) -> Vec<Value> {
    let mut args = vec!["alerts", "list"];
    if all {
        args.push("--all");
    }
    m.cli_json(&args)["alerts"].as_array().unwrap().clone()
}

#[test]
fn offline_alert_on_the_third_missed_heartbeat_clears_and_comes_back_after_dismissal() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "heartbeat.missed-before-alert=2");
    let a = activation(&m);
    let dir = tmp.path().join("agent");
    let agent = Agent::start(&dir, Some(&a), "app1");
    let id = first_heartbeat(&m);
    assert!(alerts(&m, true).is_empty());

    drop(agent); // SIGKILL: no goodbye
    let alert = wait_for(Duration::from_secs(30), || {
        alerts(&m, false).first().cloned()
    });
    assert_eq!(alert["kind"], "computer-offline");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["computer"], id);
    assert_eq!(alert["hostname"], "app1");
    let message = alert["message"].as_str().unwrap();
    // Raised when the third miss was counted, not at the first or second.
    assert!(message.contains("3 heartbeat(s) missed"), "{message}");
    assert!(message.contains("last heartbeat"), "{message}");

    // The next heartbeat clears it by itself.
    let agent = Agent::start(&dir, None, "app1");
    wait_for(Duration::from_secs(30), || {
        alerts(&m, false).is_empty().then_some(())
    });
    let history = alerts(&m, true);
    assert!(history[0]["cleared_ms"].is_u64(), "{history:?}");

    // Dismissed while the computer is still offline, it comes back as a new alert.
    drop(agent);
    let first = wait_for(Duration::from_secs(30), || {
        alerts(&m, false).first().cloned()
    });
    let first_id = first["id"].as_u64().unwrap().to_string();
    let dismissed = m.cli_json(&["alerts", "dismiss", &first_id]);
    assert!(dismissed["alerts"][0]["dismissed_ms"].is_u64());
    let again = m.cli(&["alerts", "dismiss", &first_id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("409"));
    let unknown = m.cli(&["alerts", "dismiss", "999"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("404"));
    let back = wait_for(Duration::from_secs(30), || {
        alerts(&m, false).first().cloned()
    });
    assert_ne!(back["id"].as_u64().unwrap().to_string(), first_id);
    assert_eq!(back["kind"], "computer-offline");

    // Deleting the computer ends its alerts: nothing else ever would.
    m.cli_json(&["computers", "delete", &id.to_string()]);
    assert!(alerts(&m, false).is_empty());
}

#[test]
fn a_stopped_vm_is_vm_stopped_and_alerts_only_when_the_setting_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "heartbeat.missed-before-alert=0");
    let vm = m.cli_json(&["computers", "add", "vm1", "--kind", "vm"]);
    let id = vm["id"].as_u64().unwrap();
    let a = activation(&m);
    let agent = Agent::start(&tmp.path().join("agent"), Some(&a), "vm1");
    wait_for(Duration::from_secs(30), || {
        computers(&m)
            .first()
            .filter(|c| c["agent"]["last_heartbeat_ms"].is_u64())
            .map(|_| ())
    });
    let stopped = m.cli_json(&[
        "computers",
        "set",
        &id.to_string(),
        "vm_power_state=stopped",
    ]);
    assert_eq!(stopped["vm_power_state"], "stopped");
    drop(agent); // the hypervisor stopped it
    wait_for(Duration::from_secs(30), || {
        (status(&m, id) == "vm-stopped").then_some(())
    });
    // The setting decides whether a stopped VM is an error: turned on, the alert comes.
    set_base(&m, "heartbeat.offline-errors-for-inactive-vms=true");
    let alert = wait_for(Duration::from_secs(30), || {
        alerts(&m, false).first().cloned()
    });
    assert_eq!(alert["kind"], "computer-offline");
    assert_eq!(alert["computer"], id);
}

#[test]
fn a_clock_jump_raises_clock_changed_which_stays_until_dismissed() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "heartbeat.max-clock-change=5m");
    let a = activation(&m);
    let skew = tmp.path().join("skew");
    std::fs::write(&skew, "0").unwrap();
    let env = [("PICKET_TEST_WALL_SKEW_FILE", skew.as_path())];
    let agent = Agent::start_with_env(&tmp.path().join("agent"), Some(&a), "kiosk1", &env);
    let id = first_heartbeat(&m);
    // Someone sets the kiosk's clock an hour ahead.
    std::fs::write(&skew, "3600000").unwrap();
    let alert = wait_for(Duration::from_secs(30), || {
        alerts(&m, false)
            .into_iter()
            .find(|a| a["kind"] == "clock-changed")
    });
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["computer"], id);
    // The agent saw it too and reported event 5004.
    wait_for_events(&m, id, "clock-changed", 1);
    // It does not clear itself: more heartbeats, still active.
    let beats = |m: &Manager| {
        computers(m)[0]["agent"]["counters"]["heartbeats-ok"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = beats(&m);
    wait_for(Duration::from_secs(30), || {
        (beats(&m) >= before + 2).then_some(())
    });
    let still = alerts(&m, false);
    assert!(still.iter().any(|a| a["id"] == alert["id"]), "{still:?}");
    // Only a dismissal ends it, and it does not come back without a new change.
    m.cli_json(&["alerts", "dismiss", &alert["id"].to_string()]);
    let before = beats(&m);
    wait_for(Duration::from_secs(30), || {
        (beats(&m) >= before + 2).then_some(())
    });
    assert!(
        !alerts(&m, false)
            .iter()
            .any(|a| a["kind"] == "clock-changed"),
        "no new change, no new alert"
    );
    drop(agent);
}
