//! The arrivals of forwarded events and the cursors over them: noted only while a channel
//! forwards events, in the order events were stored whatever the wall clock says, gaps left by
//! retention reported as gone, trimmed to the slowest cursor; the schema-7 channel record and
//! the migration to schema 8.

use super::*;
use crate::notify::feed::{Arrived, Cursor, Position};
use crate::notify::{Channel, Syslog, SyslogFormat, SyslogTransport, Target};
use crate::store::event_feed::{EVENT_ARRIVALS, EVENT_CURSORS, EventCursorRecord};
use crate::store::notify::ChannelRecord;
use crate::store::notify_v1::{ChannelV1, SyslogV1, TargetV1};
use crate::store::records::tests::{check_golden, check_legacy};
use std::time::Duration;

fn syslog(name: &str, events: &[u32]) -> Channel {
    Channel {
        name: name.into(),
        target: Target::Syslog(Syslog {
            host: "siem.example".into(),
            port: 6514,
            transport: SyslogTransport::Tls,
            format: SyslogFormat::Cef,
            ca_cert: None,
            events: events.to_vec(),
        }),
        give_up_after: Duration::from_secs(86_400),
        created: WallMs(1_700_000_000_000),
    }
}

fn event(computer: u64, seq: u64, received: u64) -> StoredEvent {
    StoredEvent {
        computer: ComputerId(computer),
        seq,
        id: 1000,
        time: WallMs(seq),
        received: WallMs(received),
        fields: Vec::new(),
    }
}

fn at(arrival: u64, seq: u64) -> Position {
    Position { arrival, seq }
}

/// The positions of the events after `after`, and the gaps as `(through, count)`.
fn read(r: &impl EventFeedReads, after: Position) -> (Vec<Position>, Vec<(Position, u64)>) {
    let (mut events, mut gone) = (Vec::new(), Vec::new());
    for item in r.events_after(after, 100).unwrap() {
        match item {
            Arrived::Event(p, e) => {
                assert_eq!(p.seq, e.seq);
                events.push(p);
            }
            Arrived::Gone { through, count } => gone.push((through, count)),
        }
    }
    (events, gone)
}

fn arrivals(w: &WriteTxn) -> u64 {
    w.txn.open_table(EVENT_ARRIVALS).unwrap().len().unwrap()
}

#[test]
fn arrivals_are_noted_only_while_a_channel_forwards_events_and_in_the_order_stored() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.insert_events(&[event(1, 1, 100)]).unwrap();
    w.put_channel(&syslog("plain", &[])).unwrap();
    w.insert_events(&[event(1, 2, 100)]).unwrap();
    assert_eq!(arrivals(&w), 0, "no channel forwards events");
    assert!(!w.forwards_events().unwrap());
    w.put_channel(&syslog("SIEM", &[1000])).unwrap();
    let start = w.event_cursor("siem").unwrap().unwrap().done_through;
    assert_eq!(
        start,
        Position::end_of(0),
        "at the end: the history is not sent"
    );
    // A wall clock stepped back: the later batch has the earlier time, and still comes after.
    w.insert_events(&[event(1, 3, 500), event(1, 4, 500), event(2, 1, 500)])
        .unwrap();
    w.insert_events(&[event(1, 4, 90), event(1, 5, 90), event(1, 7, 90)])
        .unwrap();
    assert_eq!(w.last_event_arrival().unwrap(), 4);
    let (events, gone) = read(&w, start);
    assert_eq!(
        events,
        [at(1, 3), at(1, 4), at(2, 1), at(3, 5), at(4, 7)],
        "a resent event is not noted again; a gap in a batch splits its run"
    );
    assert!(gone.is_empty());
    assert_eq!(w.events_pending(start).unwrap(), 5);
    assert_eq!(read(&w, at(1, 3)).0[0], at(1, 4), "mid-run");
    assert_eq!(w.events_pending(at(1, 4)).unwrap(), 3);
    assert_eq!(w.events_pending(Position::end_of(4)).unwrap(), 0);
    let first_two = w.events_after(start, 2).unwrap();
    assert_eq!(first_two.len(), 2);
    w.commit().unwrap();
    let r = store.read().unwrap();
    assert_eq!(read(&r, Position::end_of(2)).0, [at(3, 5), at(4, 7)]);
}

#[test]
fn events_deleted_by_retention_before_a_channel_got_to_them_are_reported_gone() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_channel(&syslog("siem", &[1000])).unwrap();
    w.insert_events(&[event(1, 1, 10), event(1, 2, 10), event(1, 3, 10)])
        .unwrap();
    w.insert_events(&[event(2, 1, 20)]).unwrap();
    w.insert_events(&[event(1, 4, 30)]).unwrap();
    // Retention takes the first two batches; a hand-deleted event makes a gap inside a run.
    w.delete_events_received_before(WallMs(25), 100).unwrap();
    let (events, gone) = read(&w, Position::end_of(0));
    assert_eq!(events, [at(3, 4)]);
    assert_eq!(gone, [(at(1, 3), 3), (at(2, 1), 1)]);
    w.insert_events(&[event(3, 1, 40), event(3, 2, 40), event(3, 3, 40)])
        .unwrap();
    w.txn.open_table(EVENTS).unwrap().remove((3, 2)).unwrap();
    let (events, gone) = read(&w, at(3, 4));
    assert_eq!(events, [at(4, 1), at(4, 3)]);
    assert_eq!(gone, [(at(4, 2), 1)]);
}

#[test]
fn a_record_that_no_longer_decodes_is_passed_as_gone_so_no_channel_stops_at_it() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_channel(&syslog("siem", &[1000])).unwrap();
    w.insert_events(&[event(1, 1, 10), event(1, 2, 10)])
        .unwrap();
    w.insert_events(&[event(2, 1, 10)]).unwrap();
    w.insert_events(&[event(3, 1, 10)]).unwrap();
    w.txn
        .open_table(EVENTS)
        .unwrap()
        .insert((1, 1), [0xff].as_slice())
        .unwrap();
    w.txn
        .open_table(EVENT_ARRIVALS)
        .unwrap()
        .insert(2, [1, 2, 3].as_slice())
        .unwrap();
    let (events, gone) = read(&w, Position::end_of(0));
    assert_eq!(events, [at(1, 2), at(3, 1)]);
    assert_eq!(gone, [(at(1, 1), 1), (Position::end_of(2), 0)]);
    assert_eq!(w.events_pending(Position::end_of(0)).unwrap(), 3);
    w.put_event_cursor("siem", &Cursor::at(at(3, 1))).unwrap();
    assert_eq!(w.trim_event_arrivals().unwrap(), 3);
}

#[test]
fn arrivals_are_trimmed_to_the_slowest_cursor_and_go_with_the_last_forwarding_channel() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_channel(&syslog("a", &[1000])).unwrap();
    w.put_channel(&syslog("b", &[1001, 1000])).unwrap();
    for seq in 1..=4 {
        w.insert_events(&[event(1, seq * 2 - 1, 1), event(1, seq * 2, 1)])
            .unwrap();
    }
    assert_eq!(arrivals(&w), 4);
    w.put_event_cursor("a", &Cursor::at(at(3, 6))).unwrap();
    w.put_event_cursor("b", &Cursor::at(at(2, 3))).unwrap();
    assert_eq!(w.trim_event_arrivals().unwrap(), 1, "b is inside arrival 2");
    w.put_event_cursor("b", &Cursor::at(at(2, 4))).unwrap();
    assert_eq!(w.trim_event_arrivals().unwrap(), 1, "b is past arrival 2");
    assert_eq!(
        read(&w, at(2, 4)).0,
        [at(3, 5), at(3, 6), at(4, 7), at(4, 8)]
    );
    // Replacing a channel keeps its place; one that stops forwarding loses it.
    w.put_channel(&syslog("a", &[1000, 1001])).unwrap();
    assert_eq!(w.event_cursor("a").unwrap().unwrap().done_through, at(3, 6));
    w.put_channel(&syslog("b", &[])).unwrap();
    assert!(w.event_cursor("b").unwrap().is_none());
    assert_eq!(arrivals(&w), 1, "only a's arrival 4 is left");
    assert!(w.delete_channel("A").unwrap());
    assert_eq!(arrivals(&w), 0);
    assert!(!w.forwards_events().unwrap());
    w.insert_events(&[event(1, 9, 1)]).unwrap();
    assert_eq!(arrivals(&w), 0);
}

#[test]
fn a_schema_7_file_gains_the_feed_tables_and_its_channels_forward_no_events() {
    let (_dir, path, store) = temp_store();
    let w = store.write().unwrap();
    let old = ChannelRecord::V1(ChannelV1 {
        name: "siem".into(),
        target: TargetV1::Syslog(SyslogV1 {
            host: "siem.example".into(),
            port: 6514,
            transport: SyslogTransport::Tls,
            format: SyslogFormat::Cef,
            ca_cert: None,
        }),
        give_up_after: Duration::from_secs(86_400),
        created: WallMs(1_700_000_000_000),
    });
    let bytes = records::encode("channels", &old).unwrap();
    w.txn
        .open_table(crate::store::notify::CHANNELS)
        .unwrap()
        .insert("siem", bytes.as_slice())
        .unwrap();
    w.txn.delete_table(EVENT_ARRIVALS).unwrap();
    w.txn.delete_table(EVENT_CURSORS).unwrap();
    let store = migrated_from(store, &path, w, 7);
    let r = store.read().unwrap();
    assert_eq!(r.channels().unwrap(), [syslog("siem", &[])]);
    assert!(!r.forwards_events().unwrap());
    assert!(r.events_after(Position::default(), 10).unwrap().is_empty());
}

#[test]
fn golden_vectors_of_channels_and_cursors_still_decode_and_encode_the_same() {
    check_legacy::<ChannelRecord>("channel-v1", syslog("siem", &[]));
    check_golden::<ChannelRecord>("channel-v2", syslog("siem", &[1000, 5004]));
    let cursor = Cursor {
        done_through: at(5, 3),
        sent: 2,
        failed: 0,
        skipped: 4,
        dropped: 1,
        attempts: 0,
        last_attempt: Some(WallMs(1_700_000_060_000)),
        last_sent: Some(WallMs(1_700_000_060_000)),
        last_error: None,
        failing: false,
    };
    check_golden::<EventCursorRecord>("event-cursor-v1", cursor);
    let doc = include_str!("../../../schema/store.md");
    for name in [
        "`event_arrivals`",
        "`event_cursors`",
        "`next_event_arrival`",
        "ChannelRecord::V2",
        "EventCursorRecord::V1",
    ] {
        assert!(doc.contains(name), "schema/store.md does not name {name}");
    }
}
