//! End-to-end: the real `picket manager` binary and the admin CLI, as a new administrator
//! would use them, including restarts after a clean stop and after `kill -9`.

use crate::support::{BIN, Manager};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

fn effective(policy: &Value, key: &str) -> (Value, String) {
    let entry = &policy["effective"][key];
    (
        entry["value"].clone(),
        entry["source"].as_str().unwrap_or_default().to_string(),
    )
}

fn shape_policy_tree(m: &Manager) {
    m.cli_json(&["policies", "create", "Servers", "--parent", "Base Policy"]);
    m.cli_json(&["policies", "create", "Laptops", "--parent", "Servers"]);
    m.cli_json(&[
        "policies",
        "set",
        "Laptops",
        "heartbeat.missed-before-alert=unlimited",
    ]);
    m.cli_json(&["policies", "set", "Servers", "heartbeat.interval=5m"]);
}

fn assert_laptops_inherit(m: &Manager) {
    let laptops = m.cli_json(&["policies", "show", "Laptops"]);
    assert_eq!(laptops["parent"], "Servers");
    assert_eq!(
        effective(&laptops, "heartbeat.interval"),
        (Value::from("5m"), "policy:Servers".into())
    );
    assert_eq!(
        effective(&laptops, "heartbeat.missed-before-alert"),
        (Value::from("unlimited"), "policy:Laptops".into())
    );
    assert_eq!(
        effective(&laptops, "communication.direction"),
        (Value::from("bidirectional"), "default".into())
    );
}

#[test]
fn new_user_walkthrough_survives_clean_stop_and_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let m = Manager::start(&dir);
    shape_policy_tree(&m);
    assert_laptops_inherit(&m);

    let (status, _log) = m.stop();
    assert!(status.success(), "clean stop exits 0, got {status}");
    assert!(
        !dir.join("ports.json").exists(),
        "ports.json removed on stop"
    );

    let m = Manager::start(&dir);
    assert_laptops_inherit(&m);
    let web = m.cli_json(&["computers", "add", "web1", "--policy", "Laptops"]);
    assert_eq!(web["status"], "activation-required");
    m.kill();

    let m = Manager::start(&dir);
    assert_laptops_inherit(&m);
    let computers = m.cli_json(&["computers", "list"]);
    assert_eq!(computers["computers"][0]["hostname"], "web1");
    let policies = m.cli_json(&["policies", "list"]);
    assert_eq!(policies["policies"].as_array().map(Vec::len), Some(3));
}

#[test]
fn first_start_creates_private_keys_and_admin_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let m = Manager::start(&dir);
    for secret in ["admin-api-key", "pki/ca.key", "pki/manager.key"] {
        let mode = std::fs::metadata(dir.join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
    let ports: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ports.json")).unwrap()).unwrap();
    assert!(ports["agent"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(ports["console"].as_str().unwrap().starts_with("127.0.0.1:"));

    let key = std::fs::read_to_string(dir.join("admin-api-key")).unwrap();
    let (_, log) = m.stop();
    assert!(
        !log.contains(key.trim()),
        "the API key must never be logged"
    );

    // A second start reuses the same CA and key.
    let ca = std::fs::read(dir.join("pki/ca.crt")).unwrap();
    let m = Manager::start(&dir);
    assert_eq!(std::fs::read(dir.join("pki/ca.crt")).unwrap(), ca);
    assert_eq!(
        std::fs::read_to_string(dir.join("admin-api-key")).unwrap(),
        key
    );
    m.cli_json(&["policies", "list"]);
}

#[test]
fn second_manager_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let _running = Manager::start(&dir);
    let out = std::process::Command::new(BIN)
        .args(["manager", "--data-dir"])
        .arg(&dir)
        .args([
            "--agent-listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another Picket manager"), "{stderr}");
}

#[test]
fn data_dir_that_is_a_file_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("data");
    std::fs::write(&file, b"not a dir").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["manager", "--data-dir"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}

#[test]
fn cli_exit_codes_follow_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));

    // Refused by the manager: exit 1, the message names the field.
    let out = m.cli(&["policies", "set", "Base Policy", "heartbeat.interval=25h"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("settings.heartbeat.interval"), "{stderr}");

    let out = m.cli(&["policies", "create", "Orphans", "--parent", "Nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parent"));

    // Usage errors: exit 2.
    let out = m.cli(&["policies", "set", "Base Policy", "no-equals-sign"]);
    assert_eq!(out.status.code(), Some(2));
    let out = m.cli(&["policies", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = m.cli(&["computers", "show", "not-a-number"]);
    assert_eq!(out.status.code(), Some(2));

    // A wrong key is refused with exit 1.
    let out = m.cli(&["policies", "list", "--api-key", "wrong"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // Text output shows the effective values and their sources.
    let out = m.cli(&["policies", "show", "Base Policy"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("heartbeat.interval") && stdout.contains("default"));
}

/// Every file and folder under `dir` with its mode, for a failure message.
fn modes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut found = vec![(
        dir.to_path_buf(),
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777,
    )];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(modes_under(&path));
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            found.push((path, mode));
        }
    }
    found
}

#[test]
fn under_umask_000_every_file_of_the_manager_and_agent_is_private() {
    use crate::support::agent::{Agent, activation};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let m = Manager::start_with_umask(&dir, "000");
    let agent_dir = tmp.path().join("agent");
    let agent = Agent::start_with_umask(&agent_dir, Some(&activation(&m)), "umask-host", "000");
    agent.wait_until_running(1);
    crate::support::agent::wait_for(std::time::Duration::from_secs(20), || agent.listen_addr());
    for (root, what) in [(&dir, "manager"), (&agent_dir, "agent")] {
        let modes = modes_under(root);
        assert!(modes.len() > 4, "{what}: {modes:?}");
        for (path, mode) in &modes {
            let wanted = if path.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(*mode, wanted, "{what}: {} in {modes:?}", path.display());
        }
    }
    assert!(dir.join("picket.redb").exists() && agent_dir.join("spool.redb").exists());
    agent.stop();
    m.stop();
}

#[test]
fn a_loose_data_dir_is_narrowed_at_start_with_a_log_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (_, _) = Manager::start(&dir).stop();
    let loosen = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    loosen(&dir, 0o755);
    loosen(&dir.join("picket.redb"), 0o644);
    let (_, log) = Manager::start(&dir).stop();
    for (path, mode) in modes_under(&dir) {
        assert_eq!(mode & 0o077, 0, "{}", path.display());
    }
    assert!(
        log.contains("picket.redb was mode 0644; narrowed to 0600"),
        "{log}"
    );
}

/// A 0-byte store next to an initialised data dir (a crash while it was created, a bad
/// restore) once started a new site over the old one: a new admin key, no computers.
#[test]
fn an_empty_or_missing_store_beside_an_initialised_site_is_refused_and_nothing_is_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (_, _) = Manager::start(&dir).stop();
    let snapshot = |dir: &std::path::Path| {
        [
            "admin-api-key",
            "pki/ca.key",
            "pki/ca.crt",
            "pki/manager.key",
        ]
        .map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    let before = snapshot(&dir);
    let start = || {
        std::process::Command::new(BIN)
            .args(["manager", "--data-dir"])
            .arg(&dir)
            .args(["--agent-listen", "127.0.0.1:0"])
            .args(["--console-listen", "127.0.0.1:0"])
            .output()
            .unwrap()
    };

    std::fs::write(dir.join("picket.redb"), b"").unwrap();
    let out = start();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("picket.redb is empty"), "{stderr}");
    assert!(
        stderr.contains("from a backup") && stderr.contains("aside"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Console login"));
    assert_eq!(std::fs::metadata(dir.join("picket.redb")).unwrap().len(), 0);

    std::fs::remove_file(dir.join("picket.redb")).unwrap();
    let out = start();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("picket.redb is missing"), "{stderr}");
    assert!(!dir.join("picket.redb").exists());
    assert_eq!(
        snapshot(&dir),
        before,
        "nothing of the site was overwritten"
    );

    // So is --reset-admin-password, which opens the store too.
    let out = std::process::Command::new(BIN)
        .args(["manager", "--reset-admin-password", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.join("picket.redb").exists());
}
