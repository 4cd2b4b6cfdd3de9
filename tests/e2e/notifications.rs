//! Notifications end to end: a real manager raises and clears alerts of a real agent, and
//! receivers the tests run on 127.0.0.1 (syslog over TCP and UDP, an HTTPS webhook that checks
//! the signature) get them; a receiver that was down gets the backlog in order; a manager
//! killed between raising an alert and delivering it delivers it after its restart.

use crate::support::Manager;
use crate::support::agent::{Agent, activation, set_base, wait_for};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A syslog collector over TCP: octet-counted frames (`LEN SP MSG`), each message sent on.
fn tcp_collector(listener: TcpListener) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut len = Vec::new();
                    if reader.read_until(b' ', &mut len).unwrap_or(0) == 0 {
                        return;
                    }
                    let Ok(n) = String::from_utf8_lossy(&len).trim().parse::<usize>() else {
                        return;
                    };
                    let mut msg = vec![0; n];
                    if reader.read_exact(&mut msg).is_err() {
                        return;
                    }
                    let _ = tx.send(String::from_utf8_lossy(&msg).into_owned());
                }
            });
        }
    });
    rx
}

fn udp_collector(socket: UdpSocket) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = vec![0; 65536];
        while let Ok(n) = socket.recv(&mut buf) {
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    rx
}

fn next(rx: &Receiver<String>, what: &str) -> String {
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("no {what} within {LIMIT:?}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn first_heartbeat(m: &Manager) -> u64 {
    wait_for(LIMIT, || {
        m.computers()
            .first()
            .filter(|c| c["agent"]["last_heartbeat_ms"].is_u64())
            .and_then(|c| c["id"].as_u64())
    })
}

fn channel_state(m: &Manager, name: &str) -> Value {
    m.cli_json(&["notifications", "show", name])
}

fn add_syslog(m: &Manager, name: &str, addr: &str, transport: &str, format: &str) {
    m.cli_json(&[
        "notifications",
        "add",
        "syslog",
        name,
        "--address",
        addr,
        "--transport",
        transport,
        "--format",
        format,
    ]);
}

#[test]
fn syslog_channels_deliver_tests_raises_and_clears() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "heartbeat.missed-before-alert=1");
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap().to_string();
    let tcp_rx = tcp_collector(tcp);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap().to_string();
    let udp_rx = udp_collector(udp);
    add_syslog(&m, "siem", &tcp_addr, "tcp", "text");
    add_syslog(&m, "cef", &udp_addr, "udp", "cef");
    // Send a test: the answer says what went where.
    let test = m.cli_json(&["notifications", "test", "siem"]);
    assert_eq!(test["delivered"], true, "{test}");
    assert!(next(&tcp_rx, "test message").contains("test"));

    let a = activation(&m);
    let dir = tmp.path().join("agent");
    let agent = Agent::start(&dir, Some(&a), "web1");
    first_heartbeat(&m);
    drop(agent); // SIGKILL: the computer goes offline
    let raised = next(&tcp_rx, "raise over tcp");
    assert!(raised.starts_with("<130>1 "), "{raised}");
    assert!(
        raised.contains("computer-offline raised on web1"),
        "{raised}"
    );
    let cef = next(&udp_rx, "raise over udp");
    assert!(cef.contains("CEF:0|Picket|Picket Manager|"), "{cef}");
    assert!(cef.contains("dvchost=web1"), "{cef}");
    let _agent = Agent::start(&dir, None, "web1");
    let cleared = next(&tcp_rx, "clear over tcp");
    assert!(
        cleared.contains("computer-offline cleared on web1"),
        "{cleared}"
    );
    let state = channel_state(&m, "siem");
    assert_eq!(state["delivery"]["sent"], 2, "{state}");
    assert_eq!(state["delivery"]["failing"], false, "{state}");
    let metrics = m.metric(
        "picket_notifications_total",
        "channel=\"siem\",outcome=\"sent\"",
    );
    assert_eq!(metrics, 2.0);
}

/// The collector is down: notices wait, in order, through retries and a kill -9 of the
/// manager, and all arrive once it listens.
#[test]
fn notices_wait_for_a_dead_collector_and_survive_a_crash_of_the_manager() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("manager");
    let m = Manager::start(&data);
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "heartbeat.missed-before-alert=1");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    add_syslog(&m, "siem", &addr, "tcp", "text");
    let a = activation(&m);
    let dir = tmp.path().join("agent");
    let agent = Agent::start(&dir, Some(&a), "db1");
    first_heartbeat(&m);
    drop(agent);
    // Raised, and not delivered: the channel is failing with the notice pending.
    wait_for(LIMIT, || {
        let state = channel_state(&m, "siem");
        (state["delivery"]["failing"] == true && state["delivery"]["pending"] == 1).then_some(())
    });
    let agent = Agent::start(&dir, None, "db1");
    wait_for(LIMIT, || {
        (channel_state(&m, "siem")["delivery"]["pending"] == 2).then_some(())
    });
    drop(agent);
    m.kill(); // between raising and delivering
    let rx = tcp_collector(TcpListener::bind(&addr).unwrap());
    let m = Manager::start(&data);
    let got: Vec<String> = (0..2).map(|_| next(&rx, "a queued notice")).collect();
    assert!(got[0].contains("computer-offline raised on db1"), "{got:?}");
    assert!(
        got[1].contains("computer-offline cleared on db1"),
        "{got:?}"
    );
    let state = wait_for(LIMIT, || {
        let state = channel_state(&m, "siem");
        (state["delivery"]["failing"] == false).then_some(state)
    });
    assert_eq!(state["delivery"]["sent"], 2, "{state}");
}

#[test]
fn bad_channels_and_routes_are_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let refused = |args: &[&str], field: &str| {
        let out = m.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{args:?}: {stderr}");
    };
    refused(
        &[
            "notifications",
            "add",
            "email",
            "m",
            "--smtp",
            "mail.example.com:25",
            "--security",
            "none",
            "--from",
            "p@example.com",
            "--to",
            "o@example.com",
        ],
        "security",
    );
    refused(
        &[
            "notifications",
            "add",
            "syslog",
            "s",
            "--address",
            "siem:99999",
            "--transport",
            "udp",
            "--format",
            "cef",
        ],
        "address",
    );
    refused(
        &[
            "notifications",
            "add",
            "syslog",
            "s",
            "--address",
            "siem:514",
            "--transport",
            "udp",
            "--format",
            "json",
        ],
        "format",
    );
    refused(
        &[
            "notifications",
            "add",
            "webhook",
            "w",
            "--url",
            "http://example.com/hook",
        ],
        "url",
    );
    refused(&["notifications", "route", "add", "missing"], "channel");
    let unknown_kind = m.cli(&["notifications", "add", "pager", "p"]);
    assert!(!unknown_kind.status.success());
    add_syslog(&m, "s", "127.0.0.1:514", "udp", "text");
    refused(
        &["notifications", "route", "add", "s", "--kind", "cpu-hot"],
        "kind",
    );
    refused(
        &["notifications", "route", "add", "s", "--policy", "Nowhere"],
        "policy",
    );
    let route = m.cli_json(&[
        "notifications",
        "route",
        "add",
        "s",
        "--kind",
        "computer-offline",
        "--on",
        "raised,repeated",
    ]);
    assert_eq!(route["on"], serde_json::json!(["raised", "repeated"]));
    let webhook = m.cli_json(&[
        "notifications",
        "add",
        "webhook",
        "w",
        "--url",
        "https://example.com/in",
    ]);
    assert!(
        webhook["secret"].as_str().is_some_and(|s| s.len() >= 16),
        "{webhook}"
    );
    let shown = channel_state(&m, "w");
    assert!(
        shown.get("secret").is_none()
            && !shown
                .to_string()
                .contains(webhook["secret"].as_str().unwrap())
    );
}
