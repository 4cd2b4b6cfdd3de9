//! Backup and restore end to end: a backup taken while a real manager serves a heartbeating
//! agent, refused over the live data dir, restored into a new one, checked, and the same agent
//! carries on with the restored manager (its certificate still verifies).

use crate::support::agent::{Agent, activation, set_base, wait_for};
use crate::support::{BIN, Manager};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn last_heartbeat(m: &Manager) -> Option<u64> {
    m.computers()
        .first()
        .and_then(|c| c["agent"]["last_heartbeat_ms"].as_u64())
}

fn picket(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run picket")
}

#[test]
fn a_backup_taken_under_load_restores_elsewhere_and_its_agent_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("manager");
    let m = Manager::start(&data);
    set_base(&m, "heartbeat.interval=1s");
    let a = activation(&m);
    let _agent = Agent::start(&tmp.path().join("agent"), Some(&a), "web1");
    let first = wait_for(LIMIT, || last_heartbeat(&m));
    // Heartbeats go on while the backup is taken.
    wait_for(LIMIT, || last_heartbeat(&m).filter(|t| *t > first));
    let out = tmp.path().join("site.backup");
    let pass = tmp.path().join("passphrase");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let out_arg = out.to_str().unwrap();
    let pass_arg = pass.to_str().unwrap();
    let taken = m.cli_json(&["backup", "--out", out_arg, "--passphrase-file", pass_arg]);
    assert_eq!(taken["encrypted"], true, "{taken}");
    assert_eq!(taken["computers"], 1, "{taken}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The manager's snapshot was taken away.
    let left = std::fs::read_dir(data.join("snapshots")).unwrap().count();
    assert_eq!(left, 0);
    // Never over a data dir, least of all the live one.
    let over = m.cli(&["restore", out_arg, "--passphrase-file", pass_arg]);
    assert!(!over.status.success());
    let said = String::from_utf8_lossy(&over.stderr);
    assert!(said.contains("is not empty"), "{said}");
    // Elsewhere: restored and sound.
    let new = tmp.path().join("restored");
    let new_arg = new.to_str().unwrap();
    let restored = picket(&[
        "restore",
        out_arg,
        "--data-dir",
        new_arg,
        "--passphrase-file",
        pass_arg,
        "--json",
    ]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let restored: serde_json::Value = serde_json::from_slice(&restored.stdout).unwrap();
    assert_eq!(restored["computers"], 1, "{restored}");
    let checked = picket(&["check", "--data-dir", new_arg]);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{said}");
    assert!(said.contains("every record decodes"), "{said}");
    // The restored manager takes the old one's place (same agent address): the agent, which
    // never restarted, is heard by it.
    let (_, _) = m.stop();
    std::fs::copy(
        data.with_extension("agent-addr"),
        new.with_extension("agent-addr"),
    )
    .unwrap();
    let r = Manager::start(&new);
    let before = last_heartbeat(&r).unwrap_or(0);
    let heard = wait_for(LIMIT, || last_heartbeat(&r).filter(|t| *t > before));
    assert!(heard > before);
    let computers = r.computers();
    assert_eq!(computers[0]["hostname"], "web1", "{computers:?}");
}
