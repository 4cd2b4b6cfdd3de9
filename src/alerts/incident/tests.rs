use super::*;

const MIN: Duration = Duration::from_secs(60);

fn at(secs: u64) -> Instant {
    Instant::from_millis(secs * 1000)
}

fn c(id: u64) -> ComputerId {
    ComputerId(id)
}

/// Base Policy 1 with children 2 and 3; computers 1..=10 in policy 2, 11..=20 in policy 3,
/// all online. Three computers make an incident if they are 30% of their subtree's.
fn site() -> Incidents {
    let mut incidents = Incidents::new(IncidentRules {
        min_computers: 3,
        min_percent: 30,
        window: 2 * MIN,
    });
    incidents.set_tree(HashMap::from([
        (PolicyId(1), None),
        (PolicyId(2), Some(PolicyId(1))),
        (PolicyId(3), Some(PolicyId(1))),
    ]));
    for id in 1..=20 {
        incidents.track(c(id), PolicyId(if id <= 10 { 2 } else { 3 }));
        incidents.set_online(c(id), true);
    }
    incidents
}

fn actions(incidents: &mut Incidents) -> Vec<Action> {
    std::iter::from_fn(|| incidents.poll_action()).collect()
}

/// What the detector asks for at the end of a round at `now` (as the verdicts task asks).
fn acted(incidents: &mut Incidents, now: Instant) -> Vec<Action> {
    incidents.handle_timeout(now);
    actions(incidents)
}

#[test]
fn a_lone_offline_notice_is_held_for_a_window_then_sent() {
    let mut incidents = site();
    assert_eq!(incidents.offline_raised(at(10), c(1)), Notify::Hold);
    assert_eq!(incidents.poll_timeout(), Some(at(130)));
    incidents.handle_timeout(at(129));
    assert!(actions(&mut incidents).is_empty());
    incidents.handle_timeout(at(130));
    assert_eq!(actions(&mut incidents), [Action::Release(c(1))]);
    assert_eq!(incidents.poll_timeout(), None);
}

#[test]
fn a_site_too_small_for_an_incident_holds_nothing() {
    let mut incidents = Incidents::new(IncidentRules::default());
    incidents.track(c(1), PolicyId(1));
    assert_eq!(incidents.offline_raised(at(1), c(1)), Notify::Now);
    let mut off = site();
    off.rules.min_computers = 0;
    assert_eq!(off.offline_raised(at(1), c(1)), Notify::Now);
}

#[test]
fn many_offline_in_one_subtree_open_one_incident_that_takes_their_notices() {
    let mut incidents = site();
    assert_eq!(incidents.offline_raised(at(0), c(1)), Notify::Hold);
    assert_eq!(incidents.offline_raised(at(50), c(2)), Notify::Hold);
    // The third within two minutes: 3 of policy 2's 10 (the Base Policy's 20 are not 30%).
    assert_eq!(incidents.offline_raised(at(100), c(3)), Notify::Hold);
    // Judged when the first hold ends, with the window's raises counted.
    assert!(acted(&mut incidents, at(119)).is_empty());
    assert_eq!(
        acted(&mut incidents, at(120)),
        [Action::Incident {
            policy: PolicyId(2),
            computers: vec![c(1), c(2), c(3)],
            absorbed: vec![c(1), c(2), c(3)],
            opened: true,
        }]
    );
    // Within a window of its last change, more in the subtree join quietly, in one update
    // however many; one elsewhere is on its own.
    assert_eq!(incidents.offline_raised(at(200), c(4)), Notify::Quiet);
    assert_eq!(incidents.offline_raised(at(230), c(5)), Notify::Quiet);
    assert_eq!(incidents.offline_raised(at(230), c(11)), Notify::Hold);
    assert_eq!(
        acted(&mut incidents, at(230)),
        [Action::Incident {
            policy: PolicyId(2),
            computers: vec![c(1), c(2), c(3), c(4), c(5)],
            absorbed: vec![],
            opened: false,
        }]
    );
    // The holds end without a release: the incident's notice stood for them.
    incidents.handle_timeout(at(349));
    assert!(actions(&mut incidents).is_empty());
    // Long after, one going offline there is news of its own, not a quiet addition.
    assert_eq!(incidents.offline_raised(at(500), c(6)), Notify::Hold);
}

#[test]
fn an_incident_nobody_returns_from_closes_once_nothing_has_changed_for_long() {
    let mut incidents = site();
    for id in 1..=4 {
        incidents.offline_raised(at(id), c(id));
    }
    // Opened as the first hold ends.
    assert!(matches!(
        acted(&mut incidents, at(121)).as_slice(),
        [Action::Incident { opened: true, .. }]
    ));
    // (The other raises' windows end: stale entries wake the detector early, harmlessly.)
    assert!(acted(&mut incidents, at(200)).is_empty());
    // Nobody comes back; ten windows after the last change it closes, listing them.
    let stale = 121 + 10 * 120;
    assert_eq!(incidents.poll_timeout(), Some(at(stale)));
    assert!(acted(&mut incidents, at(stale - 1)).is_empty());
    assert_eq!(
        acted(&mut incidents, at(stale)),
        [Action::Close {
            policy: PolicyId(2),
            computers: (1..=4).map(c).collect(),
            still_offline: (1..=4).map(c).collect(),
        }]
    );
    assert_eq!(incidents.poll_timeout(), None);
    // Their returns are news now.
    assert_eq!(incidents.offline_cleared(at(stale + 1), c(1)), Notify::Now);
}

#[test]
fn offline_computers_spread_over_more_than_a_window_are_no_incident() {
    let mut incidents = site();
    for (i, id) in [1, 2, 3, 4].into_iter().enumerate() {
        let now = at(i as u64 * 121);
        incidents.handle_timeout(now);
        assert_eq!(incidents.offline_raised(now, c(id)), Notify::Hold);
    }
    incidents.handle_timeout(at(1000));
    assert_eq!(
        actions(&mut incidents),
        [1, 2, 3, 4].map(|id| Action::Release(c(id)))
    );
}

#[test]
fn too_small_a_share_of_the_subtree_is_no_incident() {
    let mut incidents = site();
    // Policy 2 moves under 3's subtree size: 3 of 20 online is 15%.
    for id in 1..=10 {
        incidents.track(c(id), PolicyId(3));
    }
    for id in [1, 2, 3] {
        assert_eq!(incidents.offline_raised(at(id), c(id)), Notify::Hold);
    }
    // A fourth... still 4 of 20; a sixth makes 30%.
    for id in [4, 5, 6] {
        incidents.offline_raised(at(id), c(id));
    }
    assert!(matches!(
        acted(&mut incidents, at(121)).as_slice(),
        [Action::Incident { policy: PolicyId(3), opened: true, computers, .. }] if computers.len() == 6
    ));
}

#[test]
fn an_incident_closes_once_most_are_back_and_returns_have_settled() {
    let mut incidents = site();
    for id in 1..=5 {
        incidents.offline_raised(at(id), c(id));
    }
    acted(&mut incidents, at(121));
    // The windows of their raises end (stale entries wake the detector early, harmlessly).
    incidents.handle_timeout(at(499));
    // Members' clears are the incident's business.
    for id in 1..=4 {
        assert_eq!(incidents.offline_cleared(at(500), c(id)), Notify::Quiet);
    }
    // 4 of 5 back: it closes a window after the last return.
    assert_eq!(incidents.poll_timeout(), Some(at(620)));
    incidents.handle_timeout(at(619));
    assert!(actions(&mut incidents).is_empty());
    incidents.handle_timeout(at(620));
    assert_eq!(
        actions(&mut incidents),
        [Action::Close {
            policy: PolicyId(2),
            computers: (1..=5).map(c).collect(),
            still_offline: vec![c(5)],
        }]
    );
    // The straggler is on its own again: its clear is news.
    assert_eq!(incidents.offline_cleared(at(700), c(5)), Notify::Now);
}

#[test]
fn an_incident_whose_computers_are_all_back_closes_at_once() {
    let mut incidents = site();
    for id in 1..=3 {
        incidents.offline_raised(at(id), c(id));
    }
    acted(&mut incidents, at(121));
    for id in 1..=3 {
        incidents.offline_cleared(at(130), c(id));
    }
    assert!(matches!(
        acted(&mut incidents, at(130)).as_slice(),
        [Action::Close { still_offline, .. }] if still_offline.is_empty()
    ));
    // A new storm opens a new incident.
    for id in 1..=3 {
        incidents.offline_raised(at(140), c(id));
    }
    assert!(matches!(
        acted(&mut incidents, at(260)).as_slice(),
        [Action::Incident { opened: true, .. }]
    ));
}

#[test]
fn a_computer_back_within_its_hold_no_longer_counts_or_waits() {
    let mut incidents = site();
    incidents.offline_raised(at(0), c(1));
    incidents.offline_raised(at(0), c(2));
    assert_eq!(incidents.offline_cleared(at(5), c(1)), Notify::Now);
    incidents.set_online(c(1), true);
    incidents.offline_raised(at(6), c(3));
    // Two offline in the window, not three.
    incidents.handle_timeout(at(200));
    assert_eq!(
        actions(&mut incidents),
        [Action::Release(c(2)), Action::Release(c(3))]
    );
}

#[test]
fn what_was_open_or_held_before_a_restart_carries_on() {
    let mut incidents = site();
    incidents.restore_incident(at(0), PolicyId(2), &[c(1), c(2), c(3)], |id| id != c(3));
    assert_eq!(incidents.offline_raised(at(0), c(4)), Notify::Quiet);
    acted(&mut incidents, at(0));
    assert_eq!(incidents.offline_cleared(at(1), c(1)), Notify::Quiet);
    // Held notices count again from the start, and are released a window later.
    incidents.restore_held(at(0), c(11));
    incidents.handle_timeout(at(120));
    assert_eq!(actions(&mut incidents), [Action::Release(c(11))]);
}

#[test]
fn a_deleted_computer_leaves_the_counts_and_its_incident() {
    let mut incidents = site();
    incidents.offline_raised(at(0), c(1));
    incidents.offline_raised(at(0), c(2));
    incidents.forget(c(2));
    incidents.offline_raised(at(1), c(3));
    incidents.handle_timeout(at(200));
    // Computer 2's notice is not released: its computer is gone.
    assert_eq!(
        actions(&mut incidents),
        [Action::Release(c(1)), Action::Release(c(3))]
    );
}

#[test]
fn a_dismissed_incident_is_over_for_the_detector_too() {
    let mut incidents = site();
    for id in 1..=3 {
        incidents.offline_raised(at(id), c(id));
    }
    assert!(matches!(
        acted(&mut incidents, at(121)).as_slice(),
        [Action::Incident { opened: true, .. }]
    ));
    assert_eq!(incidents.offline_raised(at(122), c(4)), Notify::Quiet);
    incidents.dismissed(PolicyId(2));
    // Nothing to write (the dismissal ended the alert); its computers are on their own.
    assert!(acted(&mut incidents, at(123)).is_empty());
    assert_eq!(incidents.offline_cleared(at(124), c(1)), Notify::Now);
    assert_eq!(incidents.offline_raised(at(125), c(5)), Notify::Hold);
}

#[test]
fn an_outage_across_branches_is_one_incident_of_their_parent_not_one_each() {
    let mut incidents = site();
    // Four of policy 2's ten and four of policy 3's ten: each branch qualifies on its own
    // (40%), and so does the Base Policy (8 of 20).
    for id in [1, 2, 3, 4, 11, 12, 13, 14] {
        incidents.offline_raised(at(id), c(id));
    }
    assert_eq!(
        acted(&mut incidents, at(121)),
        [Action::Incident {
            policy: PolicyId(1),
            computers: [1, 2, 3, 4, 11, 12, 13, 14].map(c).to_vec(),
            absorbed: [1, 2, 3, 4, 11, 12, 13, 14].map(c).to_vec(),
            opened: true,
        }]
    );
}

#[test]
fn a_hold_ends_a_window_after_its_own_raise_not_an_earlier_one() {
    // Found by the simulation: the first raise's entry released the second's hold early.
    let mut incidents = site();
    incidents.offline_raised(at(0), c(1));
    assert_eq!(incidents.offline_cleared(at(10), c(1)), Notify::Now);
    assert_eq!(incidents.offline_raised(at(100), c(1)), Notify::Hold);
    assert!(acted(&mut incidents, at(120)).is_empty());
    assert_eq!(acted(&mut incidents, at(220)), [Action::Release(c(1))]);
}
