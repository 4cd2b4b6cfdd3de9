//! The verdicts task on a manual clock, a real store and its writer.

use super::*;
use crate::clock::ManualClock;
use crate::handles::Liveness;
use crate::metrics::Metrics;
use crate::model::{ClockChangeLimit, Computer, Direction, MissedLimit};
use std::thread::JoinHandle;

fn online(id: u64) -> Computer {
    Computer::test(id, &format!("c{id}"))
}

/// The verdicts task on a store of online computers 1..=n (10 s interval), a manual clock
/// at monotonic zero, and the store writer.
struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    clock: Arc<ManualClock>,
    liveness: Liveness,
    threads: Vec<JoinHandle<()>>,
}

impl Harness {
    fn start(n: u64, missed_before_alert: MissedLimit) -> Harness {
        Harness::start_with(n, missed_before_alert, IncidentRules::default(), false)
    }

    /// With these incident rules and, if `channel`, a notification channel (so notices are
    /// queued).
    fn start_with(
        n: u64,
        missed_before_alert: MissedLimit,
        incident_rules: IncidentRules,
        channel: bool,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let mut txn = store.write().unwrap();
        for id in 1..=n {
            txn.put_computer(&online(id)).unwrap();
        }
        if channel {
            txn.put_channel(&crate::notify::channel::tests::sample())
                .unwrap();
        }
        txn.commit().unwrap();
        let metrics = Arc::new(Metrics::new());
        let on_commit = {
            let metrics = metrics.clone();
            Box::new(move |jobs, took| metrics.commit(jobs, took))
        };
        let (writer, writer_thread) = Writer::start(store.clone(), on_commit).unwrap();
        let clock = Arc::new(ManualClock::new(WallMs(1_000_000)));
        let rules = Rules {
            interval: Duration::from_secs(10),
            missed_before_alert,
            max_clock_change: ClockChangeLimit::Unlimited,
            offline_errors_for_inactive_vms: false,
            is_vm: false,
            direction: Direction::AgentInitiated,
        };
        let initial = (1..=n)
            .map(|id| (ComputerId(id), (rules, PowerState::Running, PolicyId(1))))
            .collect();
        let tracked = (initial, HashMap::from([(PolicyId(1), None)]));
        let (liveness, events) = Liveness::channel(clock.clone());
        let task = {
            let (store, clock, metrics) = (store.clone(), clock.clone(), metrics.clone());
            std::thread::spawn(move || {
                smol::block_on(run(
                    store,
                    writer,
                    clock,
                    tracked,
                    incident_rules,
                    events,
                    metrics,
                ));
            })
        };
        let harness = Harness {
            _dir: dir,
            store,
            metrics,
            clock,
            liveness,
            threads: vec![task, writer_thread],
        };
        // Once this no-op is taken, the task has started and taken its "now".
        harness.send(LivenessEvent::Deleted(ComputerId(n + 1)));
        harness.taken();
        harness
    }

    fn send(&self, event: LivenessEvent) {
        self.liveness.send(event);
    }

    fn heartbeat(&self, id: u64) {
        self.send(LivenessEvent::Heartbeat {
            computer: ComputerId(id),
            agent_clock: None,
            waited: Duration::ZERO,
        });
    }

    /// Lets `d` pass as a running manager sees it: in steps no longer than the task's longest
    /// sleep, each once the task is asleep again. One jump would look like a frozen manager,
    /// whose time counts towards nobody's misses.
    fn pass(&self, d: Duration) {
        let mut left = d;
        while !left.is_zero() {
            let step = left.min(crate::liveness::LOOK_EVERY);
            let begun = self.clock.sleeps_begun();
            self.clock.advance(step);
            let deadline = crate::clock::Stopwatch::now() + Duration::from_secs(30);
            while self.clock.sleeps_begun() == begun && crate::clock::Stopwatch::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            left -= step;
        }
    }

    /// Waits until the task has taken every event sent.
    fn taken(&self) {
        while self.liveness.queued() > 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits (at most 30 s) until `done` holds of the store.
    fn until(&self, done: impl Fn(&Store) -> bool) -> bool {
        let deadline = crate::clock::Stopwatch::now() + Duration::from_secs(30);
        while !done(&self.store) && crate::clock::Stopwatch::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        done(&self.store)
    }

    fn status(&self, id: u64) -> Option<Status> {
        let txn = self.store.read().unwrap();
        txn.computer(ComputerId(id)).unwrap().map(|c| c.status)
    }

    /// `picket_heartbeat_delay_seconds` as the metrics page shows it.
    fn heartbeat_delay(&self) -> f64 {
        let text = self.metrics.encode(&crate::metrics::StoreCounts::default());
        text.lines()
            .find(|l| l.starts_with("picket_heartbeat_delay_seconds "))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no heartbeat delay in:\n{text}"))
    }

    /// The store commits counted in the manager's metrics.
    fn commits(&self) -> u64 {
        let text = self.metrics.encode(&crate::metrics::StoreCounts::default());
        text.lines()
            .find(|l| l.contains("store_commit_duration_seconds_count"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no commit count in:\n{text}"))
    }

    /// Stops the task and the writer; the store stays readable.
    fn stop(self) -> (Arc<Store>, tempfile::TempDir) {
        drop(self.liveness);
        for thread in self.threads {
            thread.join().unwrap();
        }
        (self.store, self._dir)
    }
}

#[test]
fn many_computers_going_offline_together_share_commits() {
    const N: u64 = 500;
    let h = Harness::start(N, MissedLimit::Count(0));
    assert!(h.until(|_| h.clock.sleepers() == 1), "the task never slept");
    let before = h.commits();
    // Every allowance runs out at once; the advance wakes the task.
    h.pass(Duration::from_secs(20));
    let alerted = h.until(|s| {
        let alerts = s.read().unwrap().alerts().unwrap();
        let offline = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::ComputerOffline);
        offline.count() as u64 == N
    });
    assert!(alerted, "not every computer was alerted");
    assert!((1..=N).all(|id| h.status(id) == Some(Status::Offline)));
    // A status and an alert each for 500 computers: 1,000 writes, one commit each before.
    let used = h.commits() - before;
    assert!(used < N / 5, "{used} commits for {N} computers");
    h.stop();
}

#[test]
fn a_storm_of_offline_computers_is_one_incident_and_one_notice() {
    use crate::notify::Change;
    const N: u64 = 40;
    const SILENT: u64 = 15;
    let rules = IncidentRules {
        min_computers: 5,
        min_percent: 30,
        window: Duration::from_secs(120),
    };
    let h = Harness::start_with(N, MissedLimit::Count(0), rules, true);
    let notices = |h: &Harness| -> Vec<(AlertKind, Change, usize)> {
        let txn = h.store.read().unwrap();
        txn.notices_after(0, 100)
            .unwrap()
            .into_iter()
            .map(|n| (n.alert.kind, n.change, n.alert.computers.len()))
            .collect()
    };
    let beat = |ids: std::ops::RangeInclusive<u64>| {
        let begun = h.clock.sleeps_begun();
        for id in ids {
            h.heartbeat(id);
        }
        h.taken();
        assert!(h.until(|_| h.clock.sleeps_begun() > begun), "not handled");
    };
    // Everyone is online; then computers 1..=15 fall silent together (a switch), and the
    // other 25 go on.
    assert!(h.until(|_| h.clock.sleepers() == 1), "the task never slept");
    beat(1..=N);
    for _ in 0..20 {
        h.pass(Duration::from_secs(8));
        beat(SILENT + 1..=N);
    }
    let offline = h.until(|s| {
        let alerts = s.read().unwrap().alerts().unwrap();
        alerts
            .iter()
            .filter(|a| a.kind == AlertKind::ComputerOffline && a.is_active())
            .count() as u64
            == SILENT
    });
    assert!(offline, "the silent computers were not alerted");
    // 160 s on, past every hold: one notice, the incident's (12 of 40 made it 30%), listing
    // all fifteen: the three after the twelfth joined in the same round, one update for all.
    assert_eq!(notices(&h), [(AlertKind::SiteIncident, Change::Raised, 15)]);
    let txn = h.store.read().unwrap();
    assert!(txn.held_notices().unwrap().is_empty());
    let incident = txn
        .active_site_alert(AlertKind::SiteIncident, "1")
        .unwrap()
        .expect("the incident");
    assert_eq!(incident.computers.len() as u64, SILENT);
    assert!(
        incident.message.starts_with("15 computers of policy"),
        "{}",
        incident.message
    );
    drop(txn);
    // They come back: their clears are the incident's, which ends with the last of them.
    beat(1..=N);
    let closed = h.until(|_| notices(&h).len() == 2);
    assert!(closed, "{:?}", notices(&h));
    assert_eq!(
        notices(&h)[1],
        (AlertKind::SiteIncident, Change::Cleared, SILENT as usize)
    );
    let (store, _dir) = h.stop();
    let alerts = store.read().unwrap().alerts().unwrap();
    assert!(alerts.iter().all(|a| !a.is_active()), "{alerts:?}");
}

#[test]
fn decisions_the_store_refused_are_written_in_order_once_it_takes_writes_again() {
    let h = Harness::start(2, MissedLimit::Count(0));
    h.store
        .fail_for_test("No space left on device (os error 28)");
    let asleep = || assert!(h.until(|_| h.clock.sleepers() == 1), "the task never slept");
    // Computer 2 heartbeats at 8 s; computer 1 goes quiet, and at 16 s it is offline and
    // alerted while nothing can be written.
    h.pass(Duration::from_secs(8));
    asleep();
    let begun = h.clock.sleeps_begun();
    h.heartbeat(2);
    assert!(
        h.until(|_| h.clock.sleeps_begun() > begun),
        "the heartbeat was not handled"
    );
    h.pass(Duration::from_secs(8));
    asleep();
    assert_eq!(h.store.read().unwrap().alerts().unwrap().len(), 0);
    // It comes back before the store does: the clearing waits behind the alert.
    let begun = h.clock.sleeps_begun();
    h.heartbeat(1);
    assert!(
        h.until(|_| h.clock.sleeps_begun() > begun),
        "the heartbeat was not handled"
    );
    // The store reopens at 17 s; the retry at 18 s writes both (computer 2 is due at 19 s).
    h.store.tend(h.clock.now());
    h.pass(Duration::from_secs(1));
    asleep();
    h.store.tend(h.clock.now());
    h.pass(Duration::from_secs(1));
    let written = h.until(|s| {
        let alerts = s.read().unwrap().alerts().unwrap();
        alerts.len() == 1 && !alerts[0].is_active()
    });
    assert!(written, "the alert and its clearing were not written");
    let history = h.store.read().unwrap().history(ComputerId(1), 10).unwrap();
    let what: Vec<&str> = history.iter().map(|e| e.what.as_str()).collect();
    assert!(
        what.contains(&"alert-raised") && what.contains(&"alert-cleared"),
        "{what:?}"
    );
    assert_eq!(h.status(1), Some(Status::Online));
    h.stop();
}

#[test]
fn heartbeats_that_waited_in_the_manager_hold_back_verdicts_and_show_in_metrics() {
    let h = Harness::start(2, MissedLimit::Count(0));
    // Computer 1's heartbeats waited 5 s inside the manager: so may 2's, which is past
    // its allowance (10 s + 1 s grace) at 12 s but not past it and the delay.
    h.pass(Duration::from_secs(7));
    h.send(LivenessEvent::Heartbeat {
        computer: ComputerId(1),
        agent_clock: None,
        waited: Duration::from_secs(5),
    });
    // Taken from the queue is not yet handled: the gauge is set once the round has judged
    // the deadlines (computer 1 was already online in the store, so its status says nothing).
    assert!(h.until(|_| h.heartbeat_delay() > 0.0));
    let delay = h.heartbeat_delay();
    assert!((5.0..6.5).contains(&delay), "{delay}");
    // At 12 s the task wakes on the clock, judges, and sleeps again.
    h.pass(Duration::from_secs(5));
    assert!(
        h.until(|_| h.clock.sleepers() == 1),
        "the task did not sleep again"
    );
    assert_eq!(h.status(2), Some(Status::Online));
    // Past both: the advance alone wakes the task.
    h.pass(Duration::from_secs(5));
    assert!(h.until(|_| h.status(2) == Some(Status::Offline)));
    h.stop();
}

#[test]
fn a_heartbeat_waiting_in_the_queue_is_not_a_missed_one() {
    let h = Harness::start(2, MissedLimit::Count(5));
    // Hold the store's write lock: computer 1's first heartbeat (a status change) keeps
    // the task waiting on its write, while two more heartbeats queue up past 2's allowance.
    let held = h.store.write().unwrap();
    h.heartbeat(1);
    h.taken();
    // The task is stuck on the write, not asleep: the time passes at once.
    h.clock.advance(Duration::from_secs(20));
    h.heartbeat(1);
    h.heartbeat(2);
    drop(held);
    h.taken();
    assert!(h.until(|_| h.clock.sleepers() == 1), "the task never slept");
    let (store, _dir) = h.stop();
    let history = store.read().unwrap().history(ComputerId(2), 100).unwrap();
    assert!(
        history.iter().all(|e| !e.detail.contains("-> offline")),
        "{history:?}"
    );
}

#[test]
fn an_activated_computer_is_watched_from_its_activation_and_only_it() {
    let h = Harness::start(1, MissedLimit::Count(5));
    let mut txn = h.store.write().unwrap();
    for id in [2, 3] {
        txn.put_computer(&online(id)).unwrap();
    }
    // 3 has no agent (deleted again, say): its activation event finds nothing to watch.
    txn.put_agent_state(&crate::model::AgentState {
        computer: ComputerId(2),
        ..Default::default()
    })
    .unwrap();
    txn.commit().unwrap();
    h.send(LivenessEvent::Activated(ComputerId(2)));
    h.send(LivenessEvent::Activated(ComputerId(3)));
    h.taken();
    // No policy is stored: the built-in 10-minute interval, then the grace.
    h.pass(Duration::from_secs(11 * 60 + 1));
    h.heartbeat(1);
    assert!(
        h.until(|_| h.status(2) == Some(Status::Offline)),
        "the activated computer was never judged"
    );
    assert_eq!(h.status(3), Some(Status::Online));
    // The advance itself now wakes the task (it sleeps on the manual clock), so computer 1
    // may be judged before its heartbeat is taken; after it, it is online.
    assert!(h.until(|_| h.status(1) == Some(Status::Online)));
    h.stop();
}

#[test]
fn a_quiet_computer_goes_offline_while_others_heartbeats_keep_coming() {
    let h = Harness::start(2, MissedLimit::Count(5));
    // Past computer 2's allowance (10 s + 1 s grace), with a flood of heartbeats from
    // computer 1 queued: the loop always has an event waiting.
    h.pass(Duration::from_secs(20));
    const FLOOD: usize = 200_000;
    for _ in 0..FLOOD {
        h.heartbeat(1);
    }
    let offline = h.until(|s| {
        s.read()
            .unwrap()
            .computer(ComputerId(2))
            .unwrap()
            .is_some_and(|c| c.status == Status::Offline)
    });
    let queued = h.liveness.queued();
    assert!(offline, "computer 2 never went offline");
    // The task keeps draining while the offline status commits and this thread polls for
    // it: with every core busy (the whole suite at once) 90,186 were left once, so the bar
    // is a tenth, still far from a decision made only after the flood.
    assert!(
        queued > FLOOD / 10,
        "computer 2 went offline only after the heartbeats were handled ({queued} queued)"
    );
    h.stop();
}

/// A paused VM or a swap storm: the task wakes a minute after it asked to. That minute is
/// nobody's missed heartbeat; the silence after it is.
#[test]
fn a_frozen_manager_blames_nobody_for_its_own_freeze() {
    let h = Harness::start(1, MissedLimit::Count(0));
    h.pass(Duration::from_secs(5));
    h.clock.advance(Duration::from_secs(60));
    assert!(h.until(|_| h.clock.sleepers() == 1), "the task never slept");
    h.pass(Duration::from_secs(1));
    assert_eq!(h.status(1), Some(Status::Online), "the freeze was counted");
    // 5 s before the freeze and 6 s after: past the 10 s interval and its 1 s grace.
    h.pass(Duration::from_secs(6));
    assert!(
        h.until(|_| h.status(1) == Some(Status::Offline)),
        "the silence after the freeze was not counted"
    );
}
