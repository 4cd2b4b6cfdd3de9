//! The manager and the agent as systemd runs them: readiness and watchdog keep-alives over a
//! `$NOTIFY_SOCKET` this test binds, SIGHUP ignored, journal priorities when stderr is the
//! journal's stream, JSON log lines, `$PICKET_DATA_DIR` in place of `--data-dir`, and
//! `picket --version`.

use crate::support::agent::{Agent, activation, wait_for};
use crate::support::{BIN, Manager, log_path};
use hyper::Method;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A watchdog of 200 ms: keep-alives every 100 ms, so a few arrive within a second.
const WATCHDOG_USEC: &str = "200000";

/// The datagrams a service manager would read, in order, until `until` has been seen.
fn read_until(socket: &UnixDatagram, until: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.iter().any(|s: &String| s.starts_with(until)) {
        assert!(
            Instant::now() < deadline,
            "no {until} within 30 s: {seen:?}"
        );
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    seen
}

fn notify_socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (socket, path.to_str().unwrap().to_string())
}

fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn the_manager_says_ready_then_keeps_the_watchdog_fed_then_says_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let (socket, path) = notify_socket(tmp.path());
    let m = Manager::start_with_env(
        &tmp.path().join("data"),
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", WATCHDOG_USEC)],
    );
    let seen = read_until(&socket, "READY=1");
    let ready = seen.last().unwrap();
    assert!(ready.contains("\nSTATUS=console on 127.0.0.1:"), "{ready}");
    // Ready is said once the ports are written, so the API answers by now.
    m.client().get_text("/healthz").unwrap();
    let mut keep_alives = 0;
    while keep_alives < 3 {
        keep_alives += read_until(&socket, "WATCHDOG=1").len();
    }
    let (status, log) = m.stop();
    assert!(status.success(), "{status}: {log}");
    // Said when SIGTERM came, before the store closed; the datagram waits in the socket.
    read_until(&socket, "STOPPING=1");
}

#[test]
fn an_activated_agent_says_ready_and_keeps_the_watchdog_fed() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let (socket, path) = notify_socket(tmp.path());
    let a = Agent::start_with_env(
        &tmp.path().join("agent"),
        Some(&activation(&m)),
        "notify-agent",
        &[
            ("NOTIFY_SOCKET", Path::new(&path)),
            ("WATCHDOG_USEC", Path::new(WATCHDOG_USEC)),
        ],
    );
    let seen = read_until(&socket, "READY=1");
    assert_eq!(seen.last().unwrap(), "READY=1");
    // Ready comes after the activation: the computer exists by now.
    assert_eq!(m.computers().len(), 1);
    read_until(&socket, "WATCHDOG=1");
    read_until(&socket, "WATCHDOG=1");
    a.stop();
    read_until(&socket, "STOPPING=1");
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

#[test]
fn picket_data_dir_stands_in_for_the_flag_and_neither_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    for role in ["manager", "agent"] {
        let out = Command::new(BIN)
            .arg(role)
            .env_remove("PICKET_DATA_DIR")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{role}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--data-dir") && stderr.contains("PICKET_DATA_DIR"),
            "{role}: {stderr}"
        );
    }
    let dir = tmp.path().join("data");
    let mut manager = Command::new(BIN)
        .args(["manager", "--agent-listen", "127.0.0.1:0"])
        .args(["--console-listen", "127.0.0.1:0", "--hostname", "localhost"])
        .env("PICKET_DATA_DIR", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(30), || {
        dir.join("ports.json").exists().then_some(())
    });
    // An admin verb finds the key, the CA and the port through the same variable.
    let out = Command::new(BIN)
        .args(["policies", "list", "--json"])
        .env("PICKET_DATA_DIR", &dir)
        .env_remove("PICKET_API_KEY")
        .output()
        .unwrap();
    // So does `picket backup` of the running manager.
    let file = tmp.path().join("site.backup");
    let backup = Command::new(BIN)
        .args(["backup", "--out"])
        .arg(&file)
        .env("PICKET_DATA_DIR", &dir)
        .env_remove("PICKET_API_KEY")
        .output()
        .unwrap();
    let _ = manager.kill();
    let _ = manager.wait();
    for out in [&out, &backup] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("Base Policy"));
    assert!(file.exists());
}

#[test]
fn version_prints_picket_and_the_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("picket {}\n", env!("CARGO_PKG_VERSION"))
    );
}
