//! Event retention: deletes the events the manager received longer ago than
//! `--event-retention`, oldest first, so that a site's store stops growing once old events leave
//! as fast as new ones arrive. What is old is decided from the time passed in; the deleting goes
//! through the store writer a batch at a time, each batch one small part of a group commit, so
//! heartbeats never queue behind one long deletion.
//!
//! Age is the manager's wall clock at storing (`received`), the only time that outlives a
//! restart; the agent's own clock, which may be wrong, never decides what is deleted. While the
//! manager runs, the cutoff follows its wall clock but moves forward no faster than its monotonic
//! clock ([`Cutoff`]): a wall clock stepped ahead (a mistyped date, a bad time server) must not
//! delete a year of events at the next pass.

use crate::clock::{Clock, Instant, WallMs, format_utc};
use crate::metrics::Metrics;
use crate::model::format_duration;
use crate::store::{StoreError, Writer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// `picket manager`'s default `--event-retention`: a week, enough to look into last week's
/// incident, with a store whose size a site can plan from its event rate. A site that wants
/// more says so; `unlimited` keeps every event.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// The shortest retention accepted: anything shorter is more likely a typo (`7` meant as days)
/// than a wish to delete events as they arrive.
pub const MIN_RETENTION: Duration = Duration::from_secs(3_600);

/// How often the manager deletes what has aged past retention: each pass has about a minute of
/// a site's events to delete.
const PASS_EVERY: Duration = Duration::from_secs(60);

/// Events deleted by one writer job, at least (whole stored batches go: up to one session's
/// events more). A computer's events sit together, so this is a commit of up to this many pages
/// that the heartbeats in the same group wait for: a few milliseconds.
const BATCH: usize = 500;

/// Events received before this time are past retention `keep` at `now`.
pub fn cutoff(now: WallMs, keep: Duration) -> WallMs {
    let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    WallMs(now.0.saturating_sub(keep_ms))
}

/// The cutoff of each pass, from the wall clock, but never more than the monotonic time since
/// the previous pass ahead of the previous cutoff (sans-io: the caller tells both times).
#[derive(Debug)]
pub struct Cutoff {
    keep: Duration,
    last: Option<(WallMs, Instant)>,
}

/// What [`Cutoff::next`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Delete what was received before this time.
    Delete(WallMs),
    /// The wall clock ran ahead by this much more than the monotonic clock: delete only what
    /// was received before this time, which follows the monotonic clock.
    HeldBack { before: WallMs, ahead: Duration },
}

impl Decision {
    pub fn before(self) -> WallMs {
        match self {
            Decision::Delete(before) | Decision::HeldBack { before, .. } => before,
        }
    }
}

impl Cutoff {
    pub fn new(keep: Duration) -> Self {
        Cutoff { keep, last: None }
    }

    /// The cutoff for a pass at wall time `wall` and monotonic time `now`.
    pub fn next(&mut self, wall: WallMs, now: Instant) -> Decision {
        let wanted = cutoff(wall, self.keep);
        let decision = match self.last {
            Some((last, at)) => {
                // A minute's slack: a pass that runs late is not a clock that jumped.
                let counted = now.saturating_since(at).saturating_add(PASS_EVERY);
                let counted_ms = u64::try_from(counted.as_millis()).unwrap_or(u64::MAX);
                let most = WallMs(last.0.saturating_add(counted_ms));
                if wanted > most {
                    Decision::HeldBack {
                        before: most,
                        ahead: Duration::from_millis(wanted.0 - most.0),
                    }
                } else {
                    Decision::Delete(wanted)
                }
            }
            None => Decision::Delete(wanted),
        };
        self.last = Some((decision.before(), now));
        decision
    }
}

/// Deletes every event received before `cutoff`, about `batch` at a time, and returns how many
/// it deleted. Each batch is counted in `metrics` as soon as it is durable.
pub async fn delete_before(
    writer: &Writer,
    metrics: &Metrics,
    cutoff: WallMs,
    batch: usize,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        // Stored, not added: the writer may run a change twice (once in a group that failed,
        // then alone), and only the run that committed counts.
        let finished = Arc::new(AtomicBool::new(false));
        let deleted = Arc::new(AtomicUsize::new(0));
        let (finished_out, deleted_out) = (finished.clone(), deleted.clone());
        writer
            .write(move |txn| {
                let done = txn.delete_events_received_before(cutoff, batch)?;
                finished_out.store(done.done, Ordering::Relaxed);
                deleted_out.store(done.events, Ordering::Relaxed);
                Ok(())
            })
            .await?;
        let n = u64::try_from(deleted.load(Ordering::Relaxed)).unwrap_or(u64::MAX);
        metrics.events_deleted(n);
        total = total.saturating_add(n);
        if finished.load(Ordering::Relaxed) {
            return Ok(total);
        }
    }
}

/// The retention task: a pass at start and then every [`PASS_EVERY`], until cancelled.
pub async fn run(writer: Writer, clock: Arc<dyn Clock>, keep: Duration, metrics: Arc<Metrics>) {
    let keep_text = format_duration(keep);
    log::info!("events are kept for {keep_text} (--event-retention)");
    let mut cutoffs = Cutoff::new(keep);
    let mut first = true;
    // The wall clock is ahead of the counted time, and the log has said so.
    let mut held_back = false;
    loop {
        let decision = cutoffs.next(clock.wall(), clock.now());
        if let Decision::HeldBack { ahead, .. } = decision
            && !held_back
        {
            log::warn!(
                "the wall clock moved {} further than the time counted since the last retention \
                 pass: events are deleted as counted time passes, not by the wall clock, until \
                 the manager restarts",
                format_duration(Duration::from_secs(ahead.as_secs()))
            );
        }
        held_back = matches!(decision, Decision::HeldBack { .. });
        let before = decision.before();
        match delete_before(&writer, &metrics, before, BATCH).await {
            Ok(0) => {}
            // The first pass after a start can be a large one (a retention just shortened, a
            // manager that was off): worth a line at the default level. Later passes delete a
            // minute's worth each, counted on /metrics.
            Ok(n) if first => log::info!(
                "deleted {n} events stored before {} (older than {keep_text})",
                format_utc(before)
            ),
            Ok(n) => log::debug!("deleted {n} events stored before {}", format_utc(before)),
            Err(e) => log::error!("cannot delete events older than {keep_text}: {e}"),
        }
        first = false;
        clock.sleep(PASS_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::{ComputerId, StoredEvent};
    use crate::store::{Reads, Store};

    #[test]
    fn the_cutoff_is_the_retention_before_now_and_never_before_the_epoch() {
        let day = Duration::from_secs(86_400);
        assert_eq!(cutoff(WallMs(10 * 86_400_000), day), WallMs(9 * 86_400_000));
        assert_eq!(cutoff(WallMs(5), day), WallMs(0));
        assert_eq!(cutoff(WallMs(5), Duration::MAX), WallMs(0));
    }

    #[test]
    fn the_cutoff_follows_the_wall_clock_but_not_a_jump_ahead_of_the_monotonic_one() {
        let day = Duration::from_secs(86_400);
        let clock = ManualClock::new(WallMs(100 * 86_400_000));
        let mut cutoffs = Cutoff::new(7 * day);
        let at = |c: &ManualClock| (c.wall(), c.now());
        let (wall, now) = at(&clock);
        assert_eq!(
            cutoffs.next(wall, now),
            Decision::Delete(WallMs(93 * 86_400_000))
        );

        // A pass a minute later, and one that ran ten minutes late: both follow the wall clock.
        clock.advance(PASS_EVERY);
        let (wall, now) = at(&clock);
        assert_eq!(
            cutoffs.next(wall, now),
            Decision::Delete(cutoff(wall, 7 * day))
        );
        clock.advance(10 * PASS_EVERY);
        let (wall, now) = at(&clock);
        assert_eq!(
            cutoffs.next(wall, now),
            Decision::Delete(cutoff(wall, 7 * day))
        );
        let settled = cutoff(wall, 7 * day);

        // The wall clock is set a year ahead between two passes a minute apart: the cutoff
        // moves two minutes (the minute counted and the slack), and says by how much it held.
        clock.advance(PASS_EVERY);
        clock.set_wall(WallMs(clock.wall().0 + 365 * 86_400_000));
        let (wall, now) = at(&clock);
        let two_minutes = WallMs(settled.0 + 120_000);
        assert_eq!(
            cutoffs.next(wall, now),
            Decision::HeldBack {
                before: two_minutes,
                ahead: Duration::from_millis(cutoff(wall, 7 * day).0 - two_minutes.0),
            }
        );
        // And goes on at the monotonic clock's pace from there.
        clock.advance(PASS_EVERY);
        let (wall, now) = at(&clock);
        assert_eq!(
            cutoffs.next(wall, now).before(),
            WallMs(two_minutes.0 + 120_000)
        );

        // A wall clock set back is followed at once: it only deletes less.
        clock.set_wall(WallMs(50 * 86_400_000));
        let (wall, now) = at(&clock);
        assert_eq!(
            cutoffs.next(wall, now),
            Decision::Delete(WallMs(43 * 86_400_000))
        );
    }

    #[test]
    fn events_past_retention_are_deleted_in_batches_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let day_ms = 86_400_000;
        let clock = ManualClock::new(WallMs(100 * day_ms));
        let mut w = store.write().unwrap();
        // Seven events a day apart, the newest received a day ago, for two computers.
        for age_days in 1..=7u64 {
            for computer in [1, 2] {
                w.insert_event(&StoredEvent {
                    computer: ComputerId(computer),
                    seq: 10 - age_days,
                    id: 1000,
                    time: WallMs(0),
                    received: WallMs((100 - age_days) * day_ms),
                    fields: Vec::new(),
                })
                .unwrap();
            }
        }
        w.commit().unwrap();
        let metrics = Metrics::new();
        let (writer, thread) =
            crate::store::Writer::start(store.clone(), Box::new(|_, _| {})).unwrap();

        let keep = Duration::from_secs(3 * 86_400);
        let before = cutoff(clock.wall(), keep);
        let deleted = smol::block_on(delete_before(&writer, &metrics, before, 3)).unwrap();
        assert_eq!(deleted, 8, "the events 4 to 7 days old, of both computers");
        let left = store.read().unwrap().events(None, 100).unwrap();
        let mut seqs: Vec<u64> = left.iter().map(|e| e.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, [7, 7, 8, 8, 9, 9]);
        assert!(left.iter().all(|e| e.received >= before));

        clock.advance(Duration::from_secs(86_400));
        let again = cutoff(clock.wall(), keep);
        let deleted = smol::block_on(delete_before(&writer, &metrics, again, 3)).unwrap();
        assert_eq!(deleted, 2, "a day later, the next day's events");
        assert_eq!(store.read().unwrap().event_count().unwrap(), 4);
        let text = metrics.encode(&crate::metrics::StoreCounts {
            computers_by_status: Vec::new(),
            events: 0,
            active_alerts: 0,
            ..Default::default()
        });
        assert!(text.contains("picket_events_deleted_total 10"), "{text}");
        drop(writer);
        thread.join().unwrap();
    }
}
