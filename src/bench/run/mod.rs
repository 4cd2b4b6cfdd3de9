//! The run from start to end: registration, the manager, the phases, the report.

mod inprocess;
mod running;

use inprocess::{Manager, TempDir, free_loopback_address};
use running::measure_running;

use super::agent::{Shared, SimAgent};
use super::dialed;
use super::enroll::Identity;
use super::enroll::{self, Dialing, Enrolled, MANAGER_HOSTNAME};
use super::error::BenchError;
use super::floor;
use super::load;
use super::options::{Direction, Options, Output, STOPPING_AGENTS, TargetOptions};
use super::probe::{CpuMark, CpuSource, GENERATOR_THREAD};
use super::remote::{self, Target};
use super::report::{self, Report};
use crate::cli::BenchArgs;
use crate::clock::Stopwatch;
use crate::clock::{Clock, RealClock, WallMs};
use crate::manager::{self, ManagerConfig, Registry};
use crate::model::{AlertKind, ComputerId, Status};
use crate::pki::PkiError;
use crate::site::{PORTS_FILE, STORE_FILE};
use crate::store::{Reads, Store};
use crate::tasks::Workers;
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Threads of the load generator's executor. One carries 2,000 sessions/s at a third of a
/// core; two spent their time waking each other (0.44 against 0.52-0.56 ms of generator CPU a
/// session at 100k agents).
const GENERATOR_THREADS: usize = 1;

pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let options = Options::from_args(args)?;
    // A hundred thousand "computer is now online" lines would cost more than the sessions.
    if std::env::var_os("RUST_LOG").is_none() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let report = match &options.target {
        Some(target) => measure_running(target, &options)?,
        None => {
            let dir = TempDir::create()?;
            measure(&options, dir.path())?
        }
    };
    match options.output {
        Output::Text => print!("{}", report.text()),
        Output::Json => println!("{}", report.json()),
        Output::Markdown => println!("{}", report.markdown()),
    }
    Ok(())
}

fn measure(options: &Options, dir: &Path) -> Result<Report, BenchError> {
    // Manager-initiated: the agents' socket first, and the manager's port chosen before the
    // agents are written, since their configuration names it.
    let (listening, manager_listen) = match options.direction {
        Direction::AgentInitiated => (None, SocketAddr::from(([127, 0, 0, 1], 0))),
        Direction::ManagerInitiated => (Some(dialed::bind()?), free_loopback_address()?),
    };
    let dialing = listening.as_ref().map(|l| Dialing {
        listen_port: l.port,
        manager: manager_listen,
    });
    let enrolled = enroll::enroll(dir, options, dialing)?;
    let store_path = dir.join(STORE_FILE);
    let store_after_registration = file_size(&store_path);
    let (rss_before, _) = crate::process::memory();

    let manager_started = Stopwatch::now();
    let mut manager = Manager::start(dir, manager_listen)?;
    let manager_start_s = manager_started.elapsed().as_secs_f64();
    let listen_port = listening.as_ref().map(|l| l.port);
    let shared = Arc::new(shared(&enrolled, manager.agent_addr, options, listen_port)?);
    let stopping_fp = Some(enroll::fingerprint(
        &enrolled.tree,
        manager.agent_addr,
        enrolled.stopping_policy,
    ));
    let generator =
        Workers::start(GENERATOR_THREAD, GENERATOR_THREADS).map_err(BenchError::Thread)?;
    let ex = generator.spawner();

    let concurrency = options.concurrency as usize;
    let floor_ids: Vec<Identity> = enrolled.agents.iter().take(concurrency).cloned().collect();
    let Enrolled {
        pki,
        agents,
        stopping,
        states,
        keys_seconds,
        store_seconds,
        ..
    } = enrolled;
    let mut agents: Vec<SimAgent> = agents
        .into_iter()
        .map(|id| SimAgent::new(id, shared.fingerprint))
        .collect();
    let stopping_ids: Vec<ComputerId> = stopping.iter().map(|s| s.computer).collect();
    let mut stopping: Vec<SimAgent> = stopping
        .into_iter()
        .map(|id| SimAgent::new(id, stopping_fp))
        .collect();
    // Priming: every agent one session, then a manager restart. The tickets survive it (their
    // key is in the data dir) and the restarted manager gives every computer a full allowance,
    // so the interval phase starts as after an upgrade of a running site. What the first
    // manager decided meanwhile (a fleet primed over more than an interval goes offline in its
    // eyes) is not the run's: alerts and statuses count from `counted_from`.
    let mut primed = None;
    let mut counted_from = WallMs(0);
    if options.prime && options.direction == Direction::AgentInitiated {
        let started = Stopwatch::now();
        let (ex2, shared2) = (ex.clone(), shared.clone());
        let (back, mut tally) = smol::block_on(
            ex.spawn(async move { load::once_each(&ex2, &shared2, agents, concurrency).await }),
        );
        agents = back;
        // The stopping agents last, just before the restart: the first manager must not alert
        // them, or the second would find their alert active and not raise it again.
        let (ex2, shared2) = (ex.clone(), shared.clone());
        let (back, last) =
            smol::block_on(ex.spawn(async move {
                load::once_each(&ex2, &shared2, stopping, concurrency).await
            }));
        stopping = back;
        tally.merge(&last);
        let agent_addr = manager.agent_addr;
        manager.stop()?;
        // The stopped manager's ports file would be read as the new one's.
        let _ = std::fs::remove_file(dir.join(PORTS_FILE));
        counted_from = shared.clock.wall();
        manager = Manager::start(dir, agent_addr)?;
        primed = Some((tally, started.elapsed()));
    }

    // The interval phase, after one unmeasured interval when warming up. Manager-initiated,
    // the agents' socket stays open until the manager has stopped.
    let mut agents_listening = None;
    let load = {
        let (ex2, shared) = (ex.clone(), shared.clone());
        let schedule = load::Schedule {
            interval: options.interval,
            warmup: if options.warmup {
                options.interval
            } else {
                Duration::ZERO
            },
            duration: options.duration,
        };
        match listening {
            None => smol::block_on(ex.spawn(async move {
                load::at_interval(&ex2, &shared, agents, stopping, schedule).await
            })),
            Some(listening) => {
                let acceptor = dialed::acceptor(&pki, agents.iter().chain(&stopping))?;
                let listening = Arc::new(listening);
                agents_listening = Some(listening.clone());
                smol::block_on(ex.spawn(async move {
                    dialed::serve(
                        &ex2, &shared, &listening, acceptor, agents, stopping, schedule,
                    )
                    .await
                }))
            }
        }
    };
    let (rss_after, _) = crate::process::memory();
    let load_phase = load.phase(options.duration.as_secs_f64());

    // Whose agents lost a session: the manager may rightly have marked those offline.
    let missed = missed(&load.agents);
    // Saturation: the same agents, back to back, right after the interval phase (the others
    // stop then, so offline statuses count until the interval phase's end). The manager paces
    // its own dials, so a manager-initiated run has none.
    // Every session since registration wrote to the store, the unmeasured ones too: the growth
    // per session divides by all of them (it used to count the measured phases only, which put
    // a primed or warmed-up 100k run's growth at 6.9 KB a session).
    let mut sessions = load.tally.started
        + load.warmup_sessions
        + primed.as_ref().map_or(0, |(tally, _)| tally.started);
    let saturation = if options.direction == Direction::AgentInitiated {
        saturate(&ex, &shared, load.agents, options)
    } else {
        None
    };
    sessions += saturation.as_ref().map_or(0, |s| s.sessions_offered);
    let stop_took = manager.stop()?;
    drop(agents_listening);
    let (_, peak) = crate::process::memory();

    // The floor, with the manager stopped so that it competes with nothing.
    let floor = if options.saturation > 0 {
        let server = pki.agent_port_config(Arc::new(Registry::load(&states)))?;
        let (ex2, shared2, n) = (ex.clone(), shared.clone(), options.saturation);
        let result = smol::block_on(ex.spawn(async move {
            floor::measure(&ex2, server, &shared2.template, &floor_ids, n, concurrency).await
        }))?;
        Some(report::Floor {
            handshakes: result.completed,
            failed: result.failed,
            seconds: result.elapsed.as_secs_f64(),
            per_s: result.completed as f64 / result.elapsed.as_secs_f64().max(1e-9),
        })
    } else {
        None
    };
    drop(generator);

    let alerts = read_alerts(
        &store_path,
        &stopping_ids,
        &load.stopping_last,
        &missed,
        (counted_from, load.ended),
        options,
    )?;
    let store_end = file_size(&store_path);
    let saturation_to_floor = match (&saturation, &floor) {
        (Some(s), Some(f)) if f.per_s > 0.0 => Some(s.completed_per_s / f.per_s),
        _ => None,
    };
    let mut notes = vec![
        "manager CPU = this process's CPU minus the load generator's threads; it includes the \
         shared async-io reactor and the bench's idle bookkeeping"
            .to_string(),
        "manager memory = RSS growth from just before the manager started to the end of the \
         interval phase; it includes the generator's sessions in flight"
            .to_string(),
        "manager-side latency is 'until manager close': the manager closes a connection once it \
         has recorded the heartbeat, after it sent 'done'"
            .to_string(),
        if options.direction == Direction::ManagerInitiated {
            "the manager's dials are full handshakes (it checks each agent's certificate \
             afresh), as is the floor"
                .to_string()
        } else if options.resumption {
            "an agent's first session is a full TLS handshake, its next ones resume with the \
             manager's ticket (as a real agent's do); the floor is full handshakes"
                .to_string()
        } else {
            "--full-handshakes: every session a full TLS handshake, as the floor".to_string()
        },
    ];
    if options.direction == Direction::ManagerInitiated {
        notes.push(format!(
            "manager-initiated: the manager dials every agent at its interval, at most {} at \
             once; latency runs from the agent's accept to the manager's 'done'; no saturation \
             phase, the manager paces its own dials",
            manager::MAX_DIALS_IN_FLIGHT
        ));
    }
    if let Some((tally, took)) = &primed {
        notes.push(format!(
            "primed: every agent had one session first ({} of {} completed in {:.0} s), then \
             the manager restarted; agents keep their tickets across it",
            tally.completed,
            tally.started,
            took.as_secs_f64()
        ));
    }
    if options.warmup {
        notes.push(format!(
            "warm-up: one unmeasured interval first ({} sessions, {} failed), {}",
            load.warmup_sessions,
            load.warmup_failed,
            match options.direction {
                Direction::AgentInitiated => "so agents hold TLS tickets as in steady state",
                Direction::ManagerInitiated => "so every agent has been dialed once",
            }
        ));
    }
    if stop_took > Duration::from_secs(5) {
        notes.push(format!(
            "the manager took {:.1}s to stop",
            stop_took.as_secs_f64()
        ));
    }
    let manager_bytes = rss_after.saturating_sub(rss_before);
    let computers = options.agents + STOPPING_AGENTS;
    Ok(Report {
        agents: options.agents,
        stopping_agents: STOPPING_AGENTS,
        interval_s: options.interval.as_secs_f64(),
        duration_s: options.duration.as_secs_f64(),
        events_per_heartbeat: options.events_per_heartbeat,
        direction: match options.direction {
            Direction::AgentInitiated => "agent-initiated",
            Direction::ManagerInitiated => "manager-initiated",
        },
        registration: report::Registration {
            method: "bulk: keys generated here, certificates issued by the manager's CA, \
                     computers and agent states written before the manager started",
            keys_and_certificates_s: keys_seconds,
            store_s: store_seconds,
        },
        manager_start_s,
        load: load_phase,
        saturation,
        floor,
        saturation_to_floor,
        memory: report::Memory {
            rss_before_manager_bytes: rss_before,
            rss_after_load_bytes: rss_after,
            peak_rss_bytes: peak,
            manager_bytes,
            bytes_per_computer: manager_bytes / computers,
        },
        store: report::StoreSize {
            after_registration_bytes: store_after_registration,
            at_end_bytes: store_end,
            growth_per_session_bytes: (sessions > 0)
                .then(|| (store_end as f64 - store_after_registration as f64) / sessions as f64),
        },
        alerts,
        notes,
    })
}

/// Whose agents lost a session: the manager may rightly have marked those offline.
fn missed(agents: &[SimAgent]) -> HashSet<ComputerId> {
    agents
        .iter()
        .filter(|a| a.failed() > 0 || a.late_starts() > 0)
        .map(|a| a.id.computer)
        .collect()
}

/// The saturation phase (`--saturation` sessions back to back), if asked for.
fn saturate(
    ex: &Arc<smol::Executor<'static>>,
    shared: &Arc<Shared>,
    agents: Vec<SimAgent>,
    options: &Options,
) -> Option<report::Phase> {
    if options.saturation == 0 {
        return None;
    }
    let cpu = CpuMark::now(&shared.cpu);
    let (ex2, shared2, n) = (ex.clone(), shared.clone(), options.saturation);
    let concurrency = options.concurrency as usize;
    let (tally, elapsed) = smol::block_on(
        ex.spawn(async move { load::saturate(&ex2, &shared2, agents, n, concurrency).await }),
    );
    let (m, g) = cpu.since();
    Some(report::Phase::new(&tally, elapsed.as_secs_f64(), m, g))
}

/// What the simulated agents share, with the configuration their policy gives them.
fn shared(
    enrolled: &Enrolled,
    manager: SocketAddr,
    options: &Options,
    listen_port: Option<u16>,
) -> Result<Shared, BenchError> {
    Ok(Shared {
        manager,
        server_name: ServerName::IpAddress(manager.ip().into()),
        cpu: CpuSource::InProcess,
        template: client_template(enrolled.pki.ca_cert_der())?,
        resume: options.resumption,
        clock: Arc::new(RealClock::new()),
        events_per_heartbeat: options.events_per_heartbeat,
        fingerprint: Some(enroll::fingerprint(
            &enrolled.tree,
            manager,
            enrolled.main_policy,
        )),
        listen_port,
    })
}

/// The real agent's client configuration (`pki::agent_client_config`: only the CA, ALPN
/// "picket/1", TLS 1.3 and 1.2, ring); each session sets its own certificate.
fn client_template(ca: &CertificateDer<'static>) -> Result<ClientConfig, BenchError> {
    let what = "the simulated agents' TLS configuration";
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|source| PkiError::BadCertificate { path: None, source })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| PkiError::Tls { what, source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![crate::proto::ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The alerts and offline statuses of the run from `since` (a primed run's first manager is
/// not counted) until `until`, the end of the interval phase: after it the agents stop
/// heartbeating, and a computer not heard from within its interval is rightly offline (the
/// saturation phase, 20,000 sessions in `make bench`, outlasts the first deadlines at 100,000
/// agents). An alert on a computer that kept heartbeating is a false alarm; an offline status is
/// false unless the computer is in `missed` (its agent had a session fail or skipped); the
/// stopping agents' offline alerts are timed against their missed deadline.
fn read_alerts(
    store: &Path,
    stopping: &[ComputerId],
    last: &[Option<u64>],
    missed: &HashSet<ComputerId>,
    (since, until): (WallMs, WallMs),
    options: &Options,
) -> Result<report::Alerts, BenchError> {
    let store = Store::open(store)?;
    let txn = store.read()?;
    let alerts: Vec<_> = txn
        .alerts()?
        .into_iter()
        .filter(|a| a.raised >= since)
        .collect();
    let stopping_set: HashSet<ComputerId> = stopping.iter().copied().collect();
    let raised = alerts
        .iter()
        .filter(|a| !stopping_set.contains(&a.computer) && a.raised < until)
        .count() as u64;
    // A status change to offline is in the computer's history even if it came back online
    // before the run ended, or never reached an alert.
    let to_offline = format!("-> {}:", Status::Offline.name());
    let (mut went_offline, mut falsely_offline) = (0, 0);
    for computer in txn.computers()? {
        if stopping_set.contains(&computer.id) {
            continue;
        }
        let history = txn.history(computer.id, 1000)?;
        if history.iter().any(|h| {
            (since..until).contains(&h.at) && h.what == "status" && h.detail.contains(&to_offline)
        }) {
            went_offline += 1;
            if !missed.contains(&computer.id) {
                falsely_offline += 1;
            }
        }
    }
    let interval = options.stopping_interval();
    let grace = (interval / 10).max(Duration::from_secs(1));
    let allowance = (interval + grace).as_millis() as i64;
    let offline_alert_delay_ms = stopping
        .iter()
        .zip(last)
        .map(|(id, last)| {
            let last = (*last)? as i64;
            let alert = alerts
                .iter()
                .find(|a| a.computer == *id && a.kind == AlertKind::ComputerOffline)?;
            Some(alert.raised.0 as i64 - (last + allowance))
        })
        .collect();
    Ok(report::Alerts {
        raised,
        went_offline,
        falsely_offline,
        offline_alert_delay_ms,
    })
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallMs;
    use crate::model::HistoryEntry;

    #[test]
    fn a_healthy_computer_marked_offline_is_counted_even_if_it_came_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let store = Store::open(&path).unwrap();
        let mut txn = store.write().unwrap();
        let status = |computer, detail: &str| HistoryEntry {
            computer: ComputerId(computer),
            at: WallMs(1),
            what: "status".into(),
            detail: detail.into(),
        };
        for id in 1..=3 {
            let c = crate::model::Computer::test(id, &enroll::hostname(id, 2));
            txn.put_computer(&c).unwrap();
        }
        // 1 went offline and came back; 2 only ever came online; 3 is a stopping agent.
        txn.add_history(&status(1, "online -> offline: 1 heartbeat(s) missed"))
            .unwrap();
        txn.add_history(&status(1, "offline -> online: heartbeat received"))
            .unwrap();
        txn.add_history(&status(2, "unknown -> online: heartbeat received"))
            .unwrap();
        txn.add_history(&status(3, "online -> offline: 1 heartbeat(s) missed"))
            .unwrap();
        txn.commit().unwrap();
        store.close().unwrap();
        let options = Options::from_args(&BenchArgs {
            agents: 2,
            duration: "4s".into(),
            saturation: 0,
            concurrency: 1,
            ..super::super::options::test_args()
        })
        .unwrap();
        // Computer 3 is the stopping agent; `missed` the computers whose agents lost a session.
        let count = |missed: &[u64], window: (u64, u64)| {
            let missed = missed.iter().map(|c| ComputerId(*c)).collect();
            let window = (WallMs(window.0), WallMs(window.1));
            read_alerts(&path, &[ComputerId(3)], &[None], &missed, window, &options).unwrap()
        };
        let alerts = count(&[], (0, 9));
        assert_eq!(alerts.went_offline, 1);
        assert_eq!(alerts.falsely_offline, 1);
        assert_eq!(alerts.raised, 0);
        // Had 1's agent missed a session, it was not the manager's fault.
        let alerts = count(&[1], (0, 9));
        assert_eq!((alerts.went_offline, alerts.falsely_offline), (1, 0));
        // Before the run's manager (a primed run's first one), or after the interval phase
        // (the agents stopped): not counted.
        for window in [(2, 9), (0, 1)] {
            let alerts = count(&[], window);
            assert_eq!((alerts.went_offline, alerts.falsely_offline), (0, 0));
        }
    }
}
