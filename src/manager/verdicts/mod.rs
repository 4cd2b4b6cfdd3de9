//! The verdicts task: owns the sans-io `liveness::Monitor`, feeds it what the agent port, the
//! dialer and the API report and the time, and writes the statuses and alerts it decides
//! (`writes.rs`). One task owns the state and receives events over a channel, so no lock guards
//! a decision.

use crate::alerts::incident::{IncidentRules, Incidents};
use crate::alerts::record;
use crate::clock::{Clock, WallMs};
use crate::handles::{LivenessEvent, LivenessEvents};
use crate::liveness::{Decision, FROZEN_AFTER, LOOK_EVERY, Monitor, PowerState, Rules, State};
use crate::metrics::Metrics;
use crate::model::{Alert, AlertKind, Computer, ComputerId, HistoryEntry, PolicyId, Status};
use crate::policy::{self, PolicyTree};
use crate::store::{NotifyReads, Reads, Store, StoreError, WriteTxn, Writer};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// Marks every activated computer `unknown` and returns their rules. Run at start, before the
/// listeners open, so nobody ever reads a status left over from before the manager's downtime.
pub fn prepare(store: &Store, now: WallMs) -> Result<Tracked, StoreError> {
    let rules = all_rules(store)?;
    let mut txn = store.write()?;
    for id in rules.0.keys() {
        if let Some(mut record) = txn.computer(*id)?
            && record.status != Status::Unknown
        {
            let detail = format!(
                "{} -> unknown: the manager started; waiting to hear from it",
                record.status.name()
            );
            record.status = Status::Unknown;
            txn.put_computer(&record)?;
            txn.add_history(&HistoryEntry {
                computer: *id,
                at: now,
                what: "status".into(),
                detail,
            })?;
        }
    }
    txn.commit()?;
    Ok(rules)
}

/// Events taken from the queue before the decisions they lead to are written: enough that a
/// burst (a manager start, where every computer's first heartbeat is a status change) is
/// written in a few group commits instead of one commit per heartbeat.
const MAX_EVENTS_PER_ROUND: usize = 10_000;

/// Runs until dropped. Every computer in `initial` gets its full allowance from now: the
/// manager's own downtime is nobody's missed heartbeat.
#[allow(clippy::too_many_arguments)] // the task's inputs, each one of its own kind
pub async fn run(
    store: Arc<Store>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    (initial, parents): Tracked,
    incident_rules: IncidentRules,
    events: LivenessEvents,
    metrics: Arc<Metrics>,
) {
    let mut monitor = Monitor::new();
    let mut incidents = Incidents::new(incident_rules);
    incidents.set_tree(parents);
    let now = clock.now();
    for (id, (rules, power, policy)) in initial {
        monitor.track(now, id, rules);
        monitor.set_power(now, id, power);
        incidents.track(id, policy);
    }
    // Offline alerts raised before the restart must still clear at the next heartbeat, and
    // the incidents and held notices carry on.
    let active = {
        let store = store.clone();
        smol::unblock(move || {
            let txn = store.read()?;
            Ok::<_, StoreError>((txn.alerts()?, txn.held_notices()?))
        })
        .await
    };
    match active {
        Ok((alerts, held)) => {
            let active: Vec<&Alert> = alerts.iter().filter(|a| a.is_active()).collect();
            // A set: an incident's members are looked up one by one.
            let offline: std::collections::HashSet<ComputerId> = active
                .iter()
                .filter(|a| a.kind == AlertKind::ComputerOffline)
                .map(|a| a.computer)
                .collect();
            for alert in &active {
                match alert.kind {
                    AlertKind::ComputerOffline => monitor.mark_offline_alerted(alert.computer),
                    AlertKind::ManagerCannotReachAgent => {
                        monitor.mark_unreachable_alerted(alert.computer);
                    }
                    AlertKind::SiteIncident => {
                        if let Some(policy) = alert.about.as_deref().and_then(|a| a.parse().ok()) {
                            let members = &alert.computers;
                            let is_offline = |c| offline.contains(&c);
                            incidents.restore_incident(now, PolicyId(policy), members, is_offline);
                        }
                    }
                    // Not the monitor's: the clock's are judged per step, the channels' by their
                    // delivery, the drivers' at each heartbeat from what the agent reports.
                    AlertKind::ClockChanged
                    | AlertKind::NotificationFailed
                    | AlertKind::DriverOffline => {}
                }
            }
            for notice in held {
                incidents.restore_held(now, notice.alert.computer);
            }
        }
        Err(e) => log::error!("liveness: cannot read the active alerts: {e}"),
    }
    let mut behind = false;
    let mut deferred = Deferred::default();
    loop {
        // At least a look every LOOK_EVERY: waking much later than asked can then only mean
        // the manager did not run (a paused VM, a swap storm), and nobody's misses count it.
        let slept_at = clock.now();
        let mut due = slept_at.saturating_add(LOOK_EVERY);
        for deadline in [monitor.poll_timeout(), incidents.poll_timeout()]
            .into_iter()
            .flatten()
        {
            due = due.min(deadline);
        }
        if deferred.waiting() {
            due = due.min(slept_at.saturating_add(RETRY_DEFERRED));
        }
        let tick = clock.sleep_until(Some(due));
        let event = smol::future::or(async { Some(events.recv().await) }, async {
            tick.await;
            None
        })
        .await;
        let mut now = clock.now();
        // A deadline already past when it went to sleep (events still queued) is no lateness.
        if now > due.max(slept_at).saturating_add(FROZEN_AFTER) {
            log::warn!(
                "liveness: the manager did not run for {:.1} s (a paused VM or an overloaded \
                 host?); that time counts towards no computer's missed heartbeats",
                now.saturating_since(slept_at).as_secs_f64()
            );
            monitor.handle_frozen(slept_at, now);
        }
        // Whatever else is already queued, before any deadline is judged: a heartbeat waiting
        // here is not a missed one. (Bounded, so a flood still lets the decisions out.)
        let mut batch = Vec::new();
        match event {
            None => {}
            Some(Err(_)) => return,
            Some(Ok(first)) => {
                batch.push(first);
                while batch.len() < MAX_EVENTS_PER_ROUND {
                    let Ok(next) = events.try_recv() else {
                        break;
                    };
                    batch.push(next);
                }
            }
        }
        // When the last event taken was sent: everything sent before it has been taken.
        let taken_up_to = batch.last().map(|(sent, _)| *sent);
        // The activated computers' rules in one read: one read each, on the blocking pool that
        // the activations' own commits keep busy, let a fleet's onboarding outrun this task.
        let activated = activated_rules(&store, &batch).await;
        for (_, event) in batch {
            now = clock.now();
            handle(&mut monitor, &mut incidents, &store, &activated, now, event).await;
        }
        // After events too, not only when the timer wins: `or` takes a waiting event first, so
        // while heartbeats kept coming the deadlines of computers gone quiet were never looked at.
        // With events still queued (a fleet activating keeps the task busy: each activation is a
        // store read), deadlines are judged only as far as every event sent before was taken:
        // a heartbeat in the queue is no missed one.
        let judged = match taken_up_to {
            Some(sent) if !events.is_empty() => sent.min(now),
            _ => now,
        };
        monitor.handle_timeout(judged);
        behind = report_delay(behind, monitor.manager_delay());
        metrics.heartbeat_delay(monitor.manager_delay());
        deferred.retry(&writer, now).await;
        let times = (clock.wall(), now);
        act_all(&writer, times, &mut monitor, &mut incidents, &mut deferred).await;
    }
}

/// The manager's own delay is worth a warning once it could hide or fake an offline computer;
/// said once when it starts and once when it ends, with hysteresis so a delay hovering at the
/// limit is not a line a second. Returns whether the manager is now behind.
fn report_delay(behind: bool, delay: Duration) -> bool {
    if !behind && delay >= BEHIND {
        log::warn!(
            "heartbeats wait {:.1} s inside the manager before they are recorded: it is \
             overloaded; offline verdicts wait as long, so that no computer is blamed for the \
             manager's delay",
            delay.as_secs_f64()
        );
        return true;
    }
    if behind && delay < CAUGHT_UP {
        log::info!("the manager has caught up: heartbeats are recorded without delay again");
        return false;
    }
    behind
}

/// See [`report_delay`].
const BEHIND: Duration = Duration::from_secs(1);
const CAUGHT_UP: Duration = Duration::from_millis(250);

/// The rules of the computers activated in `batch`, read together (`None`: gone again).
async fn activated_rules(
    store: &Arc<Store>,
    batch: &[(crate::clock::Instant, LivenessEvent)],
) -> HashMap<ComputerId, Option<Watched>> {
    let ids: Vec<ComputerId> = batch
        .iter()
        .filter_map(|(_, e)| match e {
            LivenessEvent::Activated(id) => Some(*id),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return HashMap::new();
    }
    let store = store.clone();
    smol::unblock(move || {
        let read = |ids: &[ComputerId]| {
            let txn = store.read()?;
            let tree = PolicyTree::new(txn.policies()?);
            let mut rules = HashMap::new();
            for id in ids {
                rules.insert(*id, rules_in(&txn, &tree, *id)?);
            }
            Ok::<_, StoreError>(rules)
        };
        read(&ids).unwrap_or_else(|e| {
            // One at a time, so one that cannot be read costs only its own watch.
            log::error!("liveness: cannot read the settings of activated computers: {e}");
            let mut rules = HashMap::new();
            for id in &ids {
                match read(std::slice::from_ref(id)) {
                    Ok(one) => rules.extend(one),
                    Err(e) => log::error!("liveness: cannot read computer {id}'s settings: {e}"),
                }
            }
            rules
        })
    })
    .await
}

async fn handle(
    monitor: &mut Monitor,
    incidents: &mut Incidents,
    store: &Arc<Store>,
    activated: &HashMap<ComputerId, Option<Watched>>,
    now: crate::clock::Instant,
    event: LivenessEvent,
) {
    match event {
        LivenessEvent::Heartbeat {
            computer,
            agent_clock,
            waited,
        } => {
            monitor.note_wait(now, waited);
            monitor.handle_heartbeat(now, computer, agent_clock);
        }
        LivenessEvent::Goodbye {
            computer,
            agent_clock,
        } => monitor.handle_goodbye(now, computer, agent_clock),
        LivenessEvent::Deleted(computer) => {
            monitor.forget(computer);
            incidents.forget(computer);
        }
        LivenessEvent::OfflineDismissed(computer) => monitor.rearm_offline(computer),
        LivenessEvent::IncidentDismissed(policy) => incidents.dismissed(policy),
        LivenessEvent::ClockStep {
            computer,
            change_ms,
            at,
        } => monitor.handle_clock_event(computer, change_ms, at),
        LivenessEvent::DialFailed { computer, reason } => {
            monitor.handle_dial_failed(computer, reason);
        }
        LivenessEvent::DialSucceeded(computer) => monitor.handle_dial_succeeded(computer),
        LivenessEvent::Arrived(computer) => monitor.handle_arrival(now, computer),
        LivenessEvent::Left(computer) => monitor.handle_left(now, computer),
        // One computer's rules, not everyone's: reading all of them for each activation
        // made a fleet's onboarding quadratic (and heartbeats waited behind it in this task).
        LivenessEvent::Activated(id) => match activated.get(&id) {
            Some(Some(watched)) => watch(monitor, incidents, now, id, *watched),
            // Deleted again before this was read: nothing to watch.
            Some(None) => {}
            None => log::error!("liveness: computer {id}'s settings were not read"),
        },
        LivenessEvent::SettingsChanged => {
            let store = store.clone();
            match smol::unblock(move || all_rules(&store)).await {
                Ok((rules, parents)) => {
                    incidents.set_tree(parents);
                    for (id, watched) in rules {
                        watch(monitor, incidents, now, id, watched);
                    }
                }
                Err(e) => log::error!("liveness: cannot reload settings: {e}"),
            }
        }
    }
}

/// A computer's current rules and power state: new ones for one watched already, or the start
/// of its watch from now (just activated).
fn watch(
    monitor: &mut Monitor,
    incidents: &mut Incidents,
    now: crate::clock::Instant,
    id: ComputerId,
    (rules, power, policy): Watched,
) {
    incidents.track(id, policy);
    if monitor.state(id).is_some() {
        monitor.set_settings(now, id, rules, power);
    } else {
        monitor.track_activated(now, id, rules);
        monitor.set_power(now, id, power);
    }
}

/// What the monitor needs of a computer: its rules and, for a VM, its power state; and the
/// incident detector, its policy.
type Watched = (Rules, PowerState, PolicyId);

/// Every activated computer's, and the policy tree (each policy's parent).
pub type Tracked = (
    HashMap<ComputerId, Watched>,
    HashMap<PolicyId, Option<PolicyId>>,
);

/// The liveness rules of every activated computer, from the current policy tree.
fn all_rules(store: &Store) -> Result<Tracked, StoreError> {
    let txn = store.read()?;
    let policies = txn.policies()?;
    let parents = policies.iter().map(|p| (p.id, p.parent)).collect();
    let tree = PolicyTree::new(policies);
    let mut rules = HashMap::new();
    for state in txn.agent_states()? {
        if let Some(computer) = txn.computer(state.computer)? {
            rules.insert(computer.id, watched(&tree, &computer));
        }
    }
    Ok((rules, parents))
}

/// The liveness rules of one computer, if it exists and has an agent.
fn rules_in(
    txn: &impl Reads,
    tree: &PolicyTree,
    id: ComputerId,
) -> Result<Option<Watched>, StoreError> {
    if txn.agent_state(id)?.is_none() {
        return Ok(None);
    }
    Ok(txn.computer(id)?.map(|computer| watched(tree, &computer)))
}

fn watched(tree: &PolicyTree, computer: &Computer) -> Watched {
    let effective = policy::resolve_computer(tree, computer);
    (
        Rules::new(&effective, computer.kind),
        computer.vm_power_state,
        computer.policy,
    )
}

pub(crate) mod effect;
#[cfg(test)]
mod tests;
mod writes;

use writes::{Deferred, RETRY_DEFERRED, act_all};
