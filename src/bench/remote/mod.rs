//! A manager that is already running (`--manager`, `--url`, `--data-dir`): the bench sets its
//! run up through the REST API (a policy and a sub-policy of its own, a token for each),
//! activates every simulated agent over the agent port as a real agent does (each joins the
//! load as soon as it is activated, while the others still activate), reads the
//! manager's CPU time, memory and store size from `/metrics` and its alerts from the API, and
//! at the end removes what it added (unless `--keep`; its tokens are revoked either way).
//!
//! Nothing here reaches into the manager's data dir beyond what an admin verb reads (the API
//! key and CA), so the manager may be on another machine.

use super::agent::{STEP_TIMEOUT, SimAgent, next_message};
use super::connect::{connect_from, source_address};
use super::enroll::{Identity, signing_key};
use super::error::BenchError;
use super::options::{Options, STOPPING_AGENTS, TargetOptions};
use super::report;
use crate::admin::{AdminError, ApiClient, percent_encode};
use crate::clock::Stopwatch;
use crate::clock::within;
use crate::clock::{Clock, WallMs};
use crate::model::{ComputerId, format_duration};
use crate::pki::{self, AgentKey};
use crate::proto::{ActivationRequest, AgentOutput, AgentSession, EventBatch, PROTOCOL_VERSION};
use futures_rustls::TlsConnector;
use hyper::Method;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use serde_json::{Value, json};
use smol::Executor;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tries per agent before the run gives up on activating it: a busy manager may time one out.
const ACTIVATION_TRIES: u32 = 3;
/// Deletions in flight at the clean-up; each is its own store commit on the manager.
const DELETERS: usize = 4;

impl super::probe::ManagerCpu for Target {
    fn cpu_seconds(&self) -> f64 {
        self.figures().map_or(f64::NAN, |f| f.cpu_s)
    }
}

/// The running manager and what the bench made on it.
pub struct Target {
    client: ApiClient,
    pub agent_addr: SocketAddr,
    pub server_name: ServerName<'static>,
    ca_pin: [u8; 32],
    /// The CA the agent port presented, matching the token's pin: what the agents trust.
    pub ca: CertificateDer<'static>,
    /// Every name the bench gives (policies, hostnames) starts with this.
    pub run: String,
    /// The main policy, then its sub-policy for the stopping agents.
    policies: Vec<u64>,
    /// Ids of the two tokens, and their secrets (main, stopping).
    token_ids: Vec<String>,
    secrets: (String, String),
}

/// What the manager's metrics say of its process and store.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub cpu_s: f64,
    pub rss_bytes: u64,
    pub store_bytes: u64,
}

/// How activating the fleet went.
#[derive(Debug, Default)]
pub struct ActivationOutcome {
    pub activated: u64,
    /// The stopping agents activated: their position among them, and their computer.
    pub stopping: Vec<(usize, ComputerId)>,
    pub failed: u64,
    pub first_failure: Option<String>,
    pub seconds: f64,
}

impl Target {
    /// Checks the API answers, then creates the run's policies and tokens. Whatever was created
    /// before a failure is removed again.
    pub fn set_up(
        target: &TargetOptions,
        options: &Options,
        now: WallMs,
    ) -> Result<Target, BenchError> {
        let client = ApiClient::new(&target.client).map_err(api("connecting"))?;
        let run = format!("bench-{}", now.0);
        let mut made = Target {
            client,
            agent_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            server_name: ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()),
            ca_pin: [0; 32],
            ca: CertificateDer::from(Vec::new()),
            run,
            policies: Vec::new(),
            token_ids: Vec::new(),
            secrets: (String::new(), String::new()),
        };
        match made.create(target, options) {
            Ok(()) => Ok(made),
            Err(e) => {
                made.clean_up(&[], false);
                Err(e)
            }
        }
    }

    fn create(&mut self, target: &TargetOptions, options: &Options) -> Result<(), BenchError> {
        // Every offline status raises an alert at once (missed-before-alert 0), so the alerts
        // list shows each computer that went offline: the API has no cheaper way to ask.
        let main = self.call(
            Method::POST,
            "/api/v1/policies",
            &json!({
                "name": self.run,
                "settings": {
                    "heartbeat.interval": format_duration(options.interval),
                    "heartbeat.missed-before-alert": 0,
                    "communication.direction": "agent-initiated",
                },
            }),
            "creating the bench's policy",
        )?;
        self.policies.push(id_of(&main, "the new policy")?);
        let stopping = self.call(
            Method::POST,
            "/api/v1/policies",
            &json!({
                "name": format!("{} stopping", self.run),
                "parent": self.policies[0],
                "settings": {"heartbeat.interval": format_duration(options.stopping_interval())},
            }),
            "creating the stopping agents' policy",
        )?;
        self.policies.push(id_of(&stopping, "the new policy")?);
        let mut commands = Vec::new();
        for policy in self.policies.clone() {
            let token = self.call(
                Method::POST,
                "/api/v1/tokens",
                &json!({"policy": policy, "expires": "24h", "uses": "unlimited"}),
                "creating an activation token",
            )?;
            let text = |field: &str| token[field].as_str().map(str::to_string);
            let (Some(id), Some(secret), Some(command)) =
                (text("id"), text("token"), text("agent_command"))
            else {
                return Err(BenchError::Api {
                    doing: "creating an activation token",
                    // Not the answer itself: it may hold the token's secret.
                    source: Box::new(AdminError::Config(
                        "the answer has no id, token or agent_command".into(),
                    )),
                });
            };
            self.token_ids.push(id);
            commands.push((secret, command));
        }
        let [(main_secret, command), (stopping_secret, _)] =
            <[(String, String); 2]>::try_from(commands).map_err(|_| BenchError::Option {
                name: "url",
                problem: "the manager gave other than two tokens".into(),
            })?;
        self.secrets = (main_secret, stopping_secret);
        let (manager, pin) = agent_command_parts(&command).ok_or_else(|| BenchError::Option {
            name: "url",
            // Not the command itself: it holds the token's secret.
            problem: "cannot read --manager and --ca-sha256 from the token's agent command".into(),
        })?;
        self.ca_pin = pki::parse_pin(&pin)?;
        let manager = target.manager.clone().unwrap_or(manager);
        (self.agent_addr, self.server_name) = resolve(&manager)?;
        self.ca = self.fetch_ca()?;
        Ok(())
    }

    /// One TLS handshake with the agent port, as an activation's first step: the CA it
    /// presents, if its hash is the token's pin.
    fn fetch_ca(&self) -> Result<CertificateDer<'static>, BenchError> {
        let unreachable = |problem: String| BenchError::Option {
            name: "manager",
            problem: format!("the agent port at {}: {problem}", self.agent_addr),
        };
        let (tls, pinned) = pki::activation_client_config(self.ca_pin)?;
        smol::block_on(async {
            let clock = crate::clock::RealClock::new();
            let tcp = within(
                &clock,
                STEP_TIMEOUT,
                smol::net::TcpStream::connect(self.agent_addr),
            )
            .await
            .ok_or_else(|| unreachable("connecting timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
            within(
                &clock,
                STEP_TIMEOUT,
                TlsConnector::from(tls).connect(self.server_name.clone(), tcp),
            )
            .await
            .ok_or_else(|| unreachable("the TLS handshake timed out".into()))?
            .map_err(|e| unreachable(format!("TLS handshake: {e}")))?;
            pinned
                .cert()
                .ok_or_else(|| unreachable("it presented no CA matching the token's pin".into()))
        })
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        doing: &'static str,
    ) -> Result<Value, BenchError> {
        self.client
            .call(method, path, Some(body))
            .map_err(api(doing))
    }

    /// The manager's CPU time, memory and store size, as its metrics say now.
    pub fn figures(&self) -> Result<Figures, BenchError> {
        let text = self
            .client
            .get_text("/metrics")
            .map_err(api("reading the manager's metrics"))?;
        let value = |name: &'static str| {
            metric(&text, name).ok_or_else(|| BenchError::Api {
                doing: "reading the manager's metrics",
                source: Box::new(AdminError::Config(format!(
                    "no {name}: the manager is older than this bench"
                ))),
            })
        };
        Ok(Figures {
            cpu_s: value("picket_process_cpu_seconds_total")?,
            rss_bytes: value("picket_process_resident_memory_bytes")? as u64,
            store_bytes: value("picket_store_file_bytes")? as u64,
        })
    }

    /// Activates `main` heartbeating agents and then the stopping ones, `concurrency` at a
    /// time, each from its own loopback address when the manager is on this machine, and hands
    /// each to the run as it is activated (a real agent starts its heartbeats at once too). Every
    /// computer made is noted in `made`, for the clean-up whatever happens.
    pub async fn activate_into(
        self: Arc<Self>,
        ex: Arc<Executor<'static>>,
        clock: Arc<dyn Clock>,
        main: u64,
        concurrency: usize,
        run: smol::channel::Sender<(usize, SimAgent)>,
        made: Arc<Mutex<Vec<ComputerId>>>,
    ) -> ActivationOutcome {
        let started = Stopwatch::now();
        let total = main + STOPPING_AGENTS;
        let next = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let (target, next, clock) = (self.clone(), next.clone(), clock.clone());
                let (run, made) = (run.clone(), made.clone());
                ex.spawn(async move {
                    let mut outcome = ActivationOutcome::default();
                    loop {
                        // The stopping agents are taken last, once every other has been (some
                        // may still be activating): they must not stop before the fleet's load
                        // has begun.
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= total {
                            return outcome;
                        }
                        match target.activate(index, index >= main, clock.as_ref()).await {
                            Ok(agent) => {
                                made.lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .push(agent.id.computer);
                                outcome.activated += 1;
                                if index >= main {
                                    outcome
                                        .stopping
                                        .push(((index - main) as usize, agent.id.computer));
                                }
                                let _ = run.send((index as usize, agent)).await;
                            }
                            Err(e) => {
                                outcome.failed += 1;
                                outcome.first_failure.get_or_insert(e.to_string());
                            }
                        }
                    }
                })
            })
            .collect();
        drop(run);
        let mut all = ActivationOutcome::default();
        for worker in workers {
            let outcome = worker.await;
            all.activated += outcome.activated;
            all.failed += outcome.failed;
            all.stopping.extend(outcome.stopping);
            if all.first_failure.is_none() {
                all.first_failure = outcome.first_failure;
            }
        }
        all.seconds = started.elapsed().as_secs_f64();
        all.stopping.sort_unstable();
        all
    }

    /// One agent's activation, tried a few times: a new key each time, as a real agent that
    /// restarts its activation would.
    async fn activate(
        &self,
        index: u64,
        stopping: bool,
        clock: &dyn Clock,
    ) -> Result<SimAgent, BenchError> {
        let hostname = format!("{}-{index}", self.run);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.activate_once(index, &hostname, stopping, clock).await {
                Ok(agent) => return Ok(agent),
                Err(reason) if tries >= ACTIVATION_TRIES => {
                    return Err(BenchError::Activation {
                        hostname,
                        tries,
                        reason,
                    });
                }
                Err(_) => {}
            }
        }
    }

    async fn activate_once(
        &self,
        index: u64,
        hostname: &str,
        stopping: bool,
        clock: &dyn Clock,
    ) -> Result<SimAgent, String> {
        let key = AgentKey::generate().map_err(|e| e.to_string())?;
        let (tls, _) = pki::activation_client_config(self.ca_pin).map_err(|e| e.to_string())?;
        let source = self.source(index);
        let tcp = within(clock, STEP_TIMEOUT, connect_from(source, self.agent_addr))
            .await
            .ok_or("connecting: timed out")?
            .map_err(|e| format!("connecting: {e}"))?;
        let mut stream = within(
            clock,
            STEP_TIMEOUT,
            TlsConnector::from(tls).connect(self.server_name.clone(), tcp),
        )
        .await
        .ok_or("TLS handshake: timed out")?
        .map_err(|e| format!("TLS handshake: {e}"))?;
        let token = if stopping {
            &self.secrets.1
        } else {
            &self.secrets.0
        };
        let request = ActivationRequest {
            protocol: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            token: token.clone(),
            hostname: hostname.to_string(),
            public_key: key.public_key_der(),
        };
        let mut session = AgentSession::activation(clock.now(), request, STEP_TIMEOUT);
        let mut activated = None;
        loop {
            while let Some(output) = session.poll_output() {
                match output {
                    AgentOutput::Send(message) => {
                        if crate::framed::write(&mut stream, &message).await.is_err() {
                            session.handle_closed();
                        }
                    }
                    AgentOutput::Activated(a) => activated = Some(a),
                    // An activation reads no spool; an empty answer keeps the session honest.
                    AgentOutput::ReadEvents { .. } => {
                        session.provide_events(
                            clock.now(),
                            EventBatch {
                                events: Vec::new(),
                                more: false,
                            },
                        );
                    }
                    AgentOutput::Apply { config, .. } => {
                        session.config_result(clock.now(), Ok(config.fingerprint()));
                    }
                    AgentOutput::Acked { .. } | AgentOutput::BinaryChunk(_) => {}
                    AgentOutput::UpgradeOffered(_) => session.upgrade_answer(clock.now(), false),
                    AgentOutput::Finished(Ok(_)) => {
                        let a = activated.ok_or("the session ended without activation")?;
                        let cert = CertificateDer::from(a.certificate);
                        let signing = signing_key(&key).map_err(|e| e.to_string())?;
                        let id = Identity {
                            computer: ComputerId(a.computer),
                            key: Arc::new(CertifiedKey::new(vec![cert], signing)),
                            source,
                        };
                        let mut agent = SimAgent::new(id, Some(a.fingerprint));
                        agent.heard = Some(Stopwatch::now());
                        return Ok(agent);
                    }
                    AgentOutput::Finished(Err(e)) => return Err(e.to_string()),
                }
            }
            next_message(&mut session, &mut stream, clock)
                .await
                .map_err(|f| format!("{}: {}", f.reason, f.detail))?;
        }
    }

    /// Agent `index` dials from its own loopback address if the manager is on this machine
    /// (ephemeral ports would run out otherwise), else from wherever the system routes.
    fn source(&self, index: u64) -> Ipv4Addr {
        if self.agent_addr.ip().is_loopback() {
            source_address(index)
        } else {
            Ipv4Addr::UNSPECIFIED
        }
    }

    /// The run's alerts on the bench's computers, as `read_alerts` counts them for the
    /// in-process manager (with missed-before-alert 0 every offline status is an alert).
    pub fn alerts(
        &self,
        stopping: &[ComputerId],
        last: &[Option<u64>],
        ours: &HashSet<ComputerId>,
        missed: &HashSet<ComputerId>,
        since: Windows,
        options: &Options,
    ) -> Result<RunAlerts, BenchError> {
        let answer = self
            .client
            .call(Method::GET, "/api/v1/alerts?all=true", None)
            .map_err(api("reading the alerts"))?;
        let alerts: Vec<RunAlert> = answer["alerts"]
            .as_array()
            .map(|all| all.iter().filter_map(RunAlert::of).collect())
            .unwrap_or_default();
        let counted = count_alerts(&alerts, stopping, last, ours, missed, since, options);
        Ok(counted)
    }

    /// The bench's computers the manager has that `known` lacks: an activation the manager
    /// completed after the agent had given up on it. One list of every computer.
    pub fn unknown_computers(&self, known: &[ComputerId]) -> Vec<ComputerId> {
        let known: HashSet<ComputerId> = known.iter().copied().collect();
        let prefix = format!("{}-", self.run);
        let listed = match self.client.call(Method::GET, "/api/v1/computers", None) {
            Ok(listed) => listed,
            Err(e) => {
                log::warn!("cannot list the computers to find the bench's: {e}");
                return Vec::new();
            }
        };
        listed["computers"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|c| {
                        c["hostname"]
                            .as_str()
                            .is_some_and(|h| h.starts_with(&prefix))
                    })
                    .filter_map(|c| c["id"].as_u64().map(ComputerId))
                    .filter(|id| !known.contains(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Deletes the bench's computers (unless `keep`), then its policies, and revokes its
    /// tokens. Best effort: what cannot be deleted is logged with its name and left.
    pub fn clean_up(&self, computers: &[ComputerId], keep: bool) -> CleanUp {
        let started = Stopwatch::now();
        let mut left = 0;
        if !keep {
            let chunk = computers.len().div_ceil(DELETERS).max(1);
            left += std::thread::scope(|scope| {
                let workers: Vec<_> = computers
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter()
                                .filter(|id| {
                                    self.delete(&format!("/api/v1/computers/{id}"), "computer")
                                })
                                .count()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or(0))
                    .sum::<usize>()
            });
            for policy in self.policies.iter().rev() {
                left += usize::from(self.delete(&format!("/api/v1/policies/{policy}"), "policy"));
            }
        }
        for token in &self.token_ids {
            let path = format!("/api/v1/tokens/{}", percent_encode(token));
            left += usize::from(self.delete(&path, "token"));
        }
        CleanUp {
            left,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// True if it could not be deleted (a 404 is already gone: fine).
    fn delete(&self, path: &str, what: &str) -> bool {
        match self.client.call(Method::DELETE, path, None) {
            Ok(_) | Err(AdminError::Refused { status: 404, .. }) => false,
            Err(e) => {
                log::warn!("cannot delete the bench's {what} at {path}: {e}");
                true
            }
        }
    }
}

/// How the clean-up went: what was left behind, and how long it took.
pub struct CleanUp {
    pub left: usize,
    pub seconds: f64,
}

fn api(doing: &'static str) -> impl Fn(AdminError) -> BenchError {
    move |e| BenchError::Api {
        doing,
        source: Box::new(e),
    }
}

fn id_of(answer: &Value, what: &str) -> Result<u64, BenchError> {
    answer["id"].as_u64().ok_or_else(|| BenchError::Api {
        doing: "creating the bench's policies",
        source: Box::new(AdminError::Config(format!("{what} has no id: {answer}"))),
    })
}

/// `--manager HOST:PORT` and `--ca-sha256 HEX` out of the agent command a token comes with.
fn agent_command_parts(command: &str) -> Option<(String, String)> {
    let mut words = command.split_whitespace();
    let (mut manager, mut pin) = (None, None);
    while let Some(word) = words.next() {
        match word {
            "--manager" => manager = words.next(),
            "--ca-sha256" => pin = words.next(),
            _ => {}
        }
    }
    Some((manager?.to_string(), pin?.to_string()))
}

/// The agent port's IPv4 address, and the name its certificate must carry (the host as given).
fn resolve(manager: &str) -> Result<(SocketAddr, ServerName<'static>), BenchError> {
    let bad = |problem: String| BenchError::Option {
        name: "manager",
        problem,
    };
    let addr = manager
        .to_socket_addrs()
        .map_err(|e| bad(format!("'{manager}': {e}")))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| bad(format!("'{manager}' has no IPv4 address")))?;
    let host = manager
        .rsplit_once(':')
        .map_or(manager, |(host, _)| host)
        .trim_matches(['[', ']']);
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| bad(format!("'{host}' is not a host name or address")))?;
    Ok((addr, name))
}

/// A metric's value from the manager's text exposition: the line `NAME VALUE` (no labels).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == name).then(|| words.next()?.parse().ok())?
    })
}

/// The fields of an API alert that the counts need.
#[derive(Clone, Debug, PartialEq)]
struct RunAlert {
    computer: ComputerId,
    offline: bool,
    raised: WallMs,
}

impl RunAlert {
    fn of(alert: &Value) -> Option<RunAlert> {
        Some(RunAlert {
            computer: ComputerId(alert["computer"].as_u64()?),
            offline: alert["kind"].as_str()? == "computer-offline",
            raised: WallMs(alert["raised_ms"].as_u64()?),
        })
    }
}

/// When a run's alerts count: the stopping agents' from `load_start`, the others' from
/// `counted_from` (the warm-up's end) until `until` (the interval phase's end: the agents stop
/// then); those between `load_start` and `counted_from` are told as the warm-up's.
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    pub load_start: WallMs,
    pub counted_from: WallMs,
    pub until: WallMs,
}

/// The counts of a run's alerts, and the computers that went offline in the warm-up.
pub struct RunAlerts {
    pub counted: report::Alerts,
    pub warmup_offline: u64,
    /// Of those, the computers whose agent completed every session, started on time.
    pub warmup_falsely_offline: u64,
}

/// The alert counts of a run on a running manager (sans-io, for its test).
fn count_alerts(
    alerts: &[RunAlert],
    stopping: &[ComputerId],
    last: &[Option<u64>],
    ours: &HashSet<ComputerId>,
    missed: &HashSet<ComputerId>,
    windows: Windows,
    options: &Options,
) -> RunAlerts {
    let Windows {
        load_start,
        counted_from,
        until,
    } = windows;
    let stopping_set: HashSet<ComputerId> = stopping.iter().copied().collect();
    let run: Vec<&RunAlert> = alerts
        .iter()
        .filter(|a| a.raised >= load_start && ours.contains(&a.computer))
        .collect();
    let offline_between = |from: WallMs, to: WallMs| -> HashSet<ComputerId> {
        run.iter()
            .filter(|a| a.offline && a.raised >= from && a.raised < to)
            .map(|a| a.computer)
            .filter(|c| !stopping_set.contains(c))
            .collect()
    };
    let offline = offline_between(counted_from, until);
    let warmup_offline = offline_between(load_start, counted_from);
    let raised = run
        .iter()
        .filter(|a| {
            (counted_from..until).contains(&a.raised) && !stopping_set.contains(&a.computer)
        })
        .count();
    let interval = options.stopping_interval();
    let grace = (interval / 10).max(Duration::from_secs(1));
    let allowance = (interval + grace).as_millis() as i64;
    let first_offline: HashMap<ComputerId, WallMs> =
        run.iter()
            .filter(|a| a.offline)
            .fold(HashMap::new(), |mut first, a| {
                let at = first.entry(a.computer).or_insert(a.raised);
                *at = (*at).min(a.raised);
                first
            });
    RunAlerts {
        counted: report::Alerts {
            raised: raised as u64,
            went_offline: offline.len() as u64,
            falsely_offline: offline.iter().filter(|c| !missed.contains(c)).count() as u64,
            offline_alert_delay_ms: stopping
                .iter()
                .zip(last)
                .map(|(id, last)| {
                    Some(first_offline.get(id)?.0 as i64 - ((*last)? as i64 + allowance))
                })
                .collect(),
        },
        warmup_offline: warmup_offline.len() as u64,
        warmup_falsely_offline: warmup_offline
            .iter()
            .filter(|c| !missed.contains(c))
            .count() as u64,
    }
}

#[cfg(test)]
mod tests;
