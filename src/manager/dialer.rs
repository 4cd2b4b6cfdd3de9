//! The manager's outbound dials to agents' listeners: manager-initiated computers at their
//! interval, and any listening agent at once for an operation (send policy, check status), a
//! pushed change, or a reachability check. `DialPlan` decides when; this task resolves the
//! address, connects, checks the agent's certificate by name, and runs the same session as the
//! agent port. A failed dial goes to the verdicts task, which decides what it means.

use super::agent_port::{AgentPort, Peer, identify, run_session};
use super::dial_plan::{DialPlan, Target};
use crate::clock::within;
use crate::clock::{Clock, Instant};
use crate::handles::{DialError, DialResult, DialerEvent, LivenessEvent};
use crate::model::{AgentState, Computer, ComputerId, ListenerRule};
use crate::pki::agent_server_name;
use crate::policy::PolicyTree;
use crate::policy::port_rule::{self, ManagerReach};
use crate::store::{Reads, StoreError};
use crate::tasks::{Spawner, TaskSet};
use futures_rustls::TlsConnector;
use smol::channel::{Receiver, Sender};
use smol::net::TcpStream;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Dials running at once; more wait for a slot.
pub const MAX_DIALS_IN_FLIGHT: usize = 64;
/// Connecting (after resolving) may take this long; the handshake and each step take the
/// session's step timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until dropped.
pub async fn run(
    port: Arc<AgentPort>,
    tls: Arc<rustls::ClientConfig>,
    events: Receiver<DialerEvent>,
    ex: Spawner,
) {
    let mut plan = DialPlan::new(MAX_DIALS_IN_FLIGHT);
    let mut waiters: HashMap<ComputerId, Vec<Sender<DialResult>>> = HashMap::new();
    let (done_tx, done_rx) = smol::channel::unbounded::<(ComputerId, Box<DialResult>)>();
    // Dropping the dialer ends the dials it started.
    let mut dials = TaskSet::new(ex);
    refresh(&port, &mut plan).await;
    loop {
        while let Some((computer, due)) = plan.poll_dial(port.clock.now()) {
            let replies = waiters.remove(&computer).unwrap_or_default();
            let (port, tls, done) = (port.clone(), tls.clone(), done_tx.clone());
            dials.spawn(async move {
                let result = dial(&port, tls, computer, due).await;
                for reply in replies {
                    let _ = reply.try_send(result.clone());
                }
                let _ = done.send((computer, Box::new(result))).await;
            });
        }
        let tick = port.clock.sleep_until(plan.poll_timeout());
        let next = smol::future::or(
            async { Some(Input::Event(events.recv().await.ok()?)) },
            smol::future::or(
                async { done_rx.recv().await.ok().map(|(c, r)| Input::Done(c, r)) },
                async {
                    tick.await;
                    Some(Input::Tick)
                },
            ),
        )
        .await;
        match next {
            None => return,
            Some(Input::Tick) => {}
            Some(Input::Done(computer, result)) => {
                plan.handle_done(computer);
                let event = match *result {
                    Ok(_) => {
                        if plan.dial_result(computer, true) {
                            log::info!("computer {computer} is reachable again");
                        }
                        LivenessEvent::DialSucceeded(computer)
                    }
                    // Logged when it starts failing, not at every interval after: a thousand
                    // computers out of reach would otherwise be a thousand lines a minute.
                    // Each failure still reaches the verdicts task, and the computer's status.
                    Err(reason) if plan.dial_result(computer, false) => {
                        log::warn!("dial to computer {computer} failed: {reason}");
                        LivenessEvent::DialFailed {
                            computer,
                            reason: reason.to_string(),
                        }
                    }
                    Err(reason) => {
                        log::debug!("dial to computer {computer} failed again: {reason}");
                        LivenessEvent::DialFailed {
                            computer,
                            reason: reason.to_string(),
                        }
                    }
                };
                port.liveness.send(event);
            }
            Some(Input::Event(event)) => {
                handle(&port, &mut plan, &mut waiters, event).await;
            }
        }
    }
}

enum Input {
    Event(DialerEvent),
    Done(ComputerId, Box<DialResult>),
    Tick,
}

async fn handle(
    port: &Arc<AgentPort>,
    plan: &mut DialPlan,
    waiters: &mut HashMap<ComputerId, Vec<Sender<DialResult>>>,
    event: DialerEvent,
) {
    match event {
        DialerEvent::Refresh => refresh(port, plan).await,
        DialerEvent::Activated(computer) => {
            let loaded = {
                let port = port.clone();
                smol::unblock(move || load_target(&port, computer)).await
            };
            match loaded {
                Ok(Some(target)) => plan.target(port.clock.now(), &target),
                // Deleted again before this was read.
                Ok(None) => plan.forget(computer),
                Err(e) => log::error!("dialer: cannot read computer {computer}: {e}"),
            }
        }
        DialerEvent::Dial { computer, reply } => {
            if let Some(reply) = reply {
                waiters.entry(computer).or_default().push(reply);
            }
            plan.request(computer);
        }
        DialerEvent::SessionEnded {
            computer,
            dialed,
            config_applied,
            listens,
        } => plan.session_ended(computer, dialed, config_applied, listens),
        DialerEvent::Deleted(computer) => {
            plan.forget(computer);
            port.dialer.forget_source(computer);
            waiters.remove(&computer);
        }
    }
}

/// Schedules every manager-initiated computer at its interval and pushes configurations that
/// changed to every agent that listens.
async fn refresh(port: &Arc<AgentPort>, plan: &mut DialPlan) {
    let loaded = {
        let port = port.clone();
        smol::unblock(move || load_targets(&port)).await
    };
    let targets = match loaded {
        Ok(targets) => targets,
        Err(e) => {
            log::error!("dialer: cannot read the computers: {e}");
            return;
        }
    };
    let now = port.clock.now();
    let known: HashSet<ComputerId> = targets.iter().map(|t| t.computer).collect();
    let gone: Vec<ComputerId> = plan.scheduled().filter(|c| !known.contains(c)).collect();
    for computer in gone {
        plan.forget(computer);
    }
    for target in targets {
        plan.target(now, &target);
    }
}

fn load_targets(port: &AgentPort) -> Result<Vec<Target>, StoreError> {
    let txn = port.store.read()?;
    let tree = PolicyTree::new(txn.policies()?);
    let mut targets = Vec::new();
    for state in txn.agent_states()? {
        if let Some(computer) = txn.computer(state.computer)? {
            targets.push(target(port, &tree, &computer, &state));
        }
    }
    Ok(targets)
}

/// One activated computer's target, if it (still) has an agent.
fn load_target(port: &AgentPort, id: ComputerId) -> Result<Option<Target>, StoreError> {
    let txn = port.store.read()?;
    let (Some(state), Some(computer)) = (txn.agent_state(id)?, txn.computer(id)?) else {
        return Ok(None);
    };
    let tree = PolicyTree::new(txn.policies()?);
    Ok(Some(target(port, &tree, &computer, &state)))
}

fn target(port: &AgentPort, tree: &PolicyTree, computer: &Computer, state: &AgentState) -> Target {
    let expected = super::expected_config(tree, computer, &port.endpoints);
    // Every configuration an agent may apply was expected here first (each change refreshes),
    // and is remembered by the fingerprint the agent will report: its protocol's form.
    let fingerprint = expected.fingerprint_for(state.protocol).0;
    port.dialer
        .note_rules(fingerprint, &expected.listener_rules);
    Target {
        computer: computer.id,
        direction: expected.direction,
        interval: expected.interval,
        listens: state.listen_port.is_some(),
        up_to_date: crate::policy::runs(&expected, state),
    }
}

/// One dial: where to, connect, check the certificate's name, run the session.
async fn dial(
    port: &Arc<AgentPort>,
    tls: Arc<rustls::ClientConfig>,
    computer: ComputerId,
    due: Instant,
) -> DialResult {
    let stream = connect(port, tls, computer, due).await;
    let (mut stream, peer) = stream.inspect_err(|_| port.metrics.dial_failed())?;
    let addr = peer.addr;
    run_session(port, &mut stream, &peer)
        .await
        .map_err(|e| DialError::Session(format!("session with {addr}: {e}")))
}

/// Everything of a dial before the session: the target, TCP, TLS, and the certificate's name.
async fn connect(
    port: &Arc<AgentPort>,
    tls: Arc<rustls::ClientConfig>,
    computer: ComputerId,
    due: Instant,
) -> Result<(futures_rustls::client::TlsStream<TcpStream>, Peer), DialError> {
    let (host, listen_port) = {
        let port = port.clone();
        smol::unblock(move || dial_target(&port, computer))
            .await
            .map_err(DialError::NoTarget)?
    };
    let addr = resolve(&*port.clock, &host, listen_port)
        .await
        .map_err(DialError::Resolve)?;
    let tcp = within(&*port.clock, CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok_or_else(|| DialError::Connect(format!("connecting to {addr} timed out")))?
        .map_err(|e| DialError::Connect(format!("cannot connect to {addr}: {e}")))?;
    // Small frames each way: without this, Nagle and delayed ACKs add ~40 ms per round trip.
    if let Err(e) = tcp.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY towards {addr}: {e}");
    }
    let source = tcp.local_addr().ok().map(|a| a.ip());
    if let Some(source) = source {
        port.dialer.note_source(computer, source);
    }
    let name = agent_server_name(computer.0).map_err(|e| DialError::Tls(e.to_string()))?;
    let handshake = within(
        &*port.clock,
        port.step_timeout,
        TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .ok_or_else(|| DialError::Tls(format!("the TLS handshake with {addr} timed out")))?;
    let stream = match handshake {
        Ok(stream) => stream,
        Err(e) => {
            let words = format!("TLS handshake with {addr} failed: {e}");
            let refused = match source {
                Some(source) => refused_by_rule(port, computer, source, listen_port).await,
                None => None,
            };
            return Err(DialError::Tls(match refused {
                Some(why) => format!("{why}; {words}"),
                None => words,
            }));
        }
    };
    let peer = identify(stream.get_ref().1, addr, &port.registry, true, due)
        .map_err(DialError::Identity)?;
    if peer.computer != Some(computer) {
        return Err(DialError::Identity(format!(
            "{addr} answered with another computer's certificate"
        )));
    }
    Ok((stream, peer))
}

/// Why the agent cut a handshake short, if the rules it runs refuse the manager's address. The
/// agent closes such a connection without a word, so that a refused peer learns nothing of its
/// rules; but the manager sent it those rules and can tell.
async fn refused_by_rule(
    port: &Arc<AgentPort>,
    computer: ComputerId,
    manager: IpAddr,
    listen_port: u16,
) -> Option<String> {
    let loaded = {
        let port = port.clone();
        smol::unblock(move || agent_rules(&port, computer)).await
    };
    let rules = match loaded {
        Ok(rules) => rules?,
        Err(e) => {
            log::debug!("dialer: cannot read computer {computer}'s rules: {e}");
            return None;
        }
    };
    match port_rule::manager_reach(&rules, listen_port, manager) {
        ManagerReach::Refused { rules } => Some(refusal_words(&rules, manager, listen_port)),
        ManagerReach::Admitted | ManagerReach::ByMac { .. } => None,
    }
}

/// The agent-port rules the agent runs: those of the configuration it last reported applying,
/// when the manager knows them (the current one, or one it remembers).
fn agent_rules(
    port: &AgentPort,
    computer: ComputerId,
) -> Result<Option<Vec<ListenerRule>>, StoreError> {
    let txn = port.store.read()?;
    let (Some(record), Some(state)) = (txn.computer(computer)?, txn.agent_state(computer)?) else {
        return Ok(None);
    };
    let Some(applied) = state.applied_fingerprint else {
        return Ok(None);
    };
    let tree = PolicyTree::new(txn.policies()?);
    let expected = super::expected_config(&tree, &record, &port.endpoints);
    if expected.fingerprint_for(state.protocol).0 == applied {
        return Ok(Some(expected.listener_rules));
    }
    Ok(port.dialer.rules(&applied))
}

/// `the agent's firewall rule 'admin host' refused the manager at 10.0.0.1 (port 4118)`.
fn refusal_words(rules: &[String], manager: IpAddr, port: u16) -> String {
    let noun = if rules.len() == 1 { "rule" } else { "rules" };
    format!(
        "the agent's firewall {noun} {} refused the manager at {manager} (port {port})",
        port_rule::quoted(rules)
    )
}

/// The host to dial (the administrator's address, else the IP the agent last came from) and
/// the port the agent says it listens on.
fn dial_target(port: &AgentPort, computer: ComputerId) -> Result<(String, u16), String> {
    let txn = port.store.read().map_err(|e| e.to_string())?;
    let record = txn.computer(computer).map_err(|e| e.to_string())?;
    let state = txn.agent_state(computer).map_err(|e| e.to_string())?;
    let (Some(record), Some(state)) = (record, state) else {
        return Err(format!("computer {computer} is not activated"));
    };
    target_of(&record, &state)
}

fn target_of(computer: &Computer, state: &AgentState) -> Result<(String, u16), String> {
    let listen_port = state.listen_port.ok_or(
        "the agent does not listen (agent-initiated, or it has not reported its port yet)",
    )?;
    let host = match (&computer.address, &state.address) {
        (Some(address), _) => address.clone(),
        (None, Some(seen)) => seen
            .parse::<SocketAddr>()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| seen.clone()),
        (None, None) => return Err("no address is known for the agent".to_string()),
    };
    Ok((host, listen_port))
}

/// The system resolver, at each dial: a computer that moved is found at its new address.
async fn resolve(clock: &dyn Clock, host: &str, port: u16) -> Result<SocketAddr, String> {
    let found = within(clock, CONNECT_TIMEOUT, smol::net::resolve((host, port)))
        .await
        .ok_or_else(|| format!("resolving '{host}' timed out"))?
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?;
    found
        .into_iter()
        .next()
        .ok_or_else(|| format!("'{host}' resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn computer(address: Option<&str>) -> Computer {
        Computer {
            address: address.map(str::to_string),
            ..Computer::test(3, "web1")
        }
    }

    #[test]
    fn the_administrators_address_wins_then_the_last_seen_ip() {
        let state = AgentState {
            address: Some("10.0.0.5:40112".into()),
            listen_port: Some(4118),
            ..AgentState::default()
        };
        assert_eq!(
            target_of(&computer(Some("web1.example")), &state),
            Ok(("web1.example".to_string(), 4118))
        );
        assert_eq!(
            target_of(&computer(None), &state),
            Ok(("10.0.0.5".to_string(), 4118))
        );
        let silent = AgentState {
            listen_port: None,
            ..state
        };
        let err = target_of(&computer(None), &silent).unwrap_err();
        assert!(err.contains("does not listen"), "{err}");
    }

    #[test]
    fn a_refusal_names_the_rules_and_the_managers_address() {
        let manager: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            refusal_words(&["admin host".into()], manager, 4118),
            "the agent's firewall rule 'admin host' refused the manager at 127.0.0.1 (port 4118)"
        );
        let two = refusal_words(&["a".into(), "b".into()], manager, 4118);
        assert!(two.contains("rules 'a', 'b' refused"), "{two}");
    }

    #[test]
    fn an_unresolvable_host_is_an_error_in_words() {
        let clock = crate::clock::RealClock::new();
        let err = smol::block_on(resolve(&clock, "no-such-host.invalid", 4118)).unwrap_err();
        assert!(err.contains("no-such-host.invalid"), "{err}");
    }
}
