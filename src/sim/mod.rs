//! The simulation tier: a whole site (agents, network, manager) in one process on virtual
//! time, driven by a seeded timetable of chaos, with an oracle that says which alerts must
//! exist and when. Every core the product decides with is the real one: the agents'
//! `Heartbeats`, `ClockWatch` and `AgentSession`; the manager's `ManagerSession`,
//! `liveness::Monitor`, `DialPlan` and alert lifecycle. Only the shells that move bytes are
//! stood in for (`site/`).
//!
//! `make test` runs a few hundred seeds; `make sim SEEDS=N` runs many. A failing seed prints
//! the one line that replays it alone: `PICKET_SIM_SEED=N cargo test --lib sim::`.
//!
//! - `chaos`: the site and its timetable, drawn from the seed.
//! - `site`: the world and its event loop (`site/`: agents, network, manager, chaos actions).
//! - `oracle`: the ground truth and the checks.
//! - `rng`: the seeded generator.

mod chaos;
mod oracle;
mod rng;
mod site;

/// Virtual minutes of chaos per seed (a quiet tail follows).
const MINUTES: u64 = 60;

/// What one seed did, for the summary.
#[derive(Debug, Default)]
struct Outcome {
    violations: Vec<String>,
    virtual_ms: u64,
    sessions: u64,
    offline_raised: u64,
    clock_raised: u64,
    incidents: u64,
    worst_lateness_ms: u64,
}

fn run_seed(seed: u64) -> Outcome {
    let scenario = chaos::scenario(seed, MINUTES);
    let mut site = site::Site::new(seed, &scenario);
    site.run();
    site.finish();
    Outcome {
        violations: std::mem::take(&mut site.oracle.violations),
        virtual_ms: scenario.end,
        sessions: site.sessions_run,
        offline_raised: site.oracle.offline_raised,
        clock_raised: site.oracle.clock_raised,
        incidents: site.incidents_opened(),
        worst_lateness_ms: site.oracle.worst_lateness_ms,
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_seed_tells_the_truth() {
    let seeds: Vec<u64> = match env_u64("PICKET_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let from = env_u64("PICKET_SIM_FROM").unwrap_or(1);
            (from..from + env_u64("PICKET_SIM_SEEDS").unwrap_or(200)).collect()
        }
    };
    let started = crate::clock::Stopwatch::now();
    // Seeds are independent: one worker per core.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let outcomes: Vec<(u64, Outcome)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mine: Vec<u64> = seeds.iter().copied().skip(w).step_by(workers).collect();
                scope.spawn(move || {
                    mine.into_iter()
                        .map(|s| (s, run_seed(s)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut failures = Vec::new();
    let mut total = Outcome::default();
    for (seed, outcome) in outcomes {
        total.virtual_ms += outcome.virtual_ms;
        total.sessions += outcome.sessions;
        total.offline_raised += outcome.offline_raised;
        total.clock_raised += outcome.clock_raised;
        total.incidents += outcome.incidents;
        total.worst_lateness_ms = total.worst_lateness_ms.max(outcome.worst_lateness_ms);
        if !outcome.violations.is_empty() {
            failures.push((seed, outcome.violations));
        }
    }
    failures.sort_by_key(|(seed, _)| *seed);
    println!(
        "simulation: {} seed(s), {:.1} virtual hours, {} sessions, {} offline and {} clock alerts \
         raised, {} site incidents, latest offline alert {} ms after due, {:.2} s of wall time",
        seeds.len(),
        total.virtual_ms as f64 / 3.6e6,
        total.sessions,
        total.offline_raised,
        total.clock_raised,
        total.incidents,
        total.worst_lateness_ms,
        started.elapsed().as_secs_f64()
    );
    for (seed, violations) in failures
        .iter()
        .take(env_u64("PICKET_SIM_SHOW").map_or(5, |n| n as usize))
    {
        eprintln!("seed {seed} failed; replay: PICKET_SIM_SEED={seed} cargo test --lib sim::");
        for v in violations {
            eprintln!("    {v}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seed(s) failed: {:?}",
        failures.len(),
        seeds.len(),
        failures.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
}
