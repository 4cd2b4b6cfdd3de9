//! The wire-level harness of the agent port's tests: a small synchronous rustls client speaking
//! the protocol frame by frame (handshakes, activations, heartbeats, refusals), and a real
//! `picket agent` run against a manager that must refuse it.

use super::{BIN, Manager};
use hyper::{Method, StatusCode};
use picket::clock::WallMs;
use picket::pki::{self, AgentKey};
use picket::policy::Fingerprint;
use picket::proto::{
    self, ActivationRequest, AgentMsg, AgentStatus, Hello, ManagerMsg, PROTOCOL_VERSION, Purpose,
    SpoolRange,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, StreamOwned};
use serde_json::Value;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the manager may take to refuse or answer anything here. Every bad input below
/// fails at once on the manager's side, far inside its 30 s step timeout.
pub const STEP: Duration = Duration::from_secs(5);
/// How long a real agent process may take to give up on a refused activation.
pub const AGENT_EXIT: Duration = Duration::from_secs(20);

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

// ---------------------------------------------------------------------------------------------
// Waiting, the manager's state, its log.

/// Polls `check` every 25 ms until it returns `Some`, or fails after `limit` saying `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The agent address the manager wrote to `DIR/ports.json`.
pub fn agent_addr(m: &Manager) -> String {
    let text = std::fs::read_to_string(m.dir.join("ports.json")).unwrap();
    let ports: Value = serde_json::from_str(&text).unwrap();
    ports["agent"].as_str().unwrap().to_string()
}

/// The manager's CA certificate (DER of `DIR/pki/ca.crt`).
pub fn ca_der(m: &Manager) -> CertificateDer<'static> {
    let pem = std::fs::read(m.dir.join("pki/ca.crt")).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap()
}

/// The CA pin an agent is given: SHA-256 of the CA certificate's DER.
pub fn pin(m: &Manager) -> [u8; 32] {
    pki::sha256(ca_der(m).as_ref())
}

pub fn pin_hex(m: &Manager) -> String {
    pki::hex(&pin(m))
}

/// `picket token create ARGS`: (secret, id).
pub fn new_token(m: &Manager, args: &[&str]) -> (String, String) {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let created = m.cli_json(&all);
    (
        created["token"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

pub fn tokens(m: &Manager) -> Vec<Value> {
    m.cli_json(&["token", "list"])["tokens"]
        .as_array()
        .unwrap()
        .clone()
}

pub fn computers(m: &Manager) -> Vec<Value> {
    m.computers()
}

pub fn hostnames(m: &Manager) -> Vec<String> {
    computers(m)
        .iter()
        .map(|c| c["hostname"].as_str().unwrap().to_string())
        .collect()
}

pub fn uses_left(m: &Manager, id: &str) -> Value {
    let all = tokens(m);
    let token = all.iter().find(|t| t["id"] == id).unwrap();
    token["uses_left"].clone()
}

/// Waits for a line of the manager's log holding every one of `needles`; returns the line.
pub fn wait_log_line(m: &Manager, needles: &[&str]) -> String {
    wait_for(
        STEP,
        &format!("a manager log line with {needles:?}"),
        || {
            m.log()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_string)
        },
    )
}

/// The line the agent port logs when it drops a connection from `peer`, holding `reason`.
pub fn wait_refusal_logged(m: &Manager, peer: SocketAddr, reason: &str) -> String {
    let from = format!("agent connection from {peer} closed: ");
    let line = wait_log_line(m, &[&from, reason]);
    assert!(line.contains("WARN"), "a refusal is a warning: {line}");
    line
}

// ---------------------------------------------------------------------------------------------
// A synchronous protocol client over real TLS.

/// TCP to `addr` with read and write timeouts of [`STEP`], so no read here can hang a test.
pub fn tcp(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    stream
}

/// Connects and runs the TLS handshake to its end on the client's side. Under TLS 1.3 a client
/// certificate the server refuses still completes here: the refusal arrives on the next read.
pub fn handshake(addr: &str, config: Arc<ClientConfig>) -> io::Result<(Tls, SocketAddr)> {
    handshake_on(tcp(addr), addr, config)
}

/// A connection to `addr` from the loopback address `from`: another machine, as the manager
/// counts sources.
pub fn tcp_from(from: std::net::Ipv4Addr, addr: &str) -> io::Result<TcpStream> {
    let stream = super::connect_from(from, addr.parse().unwrap())?;
    stream.set_read_timeout(Some(STEP))?;
    stream.set_write_timeout(Some(STEP))?;
    Ok(stream)
}

/// [`handshake`] over a connection already open.
pub fn handshake_on(
    mut sock: TcpStream,
    addr: &str,
    config: Arc<ClientConfig>,
) -> io::Result<(Tls, SocketAddr)> {
    let local = sock.local_addr()?;
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let name = ServerName::try_from(host).unwrap();
    let mut conn = ClientConnection::new(config, name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut sock)?;
    }
    Ok((StreamOwned::new(conn, sock), local))
}

/// Connects with `config` (a client certificate the manager must not accept) and checks that the
/// manager refuses: either the handshake fails, or (TLS 1.3, where the client finishes before
/// the server has checked its certificate) the connection closes unanswered after a `Hello`.
/// Returns the client's address, which the manager's log must name.
pub fn assert_refused_client(addr: &str, config: Arc<ClientConfig>) -> SocketAddr {
    let mut sock = tcp(addr);
    let local = sock.local_addr().unwrap();
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let mut conn = ClientConnection::new(config, ServerName::try_from(host).unwrap()).unwrap();
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => panic!("the handshake hung: {e}"),
            Err(_) => return local,
        }
    }
    let mut tls = StreamOwned::new(conn, sock);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "0.1.0-test".into(),
        purpose: Purpose::Heartbeat,
    };
    // The write may already fail, the refusal having arrived.
    let _ = send(&mut tls, &AgentMsg::Hello(hello));
    let got = read_until_closed(&mut tls);
    assert!(got.is_empty(), "the manager answered: {got:?}");
    local
}

/// An activation-less handshake that checks the manager's CA against the right pin, as a new
/// agent's does.
pub fn pinned_handshake(m: &Manager) -> (Tls, SocketAddr) {
    let (config, pinned) = pki::activation_client_config(pin(m)).unwrap();
    let connected = handshake(&agent_addr(m), config).unwrap();
    assert_eq!(pinned.cert(), Some(ca_der(m)), "the pin matched the CA");
    connected
}

pub fn send<T: serde::Serialize>(tls: &mut Tls, message: &T) -> io::Result<()> {
    tls.write_all(&proto::encode(message).unwrap())?;
    tls.flush()
}

pub fn recv(tls: &mut Tls) -> io::Result<ManagerMsg> {
    recv_as(tls)
}

/// The next frame from the manager, decoded as `T`: `ManagerMsgV1` for a client playing a
/// protocol-1 agent.
pub fn recv_as<T: serde::de::DeserializeOwned>(tls: &mut Tls) -> io::Result<T> {
    let mut header = [0u8; proto::HEADER_LEN];
    tls.read_exact(&mut header)?;
    let len = proto::check_header(header).map_err(io::Error::other)?;
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body)?;
    proto::decode(&body).map_err(io::Error::other)
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads until the manager closes the connection (end of stream or a connection error) and
/// returns what it sent first. Fails if the connection is still open after [`STEP`].
pub fn read_until_closed(stream: &mut impl Read) -> Vec<u8> {
    let deadline = Instant::now() + STEP;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => panic!("the manager kept the connection open: {e}"),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return got,
        }
        assert!(
            Instant::now() < deadline,
            "the manager kept the connection open"
        );
    }
}

/// Every frame in `bytes` is a `Refused`: the only thing the manager may say before closing a
/// connection it will not serve.
pub fn assert_only_refusals(bytes: &[u8]) {
    let mut reader = proto::FrameReader::default();
    reader.push(bytes);
    while let Some(body) = reader.next_frame().unwrap() {
        let message: ManagerMsg = proto::decode(&body).unwrap();
        assert!(
            matches!(message, ManagerMsg::Refused(_)),
            "the manager answered {message:?}"
        );
    }
    assert_eq!(reader.pending(), 0, "a truncated frame from the manager");
}

/// What a crafted activation got: enough to heartbeat as that computer.
pub struct Identity {
    pub computer: u64,
    pub ca: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    pub key: AgentKey,
    pub fingerprint: Fingerprint,
}

/// Activates like `picket agent` does (pinned handshake, `Activate`, one answer). The refusal
/// reason on `Err`.
pub fn activate(
    addr: &str,
    pin: [u8; 32],
    token: &str,
    hostname: &str,
) -> Result<Identity, String> {
    activate_from(std::net::Ipv4Addr::LOCALHOST, addr, pin, token, hostname)
}

/// [`activate`] from another loopback address.
pub fn activate_from(
    from: std::net::Ipv4Addr,
    addr: &str,
    pin: [u8; 32],
    token: &str,
    hostname: &str,
) -> Result<Identity, String> {
    let key = AgentKey::generate().unwrap();
    let (config, pinned) = pki::activation_client_config(pin).unwrap();
    let sock = tcp_from(from, addr).map_err(|e| format!("connect: {e}"))?;
    let (mut tls, _) = handshake_on(sock, addr, config).map_err(|e| format!("handshake: {e}"))?;
    let request = ActivationRequest {
        protocol: PROTOCOL_VERSION,
        agent_version: "0.1.0-test".into(),
        token: token.into(),
        hostname: hostname.into(),
        public_key: key.public_key_der(),
    };
    send(&mut tls, &AgentMsg::Activate(request)).unwrap();
    match recv(&mut tls).map_err(|e| format!("no answer: {e}"))? {
        ManagerMsg::Activated(a) => Ok(Identity {
            computer: a.computer,
            ca: pinned.cert().unwrap(),
            cert: a.certificate.into(),
            key,
            fingerprint: a.fingerprint,
        }),
        ManagerMsg::Refused(r) => Err(r.reason),
        other => panic!("unexpected answer to an activation: {other:?}"),
    }
}

/// An agent activated as `hostname` with a fresh token; the agent port's address with it.
pub fn activated(m: &Manager, hostname: &str) -> (String, Identity) {
    let (token, _) = new_token(m, &[]);
    let addr = agent_addr(m);
    let id = activate(&addr, pin(m), &token, hostname).unwrap();
    (addr, id)
}

/// One whole heartbeat session with the identity's certificate: hello, status (no events),
/// configuration if the manager sends one, done. Returns the manager's next-heartbeat delay.
pub fn heartbeat(addr: &str, id: &Identity) -> u64 {
    let config = pki::agent_client_config(&id.ca, id.cert.clone(), &id.key).unwrap();
    heartbeat_with(addr, id, config).0
}

/// [`heartbeat`] over `config`, kept by the caller as `picket agent` keeps its own (with the
/// TLS tickets it collects); also says whether the handshake was a full or a resumed one.
pub fn heartbeat_with(
    addr: &str,
    id: &Identity,
    config: Arc<ClientConfig>,
) -> (u64, HandshakeKind) {
    let (mut tls, _) = handshake(addr, config).unwrap();
    let kind = tls.conn.handshake_kind().unwrap();
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "0.1.0-test".into(),
        purpose: Purpose::Heartbeat,
    };
    send(&mut tls, &AgentMsg::Hello(hello)).unwrap();
    let answer = recv(&mut tls).unwrap();
    assert!(matches!(answer, ManagerMsg::GetStatus { .. }), "{answer:?}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let status = AgentStatus {
        wall_clock: WallMs(u64::try_from(now.as_millis()).unwrap()),
        components: Vec::new(),
        counters: Vec::new(),
        fingerprint: Some(id.fingerprint),
        spool: SpoolRange { first: 1, last: 0 },
        listen_port: None,
    };
    send(&mut tls, &AgentMsg::Status(status)).unwrap();
    loop {
        match recv(&mut tls).unwrap() {
            ManagerMsg::SetConfig { fingerprint, .. } => {
                send(&mut tls, &AgentMsg::ConfigApplied { fingerprint }).unwrap();
            }
            ManagerMsg::Done { next_heartbeat_ms } => return (next_heartbeat_ms, kind),
            other => panic!("unexpected message in a heartbeat: {other:?}"),
        }
    }
}

/// The manager still serves after the abuse: `GET /healthz` answers, and a well-behaved agent
/// (`hostname`, a fresh token) activates and completes a heartbeat that the manager records.
pub fn assert_still_serving(m: &Manager, hostname: &str) {
    let health = m
        .client()
        .send(Method::GET, "/healthz", Vec::new(), None)
        .unwrap();
    assert_eq!(health.status, StatusCode::OK);
    let (token, _) = new_token(m, &["--uses", "1"]);
    let addr = agent_addr(m);
    let id = activate(&addr, pin(m), &token, hostname).unwrap();
    assert!(heartbeat(&addr, &id) > 0);
    // The manager records a session after its `Done`, so the record may trail the answer.
    let computer = wait_for(STEP, "the heartbeat to be recorded", || {
        computers(m)
            .into_iter()
            .find(|c| c["id"] == id.computer && c["agent"]["last_heartbeat_ms"].is_u64())
    });
    assert_eq!(computer["hostname"], hostname);
    assert_eq!(computer["status"], "online");
    assert!(
        computer["agent"]["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{computer}"
    );
}

// ---------------------------------------------------------------------------------------------
// The real agent binary.

/// A `picket agent` process; killed when dropped.
pub struct Agent {
    pub dir: std::path::PathBuf,
    pub child: Child,
}

impl Agent {
    pub fn start(dir: &Path, manager: &str, token: &str, pin: &str, hostname: &str) -> Agent {
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let child = Command::new(BIN)
            .args(["agent", "--data-dir"])
            .arg(dir)
            .args(["--manager", manager, "--token", token, "--ca-sha256", pin])
            .args(["--hostname", hostname, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent {
            dir: dir.to_path_buf(),
            child,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// The exit status and log once the process has ended by itself.
    pub fn wait_exit(mut self) -> (ExitStatus, String) {
        let status = wait_for(AGENT_EXIT, "the agent to exit", || {
            self.child.try_wait().unwrap()
        });
        (status, self.log())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an agent that must be refused at activation: it exits non-zero, and its data dir holds
/// no identity. Returns its stderr.
pub fn refused_agent(dir: &Path, manager: &str, token: &str, pin: &str, hostname: &str) -> String {
    let (status, log) = Agent::start(dir, manager, token, pin, hostname).wait_exit();
    assert!(!status.success(), "the agent exited with {status}: {log}");
    for file in ["manager.json", "agent-cert.der", "ca.der"] {
        assert!(!dir.join(file).exists(), "{file} was written: {log}");
    }
    log
}
