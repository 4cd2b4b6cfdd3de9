//! The agent port (4120): accepts TLS connections from agents and runs one protocol session on
//! each, as the sans-io `ManagerSession` decides; this file only moves frames, loads what the
//! session needs and records what it learned.

use crate::activation;
use crate::clock::within;
use crate::clock::{Clock, Instant, WallMs};
use crate::framed::{self, FrameError};
use crate::handles::{Dialer, DialerEvent};
use crate::handles::{Liveness, LivenessEvent};
use crate::model::{AgentState, ComputerId, HistoryEntry, StoredEvent};
use crate::net::admission::Source;
use crate::net::{Budget, Closed, Gate, Ticket};
use crate::pki::{ManagerPki, cert_serial};
use crate::policy::{self, PolicyTree};
use crate::proto::{
    Activated, ActivationRequest, AgentEvent, AgentMsg, ManagerMsg, ManagerOutput, ManagerSession,
    Outgoing, Purpose, Refusal, SessionParams, SessionSummary,
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
    /// Agents being sent this manager's binary (`upgrade.rs`).
    pub downloads: upgrade::Downloads,
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
    if let Some(computer) = peer.computer {
        drop(ticket);
        // Its heartbeat is on its way, however long it waits for a runner.
        port.liveness.send(LivenessEvent::Arrived(computer));
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
        if let Some(computer) = connection.peer.computer {
            port.liveness.send(LivenessEvent::Left(computer));
        }
        return;
    }
    if let Err(reason) = run_session(port, &mut connection.tls, &connection.peer).await {
        log::warn!("agent connection from {addr} closed: {reason}");
    }
}

mod session;
mod upgrade;

#[cfg(test)]
pub(crate) use session::clock_steps;
pub(crate) use session::{Peer, identify, run_session};
