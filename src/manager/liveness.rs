//! The liveness task: owns the sans-io `liveness::Monitor`, feeds it what the agent port and the
//! API report and the time, and writes the statuses it decides. One task owns the state and
//! receives events over a channel, so no lock guards a decision.

use crate::clock::Clock;
use crate::liveness::{Decision, Monitor, Rules, State};
use crate::model::{ComputerId, Status};
use crate::policy::{self, PolicyTree};
use crate::store::{Reads, Store, StoreError, Writer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the rest of the manager tells the liveness task.
#[derive(Debug, Clone, Copy)]
pub enum LivenessEvent {
    Heartbeat {
        computer: ComputerId,
        clock_offset_ms: Option<i64>,
    },
    Goodbye(ComputerId),
    Activated(ComputerId),
    Deleted(ComputerId),
    /// A policy or computer changed: effective settings may have moved.
    SettingsChanged,
}

/// A cheap handle to send events; sending never blocks a request.
#[derive(Clone, Debug)]
pub struct Liveness {
    events: smol::channel::Sender<LivenessEvent>,
}

impl Liveness {
    pub fn channel() -> (Liveness, smol::channel::Receiver<LivenessEvent>) {
        let (events, receiver) = smol::channel::unbounded();
        (Liveness { events }, receiver)
    }

    pub fn send(&self, event: LivenessEvent) {
        // Only fails once the task is gone, i.e. during shutdown.
        let _ = self.events.try_send(event);
    }
}

/// Marks every activated computer `unknown` and returns their rules. Run at start, before the
/// listeners open, so nobody ever reads a status left over from before the manager's downtime.
pub fn prepare(store: &Store) -> Result<HashMap<ComputerId, Rules>, StoreError> {
    let rules = all_rules(store)?;
    let mut txn = store.write()?;
    for id in rules.keys() {
        if let Some(mut record) = txn.computer(*id)? {
            record.status = Status::Unknown;
            txn.put_computer(&record)?;
        }
    }
    txn.commit()?;
    Ok(rules)
}

/// Runs until dropped. Every computer in `initial` gets its full allowance from now: the
/// manager's own downtime is nobody's missed heartbeat.
pub async fn run(
    store: Arc<Store>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    initial: HashMap<ComputerId, Rules>,
    events: smol::channel::Receiver<LivenessEvent>,
) {
    let mut monitor = Monitor::new();
    let now = clock.now();
    for (id, rules) in initial {
        monitor.track(now, id, rules);
    }
    loop {
        let wait = monitor
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |t| {
                t.saturating_since(clock.now())
            });
        let event = smol::future::or(async { Some(events.recv().await) }, async {
            smol::Timer::after(wait).await;
            None
        })
        .await;
        let now = clock.now();
        match event {
            None => monitor.handle_timeout(now),
            Some(Err(_)) => return,
            Some(Ok(event)) => handle(&mut monitor, &store, now, event).await,
        }
        while let Some(decision) = monitor.poll_decision() {
            act(&writer, decision).await;
        }
    }
}

async fn handle(
    monitor: &mut Monitor,
    store: &Arc<Store>,
    now: crate::clock::Instant,
    event: LivenessEvent,
) {
    match event {
        LivenessEvent::Heartbeat {
            computer,
            clock_offset_ms,
        } => monitor.handle_heartbeat(now, computer, clock_offset_ms),
        LivenessEvent::Goodbye(computer) => monitor.handle_goodbye(now, computer),
        LivenessEvent::Deleted(computer) => monitor.forget(computer),
        LivenessEvent::Activated(_) | LivenessEvent::SettingsChanged => {
            let store = store.clone();
            match smol::unblock(move || all_rules(&store)).await {
                Ok(rules) => {
                    for (id, rules) in rules {
                        if monitor.state(id).is_some() {
                            monitor.set_rules(now, id, rules);
                        } else {
                            monitor.track(now, id, rules);
                        }
                    }
                }
                Err(e) => log::error!("liveness: cannot reload settings: {e}"),
            }
        }
    }
}

async fn act(writer: &Writer, decision: Decision) {
    match decision {
        Decision::State {
            computer,
            state,
            reason,
        } => {
            log::info!(
                "computer {computer} is now {} ({reason})",
                status(state).name()
            );
            set_status(writer, computer, status(state)).await;
        }
        // The alert store and its API come with the rest of the liveness issue; until then the
        // decisions are logged so an administrator tailing the log sees them.
        Decision::RaiseOffline {
            computer,
            missed,
            reason,
        } => {
            log::warn!("alert computer-offline for computer {computer}: {missed} missed ({reason})")
        }
        Decision::ClearOffline { computer } => {
            log::info!("alert computer-offline cleared for computer {computer}")
        }
        Decision::ClockChanged {
            computer,
            change_ms,
            limit,
        } => log::warn!(
            "alert clock-changed for computer {computer}: its clock moved {change_ms} ms between \
             heartbeats (maximum {} ms)",
            limit.as_millis()
        ),
    }
}

fn status(state: State) -> Status {
    match state {
        State::Unknown => Status::Unknown,
        State::Online => Status::Online,
        State::Offline => Status::Offline,
        State::VmStopped => Status::VmStopped,
        State::Stopped => Status::Stopped,
    }
}

async fn set_status(writer: &Writer, computer: ComputerId, status: Status) {
    let result = writer
        .write(move |txn| {
            if let Some(mut record) = txn.computer(computer)?
                && record.status != status
            {
                record.status = status;
                txn.put_computer(&record)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        log::error!("liveness: cannot record the status of computer {computer}: {e}");
    }
}

/// The liveness rules of every activated computer, from the current policy tree.
fn all_rules(store: &Store) -> Result<HashMap<ComputerId, Rules>, StoreError> {
    let txn = store.read()?;
    let tree = PolicyTree::new(txn.policies()?);
    let mut rules = HashMap::new();
    for state in txn.agent_states()? {
        if let Some(computer) = txn.computer(state.computer)? {
            let effective = policy::resolve_computer(&tree, &computer);
            rules.insert(computer.id, Rules::new(&effective, computer.kind));
        }
    }
    Ok(rules)
}
