//! What a seed plays: a small site (its computers and their settings) and a timetable of what
//! goes wrong, drawn from the seed. The timetable only says what happens to the world; the
//! oracle learns the same facts as they happen and judges the manager by them.

use super::rng::Rng;
use crate::model::{ComputerId, Direction, MissedLimit, PowerState};
use std::time::Duration;

/// A computer's settings as the manager's policy gives them (and the agent learns them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub missed: MissedLimit,
    pub direction: Direction,
    pub is_vm: bool,
    pub power: PowerState,
    pub offline_errors_for_inactive_vms: bool,
    /// The agent-port rule refuses the manager's address. Never on a manager-initiated
    /// computer: the API refuses that change (it would lock the computer out).
    pub blocks_manager: bool,
}

#[derive(Clone, Debug)]
pub enum Action {
    /// A clean stop (the agent says goodbye), back after `down_ms`.
    Stop { computer: ComputerId, down_ms: u64 },
    /// The process dies without a word, back after `down_ms`.
    Crash { computer: ComputerId, down_ms: u64 },
    /// The process stops answering (stuck on a lock, swapped out) for `ms`.
    Hang { computer: ComputerId, ms: u64 },
    /// The machine sleeps for `ms`: nothing runs, the wall clock and boot time go on.
    Suspend { computer: ComputerId, ms: u64 },
    /// Someone sets the computer's wall clock `delta_ms` away.
    WallStep { computer: ComputerId, delta_ms: i64 },
    /// These computers and the manager cannot reach each other for `ms`.
    Partition { computers: Vec<ComputerId>, ms: u64 },
    /// Frames on the computer's link are lost with probability `loss` (the connection then
    /// hangs until a timeout), or take `latency_ms` more, for `ms`.
    BadLink {
        computer: ComputerId,
        loss: f64,
        latency_ms: u64,
        ms: u64,
    },
    /// The manager's process ends and starts again after `down_ms`.
    ManagerRestart { down_ms: u64 },
    /// The manager's process is frozen (a paused VM, a swap storm) for `ms`.
    ManagerStall { ms: u64 },
    /// The manager's disk is full for `ms`: it refuses agents' events, not heartbeats.
    StoreFull { ms: u64 },
    /// An administrator changes the computer's settings.
    Settings {
        computer: ComputerId,
        settings: Settings,
    },
}

pub struct Scenario {
    pub computers: Vec<(ComputerId, Settings)>,
    /// Sorted by time (ms of virtual time).
    pub actions: Vec<(u64, Action)>,
    /// A quiet tail after `chaos_end`, long enough for every agent to deliver everything.
    pub end: u64,
}

const INTERVALS: [u64; 4] = [10, 20, 30, 60];

/// A site and its chaos for `seed`, about `minutes` of it.
pub fn scenario(seed: u64, minutes: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    let count = rng.between(2, 10);
    let computers: Vec<(ComputerId, Settings)> = (1..=count)
        .map(|i| {
            let is_vm = rng.chance(0.3);
            let direction = *rng.pick(&Direction::ALL);
            let settings = Settings {
                interval: Duration::from_secs(*rng.pick(&INTERVALS)),
                missed: missed(&mut rng),
                direction,
                is_vm,
                power: PowerState::Running,
                offline_errors_for_inactive_vms: rng.chance(0.5),
                blocks_manager: false,
            };
            (ComputerId(i), settings)
        })
        .collect();
    let chaos_end = minutes * 60_000;
    let mut actions = Vec::new();
    let mut current: Vec<Settings> = computers.iter().map(|(_, s)| *s).collect();
    // Large clock steps at most one per computer in a quarter of an hour: two between the same
    // pair of heartbeats could cancel out, and then nobody could see them.
    let mut last_large_step = vec![0u64; computers.len()];
    let events = rng.between(minutes / 2, minutes * 2);
    for _ in 0..events {
        let at = rng.between(5_000, chaos_end.saturating_sub(60_000).max(5_001));
        let room = chaos_end - at;
        let index = usize::try_from(rng.below(count)).unwrap_or(0);
        let computer = computers[index].0;
        let action = match rng.below(100) {
            0..10 => Action::Stop {
                computer,
                down_ms: rng.between(1_000, room.min(1_800_000)),
            },
            10..20 => Action::Crash {
                computer,
                down_ms: rng.between(1_000, room.min(1_800_000)),
            },
            20..27 => Action::Hang {
                computer,
                ms: rng.between(500, room.min(120_000)),
            },
            27..35 => Action::Suspend {
                computer,
                ms: rng.between(60_000, room.min(3 * 3_600_000)),
            },
            35..47 => {
                let large = at.saturating_sub(last_large_step[index]) > 900_000 && rng.chance(0.6);
                let magnitude = if large {
                    last_large_step[index] = at;
                    rng.between(20 * 60_000, 3 * 3_600_000)
                } else {
                    rng.between(0, 1_000)
                };
                let delta = i64::try_from(magnitude).unwrap_or(0);
                Action::WallStep {
                    computer,
                    delta_ms: if rng.chance(0.5) { delta } else { -delta },
                }
            }
            47..53 => {
                let members = computers
                    .iter()
                    .filter(|_| rng.chance(0.4))
                    .map(|(id, _)| *id)
                    .collect();
                Action::Partition {
                    computers: members,
                    ms: rng.between(1_000, room.min(600_000)),
                }
            }
            53..62 => Action::BadLink {
                computer,
                loss: if rng.chance(0.5) { 0.2 } else { 0.0 },
                latency_ms: rng.between(0, 3_000),
                ms: rng.between(1_000, room.min(600_000)),
            },
            62..66 => Action::ManagerRestart {
                down_ms: rng.between(100, 120_000.min(room)),
            },
            // Short freezes (a busy host) or long ones (a paused VM), not the 1.5-3 s between that
            // the manager can tell from neither: see `Oracle::manager_stalled`.
            66..71 => Action::ManagerStall {
                ms: if rng.chance(0.3) {
                    rng.between(200, 1_500)
                } else {
                    rng.between(3_000, 30_000)
                },
            },
            71..74 => Action::StoreFull {
                ms: rng.between(1_000, room.min(300_000)),
            },
            _ => {
                let settings = change(&mut rng, current[index]);
                current[index] = settings;
                Action::Settings { computer, settings }
            }
        };
        actions.push((at, action));
    }
    actions.sort_by_key(|(at, _)| *at);
    let longest = current
        .iter()
        .map(|s| s.interval.as_millis() as u64)
        .max()
        .unwrap_or(60_000);
    Scenario {
        computers,
        actions,
        // Past the longest allowance (and a dial back from a manager-initiated silence), so
        // everything spooled is delivered and every alert's reason has ended.
        end: chaos_end + 12 * longest.max(60_000),
    }
}

fn missed(rng: &mut Rng) -> MissedLimit {
    if rng.chance(0.15) {
        MissedLimit::Unlimited
    } else {
        MissedLimit::Count(u16::try_from(rng.below(4)).unwrap_or(0))
    }
}

/// One setting changed, as an administrator would change it.
fn change(rng: &mut Rng, mut s: Settings) -> Settings {
    match rng.below(6) {
        0 => s.interval = Duration::from_secs(*rng.pick(&INTERVALS)),
        1 => s.missed = missed(rng),
        2 => s.direction = *rng.pick(&Direction::ALL),
        3 if s.is_vm => {
            s.power = match s.power {
                PowerState::Running => PowerState::Stopped,
                PowerState::Stopped => PowerState::Running,
            };
        }
        4 => s.offline_errors_for_inactive_vms = !s.offline_errors_for_inactive_vms,
        _ => s.blocks_manager = !s.blocks_manager,
    }
    if s.direction == Direction::ManagerInitiated {
        s.blocks_manager = false;
    }
    s
}
