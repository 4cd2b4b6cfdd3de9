//! The agent's listener (port 4118): open while the direction is bidirectional or
//! manager-initiated, closed when agent-initiated, switched as soon as a new configuration is
//! applied. A peer is checked against the agent-port firewall rule before any TLS byte is read;
//! then only the manager's certificate completes the handshake, and the manager drives one
//! session as on its own port. Until its handshake is done a connection counts against a small
//! budget under a short deadline, the oldest evicted when it is full, so idle sockets cannot
//! keep the manager's dial out; what is closed is logged as one line a minute.

use super::neighbours;
use super::runtime::Runtime;
use crate::files::write_atomic;
use crate::net::{Budget, Closed, Gate, Ticket};
use crate::policy::port_rule::{self as gate, Verdict};
use crate::proto::Purpose;
use futures_rustls::TlsAcceptor;
use smol::net::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where the agent writes the address it listens on, for tests and scripts.
const PORTS_FILE: &str = "ports.json";
/// Connections whose handshake is not done: 64 in all, 16 from one source. The manager dials
/// one at a time per agent, and it is the newest when it comes, so it evicts the oldest idle
/// socket rather than being refused.
const PREAUTH_BUDGET: Budget = Budget {
    total: 64,
    per_source: 16,
};
/// How long a connection may take from its accept to the end of its TLS handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// How long to wait before trying to bind again after a failure.
const REBIND_DELAY: Duration = Duration::from_secs(30);

/// Runs for as long as the agent does.
pub(super) async fn run(
    rt: &Runtime<'_>,
    addr: SocketAddr,
    dir: &Path,
    tls: Arc<rustls::ServerConfig>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        if !rt.direction().agent_listens() {
            close(rt, dir);
            rt.listener_wake.wait().await;
            continue;
        }
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                log::error!("cannot listen for the manager on {addr}: {e}; retrying");
                close(rt, dir);
                smol::future::or(rt.listener_wake.wait(), rt.clock.sleep(REBIND_DELAY)).await;
                continue;
            }
        };
        let Ok(local) = listener.local_addr() else {
            continue;
        };
        let json = serde_json::json!({ "listen": local.to_string() }).to_string();
        if let Err(e) = write_atomic(&dir.join(PORTS_FILE), json.as_bytes(), 0o600) {
            log::warn!("cannot write {}: {e}", dir.join(PORTS_FILE).display());
        }
        log::info!("listening for the manager on {local}");
        rt.set_listen_port(Some(local.port()));
        serve_until_closed(rt, &listener, local.port(), &acceptor).await;
        log::info!("stopped listening on {local}: the direction is now agent-initiated");
    }
}

fn close(rt: &Runtime<'_>, dir: &Path) {
    rt.set_listen_port(None);
    let _ = std::fs::remove_file(dir.join(PORTS_FILE));
}

/// Accepts until the configuration says the agent no longer listens.
async fn serve_until_closed(
    rt: &Runtime<'_>,
    listener: &TcpListener,
    port: u16,
    acceptor: &TlsAcceptor,
) {
    // Declared before the executor, so it outlives the tasks that hold its tickets.
    let gate = Gate::new("listener", PREAUTH_BUDGET);
    let ex = smol::LocalExecutor::new();
    let summaries = crate::net::gate::log_summaries(gate.clone(), rt.clock);
    let accepting = async {
        loop {
            let accepted = smol::future::or(async { Some(listener.accept().await) }, async {
                rt.listener_wake.wait().await;
                None
            })
            .await;
            match accepted {
                None if !rt.direction().agent_listens() => return,
                None => {}
                Some(Err(e)) => {
                    log::warn!("accepting a connection failed: {e}");
                    rt.clock.sleep(Duration::from_millis(100)).await;
                }
                Some(Ok((tcp, peer))) => {
                    let ticket = gate.admit(peer.ip(), rt.clock.now());
                    let acceptor = acceptor.clone();
                    ex.spawn(connection(rt, tcp, peer, port, acceptor, ticket))
                        .detach();
                }
            }
        }
    };
    ex.run(smol::future::or(accepting, summaries)).await;
}

/// One connection: the firewall rule, the handshake, one session.
async fn connection(
    rt: &Runtime<'_>,
    tcp: TcpStream,
    peer: SocketAddr,
    port: u16,
    acceptor: TlsAcceptor,
    ticket: Ticket,
) {
    let now = || rt.clock.now();
    let rules = rt.listener_rules();
    let mac = if gate::needs_mac(&rules, port) {
        neighbours::mac_of(peer.ip())
    } else {
        None
    };
    if let Verdict::Refuse { rules } = gate::check(&rules, port, peer.ip(), mac) {
        let refused = &rt.counters.listener_refused;
        refused.set(refused.get() + 1);
        // An event for the manager, under the same limit as the packets the firewall logs.
        super::packet_log::refused(rt, peer, port, mac, &rules);
        // The first few of a minute with their details, the rest in the summary line.
        if ticket.closed(now(), Closed::Refused) {
            let mac = mac.map_or("unknown".to_string(), |m| m.to_string());
            log::warn!(
                "refused a connection from {peer} (MAC {mac}) to port {port}: not a source of \
                 the firewall rule(s) {} ({} refused so far)",
                rules.join(", "),
                refused.get()
            );
        }
        // Dropping the socket closes it before any TLS byte is read.
        return;
    }
    // Small frames each way: without this, Nagle and delayed ACKs add ~40 ms per round trip.
    if let Err(e) = tcp.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY for {peer}: {e}");
    }
    let mut tls = match ticket
        .guard(rt.clock, HANDSHAKE_DEADLINE, acceptor.accept(tcp))
        .await
    {
        // Timed out or evicted: counted for the summary line.
        Err(_) => return,
        Ok(Err(e)) => {
            if ticket.closed(now(), Closed::HandshakeFailed) {
                log::warn!("connection from {peer} refused: TLS handshake failed: {e}");
            }
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    // The manager's certificate: no longer a stranger's connection.
    ticket.authenticated();
    let sessions = &rt.counters.manager_sessions;
    sessions.set(sessions.get() + 1);
    match rt.session(&mut tls, Purpose::Heartbeat).await {
        Ok(_) => log::debug!("session with the manager from {peer} done"),
        Err(e) => log::warn!("session with the manager from {peer} failed: {e}"),
    }
}
