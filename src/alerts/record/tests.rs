use super::*;
use crate::model::{AgentState, Computer};
use crate::store::Store;

/// A store with computer 7, `web1`, an agent last heard at 5 ms (other modules' tests use it).
pub(crate) fn store_with_computer() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let mut txn = store.write().unwrap();
    txn.put_computer(&Computer::test(7, "web1")).unwrap();
    txn.put_agent_state(&AgentState {
        computer: ComputerId(7),
        last_heartbeat: Some(WallMs(5)),
        ..AgentState::default()
    })
    .unwrap();
    txn.commit().unwrap();
    (dir, store)
}

#[test]
fn raise_repeat_clear_and_dismiss_write_the_alert_and_its_history() {
    let (_dir, store) = store_with_computer();
    let mut txn = store.write().unwrap();
    let offline = AlertKind::ComputerOffline;
    let first = raise(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(10),
        Notify::Now,
        |last| format!("last {last:?}"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(first.message, "last Some(WallMs(5))");
    let again = raise(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(20),
        Notify::Now,
        |_| "x".into(),
    )
    .unwrap()
    .unwrap();
    assert_eq!((again.id, again.count), (first.id, 2));
    let cleared = clear(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(30),
        "back",
        Notify::Now,
    )
    .unwrap()
    .unwrap();
    assert_eq!(cleared.cleared, Some(WallMs(30)));
    assert!(
        clear(
            &mut txn,
            ComputerId(7),
            offline,
            WallMs(31),
            "again",
            Notify::Now
        )
        .unwrap()
        .is_none()
    );
    let clock = raise(
        &mut txn,
        ComputerId(7),
        AlertKind::ClockChanged,
        WallMs(40),
        Notify::Now,
        |_| "moved".into(),
    )
    .unwrap()
    .unwrap();
    let dismissed = dismiss(&mut txn, clock.id, WallMs(50)).unwrap();
    assert_eq!(dismissed.dismissed, Some(WallMs(50)));
    assert!(matches!(
        dismiss(&mut txn, clock.id, WallMs(51)),
        Err(DismissError::NotActive(_))
    ));
    assert!(matches!(
        dismiss(&mut txn, AlertId(99), WallMs(51)),
        Err(DismissError::NotFound(AlertId(99)))
    ));
    let history: Vec<String> = txn
        .history(ComputerId(7), 10)
        .unwrap()
        .into_iter()
        .map(|h| h.what)
        .collect();
    for what in ["alert-raised", "alert-cleared", "alert-dismissed"] {
        assert!(history.iter().any(|h| h == what), "{what}: {history:?}");
    }
    txn.commit().unwrap();
}

#[test]
fn nothing_is_raised_for_a_deleted_computer_and_deletion_ends_alerts() {
    let (_dir, store) = store_with_computer();
    let mut txn = store.write().unwrap();
    raise(
        &mut txn,
        ComputerId(7),
        AlertKind::ClockChanged,
        WallMs(1),
        Notify::Now,
        |_| "m".into(),
    )
    .unwrap();
    assert_eq!(
        end_with_computer(&mut txn, ComputerId(7), WallMs(2)).unwrap(),
        1
    );
    assert!(txn.active_alerts_of(ComputerId(7)).unwrap().is_empty());
    assert!(
        raise(
            &mut txn,
            ComputerId(8),
            AlertKind::ClockChanged,
            WallMs(3),
            Notify::Now,
            |_| "m".into()
        )
        .unwrap()
        .is_none()
    );
}

#[test]
fn raises_repeats_and_clears_queue_their_notice_in_the_same_transaction() {
    use crate::notify::{Change, Route};
    let (_dir, store) = store_with_computer();
    let mut txn = store.write().unwrap();
    let offline = AlertKind::ComputerOffline;
    let changes = |txn: &WriteTxn| -> Vec<Change> {
        txn.notices_after(0, 100)
            .unwrap()
            .iter()
            .map(|n| n.change)
            .collect()
    };
    // No channel: nothing is queued.
    raise(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(10),
        Notify::Now,
        |_| "m".into(),
    )
    .unwrap();
    assert!(changes(&txn).is_empty());
    clear(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(11),
        "back",
        Notify::Now,
    )
    .unwrap();
    txn.put_channel(&crate::notify::channel::tests::sample())
        .unwrap();
    let first = raise(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(20),
        Notify::Now,
        |_| "m".into(),
    )
    .unwrap()
    .unwrap();
    // A repeat nobody routes is not queued.
    raise(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(30),
        Notify::Now,
        |_| "m".into(),
    )
    .unwrap();
    assert_eq!(changes(&txn), [Change::Raised]);
    let notice = &txn.notices_after(0, 1).unwrap()[0];
    assert_eq!(
        (notice.hostname.as_str(), notice.alert.id),
        ("web1", first.id)
    );
    txn.put_route(&Route {
        id: 1,
        channel: "sample".into(),
        kind: None,
        severity: None,
        policy: None,
        on: vec![Change::Repeated],
    })
    .unwrap();
    raise(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(40),
        Notify::Now,
        |_| "m".into(),
    )
    .unwrap();
    // Acknowledged: repeats are no longer queued, but the clear is.
    let acked = acknowledge(&mut txn, first.id, "alice", "on it", WallMs(45)).unwrap();
    assert!(acked.is_active());
    assert_eq!(acked.acknowledged.as_ref().unwrap().by, "alice");
    raise(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(50),
        Notify::Now,
        |_| "m".into(),
    )
    .unwrap();
    clear(
        &mut txn,
        ComputerId(7),
        offline,
        WallMs(60),
        "back",
        Notify::Now,
    )
    .unwrap();
    assert_eq!(
        changes(&txn),
        [Change::Raised, Change::Repeated, Change::Cleared]
    );
    assert!(matches!(
        acknowledge(&mut txn, first.id, "bob", "", WallMs(70)),
        Err(DismissError::NotActive(_))
    ));
    // An alert about the site: its own index entry, repeated and cleared like any other.
    let failed = AlertKind::NotificationFailed;
    let site = raise_site(&mut txn, failed, "mail", "down".into(), WallMs(80)).unwrap();
    let again = raise_site(&mut txn, failed, "mail", "down".into(), WallMs(90)).unwrap();
    assert_eq!((again.id, again.count), (site.id, 2));
    assert!(txn.active_site_alert(failed, "other").unwrap().is_none());
    assert_eq!(
        clear_site(&mut txn, failed, "mail", WallMs(95), "sent")
            .unwrap()
            .unwrap()
            .id,
        site.id
    );
    assert!(txn.active_site_alert(failed, "mail").unwrap().is_none());
}

#[test]
fn a_held_raise_goes_out_before_its_clear_at_release_or_never_once_an_incident_takes_it() {
    let (_dir, store) = store_with_computer();
    let mut txn = store.write().unwrap();
    txn.put_channel(&crate::notify::channel::tests::sample())
        .unwrap();
    let (web1, offline) = (ComputerId(7), AlertKind::ComputerOffline);
    let told = |txn: &WriteTxn| -> Vec<(AlertKind, Change)> {
        let notices = txn.notices_after(0, 100).unwrap();
        notices.iter().map(|n| (n.alert.kind, n.change)).collect()
    };
    let raised = (offline, Change::Raised);
    let cleared = (offline, Change::Cleared);
    // Held, then back before its window ends: the raise goes out just before the clear.
    raise(&mut txn, web1, offline, WallMs(10), Notify::Hold, |_| {
        "m".into()
    })
    .unwrap();
    assert!(told(&txn).is_empty());
    assert_eq!(txn.held_notices().unwrap().len(), 1);
    clear(&mut txn, web1, offline, WallMs(11), "back", Notify::Now).unwrap();
    assert_eq!(told(&txn), [raised, cleared]);
    assert!(txn.held_notices().unwrap().is_empty());
    // Held, and its window ends: released once.
    raise(&mut txn, web1, offline, WallMs(20), Notify::Hold, |_| {
        "m".into()
    })
    .unwrap();
    assert!(release(&mut txn, web1).unwrap());
    assert!(!release(&mut txn, web1).unwrap());
    clear(&mut txn, web1, offline, WallMs(21), "back", Notify::Now).unwrap();
    assert_eq!(told(&txn)[2..], [raised, cleared]);
    // Acknowledged while held: somebody has seen it, nobody needs telling.
    let alert = raise(&mut txn, web1, offline, WallMs(30), Notify::Hold, |_| {
        "m".into()
    })
    .unwrap()
    .unwrap();
    acknowledge(&mut txn, alert.id, "alice", "", WallMs(31)).unwrap();
    assert!(!release(&mut txn, web1).unwrap());
    clear(&mut txn, web1, offline, WallMs(32), "back", Notify::Quiet).unwrap();
    assert_eq!(told(&txn).len(), 4);
    // Taken by an incident: the incident's notice alone, with the policy it is about.
    raise(&mut txn, web1, offline, WallMs(40), Notify::Hold, |_| {
        "m".into()
    })
    .unwrap();
    let window = std::time::Duration::from_secs(120);
    let incident =
        raise_incident(&mut txn, PolicyId(1), &[web1], &[web1], window, WallMs(41)).unwrap();
    assert!(txn.held_notices().unwrap().is_empty());
    assert_eq!(incident.computers, [web1]);
    assert!(incident.message.contains("web1"), "{}", incident.message);
    clear(&mut txn, web1, offline, WallMs(42), "back", Notify::Quiet).unwrap();
    let over = clear_incident(&mut txn, PolicyId(1), 1, &[], WallMs(43))
        .unwrap()
        .unwrap();
    assert_eq!(over.id, incident.id);
    let notices = txn.notices_after(4, 100).unwrap();
    let site: Vec<_> = notices
        .iter()
        .map(|n| (n.alert.kind, n.change, n.policy))
        .collect();
    let incident = AlertKind::SiteIncident;
    assert_eq!(
        site,
        [
            (incident, Change::Raised, Some(PolicyId(1))),
            (incident, Change::Cleared, Some(PolicyId(1)))
        ]
    );
}
