//! Manager-initiated runs: the simulated agents listen, and the manager's dialer calls each at
//! its interval. They share one socket on 0.0.0.0 (a listener each would take a file descriptor
//! each): the manager dials every agent at its own address in 127.0.0.0/8, and the address a
//! connection arrived at tells which agent answers. The certificate presented is picked by the
//! name the manager dials (`picket-agent-ID`), and the two must agree, so a manager dialing the
//! wrong address for a computer shows as a failure. Connections from outside the loopback
//! network are closed unread.

use super::agent::{Failure, Shared, SimAgent, Timing};
use super::error::BenchError;
use super::load::{LoadResult, Schedule};
use super::probe::CpuMark;
use super::tally::Tally;
use crate::clock::Stopwatch;
use crate::clock::WallMs;
use crate::clock::within;
use crate::pki::{ManagerPki, agent_listener_config, agent_server_name};
use futures_rustls::TlsAcceptor;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use smol::Executor;
use smol::net::{TcpListener, TcpStream};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// As the real agent's listener: how long the manager's handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The agents' shared listening socket.
pub struct Listening {
    listener: TcpListener,
    pub port: u16,
}

/// Binds the agents' socket on every address, on a port of the system's choosing.
pub fn bind() -> Result<Listening, BenchError> {
    let std = std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], 0)))
        .map_err(BenchError::Listen)?;
    let port = std.local_addr().map_err(BenchError::Listen)?.port();
    let listener = TcpListener::try_from(std).map_err(BenchError::Listen)?;
    Ok(Listening { listener, port })
}

/// The name the manager dials computer `id` by, as text (what the handshake's SNI carries).
fn dialed_name(id: u64) -> Option<String> {
    match agent_server_name(id).ok()? {
        ServerName::DnsName(name) => Some(name.as_ref().to_string()),
        _ => None,
    }
}

/// Every agent's certificate, by the name the manager dials it by.
struct ByName(HashMap<String, Arc<CertifiedKey>>);

impl fmt::Debug for ByName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByName({} agents)", self.0.len())
    }
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get(hello.server_name()?).cloned()
    }
}

/// The agents' TLS acceptor: the real agent listener's configuration (only the manager's
/// certificate gets in, no resumption), with each agent's certificate.
pub fn acceptor<'a>(
    pki: &ManagerPki,
    agents: impl Iterator<Item = &'a SimAgent>,
) -> Result<TlsAcceptor, BenchError> {
    let certs = agents
        .filter_map(|a| Some((dialed_name(a.id.computer.0)?, a.id.key.clone())))
        .collect();
    let config = agent_listener_config(pki.ca_cert_der(), Arc::new(ByName(certs)))?;
    Ok(TlsAcceptor::from(config))
}

/// A session that ended, back to the loop that owns the agents.
struct Ended {
    slot: usize,
    agent: SimAgent,
    result: Result<Timing, Failure>,
    wall: WallMs,
    measured: bool,
}

enum Input {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Ended(Ended),
    Tick,
}

/// Answers the manager's dials for the warm-up and the duration. Each stopping agent answers
/// once and then closes every later connection unread, as a computer that went away. The
/// caller keeps `listening` open until the manager has stopped: closed earlier, every dial
/// after the end would fail and count against the agents.
pub async fn serve(
    ex: &Arc<Executor<'static>>,
    shared: &Arc<Shared>,
    listening: &Listening,
    acceptor: TlsAcceptor,
    agents: Vec<SimAgent>,
    stopping: Vec<SimAgent>,
    schedule: Schedule,
) -> LoadResult {
    let start = Stopwatch::now();
    let measure_from = start + schedule.warmup;
    let end = measure_from + schedule.duration;
    let mut cpu_mark = schedule.warmup.is_zero().then(|| CpuMark::now(&shared.cpu));
    let main = agents.len();
    let mut slots: Vec<Option<SimAgent>> = agents.into_iter().chain(stopping).map(Some).collect();
    let by_address: HashMap<Ipv4Addr, usize> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((a.as_ref()?.id.source, i)))
        .collect();
    let mut stopping_last: Vec<Option<u64>> = vec![None; slots.len() - main];
    let mut stopping_gone = vec![false; slots.len() - main];
    let (ended_tx, ended_rx) = smol::channel::unbounded::<Ended>();
    let (mut tally, mut warm) = (Tally::default(), Tally::default());
    let mut in_flight = 0usize;
    loop {
        let now = Stopwatch::now();
        if cpu_mark.is_none() && now >= measure_from {
            cpu_mark = Some(CpuMark::now(&shared.cpu));
        }
        if now >= end && in_flight == 0 {
            break;
        }
        let wake = if now < measure_from {
            measure_from
        } else {
            end.max(now + Duration::from_millis(100))
        };
        let input = smol::future::or(
            async {
                match ended_rx.recv().await {
                    Ok(ended) => Input::Ended(ended),
                    Err(_) => Input::Tick,
                }
            },
            smol::future::or(
                async { Input::Accepted(listening.listener.accept().await) },
                async {
                    wake.reached().await;
                    Input::Tick
                },
            ),
        )
        .await;
        let measured = Stopwatch::now() >= measure_from;
        let counted = if measured { &mut tally } else { &mut warm };
        match input {
            Input::Tick => {}
            Input::Ended(ended) => {
                in_flight -= 1;
                let counted = if ended.measured {
                    &mut tally
                } else {
                    &mut warm
                };
                counted.add(&ended.result);
                if ended.slot >= main {
                    stopping_last[ended.slot - main] = ended.result.is_ok().then_some(ended.wall.0);
                }
                slots[ended.slot] = Some(ended.agent);
            }
            Input::Accepted(Err(e)) => {
                counted.started += 1;
                counted.fail("accept", &e.to_string());
                crate::clock::real_sleep(Duration::from_millis(100)).await;
            }
            // After the end, dials are left to fail: the manager is stopped next.
            Input::Accepted(Ok(_)) if Stopwatch::now() >= end => {}
            Input::Accepted(Ok((_, peer))) if !peer.ip().is_loopback() => {
                log::warn!("closed a connection from {peer}: not from the loopback network");
            }
            Input::Accepted(Ok((tcp, _))) => {
                let slot = match tcp.local_addr().map(|a| a.ip()) {
                    Ok(IpAddr::V4(ip)) => by_address.get(&ip).copied(),
                    _ => None,
                };
                let Some(slot) = slot else {
                    counted.started += 1;
                    counted.fail("wrong address", "the manager dialed no agent's address");
                    continue;
                };
                if slot >= main && stopping_gone[slot - main] {
                    continue;
                }
                let Some(agent) = slots[slot].take() else {
                    counted.started += 1;
                    counted.fail("busy", "the manager dialed an agent already in a session");
                    continue;
                };
                if slot >= main {
                    stopping_gone[slot - main] = true;
                }
                in_flight += 1;
                let (shared, acceptor, ended_tx) =
                    (shared.clone(), acceptor.clone(), ended_tx.clone());
                ex.spawn(async move {
                    let mut agent = agent;
                    let result = answer(&mut agent, &shared, &acceptor, tcp).await;
                    let wall = shared.clock.wall();
                    let _ = ended_tx
                        .send(Ended {
                            slot,
                            agent,
                            result,
                            wall,
                            measured,
                        })
                        .await;
                })
                .detach();
            }
        }
    }
    LoadResult::new(tally, &warm, cpu_mark, stopping_last, slots, main)
}

/// One dial from the manager: the handshake, the name it dialed, the agent's session.
async fn answer(
    agent: &mut SimAgent,
    shared: &Shared,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Result<Timing, Failure> {
    let start = Stopwatch::now();
    let fail = |reason, detail: String| Failure { reason, detail };
    if let Err(e) = tcp.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY: {e}");
    }
    let mut tls = within(&*shared.clock, HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .ok_or_else(|| fail("timeout", "TLS handshake".into()))?
        .map_err(|e| fail("tls handshake", e.to_string()))?;
    let handshake = start.elapsed();
    let expected = dialed_name(agent.id.computer.0);
    let dialed = tls.get_ref().1.server_name().map(str::to_string);
    if dialed != expected {
        return Err(fail(
            "wrong agent",
            format!(
                "the manager dialed {dialed:?} at the address of computer {}",
                agent.id.computer
            ),
        ));
    }
    agent.answer(shared, &mut tls, start, handshake).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialed_names_are_the_agent_certificates_names() {
        assert_eq!(dialed_name(42).as_deref(), Some("picket-agent-42"));
    }
}
