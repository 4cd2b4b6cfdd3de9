//! Notifications end to end: a real manager raises and clears alerts of a real agent, and
//! receivers the tests run on 127.0.0.1 (syslog over TCP and UDP, an HTTPS webhook that checks
//! the signature) get them, and a syslog collector the agent's events it asked for; a receiver that was down gets the backlog in order; a manager
//! killed between raising an alert and delivering it delivers it after its restart.

use crate::support::Manager;
use crate::support::agent::{Agent, activation, set_base, wait_for};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
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
    // The delivery is recorded just after the collector has it.
    let state = wait_for(LIMIT, || {
        let state = channel_state(&m, "siem");
        (state["delivery"]["sent"] == 2).then_some(state)
    });
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

/// A computer goes offline during its maintenance window and is still offline when the window
/// is ended: it is paged then, not never; the ended window stays listed.
#[test]
fn an_alert_kept_quiet_by_maintenance_is_sent_when_the_window_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "heartbeat.missed-before-alert=1");
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let rx = tcp_collector(tcp);
    add_syslog(&m, "siem", &addr, "tcp", "text");
    let a = activation(&m);
    let agent = Agent::start(&tmp.path().join("agent"), Some(&a), "web1");
    let id = first_heartbeat(&m).to_string();
    let window = m.cli_json(&[
        "maintenance",
        "add",
        "--computer",
        &id,
        "--duration",
        "1h",
        "--reason",
        "disk swap",
    ]);
    let window_id = window["windows"][0]["id"]
        .as_u64()
        .expect("the window id")
        .to_string();
    drop(agent);
    // Recorded, and skipped by the channel: the window keeps it quiet.
    wait_for(LIMIT, || {
        (channel_state(&m, "siem")["delivery"]["skipped"] == 1).then_some(())
    });
    assert!(
        rx.try_recv().is_err(),
        "a notice went out during the window"
    );
    m.cli_json(&["maintenance", "remove", &window_id]);
    let raised = next(&rx, "the raise at the window's end");
    assert!(
        raised.contains("computer-offline raised on web1"),
        "{raised}"
    );
    let list = m.cli_json(&["maintenance", "list"]);
    let windows = list["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 1, "{list}");
    assert_eq!(windows[0]["active"], false, "{list}");
}

/// A syslog channel that forwards agent-started (by id) and agent-stopped (by name): those
/// events of a real agent reach its TCP collector as CEF, and the agent's other events
/// (activation, configuration applied) do not.
#[test]
fn a_syslog_channel_forwards_the_agent_events_it_names_and_no_others() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let rx = tcp_collector(tcp);
    let added = m.cli_json(&[
        "notifications",
        "add",
        "syslog",
        "siem",
        "--address",
        &addr,
        "--transport",
        "tcp",
        "--format",
        "cef",
        "--event",
        "1000",
        "--event",
        "agent-stopped",
    ]);
    assert_eq!(added["settings"]["events"], serde_json::json!([1000, 1001]));
    assert_eq!(added["event_delivery"]["pending"], 0, "{added}");
    let a = activation(&m);
    let dir = tmp.path().join("agent");
    let agent = Agent::start(&dir, Some(&a), "web1");
    let id = first_heartbeat(&m);
    let started = next(&rx, "agent-started");
    assert!(
        started.contains("|Picket Agent|") && started.contains("|1000|agent-started|2|"),
        "{started}"
    );
    for part in [
        format!("cn1={id} cn1Label=Host ID dvchost=web1 src=127.0.0.1 externalId="),
        " - agent-started - CEF:0|Picket|".to_string(),
        "msg=version\\=".to_string(),
    ] {
        assert!(started.contains(&part), "{part} not in {started}");
    }
    agent.wait_until_running(1);
    agent.stop(); // SIGTERM: agent-stopped goes with the goodbye
    let stopped = next(&rx, "agent-stopped");
    assert!(stopped.contains("|1001|agent-stopped|2|"), "{stopped}");
    // The agent's other events were stored too, and the channel passed over them.
    let events = m.cli_json(&["events", "list", "--computer", &id.to_string()]);
    let others: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .filter(|id| ![1000, 1001].contains(id))
        .collect();
    assert!(!others.is_empty(), "{events}");
    let state = wait_for(LIMIT, || {
        let state = channel_state(&m, "siem");
        (state["event_delivery"]["pending"] == 0).then_some(state)
    });
    let delivery = &state["event_delivery"];
    assert_eq!(delivery["sent"], 2, "{state}");
    assert_eq!(delivery["skipped"], others.len(), "{state}");
    assert_eq!(delivery["dropped"], 0, "{state}");
    while let Ok(extra) = rx.try_recv() {
        assert!(!extra.contains("|Picket Agent|"), "not forwarded: {extra}");
    }
    let sent = m.metric(
        "picket_notifications_total",
        "channel=\"siem\",outcome=\"sent\",what=\"event\"",
    );
    assert_eq!(sent, 2.0);
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
    for event in ["4242", "agent-exploded"] {
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
                "cef",
                "--event",
                event,
            ],
            "events",
        );
    }
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

/// One HTTPS request as the webhook receiver got it.
struct Hook {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Hook {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

/// An HTTPS receiver on 127.0.0.1 with a certificate of a CA the test makes; answers 200 to
/// every request and sends it on. Returns its URL, the CA's PEM and the requests.
fn https_receiver() -> (String, String, Receiver<Hook>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/hooks/picket", listener.local_addr().unwrap());
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            stream.set_read_timeout(Some(LIMIT)).unwrap();
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = BufReader::new(rustls::StreamOwned::new(conn, stream));
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = tls.read_line(&mut line); // the request line
            loop {
                line.clear();
                if tls.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(": ") {
                    headers.push((k.to_string(), v.to_string()));
                }
            }
            let hook = Hook {
                headers,
                body: Vec::new(),
            };
            let len: usize = hook.header("content-length").parse().unwrap_or(0);
            let mut body = vec![0; len];
            if tls.read_exact(&mut body).is_err() {
                continue;
            }
            let mut tls = tls.into_inner();
            let _ = std::io::Write::write_all(
                &mut tls,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = tx.send(Hook { body, ..hook });
        }
    });
    (url, ca.pem(), rx)
}

#[test]
fn a_webhook_is_signed_so_its_receiver_can_verify_it_and_acknowledged_alerts_stay_quiet() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "heartbeat.missed-before-alert=1");
    let (url, ca_pem, rx) = https_receiver();
    let ca = tmp.path().join("hook-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let secret_file = tmp.path().join("secret");
    let secret = "s3cret-s3cret-s3cret";
    std::fs::File::create(&secret_file)
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    m.cli_json(&[
        "notifications",
        "add",
        "webhook",
        "hook",
        "--url",
        &url,
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--ca-cert",
        ca.to_str().unwrap(),
    ]);
    // Repeats go out too, until someone acknowledges.
    m.cli_json(&[
        "notifications",
        "route",
        "add",
        "hook",
        "--on",
        "raised,repeated,cleared",
    ]);
    let a = activation(&m);
    let dir = tmp.path().join("agent");
    let agent = Agent::start(&dir, Some(&a), "files1");
    first_heartbeat(&m);
    drop(agent);
    let hook = next_hook(&rx);
    let timestamp: u64 = hook.header("x-picket-timestamp").parse().unwrap();
    let signature = hook.header("x-picket-signature");
    assert!(
        picket::notify::format::verify_signature(
            secret.as_bytes(),
            timestamp,
            &hook.body,
            signature
        ),
        "the signature does not verify: {signature}"
    );
    assert!(!picket::notify::format::verify_signature(
        b"another-secret!!",
        timestamp,
        &hook.body,
        signature
    ));
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["change"], "raised", "{body}");
    assert_eq!(body["alert"]["kind"], "computer-offline", "{body}");
    assert_eq!(body["alert"]["hostname"], "files1", "{body}");
    assert_eq!(
        hook.header("x-picket-delivery"),
        body["delivery"].as_str().unwrap()
    );
    // Acknowledged: no repeat goes out while it stays active, but the clear does.
    let id = body["alert"]["id"].as_u64().unwrap().to_string();
    let acked = m.cli_json(&["alerts", "ack", &id, "--comment", "looking"]);
    assert_eq!(acked["alerts"][0]["acknowledged"]["comment"], "looking");
    while let Ok(extra) = rx.recv_timeout(Duration::from_secs(3)) {
        let extra: Value = serde_json::from_slice(&extra.body).unwrap();
        // A repeat sent before the acknowledgement landed may still arrive; none after.
        assert_eq!(extra["change"], "repeated", "{extra}");
        assert!(extra["alert"]["acknowledged"].is_null(), "{extra}");
    }
    let _agent = Agent::start(&dir, None, "files1");
    let cleared: Value = serde_json::from_slice(&next_hook(&rx).body).unwrap();
    assert_eq!(cleared["change"], "cleared", "{cleared}");
}

fn next_hook(rx: &Receiver<Hook>) -> Hook {
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("no webhook request within {LIMIT:?}"))
}
