//! The two ways of driving sessions: at the agents' interval (open loop: sessions start when
//! they are due, however the manager keeps up), and back to back at a fixed concurrency to
//! find the manager's saturated throughput.

use super::agent::{Shared, SimAgent};
use super::probe::CpuMark;
use super::tally::Tally;
use crate::clock::Stopwatch;
use smol::Executor;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most sessions in flight at once; beyond it a due session is skipped and counted, so an
/// overloaded manager shows as failures instead of exhausting file descriptors.
const MAX_IN_FLIGHT: usize = 8192;

/// A small deterministic generator for jitter: runs are repeatable and need no crate.
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// The time to an agent's next heartbeat after a good one: as the real agent
    /// (`agent::schedule`), the interval less up to 10%.
    pub fn period(&mut self, interval: Duration) -> Duration {
        interval.mul_f64(1.0 - 0.1 * self.unit())
    }

    /// When an agent's first heartbeat of the run falls: somewhere in a period of its own, as in
    /// a fleet that has been running for a while. (Spread over the whole interval instead, the
    /// first round still arrives while the early agents' second one, up to 10% sooner, starts:
    /// half as many sessions again for a tenth of an interval, which at 100k agents a minute
    /// measured as a backlog of a second just where the warm-up hands over to the measurement.)
    pub fn first(&mut self, interval: Duration) -> Duration {
        let period = self.period(interval);
        period.mul_f64(self.unit())
    }

    /// A number in 0..1 (xorshift64*).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// When the interval-driven phase runs: sessions that start in the first `warmup` are run but
/// not measured (they leave each agent holding a TLS ticket, as in a manager's steady state).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub interval: Duration,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What the interval-driven phase measured.
pub struct LoadResult {
    pub tally: Tally,
    /// (manager, generator) CPU seconds over the measured part.
    pub cpu: (f64, f64),
    /// Sessions of the warm-up, and how many of them failed.
    pub warmup_sessions: u64,
    pub warmup_failed: u64,
    /// When each stopping agent's one session ended (wall clock, ms), by position.
    pub stopping_last: Vec<Option<u64>>,
    pub agents: Vec<SimAgent>,
    /// When the measured part began (wall clock), once it did.
    pub measured_from: Option<crate::clock::WallMs>,
    /// When the phase ended (wall clock): from then on the agents stop, as the manager sees it.
    pub ended: crate::clock::WallMs,
}

impl LoadResult {
    /// The measured part as a report's phase of `seconds`.
    pub fn phase(&self, seconds: f64) -> super::report::Phase {
        let (manager, generator) = self.cpu;
        super::report::Phase::new(&self.tally, seconds, manager, generator)
    }

    /// The end of a phase: the measured tally, the warm-up's, the CPU since the mark, and the
    /// agents back from their slots (the first `main` are the heartbeating ones).
    pub fn new(
        tally: Tally,
        warm: &Tally,
        cpu_mark: Option<CpuMark>,
        stopping_last: Vec<Option<u64>>,
        slots: Vec<Option<SimAgent>>,
        main: usize,
    ) -> LoadResult {
        LoadResult {
            tally,
            ended: crate::clock::real_wall(),
            measured_from: cpu_mark.as_ref().map(CpuMark::wall),
            cpu: cpu_mark.map_or((0.0, 0.0), |m| m.since()),
            warmup_sessions: warm.started,
            warmup_failed: warm.started - warm.completed,
            stopping_last,
            agents: slots.into_iter().take(main).flatten().collect(),
        }
    }
}

/// Drives every agent at the interval for the warm-up and then the duration: each starts at a
/// random point of its first interval, then waits the interval less up to 10% after each
/// session, as the real agent's schedule does. The stopping agents heartbeat once at the start
/// and never again.
pub async fn at_interval(
    ex: &Arc<Executor<'static>>,
    shared: &Arc<Shared>,
    agents: Vec<SimAgent>,
    stopping: Vec<SimAgent>,
    schedule: Schedule,
) -> LoadResult {
    let main = agents.len();
    let slots = agents.into_iter().chain(stopping).map(Some).collect();
    drive(ex, shared, slots, main, schedule, None).await
}

/// Agents that join a run while it goes, as a running manager activates them: each with its
/// slot (the first `main` heartbeat, the rest are stopping agents), the manager having heard
/// from it at its activation (`SimAgent::heard`). The channel closes when all have joined (or
/// given up); the warm-up starts then.
pub struct Joining {
    pub slots: usize,
    pub main: usize,
    pub agents: smol::channel::Receiver<(usize, SimAgent)>,
}

/// [`at_interval`] for agents that join as they are activated: each heartbeats at once, as a
/// real agent does after its activation, then every period, while the others still activate.
pub async fn as_they_join(
    ex: &Arc<Executor<'static>>,
    shared: &Arc<Shared>,
    joining: Joining,
    schedule: Schedule,
) -> LoadResult {
    let slots = (0..joining.slots).map(|_| None).collect();
    drive(
        ex,
        shared,
        slots,
        joining.main,
        schedule,
        Some(joining.agents),
    )
    .await
}

async fn drive(
    ex: &Arc<Executor<'static>>,
    shared: &Arc<Shared>,
    mut slots: Vec<Option<SimAgent>>,
    main: usize,
    schedule: Schedule,
    mut joining: Option<smol::channel::Receiver<(usize, SimAgent)>>,
) -> LoadResult {
    let Schedule {
        interval,
        warmup,
        duration,
    } = schedule;
    let start = Stopwatch::now();
    // While agents join, the warm-up has not begun: it starts when the last one has.
    let far = start + Duration::from_secs(100 * 365 * 86_400);
    let mut measure_from = if joining.is_some() {
        far
    } else {
        start + warmup
    };
    let mut end = measure_from + duration;
    let mut cpu_mark = (warmup.is_zero() && joining.is_none()).then(|| CpuMark::now(&shared.cpu));
    let mut warm = Tally::default();
    let mut jitter = Jitter::new(0x5eed);
    let mut due: BinaryHeap<Reverse<(Stopwatch, usize)>> = BinaryHeap::new();
    // Joining agents are scheduled as they join: one schedule an agent, or it heartbeats twice.
    for (i, agent) in slots.iter().enumerate() {
        if let Some(agent) = agent {
            let at = first_due(&mut jitter, interval, start, i >= main, agent.heard);
            due.push(Reverse((at, i)));
        }
    }
    let (done_tx, done_rx) = smol::channel::unbounded();
    let mut tally = Tally::default();
    let mut stopping_last = vec![None; slots.len() - main];
    let mut in_flight = 0usize;
    loop {
        let now = Stopwatch::now();
        if cpu_mark.is_none() && now >= measure_from {
            // A running manager's figures are a blocking API call: off this thread, so the
            // sessions in flight go on meanwhile.
            let source = shared.cpu.clone();
            cpu_mark = Some(smol::unblock(move || CpuMark::now(&source)).await);
        }
        while let Some(&Reverse((when, i))) = due.peek() {
            if when > now || when >= end {
                break;
            }
            due.pop();
            let Some(mut agent) = slots[i].take() else {
                continue;
            };
            if in_flight >= MAX_IN_FLIGHT {
                let counted = if now >= measure_from {
                    &mut tally
                } else {
                    &mut warm
                };
                counted.started += 1;
                counted.fail(
                    "generator overloaded",
                    "too many sessions in flight; skipped",
                );
                agent.skipped();
                slots[i] = Some(agent);
                due.push(Reverse((now + interval, i)));
                continue;
            }
            // Started past the manager's allowance: the generator's own lateness.
            if now.saturating_duration_since(when) > (interval / 10).max(Duration::from_secs(1)) {
                agent.late();
            }
            in_flight += 1;
            let (shared, done_tx) = (shared.clone(), done_tx.clone());
            let measured = now >= measure_from;
            ex.spawn(async move {
                let result = agent.heartbeat(&shared).await;
                let wall = shared.clock.wall();
                let _ = done_tx.send((i, agent, result, wall, measured)).await;
            })
            .detach();
        }
        let next = due
            .peek()
            .map(|Reverse((when, _))| *when)
            .filter(|w| *w < end);
        if next.is_none() && in_flight == 0 && joining.is_none() {
            break;
        }
        let wait = next.map_or(Duration::from_secs(3600), |w| {
            w.saturating_duration_since(now)
        });
        let woke = smol::future::or(
            async { Woke::Done(done_rx.recv().await.ok()) },
            smol::future::or(
                async {
                    match &joining {
                        Some(joining) => Woke::Joined(joining.recv().await.ok()),
                        None => std::future::pending().await,
                    }
                },
                async {
                    crate::clock::real_sleep(wait).await;
                    Woke::Timer
                },
            ),
        )
        .await;
        let finished = match woke {
            Woke::Done(finished) => finished,
            Woke::Timer => None,
            Woke::Joined(Some((i, agent))) => {
                let at = first_due(
                    &mut jitter,
                    interval,
                    Stopwatch::now(),
                    i >= main,
                    agent.heard,
                );
                if let Some(slot) = slots.get_mut(i) {
                    *slot = Some(agent);
                    due.push(Reverse((at, i)));
                }
                None
            }
            // Everyone has joined: the warm-up starts now.
            Woke::Joined(None) => {
                joining = None;
                measure_from = Stopwatch::now() + warmup;
                end = measure_from + duration;
                None
            }
        };
        if let Some((i, agent, result, wall, measured)) = finished {
            in_flight -= 1;
            if measured {
                tally.add(&result);
            } else {
                warm.add(&result);
            }
            if i >= main {
                stopping_last[i - main] = result.is_ok().then_some(wall.0);
            } else {
                let pause = jitter.period(interval);
                due.push(Reverse((Stopwatch::now() + pause, i)));
            }
            slots[i] = Some(agent);
        }
    }
    LoadResult::new(tally, &warm, cpu_mark, stopping_last, slots, main)
}

/// What woke the run loop.
enum Woke<D> {
    Done(Option<D>),
    Joined(Option<(usize, SimAgent)>),
    Timer,
}

/// When an agent's first heartbeat of the run is due. The stopping agents' one session is the
/// first of all: their short interval (a quarter of the duration) is then what their alert is
/// timed against (started later, the manager's own allowance from its start would alert them
/// first). An agent just activated heartbeats at once, as a real agent's first heartbeat goes
/// as soon as it is activated (`agent::schedule::Heartbeats::new`); the others at a point of a
/// period of their own.
fn first_due(
    jitter: &mut Jitter,
    interval: Duration,
    start: Stopwatch,
    stopping: bool,
    heard: Option<Stopwatch>,
) -> Stopwatch {
    match heard {
        _ if stopping => start,
        Some(heard) => heard.max(start),
        None => start + jitter.first(interval),
    }
}

/// The agents dealt round-robin into `concurrency` groups (at least one, no more than agents), one for
/// each connection in flight, so no agent is ever in two sessions at once.
fn deal(agents: Vec<SimAgent>, concurrency: usize) -> Vec<Vec<SimAgent>> {
    let concurrency = concurrency.min(agents.len()).max(1);
    let mut groups: Vec<Vec<SimAgent>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (i, agent) in agents.into_iter().enumerate() {
        groups[i % concurrency].push(agent);
    }
    groups
}

/// Gives every agent one session, `concurrency` at a time, as fast as the manager takes them,
/// and hands the agents back (each now holding a ticket, unless its session failed).
pub async fn once_each(
    ex: &Arc<Executor<'static>>,
    shared: &Arc<Shared>,
    agents: Vec<SimAgent>,
    concurrency: usize,
) -> (Vec<SimAgent>, Tally) {
    let groups = deal(agents, concurrency);
    let workers: Vec<_> = groups
        .into_iter()
        .map(|mut group| {
            let shared = shared.clone();
            ex.spawn(async move {
                let mut tally = Tally::default();
                for agent in &mut group {
                    tally.add(&agent.heartbeat(&shared).await);
                }
                (group, tally)
            })
        })
        .collect();
    let (mut agents, mut total) = (Vec::new(), Tally::default());
    for worker in workers {
        let (group, tally) = worker.await;
        agents.extend(group);
        total.merge(&tally);
    }
    (agents, total)
}

/// Runs `sessions` heartbeats back to back on `concurrency` connections. Worker `w` owns the
/// agents `w, w + concurrency, ...`, so no agent is ever in two sessions at once.
pub async fn saturate(
    ex: &Arc<Executor<'static>>,
    shared: &Arc<Shared>,
    agents: Vec<SimAgent>,
    sessions: u64,
    concurrency: usize,
) -> (Tally, Duration) {
    let groups = deal(agents, concurrency);
    let left = Arc::new(AtomicU64::new(sessions));
    let start = Stopwatch::now();
    let workers: Vec<_> = groups
        .into_iter()
        .map(|mut group| {
            let (shared, left) = (shared.clone(), left.clone());
            ex.spawn(async move {
                let mut tally = Tally::default();
                'outer: loop {
                    for agent in &mut group {
                        if left
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                n.checked_sub(1)
                            })
                            .is_err()
                        {
                            break 'outer;
                        }
                        tally.add(&agent.heartbeat(&shared).await);
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        total.merge(&worker.await);
    }
    (total, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_the_unit_interval_and_spreads() {
        let mut j = Jitter::new(7);
        let values: Vec<f64> = (0..10_000).map(|_| j.unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let low = values.iter().filter(|v| **v < 0.5).count();
        assert!((4_500..5_500).contains(&low), "{low} of 10000 under 0.5");
    }

    /// Heartbeats per tenth of an interval over the first three intervals of 20,000 agents that
    /// all succeed: the fleet arrives at an even rate from the start, with no burst where the
    /// first round meets the second.
    #[test]
    fn a_fleet_heartbeats_evenly_from_its_first_interval_on() {
        let interval = Duration::from_secs(60);
        let mut jitter = Jitter::new(11);
        let mut per_tenth = [0u32; 30];
        for _ in 0..20_000 {
            let mut at = jitter.first(interval);
            while let Some(slot) = per_tenth.get_mut((at.as_secs_f64() / 6.0) as usize) {
                *slot += 1;
                at += jitter.period(interval);
            }
        }
        // A period is 0.95 of the interval on average: 20,000 / 9.5 a tenth.
        let even = 20_000.0 / 9.5;
        for (tenth, count) in per_tenth.iter().enumerate() {
            let ratio = f64::from(*count) / even;
            assert!(
                (0.9..1.1).contains(&ratio),
                "tenth {tenth}: {count} heartbeats, {ratio:.2} of the even rate ({per_tenth:?})"
            );
        }
    }
}
