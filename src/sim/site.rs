//! The simulated site: agents (the real `Heartbeats`, `ClockWatch` and `AgentSession`), the
//! manager (the real `ManagerSession`, `liveness::Monitor`, `DialPlan` and alert lifecycle)
//! and the network between them, on one virtual clock. Time moves only from one event or
//! deadline to the next, so an hour of a site takes milliseconds. The glue here stands in for
//! the async shells (`agent/heartbeat.rs`, `manager/agent_port`, `manager/dialer.rs`,
//! `manager/verdicts`) and makes the same calls they make, in the same order.

use super::chaos::{Action, Scenario, Settings};
use super::oracle::Oracle;
use super::rng::Rng;
use crate::agent::clock_watch::ClockWatch;
use crate::agent::schedule::{Heartbeats, Next};
use crate::alerts::lifecycle;
use crate::alerts::{AlertKind, catalogue};
use crate::clock::{Instant, WallMs};
use crate::liveness::{Decision, Monitor, Rules};
use crate::manager::dial_plan::{DialPlan, Target};
use crate::model::{Alert, AlertId, ClockChangeLimit, ComputerId, events};
use crate::policy::{AgentConfig, Fingerprint};
use crate::proto::{
    AgentEvent, AgentMsg, AgentOutput, AgentSession, AgentStatus, EventBatch, Hello, ManagerMsg,
    ManagerOutput, ManagerSession, PROTOCOL_VERSION, Purpose, SessionParams, SpoolRange,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

/// The agents' wall clocks start here (2026-12-01), each then drifts by its own steps.
const WALL0: u64 = 1_796_083_200_000;
const MAX_CLOCK_CHANGE: Duration = Duration::from_secs(15 * 60);
/// Both sides' step timeout, and the time a connect to an unreachable host takes to fail.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT_MS: u64 = 10_000;
const MAX_BATCH: u32 = 16;
/// How often the oracle looks at the alerts.
const SAMPLE_MS: u64 = 250;
/// As the manager's dialer runs them.
const MAX_DIALS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Running,
    /// Hung or asleep until then: nothing runs, messages wait in the network.
    Frozen(u64),
    Down,
}

struct Agent {
    life: Life,
    /// Bumped whenever the process starts, so events of an earlier process are ignored.
    generation: u32,
    plan: Heartbeats,
    watch: ClockWatch,
    spool: Vec<AgentEvent>,
    next_seq: u64,
    config: AgentConfig,
    fingerprint: Fingerprint,
    wall_offset: i64,
    /// Its own session (a heartbeat or goodbye it dialed).
    own: Option<u64>,
    /// Stopping cleanly: down once the goodbye is over, back at this time.
    stopping: Option<u64>,
}

impl Agent {
    fn wall(&self, now: u64) -> WallMs {
        WallMs(u64::try_from(i128::from(WALL0 + now) + i128::from(self.wall_offset)).unwrap_or(0))
    }

    fn blocks_manager(&self) -> bool {
        !self.config.listener_rules.is_empty()
    }

    fn append(&mut self, id: u32, now: u64, fields: Vec<(String, String)>) -> AgentEvent {
        self.next_seq += 1;
        let event = AgentEvent {
            seq: self.next_seq,
            id,
            time: self.wall(now),
            fields,
        };
        self.spool.push(event.clone());
        event
    }
}

/// What the manager remembers about a computer in its store.
#[derive(Clone, Debug, Default)]
struct Recorded {
    last_seq: u64,
    applied: Option<Fingerprint>,
    listens: bool,
}

struct Manager {
    up: bool,
    /// When the verdicts task last went to sleep, and when it asked to wake at the latest.
    slept_at: u64,
    wake_by: u64,
    generation: u32,
    frozen_until: u64,
    store_full_until: u64,
    monitor: Monitor,
    dials: DialPlan,
    settings: BTreeMap<ComputerId, Settings>,
    recorded: BTreeMap<ComputerId, Recorded>,
    events: BTreeMap<(ComputerId, u64), AgentEvent>,
    alerts: Vec<Alert>,
}

struct Session {
    computer: ComputerId,
    dialed: bool,
    agent_generation: u32,
    manager_generation: u32,
    agent: Option<AgentSession>,
    manager: Option<ManagerSession>,
    /// Waited inside the manager: how late the dial started, and any freeze.
    waited_ms: u64,
    /// The network keeps each direction in order; a lost frame hangs that direction.
    to_manager_at: u64,
    to_agent_at: u64,
    broken: bool,
    new_interval: Option<Duration>,
    /// When the agent read its clock for this session's status (its clock watch looked then).
    status_at: u64,
    /// The store refused the session's events (a full disk): the agent keeps them.
    events_refused: bool,
}

enum Ev {
    Chaos(Action),
    AgentBack(ComputerId, u32),
    Thaw(ComputerId, u32),
    ManagerBack(u32),
    ToManager(u64, AgentMsg),
    ToAgent(u64, ManagerMsg),
    /// The connection ended under the other side.
    ClosedAtManager(u64),
    ClosedAtAgent(u64),
    /// A dial that could not connect, and why.
    DialFailed(ComputerId, u32, String),
    Sample,
}

pub struct Site {
    now: u64,
    rng: Rng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    pending: HashMap<u64, Ev>,
    next_key: u64,
    agents: BTreeMap<ComputerId, Agent>,
    manager: Manager,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    partitioned_until: HashMap<ComputerId, u64>,
    /// Loss, extra latency, until.
    links: HashMap<ComputerId, (f64, u64, u64)>,
    pub oracle: Oracle,
    /// `PICKET_SIM_TRACE=ID`: what happens to that computer, on stderr, to debug a seed.
    trace: Option<ComputerId>,
    end: u64,
    pub sessions_run: u64,
}

fn rules(s: &Settings) -> Rules {
    Rules {
        interval: s.interval,
        missed_before_alert: s.missed,
        max_clock_change: ClockChangeLimit::Max(MAX_CLOCK_CHANGE),
        offline_errors_for_inactive_vms: s.offline_errors_for_inactive_vms,
        is_vm: s.is_vm,
        direction: s.direction,
    }
}

fn config(s: &Settings) -> AgentConfig {
    AgentConfig {
        interval: s.interval,
        missed_before_alert: s.missed,
        max_clock_change: ClockChangeLimit::Max(MAX_CLOCK_CHANGE),
        offline_errors_for_inactive_vms: s.offline_errors_for_inactive_vms,
        direction: s.direction,
        manager_endpoints: vec!["manager.example:4120".into()],
        listener_rules: if s.blocks_manager {
            vec![crate::model::ListenerRule {
                name: "only the admin net".into(),
                destination_ports: vec![],
                source_ips: vec![],
                source_macs: vec![],
            }]
        } else {
            vec![]
        },
    }
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

impl Site {
    pub fn new(seed: u64, scenario: &Scenario) -> Site {
        let mut site = Site {
            now: 0,
            rng: Rng::new(seed ^ 0x005e_ed0f_c4a0),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            next_key: 0,
            agents: BTreeMap::new(),
            manager: Manager {
                up: true,
                slept_at: 0,
                wake_by: 0,
                generation: 0,
                frozen_until: 0,
                store_full_until: 0,
                monitor: Monitor::new(),
                dials: DialPlan::new(MAX_DIALS),
                settings: BTreeMap::new(),
                recorded: BTreeMap::new(),
                events: BTreeMap::new(),
                alerts: Vec::new(),
            },
            sessions: BTreeMap::new(),
            next_session: 0,
            partitioned_until: HashMap::new(),
            links: HashMap::new(),
            oracle: Oracle::default(),
            trace: std::env::var("PICKET_SIM_TRACE")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(ComputerId),
            end: scenario.end,
            sessions_run: 0,
        };
        for (id, settings) in &scenario.computers {
            let config = config(settings);
            // Activated before the manager's start: the activation answer carried the config.
            let agent = Agent {
                life: Life::Down,
                generation: 0,
                plan: Heartbeats::new(at(0), settings.interval),
                watch: ClockWatch::default(),
                spool: Vec::new(),
                next_seq: 0,
                fingerprint: config.fingerprint(),
                config,
                wall_offset: 0,
                own: None,
                stopping: None,
            };
            site.agents.insert(*id, agent);
            site.manager.settings.insert(*id, *settings);
            site.manager.recorded.insert(
                *id,
                Recorded {
                    last_seq: 0,
                    applied: None,
                    listens: settings.direction.agent_listens(),
                },
            );
            site.oracle.watch(*id, *settings, 0);
        }
        site.manager_start();
        let ids: Vec<ComputerId> = site.agents.keys().copied().collect();
        for id in ids {
            site.agent_start(id);
        }
        for (when, action) in &scenario.actions {
            site.schedule(*when, Ev::Chaos(action.clone()));
        }
        site.schedule(SAMPLE_MS, Ev::Sample);
        site
    }

    fn trace(&self, computer: Option<ComputerId>, what: impl FnOnce() -> String) {
        if self.trace.is_some() && (computer.is_none() || computer == self.trace) {
            eprintln!("{:>10.3} {}", self.now as f64 / 1e3, what());
        }
    }

    fn schedule(&mut self, when: u64, ev: Ev) {
        let key = self.next_key;
        self.next_key += 1;
        self.pending.insert(key, ev);
        self.queue.push(Reverse((when, key)));
    }

    pub fn run(&mut self) {
        loop {
            let event_at = self.queue.peek().map(|Reverse((t, _))| *t);
            let timer_at = self.next_timer();
            let next = match (event_at, timer_at) {
                (Some(e), Some(t)) => e.min(t),
                (e, t) => match e.or(t) {
                    Some(next) => next,
                    None => break,
                },
            };
            if next > self.end {
                break;
            }
            self.now = self.now.max(next);
            // Events first: a heartbeat already at the manager is never judged missed.
            if event_at.is_some_and(|e| e <= self.now) {
                if let Some(Reverse((_, key))) = self.queue.pop()
                    && let Some(ev) = self.pending.remove(&key)
                {
                    self.handle(ev);
                }
            } else {
                self.fire_timers();
            }
        }
        self.now = self.end;
    }

    fn manager_running(&self) -> bool {
        self.manager.up && self.now >= self.manager.frozen_until
    }

    /// The earliest deadline of any core that may run now.
    fn next_timer(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                let t = t.as_millis();
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for agent in self.agents.values() {
            if agent.life == Life::Running && agent.own.is_none() && agent.stopping.is_none() {
                consider(
                    agent
                        .plan
                        .poll_timeout(agent.config.direction.agent_dials(), false),
                );
            }
        }
        let manager_runs = self.manager.up;
        let frozen_until = self.manager.frozen_until;
        for session in self.sessions.values() {
            if let Some(a) = &session.agent
                && self.agents.get(&session.computer).is_some_and(|x| {
                    x.life == Life::Running && x.generation == session.agent_generation
                })
            {
                consider(a.poll_timeout());
            }
            if manager_runs && let Some(m) = &session.manager {
                consider(m.poll_timeout().map(|t| t.max(at(frozen_until))));
            }
        }
        if manager_runs {
            let later = |t: Option<Instant>| t.map(|t| t.max(at(frozen_until)));
            consider(later(self.manager.monitor.poll_timeout()));
            consider(later(Some(at(self.manager.wake_by))));
            consider(later(self.manager.dials.poll_timeout()));
        }
        next.map(|n| n.max(self.now))
    }

    fn fire_timers(&mut self) {
        let now = at(self.now);
        let ids: Vec<ComputerId> = self.agents.keys().copied().collect();
        for id in ids {
            let fire = self.agents.get(&id).is_some_and(|a| {
                a.life == Life::Running
                    && a.own.is_none()
                    && a.stopping.is_none()
                    && a.plan.poll(now, a.config.direction.agent_dials(), false) == Next::Heartbeat
            });
            if fire {
                self.agent_dial(id, Purpose::Heartbeat);
            }
        }
        // The verdicts task notices a freeze before anything its wake-up brings.
        if self.manager_running() {
            self.manager_look();
        }
        let sids: Vec<u64> = self.sessions.keys().copied().collect();
        for sid in sids {
            if self.agent_side_runs(sid)
                && let Some(a) = self.sessions.get_mut(&sid).and_then(|s| s.agent.as_mut())
                && a.poll_timeout().is_some_and(|d| d <= now)
            {
                a.handle_timeout(now);
                self.drive_agent(sid);
            }
            if self.manager_running()
                && let Some(m) = self.sessions.get_mut(&sid).and_then(|s| s.manager.as_mut())
                && m.poll_timeout().is_some_and(|d| d <= now)
            {
                m.handle_timeout(now);
                self.drive_manager(sid);
            }
        }
        if self.manager_running() {
            self.manager.monitor.handle_timeout(now);
            self.decide();
            self.start_dials();
        }
    }

    /// What the verdicts task does whenever it wakes (`manager/verdicts/mod.rs::run`): a
    /// wake-up much later than it asked for means the manager did not run, and the monitor is
    /// told. It then sleeps again for at most `LOOK_EVERY`.
    fn manager_look(&mut self) {
        let late = Duration::from_millis(self.now.saturating_sub(self.manager.wake_by));
        if late > crate::liveness::FROZEN_AFTER {
            let (from, to) = (at(self.manager.slept_at), at(self.now));
            self.trace(None, || {
                format!("the monitor is told of a freeze from {from:?}")
            });
            self.manager.monitor.handle_frozen(from, to);
        }
        self.manager.slept_at = self.now;
        self.manager.wake_by = self.now + crate::liveness::LOOK_EVERY.as_millis() as u64;
    }

    fn agent_side_runs(&self, sid: u64) -> bool {
        self.sessions.get(&sid).is_some_and(|s| {
            self.agents
                .get(&s.computer)
                .is_some_and(|a| a.life == Life::Running && a.generation == s.agent_generation)
        })
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Chaos(action) => self.chaos(action),
            Ev::AgentBack(id, generation) => {
                if self
                    .agents
                    .get(&id)
                    .is_some_and(|a| a.generation == generation)
                {
                    self.agent_start(id);
                }
            }
            Ev::Thaw(id, generation) => {
                if let Some(a) = self.agents.get_mut(&id)
                    && a.generation == generation
                    && matches!(a.life, Life::Frozen(_))
                {
                    a.life = Life::Running;
                }
            }
            Ev::ManagerBack(generation) => {
                if generation == self.manager.generation && !self.manager.up {
                    self.manager_start();
                }
            }
            Ev::ToManager(sid, msg) => self.at_manager(sid, msg),
            Ev::ToAgent(sid, msg) => self.at_agent(sid, msg),
            Ev::ClosedAtManager(sid) => {
                if self.manager_running()
                    && self.sessions.get(&sid).is_some_and(|s| s.manager.is_some())
                {
                    self.manager_look();
                }
                if self.manager_running()
                    && let Some(m) = self.sessions.get_mut(&sid).and_then(|s| s.manager.as_mut())
                {
                    m.handle_closed();
                    self.drive_manager(sid);
                } else if self.manager.up
                    && self.sessions.get(&sid).is_some_and(|s| s.manager.is_some())
                {
                    let until = self.manager.frozen_until;
                    self.schedule(until, Ev::ClosedAtManager(sid));
                }
                self.reap(sid);
            }
            Ev::ClosedAtAgent(sid) => {
                let frozen = self
                    .sessions
                    .get(&sid)
                    .and_then(|s| self.agents.get(&s.computer))
                    .and_then(|a| match a.life {
                        Life::Frozen(until) => Some(until),
                        _ => None,
                    });
                if let Some(until) = frozen {
                    self.schedule(until, Ev::ClosedAtAgent(sid));
                } else if self.agent_side_runs(sid)
                    && let Some(a) = self.sessions.get_mut(&sid).and_then(|s| s.agent.as_mut())
                {
                    a.handle_closed();
                    self.drive_agent(sid);
                }
                self.reap(sid);
            }
            Ev::DialFailed(id, generation, reason) => {
                if generation != self.manager.generation || !self.manager.up {
                    return;
                }
                if !self.manager_running() {
                    let until = self.manager.frozen_until;
                    self.schedule(until, Ev::DialFailed(id, generation, reason));
                    return;
                }
                self.manager_look();
                self.dial_failed(id, reason);
            }
            Ev::Sample => {
                if self.manager_running() {
                    let ids: Vec<ComputerId> = self.agents.keys().copied().collect();
                    for id in ids {
                        let active = self.active(id, AlertKind::ComputerOffline).is_some();
                        self.oracle.check(self.now, id, active);
                    }
                }
                self.schedule(self.now + SAMPLE_MS, Ev::Sample);
            }
        }
    }

    // ---- the agents ----

    fn agent_start(&mut self, id: ComputerId) {
        let now = self.now;
        let Some(agent) = self.agents.get_mut(&id) else {
            return;
        };
        agent.life = Life::Running;
        agent.generation += 1;
        agent.own = None;
        agent.stopping = None;
        agent.plan = Heartbeats::new(at(now), agent.config.interval);
        agent.watch = ClockWatch::default();
        let version = vec![("version".into(), "sim".into())];
        agent.append(events::AGENT_STARTED.id, now, version);
    }

    /// The process ends: its sessions end with it (the manager sees the connection close).
    fn agent_down(&mut self, id: ComputerId) {
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.life = Life::Down;
            agent.generation += 1;
            agent.own = None;
            agent.stopping = None;
        }
        self.oracle.agent_restarted(id);
        let sids: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.computer == id)
            .map(|(k, _)| *k)
            .collect();
        for sid in sids {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.agent = None;
            }
            self.close_towards_manager(sid);
        }
    }

    fn agent_dial(&mut self, id: ComputerId, purpose: Purpose) {
        let now = self.now;
        let Some(agent) = self.agents.get_mut(&id) else {
            return;
        };
        let stepped = watch_clock(agent, now);
        let status = status(agent, now);
        if let Some(change) = stepped {
            self.trace(Some(id), || {
                format!("the agent saw its clock step {change} ms")
            });
        }
        self.oracle.agent_looked(id);
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "sim".into(),
            purpose,
        };
        let session = AgentSession::heartbeat(at(now), hello, status, STEP_TIMEOUT);
        let sid = self.new_session(id, false, Some(session), None);
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.own = Some(sid);
        }
        self.drive_agent(sid);
    }

    fn new_session(
        &mut self,
        computer: ComputerId,
        dialed: bool,
        agent: Option<AgentSession>,
        manager: Option<ManagerSession>,
    ) -> u64 {
        let sid = self.next_session;
        self.next_session += 1;
        self.sessions_run += 1;
        let agent_generation = self.agents.get(&computer).map_or(0, |a| a.generation);
        self.sessions.insert(
            sid,
            Session {
                computer,
                dialed,
                agent_generation,
                manager_generation: self.manager.generation,
                agent,
                manager,
                waited_ms: 0,
                to_manager_at: self.now,
                to_agent_at: self.now,
                broken: false,
                new_interval: None,
                status_at: self.now,
                events_refused: false,
            },
        );
        sid
    }

    fn drive_agent(&mut self, sid: u64) {
        let now = self.now;
        loop {
            let Some(session) = self.sessions.get_mut(&sid) else {
                return;
            };
            let computer = session.computer;
            let Some(output) = session.agent.as_mut().and_then(AgentSession::poll_output) else {
                return;
            };
            let Some(agent) = self.agents.get_mut(&computer) else {
                return;
            };
            match output {
                AgentOutput::Send(msg) => self.send_to_manager(sid, msg),
                AgentOutput::ReadEvents { after, max } => {
                    let pending: Vec<AgentEvent> = agent
                        .spool
                        .iter()
                        .filter(|e| e.seq > after)
                        .cloned()
                        .collect();
                    let take = pending.len().min(max as usize);
                    let batch = EventBatch {
                        more: pending.len() > take,
                        events: pending.into_iter().take(take).collect(),
                    };
                    if let Some(a) = session.agent.as_mut() {
                        a.provide_events(at(now), batch);
                    }
                }
                AgentOutput::Acked { through } => {
                    agent.spool.retain(|e| e.seq > through);
                    let lost: Vec<u64> = (1..=through)
                        .filter(|seq| !self.manager.events.contains_key(&(computer, *seq)))
                        .filter(|seq| *seq > self.manager_forgot_before(computer))
                        .collect();
                    if let Some(first) = lost.first() {
                        let what = format!("event {first} acknowledged but never stored");
                        self.oracle.violations.push(what);
                    }
                }
                AgentOutput::Apply {
                    config,
                    fingerprint,
                } => {
                    let changed = config.interval != agent.config.interval
                        || config.direction != agent.config.direction;
                    agent.config = config;
                    agent.fingerprint = fingerprint;
                    let interval = agent.config.interval;
                    if session.dialed {
                        if changed {
                            agent.plan.handle_changed(at(now), interval, false);
                        }
                    } else {
                        session.new_interval = Some(interval);
                    }
                    if let Some(a) = session.agent.as_mut() {
                        a.config_result(at(now), Ok(fingerprint));
                    }
                }
                AgentOutput::Activated(_) => {}
                AgentOutput::Finished(result) => {
                    let dialed = session.dialed;
                    // A session the manager dialed is contact too (`agent/heartbeat.rs::heard`).
                    if dialed && result.is_ok() {
                        agent.plan.handle_heard(at(now));
                    }
                    self.trace(Some(computer), || {
                        format!("agent's session over (dialed {dialed}): {result:?}")
                    });
                    let Some(session) = self.sessions.get_mut(&sid) else {
                        return;
                    };
                    let Some(agent) = self.agents.get_mut(&computer) else {
                        return;
                    };
                    session.agent = None;
                    if !session.dialed {
                        agent.own = None;
                        let unit = self.rng.unit();
                        match result {
                            Ok(next) => {
                                let new_interval = session.new_interval;
                                agent
                                    .plan
                                    .handle_success(at(now), Some(next), new_interval, unit);
                            }
                            Err(_) => {
                                agent.plan.handle_failure(at(now), unit);
                            }
                        }
                        if let Some(back) = agent.stopping {
                            self.agent_down(computer);
                            let generation = self.agents.get(&computer).map_or(0, |a| a.generation);
                            self.schedule(back, Ev::AgentBack(computer, generation));
                            return;
                        }
                    }
                    self.close_towards_manager(sid);
                    self.reap(sid);
                    return;
                }
            }
        }
    }

    /// Retention never runs in the simulation: every stored event stays.
    fn manager_forgot_before(&self, _computer: ComputerId) -> u64 {
        0
    }

    fn latency(&mut self, computer: ComputerId) -> u64 {
        let extra = self
            .links
            .get(&computer)
            .filter(|(_, _, until)| *until > self.now)
            .map_or(0, |(_, latency, _)| *latency);
        self.rng.between(1, 40) + self.rng.below(extra + 1)
    }

    /// Whether this frame is lost (and with it the connection, until a timeout).
    fn lost(&mut self, computer: ComputerId) -> bool {
        if self
            .partitioned_until
            .get(&computer)
            .is_some_and(|u| *u > self.now)
        {
            return true;
        }
        let loss = self
            .links
            .get(&computer)
            .filter(|(_, _, until)| *until > self.now)
            .map_or(0.0, |(loss, _, _)| *loss);
        loss > 0.0 && self.rng.chance(loss)
    }

    fn send_to_manager(&mut self, sid: u64, msg: AgentMsg) {
        let Some(computer) = self.sessions.get(&sid).map(|s| s.computer) else {
            return;
        };
        if self.sessions.get(&sid).is_some_and(|s| s.broken) || self.lost(computer) {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.broken = true;
            }
            return;
        }
        let latency = self.latency(computer);
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !s.dialed && s.manager.is_none() && !self.manager.up {
            // Connection refused: the manager is not running.
            let when = self.now + 1;
            self.schedule(when, Ev::ClosedAtAgent(sid));
            return;
        }
        let when = (self.now + latency).max(s.to_manager_at);
        s.to_manager_at = when;
        self.schedule(when, Ev::ToManager(sid, msg));
    }

    fn at_agent(&mut self, sid: u64, msg: ManagerMsg) {
        let Some(computer) = self.sessions.get(&sid).map(|s| s.computer) else {
            return;
        };
        if let Some(Life::Frozen(until)) = self.agents.get(&computer).map(|a| a.life) {
            self.schedule(until, Ev::ToAgent(sid, msg));
            return;
        }
        if !self.agent_side_runs(sid) {
            return;
        }
        let now = at(self.now);
        if let Some(a) = self.sessions.get_mut(&sid).and_then(|s| s.agent.as_mut()) {
            a.handle_message(now, msg);
        }
        self.drive_agent(sid);
    }

    // ---- the manager ----

    fn manager_start(&mut self) {
        let now = at(self.now);
        self.manager.up = true;
        self.manager.slept_at = self.now;
        self.manager.wake_by = self.now;
        self.manager.frozen_until = 0;
        self.manager.monitor = Monitor::new();
        self.manager.dials = DialPlan::new(MAX_DIALS);
        let ids: Vec<ComputerId> = self.manager.settings.keys().copied().collect();
        for id in &ids {
            let settings = self.manager.settings[id];
            self.manager.monitor.track(now, *id, rules(&settings));
            self.manager.monitor.set_power(now, *id, settings.power);
        }
        for id in &ids {
            if self.active(*id, AlertKind::ComputerOffline).is_some() {
                self.manager.monitor.mark_offline_alerted(*id);
            }
            if self
                .active(*id, AlertKind::ManagerCannotReachAgent)
                .is_some()
            {
                self.manager.monitor.mark_unreachable_alerted(*id);
            }
            let target = self.target(*id);
            self.manager.dials.target(now, &target);
        }
        let alerts = &self.manager.alerts;
        let active = |id: ComputerId| {
            alerts
                .iter()
                .any(|a| a.computer == id && a.kind == AlertKind::ComputerOffline && a.is_active())
        };
        self.oracle.manager_restarted(self.now, &active);
        self.decide();
        self.start_dials();
    }

    fn target(&self, id: ComputerId) -> Target {
        let settings = self.manager.settings[&id];
        let recorded = self.manager.recorded.get(&id).cloned().unwrap_or_default();
        Target {
            computer: id,
            direction: settings.direction,
            interval: settings.interval,
            listens: recorded.listens,
            up_to_date: recorded.applied == Some(config(&settings).fingerprint()),
        }
    }

    fn params(&self, id: ComputerId) -> SessionParams {
        let settings = self.manager.settings[&id];
        let recorded = self.manager.recorded.get(&id).cloned().unwrap_or_default();
        let stored = self
            .manager
            .events
            .range((id, 0)..=(id, u64::MAX))
            .next_back()
            .map_or(0, |((_, seq), _)| *seq);
        SessionParams {
            authenticated: true,
            expected: config(&settings),
            last_seq: recorded.last_seq.max(stored),
            next_heartbeat: settings.interval,
            step_timeout: STEP_TIMEOUT,
            max_batch: MAX_BATCH,
            manager_time: WallMs(WALL0 + self.now),
        }
    }

    fn at_manager(&mut self, sid: u64, msg: AgentMsg) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        if !self.manager.up || s.manager_generation != self.manager.generation {
            return;
        }
        if self.now < self.manager.frozen_until {
            let until = self.manager.frozen_until;
            // The agent is at the manager's door on time; the manager is what is late.
            if s.manager.is_none() && !s.dialed {
                let computer = s.computer;
                self.oracle.session_began(computer, self.now);
            }
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.waited_ms += until - self.now;
            }
            self.schedule(until, Ev::ToManager(sid, msg));
            return;
        }
        let now = at(self.now);
        let (computer, fresh, dialed) = (s.computer, s.manager.is_none(), s.dialed);
        self.manager_look();
        if fresh {
            if dialed {
                return;
            }
            let params = self.params(computer);
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.manager = Some(ManagerSession::new(now, params));
            }
            // Verified and queued for a runner: its heartbeat is on its way.
            self.manager.monitor.handle_arrival(now, computer);
            self.oracle.session_began(computer, self.now);
        }
        if let Some(m) = self.sessions.get_mut(&sid).and_then(|s| s.manager.as_mut()) {
            m.handle_message(now, msg);
        }
        self.drive_manager(sid);
    }

    fn drive_manager(&mut self, sid: u64) {
        let now = at(self.now);
        loop {
            let Some(session) = self.sessions.get_mut(&sid) else {
                return;
            };
            let computer = session.computer;
            let Some(output) = session
                .manager
                .as_mut()
                .and_then(ManagerSession::poll_output)
            else {
                return;
            };
            match output {
                ManagerOutput::Send(msg) => self.send_to_agent(sid, msg),
                ManagerOutput::StoreEvents(batch) => {
                    if self.now < self.manager.store_full_until {
                        session.events_refused = true;
                        if let Some(m) = session.manager.as_mut() {
                            m.handle_store_refused(now);
                        }
                        continue;
                    }
                    // Only steps stored now: the store keeps one copy of an event.
                    let fresh: Vec<AgentEvent> = batch
                        .iter()
                        .filter(|e| !self.manager.events.contains_key(&(computer, e.seq)))
                        .cloned()
                        .collect();
                    let steps = crate::manager::agent_port::clock_steps(&fresh);
                    for event in batch {
                        let key = (computer, event.seq);
                        match self.manager.events.get(&key) {
                            Some(stored) if *stored != event => {
                                let what = format!("event {} stored twice, differently", event.seq);
                                self.oracle.violations.push(what);
                            }
                            Some(_) => {}
                            None => {
                                self.manager.events.insert(key, event);
                            }
                        }
                    }
                    for (change_ms, seen) in steps {
                        self.trace(Some(computer), || format!("event 5004: {change_ms} ms"));
                        self.manager
                            .monitor
                            .handle_clock_event(computer, change_ms, seen);
                    }
                    if let Some(m) = self.sessions.get_mut(&sid).and_then(|s| s.manager.as_mut()) {
                        m.handle_committed(now);
                    }
                    self.decide();
                }
                ManagerOutput::Activate(_) => {}
                ManagerOutput::Close(summary) => {
                    session.manager = None;
                    let dialed = session.dialed;
                    let (status_at, refused) = (session.status_at, session.events_refused);
                    // Every event the agent held when it sent its status is stored now.
                    let reports_stored = summary.status.as_ref().is_some_and(|s| {
                        s.spool.first > s.spool.last || s.spool.last <= summary.last_seq
                    });
                    let waited = Duration::from_millis(session.waited_ms);
                    let record = self.manager.recorded.entry(computer).or_default();
                    record.last_seq = record.last_seq.max(summary.last_seq);
                    let started_with = summary.status.as_ref().and_then(|s| s.fingerprint);
                    let config_applied =
                        summary.applied.is_some() && summary.applied != started_with;
                    if let Some(status) = &summary.status {
                        record.applied = summary.applied;
                        record.listens = status.listen_port.is_some();
                    }
                    let listens = record.listens;
                    self.trace(Some(computer), || {
                        format!(
                            "session closed at the manager (dialed {dialed}, waited {waited:?}, \
                             events refused {refused}, stored {}): {:?} status {:?}",
                            summary.events_stored,
                            summary.result,
                            summary.status.as_ref().map(|s| s.wall_clock)
                        )
                    });
                    if summary.purpose == Some(Purpose::Goodbye) {
                        let clock = summary.status.as_ref().map(|s| s.wall_clock);
                        self.manager.monitor.handle_goodbye(now, computer, clock);
                        self.oracle
                            .heard(computer, self.now, status_at, reports_stored);
                    } else if let Some(status) = &summary.status {
                        self.manager.monitor.note_wait(now, waited);
                        self.oracle
                            .manager_wait(self.now, waited.as_millis() as u64);
                        self.manager.monitor.handle_heartbeat(
                            now,
                            computer,
                            Some(status.wall_clock),
                        );
                        self.oracle
                            .heard(computer, self.now, status_at, reports_stored);
                    } else {
                        self.manager.monitor.handle_left(now, computer);
                    }
                    self.oracle.session_ended(computer, self.now);
                    if dialed {
                        self.manager.dials.handle_done(computer);
                        match &summary.result {
                            Ok(()) => self.dial_succeeded(computer),
                            Err(e) => self.dial_failed(computer, format!("session: {e}")),
                        }
                    }
                    self.manager
                        .dials
                        .session_ended(computer, dialed, config_applied, listens);
                    self.decide();
                    self.close_towards_agent(sid);
                    self.reap(sid);
                    self.start_dials();
                    return;
                }
            }
        }
    }

    fn send_to_agent(&mut self, sid: u64, msg: ManagerMsg) {
        let Some(computer) = self.sessions.get(&sid).map(|s| s.computer) else {
            return;
        };
        if self.sessions.get(&sid).is_some_and(|s| s.broken) || self.lost(computer) {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.broken = true;
            }
            return;
        }
        let latency = self.latency(computer);
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let when = (self.now + latency).max(s.to_agent_at);
        s.to_agent_at = when;
        self.schedule(when, Ev::ToAgent(sid, msg));
    }

    fn close_towards_agent(&mut self, sid: u64) {
        if let Some(s) = self.sessions.get(&sid)
            && s.agent.is_some()
            && !s.broken
        {
            let when = s.to_agent_at.max(self.now) + 1;
            self.schedule(when, Ev::ClosedAtAgent(sid));
        }
    }

    fn close_towards_manager(&mut self, sid: u64) {
        if let Some(s) = self.sessions.get(&sid)
            && s.manager.is_some()
            && !s.broken
        {
            let when = s.to_manager_at.max(self.now) + 1;
            self.schedule(when, Ev::ClosedAtManager(sid));
        }
    }

    /// Forgets a session both of whose sides are over.
    fn reap(&mut self, sid: u64) {
        if self
            .sessions
            .get(&sid)
            .is_some_and(|s| s.agent.is_none() && s.manager.is_none())
        {
            self.sessions.remove(&sid);
        }
    }

    fn start_dials(&mut self) {
        if !self.manager_running() {
            return;
        }
        while let Some((computer, due)) = self.manager.dials.poll_dial(at(self.now)) {
            self.dial(computer, due.as_millis());
        }
    }

    /// The manager dials an agent's listener.
    fn dial(&mut self, id: ComputerId, due: u64) {
        let generation = self.manager.generation;
        let now_ms = self.now;
        let Some(agent) = self.agents.get_mut(&id) else {
            return;
        };
        let partitioned = self
            .partitioned_until
            .get(&id)
            .is_some_and(|u| *u > self.now);
        let failure = match agent.life {
            _ if partitioned => Some((CONNECT_TIMEOUT_MS, "connect timed out")),
            Life::Frozen(_) => Some((CONNECT_TIMEOUT_MS, "the TLS handshake timed out")),
            Life::Down => Some((1, "connection refused")),
            Life::Running if !agent.config.direction.agent_listens() => {
                Some((1, "connection refused"))
            }
            Life::Running if agent.blocks_manager() => {
                Some((1, "the agent's firewall rule refused the manager"))
            }
            Life::Running => None,
        };
        if let Some((after, reason)) = failure {
            let when = self.now + after;
            self.schedule(when, Ev::DialFailed(id, generation, reason.into()));
            return;
        }
        let stepped = watch_clock(agent, now_ms);
        let status = status(agent, now_ms);
        if let Some(change) = stepped {
            self.trace(Some(id), || {
                format!("the agent saw its clock step {change} ms")
            });
        }
        self.oracle.agent_looked(id);
        let now = at(self.now);
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "sim".into(),
            purpose: Purpose::Heartbeat,
        };
        let agent_session = AgentSession::heartbeat(now, hello, status, STEP_TIMEOUT);
        let manager_session = ManagerSession::new(now, self.params(id));
        self.manager.monitor.handle_arrival(now, id);
        self.oracle.session_began(id, self.now);
        let sid = self.new_session(id, true, Some(agent_session), Some(manager_session));
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.waited_ms = self.now.saturating_sub(due);
        }
        self.drive_agent(sid);
        self.drive_manager(sid);
    }

    fn dial_failed(&mut self, id: ComputerId, reason: String) {
        self.manager.dials.handle_done(id);
        self.manager.dials.dial_result(id, false);
        self.manager.monitor.handle_dial_failed(id, reason);
        self.decide();
        self.start_dials();
    }

    fn dial_succeeded(&mut self, id: ComputerId) {
        self.manager.dials.dial_result(id, true);
        self.manager.monitor.handle_dial_succeeded(id);
    }

    fn active(&self, id: ComputerId, kind: AlertKind) -> Option<usize> {
        self.manager
            .alerts
            .iter()
            .position(|a| a.computer == id && a.kind == kind && a.is_active())
    }

    /// Carries out the monitor's decisions on the alert records, as `verdicts/writes.rs` does.
    fn decide(&mut self) {
        let wall = WallMs(WALL0 + self.now);
        while let Some(decision) = self.manager.monitor.poll_decision() {
            let who = match &decision {
                Decision::State { computer, .. }
                | Decision::RaiseOffline { computer, .. }
                | Decision::ClockChanged { computer, .. }
                | Decision::RaiseUnreachable { computer, .. }
                | Decision::ClearOffline { computer }
                | Decision::WithdrawOffline { computer, .. }
                | Decision::ClearUnreachable { computer } => *computer,
            };
            let delay = self.manager.monitor.manager_delay();
            self.trace(Some(who), || {
                format!("decision {decision:?} (delay {delay:?})")
            });
            match decision {
                Decision::State { .. } => {}
                Decision::RaiseOffline {
                    computer,
                    missed,
                    reason,
                } => {
                    self.oracle.offline_raised(computer, self.now);
                    let message = catalogue::offline_message(missed, &reason, None);
                    self.raise(computer, AlertKind::ComputerOffline, message, wall);
                }
                Decision::ClockChanged {
                    computer,
                    change_ms,
                    limit,
                    seen_by,
                } => {
                    self.oracle.clock_raised(computer, self.now);
                    let message =
                        catalogue::clock_changed_message(change_ms, limit, seen_by.words());
                    self.raise(computer, AlertKind::ClockChanged, message, wall);
                }
                Decision::RaiseUnreachable { computer, reason } => {
                    let message = catalogue::unreachable_message(&reason);
                    self.raise(computer, AlertKind::ManagerCannotReachAgent, message, wall);
                }
                Decision::ClearOffline { computer }
                | Decision::WithdrawOffline { computer, .. } => {
                    self.clear(computer, AlertKind::ComputerOffline, wall);
                }
                Decision::ClearUnreachable { computer } => {
                    self.clear(computer, AlertKind::ManagerCannotReachAgent, wall);
                }
            }
        }
    }

    fn raise(&mut self, computer: ComputerId, kind: AlertKind, message: String, wall: WallMs) {
        let next_id = AlertId(self.manager.alerts.len() as u64 + 1);
        let index = self.active(computer, kind);
        let active = index.map(|i| self.manager.alerts[i].clone());
        let alert = lifecycle::raise(active.as_ref(), || next_id, kind, computer, message, wall);
        match index {
            Some(i) => self.manager.alerts[i] = alert,
            None => self.manager.alerts.push(alert),
        }
    }

    fn clear(&mut self, computer: ComputerId, kind: AlertKind, wall: WallMs) {
        if let Some(i) = self.active(computer, kind)
            && let Some(cleared) = lifecycle::clear(&self.manager.alerts[i], wall)
        {
            self.manager.alerts[i] = cleared;
        }
    }

    // ---- chaos ----

    fn chaos(&mut self, action: Action) {
        let now = self.now;
        let who = match &action {
            Action::Stop { computer, .. }
            | Action::Crash { computer, .. }
            | Action::Hang { computer, .. }
            | Action::Suspend { computer, .. }
            | Action::WallStep { computer, .. }
            | Action::BadLink { computer, .. }
            | Action::Settings { computer, .. } => Some(*computer),
            Action::Partition { computers, .. } => computers.first().copied(),
            _ => None,
        };
        self.trace(who, || format!("chaos {action:?}"));
        match action {
            Action::Stop { computer, down_ms } => {
                let Some(agent) = self.agents.get_mut(&computer) else {
                    return;
                };
                if agent.life != Life::Running || agent.stopping.is_some() {
                    return;
                }
                agent.append(events::AGENT_STOPPED.id, now, vec![]);
                let dials = agent.config.direction.agent_dials();
                let own = agent.own;
                if dials && own.is_none() {
                    if let Some(agent) = self.agents.get_mut(&computer) {
                        agent.stopping = Some(now + down_ms);
                    }
                    self.agent_dial(computer, Purpose::Goodbye);
                } else {
                    self.agent_down(computer);
                    let generation = self.agents.get(&computer).map_or(0, |a| a.generation);
                    self.schedule(now + down_ms, Ev::AgentBack(computer, generation));
                }
            }
            Action::Crash { computer, down_ms } => {
                if self
                    .agents
                    .get(&computer)
                    .is_some_and(|a| a.life == Life::Down)
                {
                    return;
                }
                self.agent_down(computer);
                let generation = self.agents.get(&computer).map_or(0, |a| a.generation);
                self.schedule(now + down_ms, Ev::AgentBack(computer, generation));
            }
            Action::Hang { computer, ms } | Action::Suspend { computer, ms } => {
                let Some(agent) = self.agents.get_mut(&computer) else {
                    return;
                };
                if agent.life != Life::Running {
                    return;
                }
                agent.life = Life::Frozen(now + ms);
                let generation = agent.generation;
                self.schedule(now + ms, Ev::Thaw(computer, generation));
            }
            Action::WallStep { computer, delta_ms } => {
                let Some(agent) = self.agents.get_mut(&computer) else {
                    return;
                };
                let large = u128::from(delta_ms.unsigned_abs()) > MAX_CLOCK_CHANGE.as_millis();
                if agent.life == Life::Down || (large && self.oracle.step_pending(computer)) {
                    return;
                }
                agent.wall_offset += delta_ms;
                self.oracle.wall_step(computer, now, large);
            }
            Action::Partition { computers, ms } => {
                for computer in computers {
                    self.partitioned_until.insert(computer, now + ms);
                }
            }
            Action::BadLink {
                computer,
                loss,
                latency_ms,
                ms,
            } => {
                self.links.insert(computer, (loss, latency_ms, now + ms));
            }
            Action::ManagerRestart { down_ms } => {
                if !self.manager.up {
                    return;
                }
                self.manager.up = false;
                self.manager.generation += 1;
                self.oracle.manager_stopped(now);
                for (id, agent) in &self.agents {
                    let reports = agent
                        .spool
                        .iter()
                        .filter(|e| e.id == events::CLOCK_CHANGED.id)
                        .count() as u64;
                    self.oracle.reports_outlived_manager(*id, reports);
                }
                let sids: Vec<u64> = self.sessions.keys().copied().collect();
                for sid in sids {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.manager = None;
                    }
                    self.close_towards_agent(sid);
                    self.reap(sid);
                }
                let generation = self.manager.generation;
                self.schedule(now + down_ms, Ev::ManagerBack(generation));
            }
            Action::ManagerStall { ms } => {
                if !self.manager.up {
                    return;
                }
                let from = self.manager.frozen_until.max(now);
                let to = now + ms;
                if to > from {
                    self.oracle.manager_stalled(from, to);
                    self.manager.frozen_until = to;
                }
            }
            Action::StoreFull { ms } => {
                self.manager.store_full_until = self.manager.store_full_until.max(now + ms);
            }
            Action::Settings { computer, settings } => {
                // The API is the manager's: no change while it is down or frozen.
                if !self.manager_running() {
                    return;
                }
                self.manager_look();
                let t = at(now);
                self.manager.settings.insert(computer, settings);
                let rules = rules(&settings);
                let monitor = &mut self.manager.monitor;
                monitor.set_settings(t, computer, rules, settings.power);
                self.oracle.settings(computer, settings, now);
                let target = self.target(computer);
                self.manager.dials.target(t, &target);
                self.decide();
                self.start_dials();
            }
        }
    }

    /// After the run: everything spooled was delivered once, and nothing is left owed.
    pub fn finish(&mut self) {
        let ids: Vec<ComputerId> = self.agents.keys().copied().collect();
        for id in ids {
            let Some(agent) = self.agents.get(&id) else {
                continue;
            };
            if let Some(first) = agent.spool.first() {
                let what = format!(
                    "computer {id}: {} event(s) still spooled at the end, from {} ({:?}, {:?})",
                    agent.spool.len(),
                    first.seq,
                    agent.life,
                    agent.config.direction
                );
                self.oracle.violations.push(what);
            }
            let missing = (1..=agent.next_seq)
                .filter(|seq| !self.manager.events.contains_key(&(id, *seq)))
                .count();
            if missing > 0 {
                let what = format!("computer {id}: {missing} event(s) never stored");
                self.oracle.violations.push(what);
            }
            let active = self.active(id, AlertKind::ComputerOffline).is_some();
            self.oracle.check(self.now, id, active);
        }
    }
}

/// Before each session in either direction, as the agent's runtime does, so the clock event
/// travels with it.
fn watch_clock(agent: &mut Agent, now: u64) -> Option<i64> {
    let step = agent.watch.observe(at(now), agent.wall(now));
    if let Some(step) = step {
        let fields = vec![
            ("old".into(), step.expected.0.to_string()),
            ("new".into(), step.found.0.to_string()),
            ("change_ms".into(), step.change_ms.to_string()),
        ];
        agent.append(events::CLOCK_CHANGED.id, now, fields);
    }
    step.map(|s| s.change_ms)
}

fn status(agent: &Agent, now: u64) -> AgentStatus {
    AgentStatus {
        wall_clock: agent.wall(now),
        components: vec![],
        counters: vec![],
        fingerprint: Some(agent.fingerprint),
        spool: SpoolRange {
            first: agent.spool.first().map_or(agent.next_seq + 1, |e| e.seq),
            last: agent.next_seq,
        },
        listen_port: agent.config.direction.agent_listens().then_some(4118),
    }
}
