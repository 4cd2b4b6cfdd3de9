//! One protocol session on a connection the handshake authenticated, whoever dialed: the
//! session machine driven over the stream, its events stored, what it learned recorded, and an
//! activation's grant.

use super::*;

/// What the TLS handshake told us about the peer.
pub(crate) struct Peer {
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
pub(crate) async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    port: &Arc<AgentPort>,
    tls: &mut S,
    peer: &Peer,
) -> Result<SessionSummary, SessionError> {
    // A dial that reached the agent: its heartbeat is on its way (an accepted one said so when
    // it was queued).
    if peer.dialed
        && let Some(computer) = peer.computer
    {
        port.liveness.send(LivenessEvent::Arrived(computer));
    }
    let mut recorded = false;
    let result = converse(port, tls, peer, &mut recorded).await;
    // Ended before its summary was recorded (its settings unreadable, a fatal store error, a
    // broken frame): the verdict it held may come now, not only after SESSION_LIMIT.
    if !recorded && let Some(computer) = peer.computer {
        port.liveness.send(LivenessEvent::Left(computer));
    }
    result
}

/// The session itself; `recorded` says whether its summary was recorded (which tells the
/// verdicts task how it ended).
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    port: &Arc<AgentPort>,
    tls: &mut S,
    peer: &Peer,
    recorded: &mut bool,
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
                            for (change_ms, at) in steps {
                                port.liveness.send(LivenessEvent::ClockStep {
                                    computer,
                                    change_ms,
                                    at,
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
                ManagerOutput::SendBinary(offer) => {
                    // The heartbeat is whole by now: recorded before the download, which may
                    // take minutes on a slow link and is no delay of the manager's.
                    if let Some(computer) = peer.computer {
                        record(port, computer, peer, status_at, session.summary()).await;
                        *recorded = true;
                    }
                    match port.downloads.try_start() {
                        Some(_permit) => {
                            let step = port.step_timeout;
                            let sent = upgrade::stream(tls, &offer, &*port.clock, step, addr).await;
                            match sent {
                                Ok(bytes) => log::info!(
                                    "agent {addr}: sent version {} ({bytes} bytes) for its upgrade",
                                    offer.version
                                ),
                                Err(e) => log::warn!(
                                    "agent {addr}: sending version {} stopped {e}",
                                    offer.version
                                ),
                            }
                        }
                        None => log::info!(
                            "agent {addr}: {} agents are being sent the binary; this one is \
                             offered it again at its next heartbeat",
                            upgrade::MAX_DOWNLOADS
                        ),
                    }
                    session.handle_binary_sent();
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
                    if let Some(computer) = peer.computer.filter(|_| !*recorded) {
                        record(port, computer, peer, status_at, &summary).await;
                        *recorded = true;
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
        let read = async {
            let body = framed::read_body(tls).await?;
            crate::proto::decode_agent(session.peer(), &body).map_err(FrameError::Proto)
        };
        match within(&*port.clock, wait, read).await {
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
pub(super) async fn send<S: AsyncWrite + Unpin>(
    tls: &mut S,
    addr: SocketAddr,
    outgoing: &mut Vec<Outgoing>,
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

pub(super) fn count_session(
    port: &AgentPort,
    peer: &Peer,
    ok: bool,
    started: crate::clock::Instant,
) {
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
pub(crate) fn identify(
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

pub(super) fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        other => format!("{other:?}"),
    }
}

pub(super) fn session_params(
    port: &AgentPort,
    computer: Option<ComputerId>,
) -> Result<SessionParams, SessionError> {
    let txn = port.store.read()?;
    let tree = PolicyTree::new(txn.policies()?);
    let (expected, last_seq, interval, upgrade) = match computer {
        None => (
            policy::base_config(&tree, &port.endpoints),
            0,
            Duration::ZERO,
            None,
        ),
        Some(id) => {
            let record = txn.computer(id)?;
            let state = txn.agent_state(id)?;
            let (Some(record), Some(state)) = (record, state) else {
                // Deleted after the handshake was accepted: as good as revoked.
                port.registry.remove_computer(id);
                return Err(SessionError::Deleted(id));
            };
            let (expected, effective) =
                policy::expected_with_settings(&tree, &record, &port.endpoints);
            let interval = expected.interval;
            // Events are committed without touching the agent's state (one page write less per
            // heartbeat); the state learns their sequence when the session is recorded. A crash
            // between the two leaves the events table ahead, and it is the truth.
            let stored = txn.newest_event_seq(id)?;
            let last_seq = state.last_seq.max(stored.unwrap_or(0));
            let upgrade = upgrade::offer(effective.agent_auto_upgrade.value, &state.agent_version);
            (expected, last_seq, interval, upgrade)
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
        upgrade,
    })
}

pub(super) async fn store_events(
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

/// The clock steps an agent reported (event 5004), for the verdicts task to judge: the change,
/// and the agent's clock after it (the event's time when its `new` field is missing).
pub(crate) fn clock_steps(events: &[AgentEvent]) -> Vec<(i64, WallMs)> {
    events
        .iter()
        .filter(|e| e.id == crate::model::events::CLOCK_CHANGED.id)
        .filter_map(|e| {
            let field = |name: &str| e.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let change = field("change_ms")?.parse().ok()?;
            let at = field("new")
                .and_then(|v| v.parse().ok())
                .map_or(e.time, WallMs);
            Some((change, at))
        })
        .collect()
}

/// Records what a session learned. A failure here is logged: the agent already has its answer.
pub(super) async fn record(
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
    let now = port.clock.wall();
    // Stored, not set once: the writer may run a change twice, and only the run that committed
    // says whether the firewall's withholding began or ended.
    let withholding_changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changed = withholding_changed.clone();
    let recorded = summary.clone();
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
            if let Some(protocol) = summary.protocol {
                state.protocol = protocol;
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
                judge_drivers(txn, computer, &summary, status, now)?;
            }
            let flips = note_withholding(txn, &mut state, summary.firewall_withheld, now)?;
            changed.store(flips, std::sync::atomic::Ordering::Relaxed);
            txn.put_agent_state(&state)
        })
        .await;
    match result {
        Ok(()) => {
            if withholding_changed.load(std::sync::atomic::Ordering::Relaxed) {
                log_withholding(computer, &recorded);
            }
        }
        // Said once by the store; the computer did heartbeat, and liveness must know it.
        Err(e) if e.is_temporary() => {
            log::debug!("cannot record the heartbeat of computer {computer}: {e}");
        }
        Err(e) => log::error!("cannot record the heartbeat of computer {computer}: {e}"),
    }
    // Recorded first, so a status change never shows before the heartbeat that caused it. Told
    // even when the store failed: a computer is not offline because the manager's disk is full.
    if purpose == Some(Purpose::Goodbye) {
        port.liveness.send(LivenessEvent::Goodbye {
            computer,
            agent_clock,
        });
    } else if let Some(agent_clock) = agent_clock {
        port.liveness.send(LivenessEvent::Heartbeat {
            computer,
            agent_clock: Some(agent_clock),
            waited: port.clock.now().saturating_since(peer.since),
        });
    } else {
        port.liveness.send(LivenessEvent::Left(computer));
    }
    port.dialer.send(ended);
}

/// Raises or clears `driver-offline` from the components the agent reported.
fn judge_drivers(
    txn: &mut crate::store::WriteTxn,
    computer: ComputerId,
    summary: &SessionSummary,
    status: &crate::proto::AgentStatus,
    now: WallMs,
) -> Result<(), crate::store::StoreError> {
    use crate::alerts::drivers::{Verdict, judge};
    use crate::alerts::incident::Notify;
    // A session that ended before the configuration step knows nothing of the policy.
    let Some(enforced) = summary.firewall_enforced else {
        return Ok(());
    };
    match judge(enforced, summary.ran_expected, &status.components) {
        Verdict::Raise(message) => {
            crate::alerts::record::raise(
                txn,
                computer,
                crate::alerts::AlertKind::DriverOffline,
                now,
                Notify::Now,
                |_| message,
            )?;
        }
        Verdict::Clear => {
            crate::alerts::record::clear(
                txn,
                computer,
                crate::alerts::AlertKind::DriverOffline,
                now,
                "the firewall is on, or its policy no longer enables it",
                Notify::Now,
            )?;
        }
        Verdict::Keep => {}
    }
    Ok(())
}

/// Records whether the session withheld the firewall, and a history line when that changes
/// (not at every heartbeat of an old agent). Returns whether it changed.
fn note_withholding(
    txn: &mut crate::store::WriteTxn,
    state: &mut AgentState,
    withheld: Option<bool>,
    at: WallMs,
) -> Result<bool, crate::store::StoreError> {
    let Some(withheld) = withheld.filter(|w| *w != state.firewall_withheld) else {
        return Ok(false);
    };
    state.firewall_withheld = withheld;
    txn.add_history(&HistoryEntry {
        computer: state.computer,
        at,
        what: "firewall-withheld".into(),
        detail: withheld_words(state, withheld),
    })?;
    Ok(true)
}

/// The history's words when a computer's firewall starts or stops being withheld from its agent.
fn withheld_words(state: &AgentState, withheld: bool) -> String {
    if withheld {
        format!(
            "agent {}: {}",
            state.agent_version,
            policy::firewall_withheld_reason(state.protocol)
        )
    } else {
        format!(
            "the firewall is no longer withheld: agent {} speaks protocol {}, or firewall.enabled \
             is off",
            state.agent_version, state.protocol
        )
    }
}

/// The same in the log, once when it changes (not at every heartbeat of an old agent).
fn log_withholding(computer: ComputerId, summary: &SessionSummary) {
    let version = summary.agent_version.as_deref().unwrap_or("?");
    let protocol = summary.protocol.unwrap_or(0);
    if summary.firewall_withheld == Some(true) {
        let reason = policy::firewall_withheld_reason(protocol);
        log::warn!("computer {computer} (agent {version}): {reason}");
    } else {
        log::info!(
            "computer {computer}: the firewall is no longer withheld from its agent {version} \
             (protocol {protocol})"
        );
    }
}

/// The agent's clock minus the manager's: both read within one round trip, so this is the
/// agent's clock error. Saturates for an absurd agent clock.
pub(super) fn clock_offset(agent: WallMs, manager: WallMs) -> i64 {
    let offset = i128::from(agent.0) - i128::from(manager.0);
    i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX })
}

pub(super) fn apply_status(state: &mut AgentState, status: &crate::proto::AgentStatus, at: WallMs) {
    state.last_heartbeat = Some(at);
    state.clock_offset_ms = Some(clock_offset(status.wall_clock, at));
    state.listen_port = status.listen_port;
    state.components = status.components.clone();
    state.counters = status
        .counters
        .iter()
        .map(|c| (c.name.clone(), c.value))
        .collect();
}

/// Runs an activation request: the grant in one transaction (so a refused activation stores
/// nothing and a granted one is durable before the agent hears of it), then the registry, the
/// liveness and dialer tasks learn of the new computer.
pub(super) fn activate(
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
