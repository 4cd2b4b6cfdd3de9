//! A run against a manager that is already running (`--manager`): set up through its API,
//! agents activated with tokens while the others heartbeat, then the bench's own computers,
//! policies and tokens removed.

use super::*;

/// A run against a manager already running: set up through its API, agents activated with a
/// token while the others already heartbeat, the interval and saturation phases as in-process,
/// no floor (it needs the manager's keys), then the bench's computers, policies and tokens
/// removed.
pub(super) fn measure_running(
    target: &TargetOptions,
    options: &Options,
) -> Result<Report, BenchError> {
    let clock = Arc::new(RealClock::new());
    let generator =
        Workers::start(GENERATOR_THREAD, GENERATOR_THREADS).map_err(BenchError::Thread)?;
    let ex = generator.spawner();
    let running = Arc::new(Target::set_up(target, options, clock.wall())?);
    let made = Arc::new(Mutex::new(Vec::new()));
    let result = drive_running(&running, &ex, clock, options, &made);
    let mut computers = made
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    // An agent that gave up on an activation the manager still completed left a computer the
    // bench does not know of.
    let gave_up = result.as_ref().map_or(true, |(_, failed)| *failed > 0);
    if gave_up {
        computers.extend(running.unknown_computers(&computers));
    }
    let clean_up = running.clean_up(&computers, target.keep);
    let (mut report, _) = result?;
    report.notes.push(if target.keep {
        format!(
            "--keep: the {} computers and the policies '{}' and '{} stopping' stay on the \
             manager; the tokens were revoked",
            computers.len(),
            running.run,
            running.run
        )
    } else {
        format!(
            "clean-up: the {} computers, 2 policies and 2 tokens the bench made were deleted \
             in {:.1} s",
            computers.len(),
            clean_up.seconds
        )
    });
    if clean_up.left > 0 {
        report.notes.push(format!(
            "{} of the bench's records could not be deleted (see the log); their names start \
             with '{}'",
            clean_up.left, running.run
        ));
    }
    Ok(report)
}

/// The run on a running manager: activation and load together, then saturation and the
/// figures. Every computer activated is noted in `made`, for the clean-up. With the report,
/// how many agents could not activate.
fn drive_running(
    running: &Arc<Target>,
    ex: &Arc<smol::Executor<'static>>,
    clock: Arc<RealClock>,
    options: &Options,
    made: &Arc<Mutex<Vec<ComputerId>>>,
) -> Result<(Report, u64), BenchError> {
    // A manager without the metrics this needs is found out before anything is activated.
    let before = running.figures()?;
    let shared = Arc::new(Shared {
        manager: running.agent_addr,
        server_name: running.server_name.clone(),
        cpu: CpuSource::Remote(running.clone()),
        template: client_template(&running.ca)?,
        resume: options.resumption,
        clock: clock.clone(),
        events_per_heartbeat: options.events_per_heartbeat,
        fingerprint: None,
        listen_port: None,
    });
    // One interval of warm-up once every agent has joined: each agent's first heartbeat is
    // due a period after its activation, so the fleet heartbeats in the bunch it was activated
    // in until the jitter spreads it. Alerts count from the measured part; the stopping
    // agents' from the start, since they stop at once.
    let load_start = clock.wall();
    let (joined, joining) = smol::channel::unbounded();
    let activation = {
        let clock: Arc<dyn Clock> = clock.clone();
        ex.spawn(running.clone().activate_into(
            ex.clone(),
            clock,
            options.agents,
            options.concurrency as usize,
            joined,
            made.clone(),
        ))
    };
    let load = {
        let (ex2, shared) = (ex.clone(), shared.clone());
        let joining = load::Joining {
            slots: (options.agents + STOPPING_AGENTS) as usize,
            main: options.agents as usize,
            agents: joining,
        };
        let schedule = load::Schedule {
            interval: options.interval,
            warmup: options.interval,
            duration: options.duration,
        };
        smol::block_on(
            ex.spawn(async move { load::as_they_join(&ex2, &shared, joining, schedule).await }),
        )
    };
    let activation = smol::block_on(activation);
    if activation.activated == 0 {
        return Err(BenchError::Option {
            name: "agents",
            problem: format!(
                "no simulated agent could activate: {}",
                activation.first_failure.unwrap_or_default()
            ),
        });
    }
    let after_load = running.figures()?;
    let load_phase = load.phase(options.duration.as_secs_f64());
    let missed = missed(&load.agents);
    let sessions = load.tally.started + load.warmup_sessions;
    let saturation = saturate(ex, &shared, load.agents, options);
    let sessions = sessions + saturation.as_ref().map_or(0, |s| s.sessions_offered);
    let at_end = running.figures()?;
    let ours: HashSet<ComputerId> = made
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .copied()
        .collect();
    let (stopping_ids, stopping_last): (Vec<ComputerId>, Vec<Option<u64>>) = activation
        .stopping
        .iter()
        .map(|(at, id)| (*id, load.stopping_last.get(*at).copied().flatten()))
        .unzip();
    let counted_from = load.measured_from.unwrap_or(WallMs(u64::MAX));
    let alerts = running.alerts(
        &stopping_ids,
        &stopping_last,
        &ours,
        &missed,
        remote::Windows {
            load_start,
            counted_from,
            until: load.ended,
        },
        options,
    )?;
    let computers = activation.activated;
    let manager_bytes = after_load.rss_bytes.saturating_sub(before.rss_bytes);
    let mut notes = vec![
        format!(
            "a running manager at {} (agent port): its CPU, memory and store size are from its \
             /metrics; the generator's CPU is all of this process",
            running.agent_addr
        ),
        format!(
            "registration: {computers} agents activated over the agent port with a token, {} at \
             a time, in {:.1} s ({:.0} a second), each heartbeating at once after its activation \
             and every period after, as a real agent",
            options.concurrency,
            activation.seconds,
            computers as f64 / activation.seconds.max(1e-9)
        ),
        "manager memory = the manager's RSS growth from before the activations to the end of \
         the interval phase"
            .to_string(),
        "every offline status raises an alert in the bench's policy (missed-before-alert 0), \
         so the alerts list counts the computers that went offline"
            .to_string(),
        "no floor: bare handshakes need the manager's keys, which a running manager keeps"
            .to_string(),
        format!(
            "warm-up: the activations, then one unmeasured interval ({} sessions, {} failed); {} \
             computers went offline in it, {} of them though their agent started every session \
             on time and none failed (alerts count from its end)",
            load.warmup_sessions,
            load.warmup_failed,
            alerts.warmup_offline,
            alerts.warmup_falsely_offline
        ),
    ];
    if activation.failed > 0 {
        notes.push(format!(
            "{} agents could not activate, the first: {}",
            activation.failed,
            activation.first_failure.unwrap_or_default()
        ));
    }
    let report = Report {
        agents: options.agents,
        stopping_agents: STOPPING_AGENTS,
        interval_s: options.interval.as_secs_f64(),
        duration_s: options.duration.as_secs_f64(),
        events_per_heartbeat: options.events_per_heartbeat,
        direction: "agent-initiated",
        registration: report::Registration {
            method: "activation: each agent generated its key and activated with a token over \
                     the running manager's agent port",
            keys_and_certificates_s: activation.seconds,
            store_s: 0.0,
        },
        manager_start_s: 0.0,
        load: load_phase,
        saturation,
        floor: None,
        saturation_to_floor: None,
        memory: report::Memory {
            rss_before_manager_bytes: before.rss_bytes,
            rss_after_load_bytes: after_load.rss_bytes,
            peak_rss_bytes: after_load.rss_bytes.max(at_end.rss_bytes),
            manager_bytes,
            bytes_per_computer: manager_bytes / computers.max(1),
        },
        store: report::StoreSize {
            after_registration_bytes: before.store_bytes,
            at_end_bytes: at_end.store_bytes,
            growth_per_session_bytes: (sessions > 0)
                .then(|| (at_end.store_bytes as f64 - before.store_bytes as f64) / sessions as f64),
        },
        alerts: alerts.counted,
        notes,
    };
    Ok((report, activation.failed))
}
