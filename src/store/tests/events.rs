//! The events table and its index by time: batches, retention, the newest sequence, the
//! migration that built the index.

use super::*;

fn event_received(computer: u64, seq: u64, received: u64) -> StoredEvent {
    StoredEvent {
        computer: ComputerId(computer),
        seq,
        id: 1000,
        time: WallMs(seq),
        received: WallMs(received),
        fields: Vec::new(),
    }
}

fn keys(events: &[StoredEvent]) -> Vec<(u64, u64)> {
    events.iter().map(|e| (e.computer.0, e.seq)).collect()
}

#[test]
fn retention_deletes_the_oldest_events_a_batch_at_a_time_and_keeps_the_rest() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    // Received out of key order: computer 2's events came first.
    for (computer, seq, received) in [(1, 1, 30), (1, 2, 40), (2, 1, 10), (2, 2, 20), (3, 1, 50)] {
        w.insert_event(&event_received(computer, seq, received))
            .unwrap();
    }
    let cutoff = WallMs(40);
    let deleted = |events, done| Deleted { events, done };
    assert_eq!(
        w.delete_events_received_before(cutoff, 2).unwrap(),
        deleted(2, false)
    );
    assert_eq!(
        keys(&w.events(None, 10).unwrap()),
        [(3, 1), (1, 2), (1, 1)],
        "the two oldest went first"
    );
    assert_eq!(
        w.delete_events_received_before(cutoff, 2).unwrap(),
        deleted(1, true)
    );
    assert_eq!(
        w.delete_events_received_before(cutoff, 2).unwrap(),
        deleted(0, true)
    );
    w.commit().unwrap();
    let r = store.read().unwrap();
    assert_eq!(keys(&r.events(None, 10).unwrap()), [(3, 1), (1, 2)]);
    assert_eq!(r.event_count().unwrap(), 2);
    assert_eq!(keys(&r.events(Some(ComputerId(1)), 10).unwrap()), [(1, 2)]);
    assert!(r.events(Some(ComputerId(2)), 10).unwrap().is_empty());
    assert_eq!(r.txn.open_table(EVENTS_BY_TIME).unwrap().len().unwrap(), 2);
}

#[test]
fn an_agent_state_behind_a_deleted_event_is_brought_up_to_its_sequence() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    let state = |computer, last_seq| AgentState {
        computer: ComputerId(computer),
        last_seq,
        ..records::tests::sample_agent_state()
    };
    // Computer 1's session record was lost after its events 5 and 6 were stored; computer
    // 2's state already knows its event 3.
    w.put_agent_state(&state(1, 4)).unwrap();
    w.put_agent_state(&state(2, 7)).unwrap();
    for (computer, seq, received) in [(1, 5, 10), (1, 6, 11), (2, 3, 12), (1, 7, 90)] {
        w.insert_event(&event_received(computer, seq, received))
            .unwrap();
    }
    // An index entry whose event is gone goes without counting as a deleted event.
    w.txn.open_table(EVENTS).unwrap().remove((2, 3)).unwrap();
    let deleted = w.delete_events_received_before(WallMs(50), 10).unwrap();
    assert_eq!(
        deleted,
        Deleted {
            events: 2,
            done: true
        }
    );
    assert_eq!(w.agent_state(ComputerId(1)).unwrap().unwrap().last_seq, 6);
    assert_eq!(w.agent_state(ComputerId(2)).unwrap().unwrap().last_seq, 7);
    assert_eq!(keys(&w.events(None, 10).unwrap()), [(1, 7)]);
}

#[test]
fn a_batch_is_one_index_entry_per_computer_and_time_and_is_deleted_whole() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    let batch: Vec<_> = (1..=300).map(|seq| event_received(1, seq, 10)).collect();
    assert_eq!(w.insert_events(&batch).unwrap(), 300);
    // The same millisecond again, with a resend: the run widens, nothing is stored twice.
    let more: Vec<_> = (300..=400).map(|seq| event_received(1, seq, 10)).collect();
    assert_eq!(w.insert_events(&more).unwrap(), 100);
    assert_eq!(w.insert_events(&[event_received(2, 1, 20)]).unwrap(), 1);
    assert_eq!(w.txn.open_table(EVENTS_BY_TIME).unwrap().len().unwrap(), 2);
    let newest = w.events(None, 3).unwrap();
    assert_eq!(keys(&newest), [(2, 1), (1, 400), (1, 399)]);

    // A limit smaller than a batch still deletes the whole batch: it is one entry.
    let deleted = w.delete_events_received_before(WallMs(15), 50).unwrap();
    assert_eq!(deleted.events, 400);
    assert_eq!(keys(&w.events(None, 10).unwrap()), [(2, 1)]);
    assert_eq!(w.event_count().unwrap(), 1);
}

#[test]
fn the_newest_events_of_all_computers_come_in_the_order_they_were_received() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    for (computer, seq, received) in [(1, 1, 5), (2, 7, 3), (1, 2, 9), (3, 1, 9), (2, 8, 1)] {
        w.insert_event(&event_received(computer, seq, received))
            .unwrap();
    }
    // A resend is not stored again, so it is not listed twice either.
    assert!(!w.insert_event(&event_received(1, 2, 11)).unwrap());
    w.commit().unwrap();
    let r = store.read().unwrap();
    assert_eq!(keys(&r.events(None, 3).unwrap()), [(3, 1), (1, 2), (1, 1)]);
    assert_eq!(keys(&r.events(None, 99).unwrap()).len(), 5);
    assert!(r.events(None, 0).unwrap().is_empty());
}

#[test]
fn a_schema_5_file_gains_the_index_of_its_events_by_time() {
    let (_dir, path, store) = temp_store();
    let mut w = store.write().unwrap();
    for (computer, seq, received) in [(4, 1, 20), (4, 2, 30), (9, 1, 10)] {
        w.insert_event(&event_received(computer, seq, received))
            .unwrap();
    }
    w.txn.delete_table(EVENTS_BY_TIME).unwrap();
    let store = migrated_from(store, &path, w, 5);
    let r = store.read().unwrap();
    assert_eq!(keys(&r.events(None, 10).unwrap()), [(4, 2), (4, 1), (9, 1)]);
    drop(r);
    let mut w = store.write().unwrap();
    let deleted = w.delete_events_received_before(WallMs(25), 10).unwrap();
    assert_eq!(deleted.events, 2);
    w.commit().unwrap();
    assert_eq!(
        keys(&store.read().unwrap().events(None, 10).unwrap()),
        [(4, 2)]
    );
}

#[test]
fn the_newest_event_sequence_is_per_computer() {
    let (_dir, _path, store) = temp_store();
    let event = |computer, seq| StoredEvent {
        computer: ComputerId(computer),
        seq,
        id: 1000,
        time: crate::clock::WallMs(seq),
        received: crate::clock::WallMs(seq),
        fields: Vec::new(),
    };
    let mut w = store.write().unwrap();
    for (computer, seq) in [(1, 3), (1, 9), (1, 4), (2, 12), (3, u64::MAX)] {
        w.insert_event(&event(computer, seq)).unwrap();
    }
    w.commit().unwrap();
    let r = store.read().unwrap();
    assert_eq!(r.newest_event_seq(ComputerId(1)).unwrap(), Some(9));
    assert_eq!(r.newest_event_seq(ComputerId(2)).unwrap(), Some(12));
    assert_eq!(r.newest_event_seq(ComputerId(3)).unwrap(), Some(u64::MAX));
    assert_eq!(r.newest_event_seq(ComputerId(4)).unwrap(), None);
    assert_eq!(r.newest_event_seq(ComputerId(0)).unwrap(), None);
}
