//! Agents upgraded from the manager (`agent.auto-upgrade`, `schema/wire.md` Upgrades): two
//! builds that differ only in version are this build and a copy whose version slot
//! (`release.rs`) was rewritten, so the crate is compiled once.

use crate::support::agent::{Agent, activation, set_base, wait_for};
use crate::support::{BIN, Manager};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// A copy of this build in `dir` whose version is `version` (as long as this build's).
fn build_with_version(dir: &Path, version: &str) -> PathBuf {
    let ours = env!("CARGO_PKG_VERSION");
    assert_eq!(version.len(), ours.len(), "the slot is rewritten in place");
    let mut bytes = std::fs::read(BIN).unwrap();
    let slot = [b"PICKET-VERSION-SLOT:".as_slice(), ours.as_bytes(), b"\0"].concat();
    let at: Vec<usize> = bytes
        .windows(slot.len())
        .enumerate()
        .filter(|(_, w)| *w == slot.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "one version slot in the binary");
    let start = at[0] + b"PICKET-VERSION-SLOT:".len();
    bytes[start..start + version.len()].copy_from_slice(version.as_bytes());
    let path = dir.join(format!("picket-{version}"));
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let said = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&said.stdout).trim(),
        format!("picket {version}")
    );
    path
}

fn events(m: &Manager) -> Vec<Value> {
    m.cli_json(&["events", "list", "--computer", "1", "--limit", "1000"])["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["name"] == name).collect()
}

fn agent_version(m: &Manager) -> Option<String> {
    m.computers()
        .first()
        .and_then(|c| c["agent"]["agent_version"].as_str().map(String::from))
}

fn field<'a>(event: &'a Value, name: &str) -> &'a str {
    event["fields"][name].as_str().unwrap_or_default()
}

#[test]
fn an_agent_older_than_its_manager_upgrades_to_its_binary_and_its_history_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let old = build_with_version(tmp.path(), "0.0.9");
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "agent.auto-upgrade=true");
    let data = tmp.path().join("agent");
    let mut agent = Agent::start_from(&old, &data, Some(&activation(&m)), "up1", &[]);
    let pid = agent.child.as_ref().unwrap().id();
    wait_for(LIMIT, || {
        (agent_version(&m).as_deref() == Some(env!("CARGO_PKG_VERSION"))).then_some(())
    });
    let history = wait_for(LIMIT, || {
        let events = events(&m);
        (!named(&events, "agent-upgraded").is_empty()).then_some(events)
    });
    for name in ["agent-upgrade-started", "agent-upgraded"] {
        let said = named(&history, name);
        assert_eq!(said.len(), 1, "{name}: {history:?}");
        assert_eq!(field(said[0], "from"), "0.0.9", "{name}");
        assert_eq!(field(said[0], "to"), env!("CARGO_PKG_VERSION"), "{name}");
    }
    assert!(
        named(&history, "agent-upgrade-failed").is_empty(),
        "{history:?}"
    );
    // The same process (exec), now running the staged copy of the manager's binary; the binary
    // it was started from is untouched.
    assert_eq!(agent.child.as_mut().unwrap().try_wait().unwrap(), None);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let staged = data
        .join("upgrade")
        .join(format!("picket-{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(exe, std::fs::canonicalize(&staged).unwrap());
    assert_eq!(std::fs::read(&staged).unwrap(), std::fs::read(BIN).unwrap());
    let mode = std::fs::metadata(&staged).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(
        std::process::Command::new(&old)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
        b"picket 0.0.9\n"
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(data.join("upgrade/state.json")).unwrap()).unwrap();
    assert_eq!(state["trial"], Value::Null, "{state}");
    assert_eq!(state["previous"]["version"], "0.0.9", "{state}");
    // Nothing more is offered to an agent as new as its manager.
    let log = m.log();
    assert_eq!(log.matches("for its upgrade").count(), 1, "{log}");
    agent.stop();

    // Started again (a reboot, systemd), the installed 0.0.9 hands over to the staged binary
    // at once, which is no longer on trial.
    let mut again = Agent::start_from(&old, &data, None, "up1", &[]);
    let pid = again.child.as_ref().unwrap().id();
    wait_for(LIMIT, || {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        (exe == std::fs::canonicalize(&staged).unwrap()).then_some(())
    });
    assert_eq!(again.child.as_mut().unwrap().try_wait().unwrap(), None);
    again.wait_until_running(3);
    let log = m.log();
    assert_eq!(
        log.matches("for its upgrade").count(),
        1,
        "handed over, not downloaded again: {log}"
    );
    again.stop();
    // A package then installs 0.2.0 where 0.0.9 was: it runs itself, and the staged binaries
    // are forgotten and removed.
    let package = build_with_version(tmp.path(), "0.2.0");
    std::fs::rename(&package, &old).unwrap();
    let mut packaged = Agent::start_from(&old, &data, None, "up1", &[]);
    let pid = packaged.child.as_ref().unwrap().id();
    wait_for(LIMIT, || {
        (agent_version(&m).as_deref() == Some("0.2.0")).then_some(())
    });
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        std::fs::canonicalize(&old).unwrap()
    );
    assert!(!staged.exists(), "the staged binary is removed");
    let state: Value =
        serde_json::from_slice(&std::fs::read(data.join("upgrade/state.json")).unwrap()).unwrap();
    assert_eq!(
        (&state["current"], &state["previous"]),
        (&Value::Null, &Value::Null),
        "{state}"
    );
    assert_eq!(packaged.child.as_mut().unwrap().try_wait().unwrap(), None);
    packaged.stop();
}

#[test]
fn an_upgrade_that_does_not_come_online_rolls_back_and_waits_a_day_to_try_again() {
    let tmp = tempfile::tempdir().unwrap();
    let newer = build_with_version(tmp.path(), "0.2.0");
    let m = Manager::start_from(&newer, &tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "agent.auto-upgrade=true");
    let data = tmp.path().join("agent");
    // Version 0.2.0 of this agent never reaches its manager, as a broken release would not.
    let broken = [("PICKET_TEST_OFFLINE_VERSION", Path::new("0.2.0"))];
    let mut agent = Agent::start_from(Path::new(BIN), &data, Some(&activation(&m)), "up2", &broken);
    let pid = agent.child.as_ref().unwrap().id();
    wait_for(LIMIT, || agent_version(&m));
    let history = wait_for(LIMIT, || {
        let events = events(&m);
        (!named(&events, "agent-upgrade-failed").is_empty()).then_some(events)
    });
    let failed = named(&history, "agent-upgrade-failed");
    assert_eq!(field(failed[0], "from"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(failed[0], "to"), "0.2.0");
    assert!(
        field(failed[0], "reason").contains("not online within 10 s"),
        "{failed:?}"
    );
    assert_eq!(
        named(&history, "agent-upgrade-started").len(),
        1,
        "{history:?}"
    );
    assert!(named(&history, "agent-upgraded").is_empty(), "{history:?}");
    // Back on the binary it came from, in the same process, which keeps heartbeating and
    // declines 0.2.0 from now on.
    assert_eq!(agent.child.as_mut().unwrap().try_wait().unwrap(), None);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, std::fs::canonicalize(BIN).unwrap());
    assert_eq!(
        agent_version(&m).as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let before = m.computers()[0]["agent"]["last_heartbeat_ms"]
        .as_u64()
        .unwrap();
    wait_for(LIMIT, || {
        let now = m.computers()[0]["agent"]["last_heartbeat_ms"].as_u64()?;
        (now >= before + 3_000).then_some(())
    });
    let history = events(&m);
    assert_eq!(
        named(&history, "agent-upgrade-started").len(),
        1,
        "{history:?}"
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(data.join("upgrade/state.json")).unwrap()).unwrap();
    // Taken again in a day: the manager may have been away rather than the binary broken.
    assert_eq!(state["waiting"][0][0], "0.2.0", "{state}");
    assert_eq!(state["refused"], serde_json::json!([]), "{state}");
    assert_eq!(state["current"], Value::Null, "{state}");
    let log = m.log();
    assert_eq!(log.matches("for its upgrade").count(), 1, "{log}");
    agent.stop();
}
