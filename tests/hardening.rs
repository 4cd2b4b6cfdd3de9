//! Adversarial end-to-end tests: what a stranger on the network can do to a real manager and
//! agent without credentials, bounded in count and time, on loopback only. Each prints the
//! figures it measured (run with `--nocapture` to read them).
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests may panic

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::Manager;
use support::agent::{Agent, activation, set_base, wait_for};

/// Lets this process hold a few thousand sockets (the usual soft limit is 1,024).
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

/// A blocking TCP connection to `to` from the loopback address `from`: the stranger is
/// another machine than the agents (127.0.0.1), as it would be on a real network.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let socket = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    rustix::net::bind(&socket, &SocketAddrV4::new(from, 0))?;
    rustix::net::connect(&socket, &to)?;
    Ok(TcpStream::from(socket))
}

/// The first flight of a TLS 1.3 client: what a half-handshake attacker sends before it stalls.
fn client_hello() -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    roots.add(ca.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Whether the peer has closed `stream` (a read returns end of file or an error at once).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 512];
    let closed = match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// What a flood of connections that never authenticate did.
#[derive(Debug, Default)]
struct Flood {
    opened: AtomicU64,
    closed_by_peer: AtomicU64,
    failed_to_open: AtomicU64,
}

/// Holds `count` connections to `to` from `sources` for `hold`, reopening each one the peer
/// closes; every other one sends a ClientHello first and then stalls. Returns when `hold` is
/// over or `stop` is set.
fn flood(
    to: SocketAddr,
    sources: &[Ipv4Addr],
    count: usize,
    hold: Duration,
    stop: &AtomicBool,
) -> Flood {
    let stats = Flood::default();
    let hello = client_hello();
    let open = |i: usize| -> Option<TcpStream> {
        let from = sources[i % sources.len()];
        match connect_from(from, to) {
            Ok(mut s) => {
                stats.opened.fetch_add(1, Ordering::Relaxed);
                if i % 2 == 1 {
                    let _ = s.write_all(&hello);
                }
                Some(s)
            }
            Err(_) => {
                stats.failed_to_open.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    };
    let mut held: Vec<Option<TcpStream>> = (0..count).map(open).collect();
    let until = Instant::now() + hold;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        for (i, slot) in held.iter_mut().enumerate() {
            let gone = match slot {
                Some(s) => closed_by_peer(s),
                None => true,
            };
            if gone {
                if slot.is_some() {
                    stats.closed_by_peer.fetch_add(1, Ordering::Relaxed);
                }
                *slot = open(i);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stats
}

fn metric(m: &Manager, name: &str, labels: &str) -> f64 {
    let text = m.client().get_text("/metrics").unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn computers(m: &Manager) -> Vec<Value> {
    m.cli_json(&["computers", "list"])["computers"]
        .as_array()
        .unwrap()
        .clone()
}

/// How often a computer's history says it went offline.
fn times_offline(m: &Manager, id: u64) -> usize {
    let path = format!("/api/v1/computers/{id}/history");
    let history = m.client().call(hyper::Method::GET, &path, None).unwrap();
    history.to_string().matches("-> offline").count()
}

/// The check (a): 2,000 idle and half-handshake connections to the agent port, held
/// and reopened past the handshake deadline, while 3 real agents heartbeat every second. Before
/// the budget, about 300 idle sockets filled the session slots and every computer went offline.
#[test]
fn idle_and_half_handshake_floods_do_not_make_real_agents_miss_a_heartbeat() {
    raise_open_files();
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    set_base(&m, "communication.direction=agent-initiated");
    let agents: Vec<Agent> = (0..3)
        .map(|i| {
            let dir = tmp.path().join(format!("agent{i}"));
            Agent::start(&dir, Some(&activation(&m)), &format!("real-{i}"))
        })
        .collect();
    wait_for(Duration::from_secs(30), || {
        let list = computers(&m);
        (list.len() == 3 && list.iter().all(|c| c["status"] == "online")).then_some(())
    });
    let ports: Value =
        serde_json::from_str(&std::fs::read_to_string(m.dir.join("ports.json")).unwrap()).unwrap();
    let to: SocketAddr = ports["agent"].as_str().unwrap().parse().unwrap();
    let heartbeats = |m: &Manager| {
        metric(
            m,
            "picket_sessions_total",
            "kind=\"heartbeat\",outcome=\"ok\"",
        )
    };
    let before = heartbeats(&m);

    // Eight stranger addresses, 250 sockets each; held 15 s, past the 10 s handshake deadline.
    let sources: Vec<Ipv4Addr> = (2..10).map(|d| Ipv4Addr::new(127, 0, 0, d)).collect();
    let started = Instant::now();
    let stats = flood(
        to,
        &sources,
        2000,
        Duration::from_secs(15),
        &AtomicBool::new(false),
    );
    let took = started.elapsed().as_secs_f64();
    let after = heartbeats(&m);

    let list = computers(&m);
    let alerts = m.cli_json(&["alerts", "list", "--all"])["alerts"].clone();
    let offline: usize = list
        .iter()
        .map(|c| times_offline(&m, c["id"].as_u64().unwrap()))
        .sum();
    let timed_out = metric(
        &m,
        "picket_unauthenticated_closed_total",
        "reason=\"timed-out\"",
    );
    eprintln!(
        "flood: {} connections opened ({} failed to open), {} closed by the manager and \
         reopened, over {took:.1} s; real heartbeats meanwhile: {}; closed for the deadline: \
         {timed_out}; offline entries: {offline}; alerts: {}",
        stats.opened.load(Ordering::Relaxed),
        stats.failed_to_open.load(Ordering::Relaxed),
        stats.closed_by_peer.load(Ordering::Relaxed),
        after - before,
        alerts.as_array().map_or(0, Vec::len),
    );
    assert_eq!(stats.failed_to_open.load(Ordering::Relaxed), 0);
    assert!(
        stats.closed_by_peer.load(Ordering::Relaxed) >= 1000,
        "the handshake deadline closed the idle sockets"
    );
    assert!(
        timed_out >= 1000.0,
        "the deadline closures are counted: {timed_out}"
    );
    assert!(list.iter().all(|c| c["status"] == "online"), "{list:?}");
    assert_eq!(offline, 0, "a computer went offline during the flood");
    assert_eq!(alerts, serde_json::json!([]), "alerts were raised");
    // Three agents at 1 s for 15 s: about 45 heartbeats; a stall of a few seconds shows here.
    assert!(
        after - before >= 3.0 * (took - 3.0),
        "{before} -> {after} in {took:.1} s"
    );
    drop(agents);
}
