//! End-to-end: the manager's agent port (4120) under abuse. Every bad input is refused, the
//! manager keeps serving (a fresh activation and heartbeat over real TLS still complete), and
//! nothing is stored from the bad connection. Clients are either the real `picket agent` binary
//! or a small synchronous rustls client speaking the wire protocol frame by frame.

use crate::support::Manager;
use crate::support::wire::*;
use hyper::Method;
use picket::clock::WallMs;
use picket::pki::{self, AgentKey};
use picket::proto::{
    self, AgentMsg, AgentStatus, Hello, ManagerMsg, PROTOCOL_VERSION, Purpose, SpoolRange,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, HandshakeKind};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// 1. Activation with a token that does not work.

#[test]
fn activation_with_a_wrong_token_is_refused_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let (real, id) = new_token(&m, &["--uses", "3"]);
    // Same length and alphabet as a real secret, one digit off.
    let last = if real.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &real[..real.len() - 1]);

    refused_for(
        &m,
        &tmp.path().join("agent"),
        &agent_addr(&m),
        &wrong,
        &pin_hex(&m),
        "intruder",
        "unknown activation token",
    );
    assert!(!m.log().contains(&wrong), "the manager logged the secret");

    assert!(computers(&m).is_empty(), "a computer was created");
    assert_eq!(uses_left(&m, &id), 3, "the real token was spent");
    assert_still_serving(&m, "after-wrong-token");
}

/// The check (f): 2,000 bad activations from one address. Before, each was checked
/// against the store (646 a second) and logged in a line of its own.
#[test]
fn a_source_of_bad_activations_is_slowed_and_its_refusals_summarised() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let (addr, pin) = (agent_addr(&m), pin(&m));
    let log_before = m.log().lines().count();
    let guesser = std::net::Ipv4Addr::new(127, 0, 4, 1);
    let started = Instant::now();
    let answers: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let addr = &addr;
                scope.spawn(move || {
                    (0..500)
                        .map(|i| {
                            let token = format!("pkt_not-a-token-{t}-{i}");
                            match activate_from(guesser, addr, pin, &token, "guess") {
                                Ok(_) => panic!("a made-up token activated"),
                                Err(reason) => reason,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    let checked = answers
        .iter()
        .filter(|a| a.contains("unknown activation token"))
        .count();
    let slowed = answers
        .iter()
        .filter(|a| a.contains("too many failed activations"))
        .count();
    assert_eq!(checked + slowed, 2000, "other answers: {answers:?}");
    // Five free, then waits of 1, 2, 4, 8, 16, 32 and 60 s: all the elapsed time allows.
    let allowed = 5 + 7 + elapsed.as_secs() / 60 + 4;
    assert!(
        checked as u64 <= allowed,
        "{checked} tokens checked in {elapsed:?}"
    );
    // Another address activates meanwhile, with a real token.
    let (token, _) = new_token(&m, &[]);
    let other = std::net::Ipv4Addr::new(127, 0, 4, 2);
    activate_from(other, &addr, pin, &token, "real-one").unwrap();
    let log = m.log();
    let lines = log.lines().skip(log_before).count();
    assert!(
        lines < 30,
        "{lines} log lines for 2,000 bad activations:\n{log}"
    );
    let closed = m.metric("picket_unauthenticated_closed_total", "reason=\"slowed\"");
    assert_eq!(closed, slowed as f64);
    eprintln!(
        "2,000 bad activations from one address in {:.1} s ({:.0}/s): {checked} tokens checked, \
         {slowed} refused unread; {lines} log lines; a real activation from another address: ok",
        elapsed.as_secs_f64(),
        2000.0 / elapsed.as_secs_f64()
    );
}

#[test]
fn a_used_up_token_is_refused_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let (token, id) = new_token(&m, &["--uses", "1"]);
    let (addr, pin) = (agent_addr(&m), pin_hex(&m));

    // The one use: a real agent activates and stays running.
    let first = Agent::start(&tmp.path().join("first"), &addr, &token, &pin, "first");
    wait_for(
        Duration::from_secs(8),
        "the first agent to activate",
        || (hostnames(&m) == ["first"]).then_some(()),
    );
    assert_eq!(uses_left(&m, &id), 0);

    refused_for(
        &m,
        &tmp.path().join("second"),
        &addr,
        &token,
        &pin,
        "second",
        "used as often as it allows",
    );

    assert_eq!(hostnames(&m), ["first"], "the refused agent was stored");
    assert_eq!(uses_left(&m, &id), 0);
    assert_still_serving(&m, "after-used-up-token");
    drop(first);
}

#[test]
fn a_deleted_token_is_refused_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let (token, id) = new_token(&m, &[]);
    let key = std::fs::read_to_string(m.dir.join("admin-api-key")).unwrap();
    let deleted = m
        .client()
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Vec::new(),
            Some(key.trim()),
        )
        .unwrap();
    assert!(deleted.status.is_success(), "{}", deleted.status);
    assert!(tokens(&m).is_empty());

    refused_for(
        &m,
        &tmp.path().join("agent"),
        &agent_addr(&m),
        &token,
        &pin_hex(&m),
        "late",
        "unknown activation token",
    );
    assert!(!m.log().contains(&token), "the manager logged the secret");

    assert!(computers(&m).is_empty(), "a computer was created");
    assert!(tokens(&m).is_empty(), "the deleted token came back");
    assert_still_serving(&m, "after-deleted-token");
}

// ---------------------------------------------------------------------------------------------
// 2. The wrong CA pin.

#[test]
fn an_agent_with_the_wrong_ca_pin_refuses_the_manager_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let (token, id) = new_token(&m, &["--uses", "2"]);
    let wrong_pin = pki::hex(&pki::sha256(b"not the manager's CA"));

    let log = refused_agent(
        &tmp.path().join("agent"),
        &agent_addr(&m),
        &token,
        &wrong_pin,
        "misled",
    );
    assert!(log.contains("does not match the pin"), "{log}");
    assert!(log.contains(&wrong_pin), "the message names the pin: {log}");
    assert!(
        log.contains(&pin_hex(&m)),
        "the message names the CA the manager presented: {log}"
    );

    assert!(computers(&m).is_empty(), "a computer was created");
    assert_eq!(uses_left(&m, &id), 2, "the token was spent");
    assert_still_serving(&m, "after-wrong-pin");
}

/// An activation with `token` that the manager refuses for `reason`: the agent exits saying
/// so, writes no identity, and the manager logs the refusal.
fn refused_for(
    m: &Manager,
    dir: &std::path::Path,
    addr: &str,
    token: &str,
    pin: &str,
    hostname: &str,
    reason: &str,
) {
    let log = refused_agent(dir, addr, token, pin, hostname);
    assert!(log.contains("the manager refused"), "{log}");
    assert!(log.contains(reason), "{log}");
    wait_log_line(m, &["agent connection from 127.0.0.1:", reason]);
}

// ---------------------------------------------------------------------------------------------
// 3. A certificate from another manager's CA.

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let other = Manager::start(&tmp.path().join("other"));
    let (token, _) = new_token(&other, &[]);
    let foreign = activate(&agent_addr(&other), pin(&other), &token, "stranger").unwrap();
    assert!(
        heartbeat(&agent_addr(&other), &foreign) > 0,
        "valid at home"
    );
    let addr = agent_addr(&m);

    // The foreign agent as it is, pointed at this manager: it trusts only its own CA.
    let own = pki::agent_client_config(&foreign.ca, foreign.cert.clone(), &foreign.key).unwrap();
    let err = handshake(&addr, own)
        .map(|_| ())
        .expect_err("the agent trusted a foreign manager");
    assert!(err.to_string().contains("certificate"), "{err}");

    // A client that trusts this manager but presents the foreign certificate: the manager must
    // refuse it (at the handshake; under TLS 1.3 the client learns it on its first read).
    let config = pki::agent_client_config(&ca_der(&m), foreign.cert.clone(), &foreign.key).unwrap();
    let peer = assert_refused_client(&addr, config);
    let line = wait_refusal_logged(&m, peer, "TLS handshake failed");
    assert!(line.contains("UnknownIssuer"), "{line}");

    assert!(computers(&m).is_empty(), "a computer was created");
    assert_still_serving(&m, "after-foreign-certificate");
}

// ---------------------------------------------------------------------------------------------
// 4. A deleted computer.

#[test]
fn a_deleted_computer_is_refused_at_the_handshake_and_its_agent_keeps_retrying() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    m.cli_json(&["policies", "set", "Base Policy", "heartbeat.interval=1s"]);
    let (token, _) = new_token(&m, &[]);
    let dir = tmp.path().join("agent");
    let mut agent = Agent::start(&dir, &agent_addr(&m), &token, &pin_hex(&m), "doomed");
    let id = wait_for(Duration::from_secs(8), "the agent to come online", || {
        computers(&m)
            .first()
            .filter(|c| c["status"] == "online" && c["agent"]["last_heartbeat_ms"].is_u64())
            .and_then(|c| c["id"].as_u64())
    });

    let out = m.cli(&["computers", "delete", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(computers(&m).is_empty());
    let failures_before = agent.log().matches("heartbeat failed").count();

    // The agent's own stored identity no longer gets in.
    let key = AgentKey::from_pem(&std::fs::read_to_string(dir.join("agent.key")).unwrap()).unwrap();
    let cert = CertificateDer::from(std::fs::read(dir.join("agent-cert.der")).unwrap());
    let ca = CertificateDer::from(std::fs::read(dir.join("ca.der")).unwrap());
    assert_eq!(ca, ca_der(&m), "the agent stored the CA it pinned");
    let config = pki::agent_client_config(&ca, cert, &key).unwrap();
    let peer = assert_refused_client(&agent_addr(&m), config);
    let line = wait_refusal_logged(&m, peer, "TLS handshake failed");
    assert!(line.contains("Revoked"), "{line}");

    // The agent process fails its heartbeats, again and again, and stays up.
    wait_for(Duration::from_secs(8), "two failed heartbeats", || {
        (agent.log().matches("heartbeat failed").count() >= failures_before + 2).then_some(())
    });
    assert!(agent.is_running(), "the agent exited: {}", agent.log());
    assert!(computers(&m).is_empty(), "the deleted computer came back");
    assert_still_serving(&m, "after-deleted-computer");
    assert!(agent.is_running(), "the agent exited: {}", agent.log());
}

#[test]
fn an_agent_resumes_its_tls_session_and_a_deleted_computer_is_refused_even_so() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let (addr, id) = activated(&m, "resumer");
    let config = pki::agent_client_config(&id.ca, id.cert.clone(), &id.key).unwrap();
    assert_eq!(
        heartbeat_with(&addr, &id, config.clone()).1,
        HandshakeKind::Full
    );
    // The next heartbeat skips the certificate signatures: the manager's ticket resumes it.
    assert_eq!(
        heartbeat_with(&addr, &id, config.clone()).1,
        HandshakeKind::Resumed
    );
    assert_eq!(
        heartbeat_with(&addr, &id, config.clone()).1,
        HandshakeKind::Resumed
    );

    // Deleted while it holds a ticket: the resumed handshake completes (it checks no
    // certificate), then the manager refuses in words and closes, with no session.
    let out = m.cli(&["computers", "delete", &id.computer.to_string()]);
    assert!(out.status.success());
    let (mut tls, local) = handshake(&addr, config).unwrap();
    assert_eq!(tls.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    match recv(&mut tls).unwrap() {
        ManagerMsg::Refused(r) => assert!(r.reason.contains("was deleted"), "{}", r.reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
    wait_refusal_logged(&m, local, "its certificate belongs to no current computer");
    // Without a ticket, it is the handshake that fails, as before.
    let fresh = pki::agent_client_config(&id.ca, id.cert.clone(), &id.key).unwrap();
    let line = wait_refusal_logged(
        &m,
        assert_refused_client(&addr, fresh),
        "TLS handshake failed",
    );
    assert!(line.contains("Revoked"), "{line}");
    assert!(computers(&m).is_empty());
}

#[test]
fn an_agent_still_resumes_after_the_manager_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manager");
    let m = Manager::start(&dir);
    let (_, id) = activated(&m, "steady");
    let config = pki::agent_client_config(&id.ca, id.cert.clone(), &id.key).unwrap();
    assert_eq!(
        heartbeat_with(&agent_addr(&m), &id, config.clone()).1,
        HandshakeKind::Full
    );
    m.stop();
    // The ticket keys are in DIR/pki, so the ticket from before the restart still opens: a
    // restart does not send every agent back to a full handshake at once.
    let m = Manager::start(&dir);
    let addr = agent_addr(&m);
    assert_eq!(heartbeat_with(&addr, &id, config).1, HandshakeKind::Resumed);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("pki").join(pki::TICKET_KEY_FILE))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_tls12_agent_gets_no_ticket_and_a_tls13_one_does() {
    // TLS 1.2 tickets carry the master secret; with ticket keys kept in the data dir they are
    // not issued at all (src/pki/tickets.rs), so a TLS 1.2 agent always makes a full handshake.
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let (addr, id) = activated(&m, "old-tls");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(id.ca.clone()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(id.key.to_pem().as_bytes()).unwrap();
    let mut tls12 =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![id.cert.clone()], key)
            .unwrap();
    tls12.alpn_protocols = vec![b"picket/1".to_vec()];
    let tls12 = Arc::new(tls12);
    for _ in 0..3 {
        assert_eq!(
            heartbeat_with(&addr, &id, tls12.clone()).1,
            HandshakeKind::Full
        );
    }
    let tls13 = pki::agent_client_config(&id.ca, id.cert.clone(), &id.key).unwrap();
    heartbeat_with(&addr, &id, tls13.clone());
    assert_eq!(heartbeat_with(&addr, &id, tls13).1, HandshakeKind::Resumed);
}

// ---------------------------------------------------------------------------------------------
// 5. Plain TCP.

#[test]
fn a_plain_http_client_is_disconnected_and_named_in_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let mut stream = tcp(&agent_addr(&m));
    let peer = stream.local_addr().unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut stream);
    // At most a TLS alert record (content type 21), never an HTTP answer.
    assert!(
        got.is_empty() || got[0] == 21,
        "the manager answered {got:?}"
    );
    wait_refusal_logged(&m, peer, "TLS handshake failed");

    assert!(computers(&m).is_empty());
    assert_still_serving(&m, "after-plain-http");
}

// ---------------------------------------------------------------------------------------------
// 6. Old TLS versions.

/// Runs `openssl s_client` against `addr` with `args`, stdin closed; (success, all output).
fn s_client(addr: &str, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-alpn", "picket/1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "openssl s_client {args:?} did not finish: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The cipher `s_client` reports having negotiated, if any.
fn negotiated_cipher(output: &str) -> Option<String> {
    output
        .lines()
        .filter_map(|l| {
            l.split_once("Cipher is ")
                .map(|(_, c)| c.trim().to_string())
        })
        .find(|c| c != "(NONE)")
}

#[test]
fn tls_1_0_and_1_1_clients_are_refused() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("note: openssl is not on PATH; the TLS 1.0/1.1 refusal was not tested");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let addr = agent_addr(&m);
    let failures = |m: &Manager| m.log().matches("TLS handshake failed").count();

    // The same client does get in with TLS 1.2, so a refusal below is the manager's doing.
    let (ok, out) = s_client(&addr, &["-tls1_2"]);
    assert!(ok, "TLS 1.2 handshake failed:\n{out}");
    assert!(negotiated_cipher(&out).is_some(), "{out}");

    for flag in ["-tls1", "-tls1_1"] {
        let before = failures(&m);
        // Security level 0: OpenSSL 3 otherwise refuses to offer TLS 1.0/1.1 at all, and the
        // test would only show that the client gave up on its own.
        let (ok, out) = s_client(&addr, &[flag, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(!ok, "openssl {flag} succeeded:\n{out}");
        assert_eq!(negotiated_cipher(&out), None, "openssl {flag}:\n{out}");
        wait_for(
            STEP,
            &format!("the manager to log the {flag} refusal"),
            || (failures(&m) > before).then_some(()),
        );
    }
    assert!(computers(&m).is_empty());
    assert_still_serving(&m, "after-old-tls");
}

// ---------------------------------------------------------------------------------------------
// 7. Bad frames and messages after a valid activation-less handshake.

/// Sends `bytes` after a pinned handshake (then, if `close`, says it is done sending), and
/// checks that the manager drops the connection logging `reason` with the peer's address,
/// stores nothing, and goes on serving.
fn abuse_after_handshake(bytes: &[u8], close: bool, reason: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let (_, id) = new_token(&m, &["--uses", "5"]);
    let (mut tls, peer) = pinned_handshake(&m);
    tls.write_all(bytes).unwrap();
    tls.flush().unwrap();
    if close {
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        tls.sock.shutdown(Shutdown::Write).unwrap();
    }
    let got = read_until_closed(&mut tls);
    assert_only_refusals(&got);
    wait_refusal_logged(&m, peer, reason);

    assert!(computers(&m).is_empty(), "a computer was created");
    assert_eq!(uses_left(&m, &id), 5, "a token was spent");
    assert_still_serving(&m, "after-abuse");
}

#[test]
fn a_header_announcing_2_mib_is_refused_before_the_body() {
    let header = (2u32 * 1024 * 1024).to_be_bytes();
    abuse_after_handshake(&header, false, "frame of 2097152 bytes refused");
}

#[test]
fn a_truncated_frame_is_refused() {
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 10]);
    abuse_after_handshake(&bytes, true, "connection closed while waiting for hello");
}

#[test]
fn garbage_bytes_are_refused() {
    // 64 bytes: a plausible header (60) and a body that is no message (an endless varint).
    let mut bytes = 60u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0xff; 60]);
    assert_eq!(bytes.len(), 64);
    abuse_after_handshake(&bytes, false, "malformed message");
}

#[test]
fn garbage_bytes_with_a_huge_header_are_refused() {
    // 64 bytes of pseudo-random noise, whose first four read as a header of gigabytes.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..64)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8 | 0x80
        })
        .collect();
    abuse_after_handshake(&noise, false, "bytes refused: the limit is 1048576 bytes");
}

#[test]
fn an_unknown_message_variant_is_refused() {
    // A well-formed frame whose enum index (varint 200) names no message.
    let body = [0xc8, 0x01];
    assert!(proto::decode::<AgentMsg>(&body).is_err());
    let mut bytes = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    abuse_after_handshake(&bytes, false, "malformed message");
}

#[test]
fn a_message_out_of_order_is_refused() {
    let status = AgentMsg::Status(AgentStatus {
        wall_clock: WallMs(1),
        components: Vec::new(),
        counters: Vec::new(),
        fingerprint: None,
        spool: SpoolRange { first: 1, last: 0 },
        listen_port: None,
    });
    abuse_after_handshake(
        &proto::encode(&status).unwrap(),
        false,
        "unexpected status message while waiting for hello",
    );
}

#[test]
fn a_heartbeat_without_a_client_certificate_is_refused() {
    let hello = AgentMsg::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "0.1.0-test".into(),
        purpose: Purpose::Heartbeat,
    });
    abuse_after_handshake(
        &proto::encode(&hello).unwrap(),
        false,
        "a heartbeat needs a client certificate",
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Silent peers.

/// True while the manager has not closed `stream`. (It may have sent something: after a
/// handshake, a TLS session ticket. The bytes are read and dropped, so only check a connection
/// that is not used afterwards.)
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let open = loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => break false,
            Ok(_) => continue,
            Err(e) => break e.kind() == io::ErrorKind::WouldBlock,
        }
    };
    stream.set_nonblocking(false).unwrap();
    open
}

#[test]
fn silent_peers_do_not_block_other_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    let addr = agent_addr(&m);
    // One says nothing at all (the manager waits in the TLS handshake), one stops after the
    // handshake (the manager waits for the first message).
    let silent_tcp = tcp(&addr);
    let (silent_tls, _) = pinned_handshake(&m);

    // A whole activation and heartbeat complete meanwhile, twice.
    assert_still_serving(&m, "while-silent-1");
    assert_still_serving(&m, "while-silent-2");

    // Both silent connections were still waiting: the manager served the others beside them,
    // not after dropping them. (Its 30 s step timeout closes them later.)
    assert!(still_open(&silent_tcp), "the silent TCP peer was dropped");
    assert!(
        still_open(silent_tls.get_ref()),
        "the silent TLS peer was dropped"
    );
    drop((silent_tcp, silent_tls));
}
