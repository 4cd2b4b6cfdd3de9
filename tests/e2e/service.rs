//! The manager and the agent as systemd runs them: SIGHUP ignored, journal priorities when
//! stderr is the journal's stream, and JSON log lines.

use crate::support::agent::wait_for;
use crate::support::{Manager, log_path};
use hyper::Method;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn sighup_is_logged_and_ignored_and_the_manager_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    signal(m.pid(), "-HUP");
    wait_for(Duration::from_secs(10), || {
        m.log().contains("received SIGHUP: ignored").then_some(())
    });
    signal(m.pid(), "-HUP");
    wait_for(Duration::from_secs(10), || {
        (m.log().matches("received SIGHUP: ignored").count() == 2).then_some(())
    });
    let health = m
        .client()
        .send(Method::GET, "/healthz", Vec::new(), None)
        .unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(m.computers().len(), 0);
    let (status, log) = m.stop();
    assert!(status.success(), "{status}: {log}");
}

#[test]
fn under_journald_lines_carry_syslog_priorities_and_no_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // A data dir others may read: the manager narrows it and warns.
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The manager's stderr is this file: systemd would name its journal stream the same way.
    let log = std::fs::File::create(log_path(&dir)).unwrap();
    let meta = log.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let m = Manager::start_with_env(&dir, &[("JOURNAL_STREAM", &stream)]);
    let (status, log) = m.stop();
    assert!(status.success(), "{status}: {log}");
    let warning = log
        .lines()
        .find(|l| l.contains("narrowed to 0700"))
        .unwrap_or_else(|| panic!("no narrowing warning in:\n{log}"));
    assert!(warning.starts_with("<4>picket::"), "{warning}");
    assert!(log.lines().any(|l| l.starts_with("<6>")), "{log}");
    for line in log.lines() {
        assert!(
            line.starts_with('<') && !line.contains(" UTC") && !line.contains("Z "),
            "a line without a priority, or with a timestamp of its own: {line}"
        );
    }
    // The same manager with JOURNAL_STREAM naming another stream: plain text, timestamped.
    let m = Manager::start_with_env(&dir, &[("JOURNAL_STREAM", "1:1")]);
    let (_, log) = m.stop();
    assert!(log.lines().last().unwrap().starts_with("[20"), "{log}");
}

#[test]
fn json_logs_are_one_object_a_line() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start_with_args(&tmp.path().join("data"), &["--log-format", "json"]);
    let (status, log) = m.stop();
    assert!(status.success(), "{status}: {log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["time"].is_string()
        && l["level"].is_string()
        && l["target"].is_string()
        && l["message"].is_string()));
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "info" && l["message"] == "manager stopped"),
        "{log}"
    );
}
