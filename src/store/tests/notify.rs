//! The notification tables: the outbox is appended only while a channel exists, stays
//! bounded, and is trimmed to what some channel still needs.

use super::*;
use crate::notify::{Change, Channel, Delivery, Notice};

fn channel(name: &str) -> Channel {
    Channel {
        name: name.into(),
        ..crate::notify::channel::tests::sample()
    }
}

fn notice() -> Notice {
    let mut n = Notice::test(crate::clock::WallMs(5), "x");
    n.change = Change::Raised;
    n
}

fn seqs(w: &WriteTxn) -> Vec<u64> {
    w.notices_after(0, 100)
        .unwrap()
        .iter()
        .map(|n| n.seq)
        .collect()
}

#[test]
fn the_outbox_fills_only_with_a_channel_and_drops_its_oldest_when_full() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    assert_eq!(w.enqueue_notice(notice()).unwrap(), None);
    w.put_channel(&channel("Mail")).unwrap();
    assert_eq!(w.delivery("mail").unwrap().unwrap().done_through, 0);
    for expected in 1..=3 {
        assert_eq!(w.enqueue_within(notice(), 3).unwrap(), Some(expected));
    }
    assert_eq!(w.enqueue_within(notice(), 3).unwrap(), Some(4));
    assert_eq!(seqs(&w), [2, 3, 4]);
    assert_eq!(w.notices_dropped().unwrap(), 1);
    assert_eq!(w.last_notice_seq().unwrap(), 4);
    // A channel added later starts after what is queued.
    w.put_channel(&channel("hook")).unwrap();
    assert_eq!(w.delivery("HOOK").unwrap().unwrap().done_through, 4);
    w.commit().unwrap();
    assert_eq!(store.read().unwrap().outbox_len().unwrap(), 3);
}

#[test]
fn the_outbox_is_trimmed_to_the_slowest_channel_and_emptied_without_channels() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_channel(&channel("a")).unwrap();
    w.put_channel(&channel("b")).unwrap();
    for _ in 0..5 {
        w.enqueue_notice(notice()).unwrap();
    }
    let at = |n| Delivery {
        done_through: n,
        ..Delivery::default()
    };
    w.put_delivery("a", &at(4)).unwrap();
    w.put_delivery("b", &at(2)).unwrap();
    assert_eq!(w.trim_outbox().unwrap(), 2);
    assert_eq!(seqs(&w), [3, 4, 5]);
    assert_eq!(
        w.notices_after(3, 1)
            .unwrap()
            .iter()
            .map(|n| n.seq)
            .collect::<Vec<_>>(),
        [4]
    );
    assert!(w.delete_channel("B").unwrap());
    assert_eq!(seqs(&w), [5]);
    assert!(w.delete_channel("a").unwrap());
    assert!(seqs(&w).is_empty());
    assert!(!w.delete_channel("a").unwrap());
    assert!(w.delivery("a").unwrap().is_none());
}
