//! The agent port (4120): accepts TLS connections from agents and runs one protocol session on
//! each, as the sans-io `ManagerSession` decides; this file only moves frames, loads what the
//! session needs and records what it learned.

use crate::activation;
use crate::clock::within;
use crate::clock::{Clock, Instant, WallMs};
use crate::framed::{self, FrameError};
use crate::handles::{Dialer, DialerEvent};
use crate::handles::{Liveness, LivenessEvent};
use crate::model::{AgentState, ComputerId, StoredEvent};
use crate::net::admission::Source;
use crate::net::{Budget, Closed, Gate, Ticket};
use crate::pki::{ManagerPki, cert_serial};
use crate::policy::{self, PolicyTree};
use crate::proto::{
    Activated, ActivationRequest, AgentEvent, AgentMsg, ManagerMsg, ManagerOutput, ManagerSession,
    Purpose, Refusal, SessionParams, SessionSummary,
};
use crate::registry::Registry;
use crate::store::{Reads, Store, Writer};
use crate::tasks::{Spawner, TaskSet};
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Everything the sessions on the agent port share.
pub struct AgentPort {
    pub store: Arc<Store>,
    pub writer: Writer,
    pub pki: Arc<ManagerPki>,
    pub registry: Arc<Registry>,
    pub clock: Arc<dyn Clock>,
    /// `host:port` agents are told to reach the manager at.
    pub endpoints: Vec<String>,
    /// How long an agent may take for the handshake and for each step of a session.
    pub step_timeout: Duration,
    pub max_batch: u32,
    pub liveness: Liveness,
    pub dialer: Dialer,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Sources whose activations keep failing wait before their next one is looked at.
    pub activation_backoff: std::sync::Mutex<crate::net::Backoff>,
}

/// Serves the agent port until the returned future is dropped (which ends every connection).
///
/// A connection goes through two stages. Until its TLS handshake is done it is unauthenticated:
/// it runs in a task of its own under a short deadline and counts against the port's
/// [`PREAUTH_BUDGET`], which closes the oldest such connection when a cap is reached. Idle or
/// stalled connections therefore never hold a session slot. Once an agent's certificate is
/// verified, its session waits its turn for one of the slots, in the order of the handshakes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    port: Arc<AgentPort>,
    ex: Spawner,
) {
    let acceptor = TlsAcceptor::from(tls);
    let metrics = port.metrics.clone();
    let gate = Gate::observed(
        "agent port",
        PREAUTH_BUDGET,
        Box::new(move |why| metrics.unauthenticated_closed("agent", why)),
    );
    let sessions = SESSIONS_PER_WORKER * crate::tasks::cores().saturating_sub(1).max(1);
    // Only connections with a verified agent certificate are queued: at most one per computer
    // that is due, so the fleet bounds it, not a stranger.
    let (queue, verified) = smol::channel::unbounded::<Verified>();
    let mut runners = TaskSet::new(ex.clone());
    for _ in 0..sessions {
        let (verified, port) = (verified.clone(), port.clone());
        runners.spawn(async move {
            while let Ok(connection) = verified.recv().await {
                heartbeat(&port, connection).await;
            }
        });
    }
    let mut handshakes = TaskSet::new(ex);
    let summaries = crate::net::gate::log_summaries(gate.clone(), &*port.clock);
    let accepting = async {
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let accepted = port.clock.now();
                    let ticket = gate.admit(peer.ip(), accepted);
                    let (acceptor, port, queue) = (acceptor.clone(), port.clone(), queue.clone());
                    handshakes.spawn(async move {
                        handshake(&acceptor, tcp, peer, accepted, ticket, &port, &queue).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors or similar: wait instead of spinning.
                    log::warn!("agent listener: accept failed: {e}");
                    port.clock.sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    smol::future::or(accepting, summaries).await;
}

/// Sessions the agent port runs at once per worker thread; more wait their turn. Enough to keep
/// a worker busy while sessions wait on the network and the store (a session on a LAN is a few
/// ms, most of it waiting); few enough that under a flood each still finishes in a fraction of
/// a second. Why not a task per session: when agents come faster than the workers serve them,
/// thousands of sessions in progress take turns, every one of them is slow and many outlast the
/// agent's patience, all the work on them wasted; a fixed number finish in the order they came.
const SESSIONS_PER_WORKER: usize = 256;

/// Connections the agent port holds before their TLS handshake is done: 4,096 in all, 256 from
/// one source. A real agent's handshake takes a few round trips, so even a large site behind
/// one NAT (100,000 agents at a 1-minute interval: 1,700 handshakes a second) has a few dozen
/// in flight; a stranger's idle sockets cost a file descriptor and a task each, and past the
/// cap the oldest go.
pub const PREAUTH_BUDGET: Budget = Budget {
    total: 4096,
    per_source: 256,
};

/// How long a connection may take from its accept to the end of its TLS handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// How long an activation (a session without an agent certificate: its token is checked inside
/// it) may take in all; it keeps its place in the unauthenticated budget meanwhile.
const ACTIVATION_DEADLINE: Duration = Duration::from_secs(60);

/// A connection whose agent certificate the handshake verified.
struct Verified {
    tls: TlsStream<TcpStream>,
    peer: Peer,
}

/// The unauthenticated stage: the handshake, under its deadline and the budget. A verified
/// agent goes on to the session queue; an activation runs here.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    accepted: Instant,
    ticket: Ticket,
    port: &Arc<AgentPort>,
    queue: &smol::channel::Sender<Verified>,
) {
    // Small messages each way (see the agent's connect): no waiting on delayed acknowledgements.
    if let Err(e) = tcp.set_nodelay(true) {
        log::debug!("agent {addr}: cannot set TCP_NODELAY: {e}");
    }
    let now = || port.clock.now();
    let mut tls = match ticket
        .guard(&*port.clock, HANDSHAKE_DEADLINE, acceptor.accept(tcp))
        .await
    {
        Err(_) => return, // Counted by the gate for its summary line.
        Ok(Err(e)) => {
            // A handful a minute in full (a foreign CA, a revoked certificate: worth a look),
            // the rest in the gate's summary line.
            if ticket.closed(now(), Closed::HandshakeFailed) {
                log::warn!("agent connection from {addr} closed: TLS handshake failed: {e}");
            }
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    let peer = match identify(tls.get_ref().1, addr, &port.registry, false, accepted) {
        Ok(peer) => peer,
        Err(reason) => {
            // A resumed handshake checks no certificate, so a deleted computer's agent holding
            // a ticket gets this far: it is told in words, as a full handshake's alert would.
            let refusal = Refusal {
                reason: "this agent's computer was deleted from the manager (its certificate \
                         is no longer valid): activate again with a new token"
                    .into(),
            };
            let _ = ticket
                .guard(&*port.clock, HANDSHAKE_DEADLINE, async {
                    framed::write(&mut tls, &ManagerMsg::Refused(refusal)).await
                })
                .await;
            if ticket.closed(now(), Closed::Failed) {
                log::warn!("agent connection from {addr} closed: {reason}");
            }
            return;
        }
    };
    if peer.computer.is_some() {
        drop(ticket);
        // Unbounded: never waits. Closed only when the listener is gone.
        let _ = queue.send(Verified { tls, peer }).await;
        return;
    }
    let source = Source::of(addr.ip());
    let claim = port.backoff().begin(source, now());
    if let Err(wait) = claim {
        // Refused before its token is looked at: a guesser's attempts cost a handshake each,
        // not a store transaction, and come no faster than the backoff allows.
        let refusal = Refusal {
            reason: format!(
                "too many failed activations from this address: try again in {} s",
                wait.as_secs().max(1)
            ),
        };
        let _ = ticket
            .guard(&*port.clock, HANDSHAKE_DEADLINE, async {
                framed::write(&mut tls, &ManagerMsg::Refused(refusal)).await
            })
            .await;
        if ticket.closed(now(), Closed::Slowed) {
            log::warn!(
                "activation from {addr} refused unread: its address waits {} s after failed \
                 activations",
                wait.as_secs().max(1)
            );
        }
        return;
    }
    let outcome = ticket
        .guard(
            &*port.clock,
            ACTIVATION_DEADLINE,
            run_session(port, &mut tls, &peer),
        )
        .await;
    port.backoff().release(source);
    // Timed out or evicted: counted by the gate.
    if let Ok(Err(reason)) = outcome
        && ticket.closed(now(), Closed::Failed)
    {
        let then = match port.backoff().wait(source, now()) {
            Some(wait) => format!("; its address now waits {} s", wait.as_secs().max(1)),
            None => String::new(),
        };
        log::warn!("agent connection from {addr} closed: {reason}{then}");
    }
}

impl AgentPort {
    fn backoff(&self) -> std::sync::MutexGuard<'_, crate::net::Backoff> {
        self.activation_backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A verified agent's session, once a slot is free.
async fn heartbeat(port: &Arc<AgentPort>, mut connection: Verified) {
    let addr = connection.peer.addr;
    // The agent gave up long ago: the session would be work for nobody.
    if port.clock.now().saturating_since(connection.peer.since) > port.step_timeout {
        log::debug!("agent connection from {addr} waited too long; closed");
        return;
    }
    if let Err(reason) = run_session(port, &mut connection.tls, &connection.peer).await {
        log::warn!("agent connection from {addr} closed: {reason}");
    }
}

/// What the TLS handshake told us about the peer.
pub(super) struct Peer {
    pub addr: SocketAddr,
    pub computer: Option<ComputerId>,
    pub tls_version: Option<String>,
    pub cipher_suite: Option<String>,
    /// The manager dialed the agent (rather than the agent the manager).
    pub dialed: bool,
    /// Since when the manager owes the session: the accept, or when the dial was due.
    pub since: Instant,
}

/// Why a session on the manager's side ended badly. The words are for the log; an agent is only
/// ever told a protocol refusal.
#[derive(Debug)]
pub enum SessionError {
    /// The session machine failed: a timeout, a violation, a refusal, a closed connection.
    Protocol(crate::proto::ProtoError),
    /// The store could not be read, or the events not stored.
    Store(crate::store::StoreError),
    /// The computer was deleted after its handshake was accepted.
    Deleted(ComputerId),
    /// Events came on a connection without a computer (the session machine prevents it).
    NoComputer,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Protocol(e) => e.fmt(f),
            SessionError::Store(e) => write!(f, "store: {}", e.chain()),
            SessionError::Deleted(id) => write!(f, "computer {id} was deleted"),
            SessionError::NoComputer => f.write_str("events without a computer"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<crate::store::StoreError> for SessionError {
    fn from(e: crate::store::StoreError) -> Self {
        SessionError::Store(e)
    }
}

/// Runs one `ManagerSession` over an open connection, whoever dialed, and records what it
/// learned. The summary is returned for a dial's caller; errors are in words for the log.
pub(super) async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    port: &Arc<AgentPort>,
    tls: &mut S,
    peer: &Peer,
) -> Result<SessionSummary, SessionError> {
    let addr = peer.addr;
    let started = port.clock.now();
    let params = {
        let (port, computer) = (port.clone(), peer.computer);
        smol::unblock(move || session_params(&port, computer)).await?
    };
    let mut session = ManagerSession::new(port.clock.now(), params);
    let mut status_at = WallMs(0);
    let mut outgoing = Vec::new();
    loop {
        while let Some(output) = session.poll_output() {
            // Messages queue up and leave together just before the session waits on anything.
            if let ManagerOutput::Send(message) = output {
                outgoing.push(message);
                continue;
            }
            send(tls, addr, &mut outgoing, &mut session).await;
            match output {
                ManagerOutput::Send(_) => {}
                ManagerOutput::StoreEvents(events) => {
                    let computer = peer.computer.ok_or(SessionError::NoComputer)?;
                    let steps = clock_steps(&events);
                    match store_events(port, computer, events).await {
                        Ok(()) => {
                            for change_ms in steps {
                                port.liveness.send(LivenessEvent::ClockStep {
                                    computer,
                                    change_ms,
                                });
                            }
                            session.handle_committed(port.clock.now());
                        }
                        // The store said so in its log when it began; the agent keeps them.
                        Err(e) if e.is_temporary() => {
                            log::debug!("agent {addr}: events left with the agent: {e}");
                            session.handle_store_refused(port.clock.now());
                        }
                        Err(e) => return Err(SessionError::Store(e)),
                    }
                }
                ManagerOutput::Activate(request) => {
                    let (shared, ip) = (port.clone(), addr.ip().to_string());
                    let result = smol::unblock(move || activate(&shared, request, &ip)).await;
                    match &result {
                        Err(refused) if refused.is_guess() => {
                            port.backoff()
                                .failed(Source::of(addr.ip()), port.clock.now());
                        }
                        // The agent is only told to try later; the cause is for the log.
                        Err(refused @ activation::Refused::Store(_)) => {
                            log::error!("activation from {addr}: {refused}");
                        }
                        Err(_) => {}
                        Ok(_) => {}
                    }
                    session.handle_activation(result.map_err(|r| r.reason_for_agent()));
                }
                ManagerOutput::Close(summary) => {
                    if let Some(computer) = peer.computer {
                        record(port, computer, peer, status_at, &summary).await;
                    }
                    count_session(port, peer, summary.result.is_ok(), started);
                    return match summary.result.clone() {
                        Ok(()) => Ok(summary),
                        Err(e) => Err(SessionError::Protocol(e)),
                    };
                }
            }
        }
        if !outgoing.is_empty() {
            send(tls, addr, &mut outgoing, &mut session).await;
            continue;
        }
        let wait = session
            .poll_timeout()
            .map_or(port.step_timeout, |d| d.saturating_since(port.clock.now()));
        match within(&*port.clock, wait, framed::read::<AgentMsg, _>(tls)).await {
            None => session.handle_timeout(port.clock.now()),
            Some(Ok(message)) => {
                if matches!(message, AgentMsg::Status(_)) {
                    status_at = port.clock.wall();
                }
                session.handle_message(port.clock.now(), message);
            }
            Some(Err(FrameError::Proto(e))) => return Err(SessionError::Protocol(e)),
            Some(Err(e)) => {
                log::debug!("agent {addr}: {e}");
                session.handle_closed();
            }
        }
    }
}

/// Writes the queued messages in one flush; a failed write is the connection closing.
async fn send<S: AsyncWrite + Unpin>(
    tls: &mut S,
    addr: SocketAddr,
    outgoing: &mut Vec<ManagerMsg>,
    session: &mut ManagerSession,
) {
    if outgoing.is_empty() {
        return;
    }
    if let Err(e) = framed::write_all(tls, outgoing).await {
        log::debug!("agent {addr}: write failed: {e}");
        session.handle_closed();
    }
    outgoing.clear();
}

fn count_session(port: &AgentPort, peer: &Peer, ok: bool, started: crate::clock::Instant) {
    use crate::metrics::{Dialer, Outcome, SessionKind};
    port.metrics.session(
        if peer.dialed {
            Dialer::Manager
        } else {
            Dialer::Agent
        },
        if peer.computer.is_some() {
            SessionKind::Heartbeat
        } else {
            SessionKind::Activation
        },
        if ok { Outcome::Ok } else { Outcome::Failed },
        port.clock.now().saturating_since(started),
    );
}

/// Who the peer is: the computer its certificate belongs to, and what TLS it negotiated. This is
/// also the revocation check of resumed sessions, whose handshake checked no certificate: a
/// serial the registry does not hold is refused here.
pub(super) fn identify(
    conn: &rustls::CommonState,
    addr: SocketAddr,
    registry: &Registry,
    dialed: bool,
    since: Instant,
) -> Result<Peer, String> {
    let computer = match conn.peer_certificates().and_then(|chain| chain.first()) {
        None => None,
        Some(cert) => Some(
            cert_serial(cert)
                .and_then(|serial| registry.computer(&serial))
                .ok_or("its certificate belongs to no current computer")?,
        ),
    };
    Ok(Peer {
        addr,
        computer,
        tls_version: conn.protocol_version().map(version_name),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite())),
        dialed,
        since,
    })
}

fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        other => format!("{other:?}"),
    }
}

fn session_params(
    port: &AgentPort,
    computer: Option<ComputerId>,
) -> Result<SessionParams, SessionError> {
    let txn = port.store.read()?;
    let tree = PolicyTree::new(txn.policies()?);
    let (expected, last_seq, interval) = match computer {
        None => (
            policy::base_config(&tree, &port.endpoints),
            0,
            Duration::ZERO,
        ),
        Some(id) => {
            let record = txn.computer(id)?;
            let state = txn.agent_state(id)?;
            let (Some(record), Some(state)) = (record, state) else {
                // Deleted after the handshake was accepted: as good as revoked.
                port.registry.remove_computer(id);
                return Err(SessionError::Deleted(id));
            };
            let expected = policy::expected_config(&tree, &record, &port.endpoints);
            let interval = expected.interval;
            // Events are committed without touching the agent's state (one page write less per
            // heartbeat); the state learns their sequence when the session is recorded. A crash
            // between the two leaves the events table ahead, and it is the truth.
            let stored = txn.newest_event_seq(id)?;
            let last_seq = state.last_seq.max(stored.unwrap_or(0));
            (expected, last_seq, interval)
        }
    };
    Ok(SessionParams {
        authenticated: computer.is_some(),
        expected,
        last_seq,
        next_heartbeat: interval,
        step_timeout: port.step_timeout,
        max_batch: port.max_batch,
        manager_time: port.clock.wall(),
    })
}

async fn store_events(
    port: &AgentPort,
    computer: ComputerId,
    events: Vec<AgentEvent>,
) -> Result<(), crate::store::StoreError> {
    if let Some(reason) = port.store.event_refusal() {
        return Err(crate::store::StoreError::Unavailable(reason));
    }
    let received = port.clock.wall();
    let count = u64::try_from(events.len()).unwrap_or(u64::MAX);
    let events: Vec<StoredEvent> = events
        .into_iter()
        .map(|e| StoredEvent {
            computer,
            seq: e.seq,
            id: e.id,
            time: e.time,
            received,
            fields: e.fields,
        })
        .collect();
    let stored = port
        .writer
        .write(move |txn| txn.insert_events(&events).map(|_| ()))
        .await;
    if stored.is_ok() {
        port.metrics.events_received(count);
    }
    stored
}

/// The clock steps an agent reported (event 5004), for the verdicts task to judge.
fn clock_steps(events: &[AgentEvent]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.id == crate::model::events::CLOCK_CHANGED.id)
        .filter_map(|e| {
            e.fields
                .iter()
                .find(|(k, _)| k == "change_ms")
                .and_then(|(_, v)| v.parse().ok())
        })
        .collect()
}

/// Records what a session learned. A failure here is logged: the agent already has its answer.
async fn record(
    port: &AgentPort,
    computer: ComputerId,
    peer: &Peer,
    status_at: WallMs,
    summary: &SessionSummary,
) {
    let purpose = summary.purpose;
    let agent_clock = summary.status.as_ref().map(|s| s.wall_clock);
    let started_with = summary.status.as_ref().and_then(|s| s.fingerprint);
    let ended = DialerEvent::SessionEnded {
        computer,
        dialed: peer.dialed,
        config_applied: summary.applied.is_some() && summary.applied != started_with,
        listens: summary
            .status
            .as_ref()
            .is_some_and(|s| s.listen_port.is_some()),
    };
    let summary = summary.clone();
    let (address, tls_version, cipher_suite) = (
        peer.addr.to_string(),
        peer.tls_version.clone(),
        peer.cipher_suite.clone(),
    );
    let result = port
        .writer
        .write(move |txn| {
            let Some(mut state) = txn.agent_state(computer)? else {
                return Ok(());
            };
            state.address = Some(address.clone());
            state.tls_version.clone_from(&tls_version);
            state.cipher_suite.clone_from(&cipher_suite);
            if let Some(version) = &summary.agent_version {
                state.agent_version.clone_from(version);
            }
            // A session that failed before the agent said anything about its configuration
            // leaves what the last good one recorded.
            if summary.status.is_some() {
                state.applied_fingerprint = summary.applied.map(|f| f.0);
                state.config_rejected.clone_from(&summary.config_rejected);
            }
            state.last_seq = state.last_seq.max(summary.last_seq);
            if let Some(status) = &summary.status {
                apply_status(&mut state, status, status_at);
            }
            txn.put_agent_state(&state)
        })
        .await;
    match result {
        Ok(()) => {}
        // Said once by the store; the computer did heartbeat, and liveness must know it.
        Err(e) if e.is_temporary() => {
            log::debug!("cannot record the heartbeat of computer {computer}: {e}");
        }
        Err(e) => log::error!("cannot record the heartbeat of computer {computer}: {e}"),
    }
    // Recorded first, so a status change never shows before the heartbeat that caused it. Told
    // even when the store failed: a computer is not offline because the manager's disk is full.
    if purpose == Some(Purpose::Goodbye) {
        port.liveness.send(LivenessEvent::Goodbye(computer));
    } else if let Some(agent_clock) = agent_clock {
        port.liveness.send(LivenessEvent::Heartbeat {
            computer,
            agent_clock: Some(agent_clock),
            waited: port.clock.now().saturating_since(peer.since),
        });
    }
    port.dialer.send(ended);
}

/// The agent's clock minus the manager's: both read within one round trip, so this is the
/// agent's clock error. Saturates for an absurd agent clock.
fn clock_offset(agent: WallMs, manager: WallMs) -> i64 {
    let offset = i128::from(agent.0) - i128::from(manager.0);
    i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX })
}

fn apply_status(state: &mut AgentState, status: &crate::proto::AgentStatus, at: WallMs) {
    state.last_heartbeat = Some(at);
    state.clock_offset_ms = Some(clock_offset(status.wall_clock, at));
    state.listen_port = status.listen_port;
    state.components = status
        .components
        .iter()
        .map(|c| (c.name.clone(), c.on))
        .collect();
    state.counters = status
        .counters
        .iter()
        .map(|c| (c.name.clone(), c.value))
        .collect();
}

/// Runs an activation request: the grant in one transaction (so a refused activation stores
/// nothing and a granted one is durable before the agent hears of it), then the registry, the
/// liveness and dialer tasks learn of the new computer.
fn activate(
    port: &AgentPort,
    request: ActivationRequest,
    ip: &str,
) -> Result<Activated, activation::Refused> {
    let now = port.clock.wall();
    let mut txn = port.store.write()?;
    let granted = activation::grant(&mut txn, &port.pki, &port.endpoints, &request, ip, now)?;
    txn.commit()?;
    let computer = &granted.computer;
    port.registry.insert(granted.serial, computer.id);
    port.liveness.send(LivenessEvent::Activated(computer.id));
    port.dialer.send(DialerEvent::Activated(computer.id));
    log::info!(
        "computer '{}' (id {}) activated from {ip}",
        computer.hostname,
        computer.id
    );
    Ok(granted.into_message())
}
