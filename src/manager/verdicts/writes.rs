//! What the monitor's decisions write: statuses and alerts (through `alerts::record`), all at
//! once in group commits, and kept in order to be tried again while the store refuses writes.

use super::effect::Effect;
use super::*;
use crate::alerts::incident::{Action, Incidents, Notify};
use crate::clock::Instant;

/// A decision's write, kept to be tried again while the store refuses writes (a full disk): an
/// alert that could not be stored then is stored once it can be, stamped with the time it was
/// decided.
struct Write {
    /// For the log: "a computer-offline alert for computer 7".
    what: String,
    change: Change,
}

type Change = Arc<dyn Fn(&mut WriteTxn) -> Result<(), StoreError> + Send + Sync>;

/// Writes waiting for the store, oldest first. Bounded: each computer adds a few per state
/// change, so this only fills if a large site flaps for hours on a full disk; the oldest are
/// then dropped, counted in the log.
#[derive(Default)]
pub(super) struct Deferred {
    writes: VecDeque<Write>,
    dropped: u64,
    /// No retry before this: every heartbeat wakes the task, and a store that refuses is
    /// asked about once a second, not a thousand times.
    next_retry: Option<crate::clock::Instant>,
}

const MAX_DEFERRED: usize = 200_000;

/// How often deferred writes are tried again.
pub(super) const RETRY_DEFERRED: Duration = Duration::from_secs(1);

impl Deferred {
    fn push(&mut self, write: Write) {
        if self.writes.is_empty() {
            log::warn!(
                "liveness: the store refuses writes; {} and what follows is recorded once it \
                 takes them again",
                write.what
            );
        }
        if self.writes.len() == MAX_DEFERRED
            && let Some(oldest) = self.writes.pop_front()
        {
            if self.dropped == 0 {
                log::error!(
                    "liveness: {MAX_DEFERRED} writes wait for the store; the oldest ({}) and \
                     further ones are dropped",
                    oldest.what
                );
            }
            self.dropped += 1;
        }
        self.writes.push_back(write);
    }

    /// Whether writes wait for the store (the task then wakes to retry them).
    pub(super) fn waiting(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Tries the waiting writes in their order: the oldest alone (the store may still refuse),
    /// then the rest together.
    pub(super) async fn retry(&mut self, writer: &Writer, now: crate::clock::Instant) {
        if self.next_retry.is_some_and(|at| now < at) {
            return;
        }
        let Some(first) = self.writes.pop_front() else {
            return;
        };
        self.next_retry = Some(now.saturating_add(RETRY_DEFERRED));
        let waited = self.writes.len() + 1;
        if let Some(again) = apply(writer, first).await {
            self.writes.push_front(again);
            return;
        }
        let rest: Vec<Write> = self.writes.drain(..).collect();
        let failed = write_all(writer, rest).await;
        if failed.is_empty() {
            log::warn!(
                "liveness: the store takes writes again; {waited} write(s) that waited are \
                 recorded{}",
                if self.dropped > 0 {
                    format!(", {} older one(s) were dropped", self.dropped)
                } else {
                    String::new()
                }
            );
            self.dropped = 0;
        }
        self.writes.extend(failed);
    }
}

/// Carries out every decision the monitor has, all at once: the writer gets their writes in
/// the order of the decisions and commits them in groups. One at a time, each waited for its
/// own commit: ten thousand computers going offline together (a site's network down) took ten
/// thousand commits, while the heartbeats of everyone else queued behind them. While earlier
/// writes wait for the store, new ones queue behind them, so the order never changes.
///
/// The incident detector sees every decision first (it says what becomes of offline notices),
/// and its own actions (a held notice to send, an incident to open, update or close) follow
/// the decisions' writes, so a notice is held before it is taken.
pub(super) async fn act_all(
    writer: &Writer,
    (now, at): (WallMs, Instant),
    monitor: &mut Monitor,
    incidents: &mut Incidents,
    deferred: &mut Deferred,
) {
    let mut writes: Vec<Write> = std::iter::from_fn(|| monitor.poll_decision())
        .map(|decision| plan(now, at, incidents, decision))
        .collect();
    incidents.handle_timeout(at);
    let window = incidents.rules().window;
    writes.extend(std::iter::from_fn(|| incidents.poll_action()).map(|a| act(now, window, a)));
    if !deferred.writes.is_empty() {
        for write in writes {
            deferred.push(write);
        }
        return;
    }
    for write in write_all(writer, writes).await {
        deferred.push(write);
    }
}

/// Writes them together, returning (in order) those the store refused for now.
async fn write_all(writer: &Writer, mut writes: Vec<Write>) -> Vec<Write> {
    // Most rounds (a heartbeat) decide nothing or one thing.
    if writes.len() <= 1 {
        return match writes.pop() {
            Some(write) => apply(writer, write).await.into_iter().collect(),
            None => Vec::new(),
        };
    }
    // Queued in order, so the writer commits them in order.
    join_all(writes.into_iter().map(|w| apply(writer, w)).collect())
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Writes it; gives it back if the store refuses writes for now.
async fn apply(writer: &Writer, write: Write) -> Option<Write> {
    let change = write.change.clone();
    match writer.write(move |txn| change(txn)).await {
        Ok(()) => None,
        Err(e) if e.is_temporary() => Some(write),
        Err(e) => {
            log::error!("liveness: cannot record {}: {e}", write.what);
            None
        }
    }
}

/// Runs `futures` together until every one is done, polling each pending one in order
/// whenever any can go on. An executor of their own (as here before) yields to the caller's
/// executor every 200 polls, and on a loaded manager every yield waited behind all the
/// sessions: 1,396 decisions took 17 s.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    enum Slot<F: Future> {
        Running(Pin<Box<F>>),
        Done(F::Output),
    }
    let mut slots: Vec<Slot<F>> = futures
        .into_iter()
        .map(|f| Slot::Running(Box::pin(f)))
        .collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut slots {
            if let Slot::Running(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(output) => *slot = Slot::Done(output),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    slots
        .into_iter()
        .filter_map(|slot| match slot {
            Slot::Done(output) => Some(output),
            Slot::Running(_) => None,
        })
        .collect()
}

/// Says a decision in the log and makes its write; `now` stamps the records it writes, `at`
/// is the detector's time.
fn plan(now: WallMs, at: Instant, incidents: &mut Incidents, decision: Decision) -> Write {
    if let Decision::WithdrawOffline { computer, why } = &decision {
        log::info!("computer {computer}'s offline alert: {why}");
    }
    match effect::effect(decision) {
        Effect::Status {
            computer,
            state,
            reason,
        } => {
            log::info!(
                "computer {computer} is now {} ({reason})",
                status(state).name()
            );
            incidents.set_online(computer, state == State::Online);
            set_status(now, computer, status(state), reason)
        }
        Effect::Raise {
            computer,
            kind,
            words,
        } => {
            log::warn!(
                "alert {} for computer {computer}: {}",
                kind.name(),
                words.detail()
            );
            let fate = match kind {
                AlertKind::ComputerOffline => incidents.offline_raised(at, computer),
                _ => Notify::Now,
            };
            raise(now, computer, kind, fate, move |last| words.message(last))
        }
        Effect::Clear {
            computer,
            kind,
            why,
        } => {
            let fate = match kind {
                AlertKind::ComputerOffline => incidents.offline_cleared(at, computer),
                _ => Notify::Now,
            };
            clear(now, computer, kind, why, fate)
        }
    }
}

/// Raises an alert, or updates the active one of the same kind and computer. `message` gets the
/// computer's last heartbeat time.
fn raise(
    now: WallMs,
    computer: ComputerId,
    kind: AlertKind,
    fate: Notify,
    message: impl Fn(Option<WallMs>) -> String + Send + Sync + 'static,
) -> Write {
    Write {
        what: format!("a {} alert for computer {computer}", kind.name()),
        change: Arc::new(move |txn| {
            record::raise(txn, computer, kind, now, fate, &message).map(|_| ())
        }),
    }
}

/// Clears the active alert of `kind` for `computer`, saying `why` in its history.
fn clear(now: WallMs, computer: ComputerId, kind: AlertKind, why: String, fate: Notify) -> Write {
    Write {
        what: format!(
            "the clearing of computer {computer}'s {} alert",
            kind.name()
        ),
        change: Arc::new(move |txn| {
            record::clear(txn, computer, kind, now, &why, fate).map(|_| ())
        }),
    }
}

/// The write of an incident detector's action.
fn act(now: WallMs, window: Duration, action: Action) -> Write {
    match action {
        Action::Release(computer) => Write {
            what: format!("the held offline notice of computer {computer}"),
            change: Arc::new(move |txn| record::release(txn, computer).map(|_| ())),
        },
        Action::Incident {
            policy,
            computers,
            absorbed,
            opened,
        } => {
            if opened {
                log::warn!(
                    "site incident: {} computers of policy {policy} went offline together; \
                     one notice for all of them",
                    computers.len()
                );
            }
            Write {
                what: format!("the site incident of policy {policy}"),
                change: Arc::new(move |txn| {
                    record::raise_incident(txn, policy, &computers, &absorbed, window, now)
                        .map(|_| ())
                }),
            }
        }
        Action::Close {
            policy,
            computers,
            still_offline,
        } => {
            log::info!(
                "site incident of policy {policy} is over: {} of {} computers are back",
                computers.len() - still_offline.len().min(computers.len()),
                computers.len()
            );
            Write {
                what: format!("the end of the site incident of policy {policy}"),
                change: Arc::new(move |txn| {
                    record::clear_incident(txn, policy, computers.len(), &still_offline, now)
                        .map(|_| ())
                }),
            }
        }
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

fn set_status(now: WallMs, computer: ComputerId, status: Status, reason: String) -> Write {
    Write {
        what: format!("the status {} of computer {computer}", status.name()),
        change: Arc::new(move |txn| {
            if let Some(mut record) = txn.computer(computer)?
                && record.status != status
            {
                let detail = format!("{} -> {}: {reason}", record.status.name(), status.name());
                record.status = status;
                txn.put_computer(&record)?;
                txn.add_history(&HistoryEntry {
                    computer,
                    at: now,
                    what: "status".into(),
                    detail,
                })?;
            }
            Ok(())
        }),
    }
}
