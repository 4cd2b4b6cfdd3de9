//! One simulated agent: the real agent-side protocol state machine (`proto::AgentSession`) over
//! real mutual TLS, with its events kept in memory instead of the redb spool, so thousands of
//! agents fit in one process and the generator measures the manager, not its own disk.

use super::connect::connect_from;
use super::enroll::Identity;
use super::probe::CpuSource;
use crate::clock::Clock;
use crate::clock::Stopwatch;
use crate::clock::within;
use crate::framed::{self, FrameError};
use crate::model::events;
use crate::policy::Fingerprint;
use crate::proto::{
    AgentEvent, AgentOutput, AgentSession, AgentStatus, Component, Counter, EventBatch, Hello,
    ManagerMsg, PROTOCOL_VERSION, ProtoError, Purpose, SpoolRange,
};
use futures_rustls::TlsConnector;
use rustls::ClientConfig;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use smol::io::{AsyncRead, AsyncWrite};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// As the real agent: how long connecting, the handshake and each step may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the manager to close after its last message.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every simulated agent shares.
pub struct Shared {
    pub manager: SocketAddr,
    /// The name the manager's certificate is checked against.
    pub server_name: ServerName<'static>,
    /// Where the manager's CPU time is read: this process, or a running manager's metrics.
    pub cpu: CpuSource,
    /// The real agent's client configuration (CA, ALPN, versions), without resumption; each
    /// session sets its agent's certificate and, unless `resume` is off, its ticket store.
    pub template: ClientConfig,
    pub resume: bool,
    pub clock: Arc<dyn Clock>,
    pub events_per_heartbeat: u32,
    /// The configuration fingerprint agents of each policy run, so the first session of a run
    /// does not push a configuration to every agent.
    pub fingerprint: Option<Fingerprint>,
    /// Manager-initiated runs: the port every simulated agent listens on (each at its own
    /// address), reported in its status as a real agent reports its listener's.
    pub listen_port: Option<u16>,
}

/// An agent between sessions: its identity and its in-memory spool.
pub struct SimAgent {
    pub id: Identity,
    /// Highest sequence appended, and highest acknowledged by the manager.
    last_seq: u64,
    acked: u64,
    fingerprint: Option<Fingerprint>,
    ok: u64,
    failed: u64,
    /// Heartbeats the generator started late (see [`SimAgent::late`]).
    late: u64,
    ticket: Arc<super::tickets::AgentTicket>,
    /// Made once: rustls resumes a ticket only with the very resolver (by pointer) that was in
    /// the configuration which received it.
    resolver: Arc<dyn ResolvesClientCert>,
    /// When the manager last heard from this agent before the run, if the run knows (its
    /// activation): its first heartbeat goes then, as a real agent's.
    pub heard: Option<Stopwatch>,
}

/// How long a good session took, from the start of the TCP connect.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub handshake: Duration,
    /// Until the manager's `done`: what the agent waits for.
    pub done: Duration,
    /// Until the manager closed, after recording the heartbeat: the manager's whole handling.
    pub closed: Option<Duration>,
    pub events_acked: u64,
    /// The TLS handshake resumed the agent's previous session (a ticket, no certificates).
    pub resumed: bool,
}

/// Why a session failed, in words that group well in a report.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Failure {
    pub reason: &'static str,
    pub detail: String,
}

fn failure(reason: &'static str, detail: impl ToString) -> Failure {
    Failure {
        reason,
        detail: detail.to_string(),
    }
}

/// Presents one agent's certificate: a resolver per agent on a clone of the shared template
/// costs one small allocation per agent instead of a whole configuration.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

/// A resolver that always presents `key` (also used by the floor).
pub fn fixed(key: Arc<CertifiedKey>) -> impl ResolvesClientCert {
    Fixed(key)
}

impl ResolvesClientCert for Fixed {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl SimAgent {
    pub fn new(id: Identity, fingerprint: Option<Fingerprint>) -> SimAgent {
        SimAgent {
            last_seq: 0,
            acked: 0,
            fingerprint,
            ok: 0,
            failed: 0,
            late: 0,
            ticket: Arc::default(),
            resolver: Arc::new(fixed(id.key.clone())),
            heard: None,
            id,
        }
    }

    /// Appends this heartbeat's events, then dials the manager for one heartbeat session.
    pub async fn heartbeat(&mut self, shared: &Shared) -> Result<Timing, Failure> {
        self.last_seq += u64::from(shared.events_per_heartbeat);
        let result = self.session(shared).await;
        self.count(&result);
        result
    }

    /// Appends this heartbeat's events, then answers a session the manager dialed, on a
    /// connection accepted at `start` and already through the TLS handshake (`handshake`).
    pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        shared: &Shared,
        tls: &mut S,
        start: Stopwatch,
        handshake: Duration,
    ) -> Result<Timing, Failure> {
        self.last_seq += u64::from(shared.events_per_heartbeat);
        let result = self.converse(shared, tls, start, handshake, false).await;
        self.count(&result);
        result
    }

    /// A heartbeat the generator could not even start (too many in flight): for the agent, a
    /// failed one.
    pub fn skipped(&mut self) {
        self.failed += 1;
    }

    /// A heartbeat the generator started later than its agent's allowance (the grace) past its
    /// due time: the manager rightly counts it missed, so the computer's alert is not false.
    pub fn late(&mut self) {
        self.late += 1;
    }

    /// Heartbeats started too late so far.
    pub fn late_starts(&self) -> u64 {
        self.late
    }

    /// Heartbeats that failed or were skipped so far.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// The counters a real agent reports in its next status.
    fn count(&mut self, result: &Result<Timing, Failure>) {
        match result {
            Ok(_) => self.ok += 1,
            Err(_) => self.failed += 1,
        }
    }

    async fn session(&mut self, shared: &Shared) -> Result<Timing, Failure> {
        let start = Stopwatch::now();
        let tcp = within(
            &*shared.clock,
            STEP_TIMEOUT,
            connect_from(self.id.source, shared.manager),
        )
        .await
        .ok_or_else(|| failure("timeout", "connecting"))?
        .map_err(|e| failure("connect", e))?;
        let mut config = shared.template.clone();
        config.client_auth_cert_resolver = self.resolver.clone();
        if shared.resume {
            config.resumption = rustls::client::Resumption::store(self.ticket.clone());
        }
        let mut tls = within(
            &*shared.clock,
            STEP_TIMEOUT,
            TlsConnector::from(Arc::new(config)).connect(shared.server_name.clone(), tcp),
        )
        .await
        .ok_or_else(|| failure("timeout", "TLS handshake"))?
        .map_err(|e| failure("tls handshake", e))?;
        let handshake = start.elapsed();
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        self.converse(shared, &mut tls, start, handshake, resumed)
            .await
    }

    /// The agent's side of one heartbeat session over an established TLS connection, as
    /// `agent::session::drive` runs it.
    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        shared: &Shared,
        tls: &mut S,
        start: Stopwatch,
        handshake: Duration,
        resumed: bool,
    ) -> Result<Timing, Failure> {
        let clock = shared.clock.as_ref();
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            purpose: Purpose::Heartbeat,
        };
        let mut session = AgentSession::heartbeat(
            clock.now(),
            hello,
            self.status(clock, shared.listen_port),
            STEP_TIMEOUT,
        );
        let acked_before = self.acked;
        loop {
            while let Some(output) = session.poll_output() {
                match output {
                    AgentOutput::Send(message) => {
                        if framed::write(tls, &message).await.is_err() {
                            session.handle_closed();
                        }
                    }
                    AgentOutput::ReadEvents { after, max } => {
                        let batch = self.read_events(clock, after, max);
                        session.provide_events(clock.now(), batch);
                    }
                    AgentOutput::Acked { through } => self.acked = self.acked.max(through),
                    AgentOutput::Apply { config, .. } => {
                        let fingerprint = config.fingerprint();
                        self.fingerprint = Some(fingerprint);
                        // The real agent records that it applied a configuration.
                        self.last_seq += 1;
                        session.config_result(clock.now(), Ok(fingerprint));
                    }
                    AgentOutput::Activated(_) => {}
                    // Simulated agents run no binary of their own to replace.
                    AgentOutput::UpgradeOffered(_) => session.upgrade_answer(clock.now(), false),
                    AgentOutput::BinaryChunk(_) => {}
                    AgentOutput::Finished(Ok(_)) => {
                        let done = start.elapsed();
                        let closed = wait_close(tls, &*shared.clock)
                            .await
                            .then(|| start.elapsed());
                        return Ok(Timing {
                            handshake,
                            done,
                            closed,
                            events_acked: self.acked - acked_before,
                            resumed,
                        });
                    }
                    AgentOutput::Finished(Err(ProtoError::Refused(reason))) => {
                        return Err(failure("refused", reason));
                    }
                    AgentOutput::Finished(Err(ProtoError::Timeout { waiting_for })) => {
                        return Err(failure("timeout", waiting_for));
                    }
                    AgentOutput::Finished(Err(e)) => return Err(failure("protocol", e)),
                }
            }
            next_message(&mut session, tls, clock).await?;
        }
    }

    /// The status the real agent sends: its clock, components, counters, fingerprint, spool,
    /// and the port it listens on (manager-initiated runs).
    fn status(&self, clock: &dyn Clock, listen_port: Option<u16>) -> AgentStatus {
        let pending = self.last_seq - self.acked;
        let counter = |name: &str, value| Counter {
            name: name.into(),
            value,
        };
        AgentStatus {
            wall_clock: clock.wall(),
            components: vec![
                Component::from_on("spool".into(), true),
                Component::from_on("firewall".into(), false),
            ],
            counters: vec![
                counter("heartbeats-ok", self.ok),
                counter("heartbeats-failed", self.failed),
                counter("events-spooled", pending),
            ],
            fingerprint: self.fingerprint,
            spool: if pending == 0 {
                SpoolRange { first: 1, last: 0 }
            } else {
                SpoolRange {
                    first: self.acked + 1,
                    last: self.last_seq,
                }
            },
            listen_port,
        }
    }

    /// Events after `after`, as the spool would return them: at most `max`, in order.
    fn read_events(&self, clock: &dyn Clock, after: u64, max: u32) -> EventBatch {
        let first = after.max(self.acked) + 1;
        let last = self.last_seq.min(first.saturating_add(u64::from(max)) - 1);
        let now = clock.wall();
        let events = (first..=last)
            .map(|seq| AgentEvent {
                seq,
                id: events::AGENT_STARTED.id,
                time: now,
                fields: vec![("version".into(), env!("CARGO_PKG_VERSION").into())],
            })
            .collect();
        EventBatch {
            events,
            more: last < self.last_seq,
        }
    }
}

/// Waits for the manager's next message (or the session's timeout) and hands it to `session`.
pub async fn next_message<S: AsyncRead + Unpin>(
    session: &mut AgentSession,
    tls: &mut S,
    clock: &dyn Clock,
) -> Result<(), Failure> {
    let wait = session
        .poll_timeout()
        .map_or(STEP_TIMEOUT, |d| d.saturating_since(clock.now()));
    match within(clock, wait, framed::read::<ManagerMsg, _>(tls)).await {
        None => session.handle_timeout(clock.now()),
        Some(Ok(message)) => session.handle_message(clock.now(), message),
        Some(Err(FrameError::Proto(e))) => return Err(failure("protocol", e)),
        Some(Err(e)) => return Err(failure("connection", e)),
    }
    Ok(())
}

/// Reads until the manager closes; false if it did not within the limit.
async fn wait_close<S: smol::io::AsyncRead + Unpin>(stream: &mut S, clock: &dyn Clock) -> bool {
    use smol::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    within(clock, CLOSE_TIMEOUT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_some()
}
