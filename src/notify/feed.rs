//! Agent events forwarded to a syslog channel, sans-io: where the channel stands in the events
//! the manager stored ([`Position`], in the order they were stored), what it does with the
//! events after it ([`plan`]: send the ids it forwards, pass over the others, count those event
//! retention deleted first), and its tallies ([`Cursor`], kept in the store).
//!
//! Events are not copied into the outbox: a site forwarding every heartbeat's events would
//! write each twice. The store keeps instead the order events arrived in (`event_arrivals`,
//! written only while some channel forwards events) and each such channel a cursor over it.

use crate::clock::WallMs;
use crate::model::StoredEvent;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// An event's place in the order the manager stored events: the store's arrival sequence of
/// the batch that brought it, then its sequence on its agent. Every event stored later has a
/// greater position, whatever the wall clock did meanwhile (the store's index by time does not
/// promise that: a clock stepped back files new events before old ones).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    pub arrival: u64,
    pub seq: u64,
}

impl Position {
    /// After every event of arrival `arrival`: where a channel added once that arrival is
    /// stored starts, so it is not sent the site's history.
    pub fn end_of(arrival: u64) -> Position {
        Position {
            arrival,
            seq: u64::MAX,
        }
    }
}

/// What the store finds after a position, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrived {
    Event(Position, StoredEvent),
    /// `count` events stored and deleted (by event retention) before the channel got to them;
    /// the last of them at `through`.
    Gone {
        through: Position,
        count: u64,
    },
}

/// One event to send, with what the formats say about its computer, read when it is sent (a
/// computer deleted since has no host name left: the event goes without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNotice {
    pub event: StoredEvent,
    /// The computer's host name; empty when the computer is gone.
    pub hostname: String,
    /// Where the computer's agent last connected from.
    pub address: Option<IpAddr>,
}

/// What a channel does next, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Send(Position, StoredEvent),
    /// Nothing to send up to `through`: `skipped` events of ids the channel does not forward,
    /// `dropped` deleted before they could be sent.
    Pass {
        through: Position,
        skipped: u64,
        dropped: u64,
    },
}

/// The steps for what arrived after a channel's position: each event of an id in `forwarded`
/// is sent, the rest passed over; passes in a row are one step, written with the next send.
pub fn plan(forwarded: &[u32], arrived: Vec<Arrived>) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for item in arrived {
        let (through, skipped, dropped) = match item {
            Arrived::Event(at, event) if forwarded.contains(&event.id) => {
                steps.push(Step::Send(at, event));
                continue;
            }
            Arrived::Event(at, _) => (at, 1, 0),
            Arrived::Gone { through, count } => (through, 0, count),
        };
        match steps.last_mut() {
            Some(Step::Pass {
                through: last,
                skipped: s,
                dropped: d,
            }) => {
                *last = through;
                *s = s.saturating_add(skipped);
                *d = d.saturating_add(dropped);
            }
            _ => steps.push(Step::Pass {
                through,
                skipped,
                dropped,
            }),
        }
    }
    steps
}

/// A channel's progress through the stored events and its tallies, kept in the store so that
/// a restart resumes it; the events' counterpart of [`super::Delivery`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Every event at or before this position is done with (sent, given up, passed over).
    pub done_through: Position,
    pub sent: u64,
    /// Given up after `give_up_after`.
    pub failed: u64,
    /// Of ids the channel does not forward.
    pub skipped: u64,
    /// Deleted by event retention before the channel could send them.
    pub dropped: u64,
    /// Failed attempts at the event after `done_through`.
    pub attempts: u32,
    pub last_attempt: Option<WallMs>,
    pub last_sent: Option<WallMs>,
    /// The last failure's error, kept after a success for the console; `None` until one.
    pub last_error: Option<String>,
    /// Whether the last attempt failed.
    pub failing: bool,
}

impl Cursor {
    /// A cursor with nothing done yet, after `start`.
    pub fn at(start: Position) -> Cursor {
        Cursor {
            done_through: start,
            ..Cursor::default()
        }
    }

    /// Passed over everything up to `through`. A position never moves back: a step planned
    /// from an older read cannot undo a newer record.
    pub fn pass(&mut self, through: Position, skipped: u64, dropped: u64) {
        self.done_through = self.done_through.max(through);
        self.skipped = self.skipped.saturating_add(skipped);
        self.dropped = self.dropped.saturating_add(dropped);
    }

    pub fn sent(&mut self, at: Position, now: WallMs) {
        self.done_through = self.done_through.max(at);
        self.sent = self.sent.saturating_add(1);
        self.attempts = 0;
        self.last_attempt = Some(now);
        self.last_sent = Some(now);
        self.failing = false;
    }

    /// The event at `at` is given up: the channel goes on with the next.
    pub fn gave_up(&mut self, at: Position, now: WallMs, error: String) {
        self.done_through = self.done_through.max(at);
        self.failed = self.failed.saturating_add(1);
        self.attempts = 0;
        self.last_attempt = Some(now);
        self.last_error = Some(error);
        self.failing = true;
    }

    /// An attempt failed and will be retried: the position stays.
    pub fn failed(&mut self, now: WallMs, error: String) {
        self.attempts = self.attempts.saturating_add(1);
        self.last_attempt = Some(now);
        self.last_error = Some(error);
        self.failing = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ComputerId;

    fn at(arrival: u64, seq: u64) -> Position {
        Position { arrival, seq }
    }

    fn event(id: u32, seq: u64) -> StoredEvent {
        StoredEvent {
            computer: ComputerId(7),
            seq,
            id,
            time: WallMs(1),
            received: WallMs(2),
            fields: Vec::new(),
        }
    }

    #[test]
    fn positions_order_by_arrival_then_sequence_and_a_new_channel_starts_after_everything() {
        assert!(at(1, 900) < at(2, 1));
        assert!(at(2, 1) < at(2, 2));
        assert!(at(2, u64::MAX) < at(3, 0));
        assert!(Position::end_of(2) > at(2, 5_000_000));
        assert_eq!(
            Cursor::at(Position::end_of(4)).done_through,
            at(4, u64::MAX)
        );
    }

    #[test]
    fn forwarded_ids_are_sent_and_runs_of_others_and_deleted_ones_pass_as_one_step() {
        let arrived = vec![
            Arrived::Event(at(1, 1), event(1004, 1)),
            Arrived::Gone {
                through: at(1, 3),
                count: 2,
            },
            Arrived::Event(at(2, 4), event(1002, 4)),
            Arrived::Event(at(2, 5), event(1000, 5)),
            Arrived::Event(at(3, 6), event(1001, 6)),
            Arrived::Event(at(3, 7), event(1002, 7)),
        ];
        assert_eq!(
            plan(&[1000, 1001], arrived),
            vec![
                Step::Pass {
                    through: at(2, 4),
                    skipped: 2,
                    dropped: 2
                },
                Step::Send(at(2, 5), event(1000, 5)),
                Step::Send(at(3, 6), event(1001, 6)),
                Step::Pass {
                    through: at(3, 7),
                    skipped: 1,
                    dropped: 0
                },
            ]
        );
        assert!(plan(&[1000], Vec::new()).is_empty());
    }

    #[test]
    fn the_cursor_moves_on_sends_give_ups_and_passes_only_and_never_back() {
        let mut c = Cursor::at(at(1, u64::MAX));
        c.failed(WallMs(10), "refused".into());
        c.failed(WallMs(11), "refused".into());
        assert_eq!(
            (c.done_through, c.attempts, c.failing),
            (at(1, u64::MAX), 2, true)
        );
        c.sent(at(2, 3), WallMs(12));
        assert_eq!((c.done_through, c.sent, c.attempts), (at(2, 3), 1, 0));
        assert!(!c.failing);
        assert_eq!(
            c.last_error.as_deref(),
            Some("refused"),
            "kept for the console"
        );
        c.pass(at(2, 9), 4, 2);
        c.gave_up(at(3, 1), WallMs(13), "timeout".into());
        assert_eq!(c.done_through, at(3, 1));
        assert_eq!((c.skipped, c.dropped, c.failed), (4, 2, 1));
        assert!(c.failing);
        // A record planned from an older read arrives late: the position stays.
        c.pass(at(2, 1), 1, 0);
        c.sent(at(1, 5), WallMs(14));
        assert_eq!(c.done_through, at(3, 1));
    }
}
