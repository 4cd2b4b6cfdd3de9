//! The simulated site: agents (the real `Heartbeats`, `ClockWatch` and `AgentSession`), the
//! manager (the real `ManagerSession`, `liveness::Monitor`, `DialPlan` and alert lifecycle)
//! and the network between them, on one virtual clock. Time moves only from one event or
//! deadline to the next, so an hour of a site takes milliseconds. The glue here stands in for
//! the async shells (`agent/heartbeat.rs`, `manager/agent_port`, `manager/dialer.rs`,
//! `manager/verdicts`) and makes the same calls they make, in the same order.

use super::chaos::{Action, Scenario, Settings};
use super::oracle::{OfflineAlert, Oracle};
use super::rng::Rng;
use crate::agent::clock_watch::ClockWatch;
use crate::agent::schedule::{Heartbeats, Next};
use crate::alerts::AlertKind;
use crate::alerts::lifecycle;
use crate::clock::{Instant, WallMs};
use crate::liveness::{Decision, Monitor, Rules};
use crate::manager::dial_plan::{DialPlan, Target};
use crate::manager::verdicts::effect::{Effect, effect};
use crate::model::{Alert, AlertId, ClockChangeLimit, ComputerId, events};
use crate::policy::{AgentConfig, Fingerprint};
use crate::proto::{
    AgentEvent, AgentMsg, AgentOutput, AgentSession, AgentStatus, EventBatch, Hello, ManagerMsg,
    ManagerMsgV1, ManagerOutput, ManagerSession, Outgoing, PROTOCOL_VERSION, Purpose,
    SessionParams, SpoolRange,
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
    /// The protocol it speaks (see [`protocol_of`]).
    protocol: u16,
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
    /// The protocol its agent spoke in its last session.
    protocol: u16,
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
    incidents: crate::alerts::incident::Incidents,
    notices: incidents::Notices,
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
    ToAgent(u64, Outgoing),
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
        firewall_enabled: false,
        firewall_rules: vec![],
    }
}

/// Every third computer runs an agent deployed before protocol 2, which its manager must keep
/// serving in protocol 1's form. Taken from the id, not the seed, so the draws stay as they were.
fn protocol_of(id: ComputerId) -> u16 {
    if id.0.is_multiple_of(3) {
        1
    } else {
        PROTOCOL_VERSION
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
                incidents: crate::alerts::incident::Incidents::new(incidents::SIM_INCIDENTS),
                notices: incidents::Notices::default(),
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
            let protocol = protocol_of(*id);
            // Activated before the manager's start: the activation answer carried the config.
            let agent = Agent {
                life: Life::Down,
                generation: 0,
                plan: Heartbeats::new(at(0), settings.interval),
                watch: ClockWatch::default(),
                spool: Vec::new(),
                next_seq: 0,
                fingerprint: config.fingerprint_for(protocol),
                config,
                protocol,
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
                    protocol,
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
            consider(later(self.manager.incidents.poll_timeout()));
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
}

mod actions;
mod agents;
mod incidents;
mod manager;

pub use incidents::Told;
mod network;

use agents::{status, watch_clock};
