//! The agent events a syslog channel forwards, sent by the channel's own task (`notifier.rs`)
//! when no notice waits: read after the channel's cursor where the store keeps them
//! (`store/event_feed.rs`), planned by `notify::feed`, sent one at a time in the order they
//! were stored, with the alerts' retries, backoff and give-up. The cursor moves only once an
//! event is sent or given up, so a crash in between sends it again (at least once: the
//! computer and the event's sequence tell a collector it has it already).

use super::{Done, LOOK_EVERY, Notifier};
use crate::alerts::{AlertKind, record};
use crate::clock::WallMs;
use crate::metrics::{Delivered, NoticeOutcome};
use crate::model::ComputerId;
use crate::notify::delivery::{AfterFailure, after_refusal};
use crate::notify::feed::{self, Step};
use crate::notify::send::{Answer, SendError};
use crate::notify::{Channel, Cursor, EventNotice, Position, Syslog, Target, deliver};
use crate::store::{EventFeedReads, NotifyReads, ReadTxn, Reads, Store, StoreError};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How many events (or gaps) a channel reads at a time: between two looks at the outbox.
const BATCH: usize = 200;

/// A forwarding channel's state in its task.
pub(super) struct Feed {
    syslog: Syslog,
    /// The last event sent, even if its record failed: a store that refuses writes must not
    /// make the channel send it again every second.
    sent_through: Option<Position>,
}

/// What the channel does with what it read.
enum Planned {
    Send(Position, EventNotice),
    Pass {
        through: Position,
        skipped: u64,
        dropped: u64,
    },
}

impl Feed {
    /// The feed of `channel`, if it forwards any event.
    pub(super) fn of(channel: &Channel) -> Option<Feed> {
        match &channel.target {
            Target::Syslog(syslog) if !syslog.events.is_empty() => Some(Feed {
                syslog: syslog.clone(),
                sent_through: None,
            }),
            _ => None,
        }
    }

    /// Reads the events after the channel's cursor and works through them: `Some(wait)` to
    /// wait that long before the next round (nothing to do, or a failure to retry), `None` to
    /// look again at once.
    pub(super) async fn round(
        &mut self,
        n: &Notifier,
        channel: &Channel,
    ) -> Result<Option<Duration>, StoreError> {
        let (store, ch, forwarded) = (n.store.clone(), channel.clone(), self.syslog.events.clone());
        let found = smol::unblock(move || read(&store, &ch, &forwarded)).await;
        let (cursor, planned, pending) = match found {
            Ok(Some(found)) => found,
            // Removed or changed meanwhile: the task of its new settings takes over.
            Ok(None) => return Ok(Some(LOOK_EVERY)),
            Err(e) => {
                log::error!(
                    "notifications: channel '{}' cannot read the agent events: {e}",
                    channel.name
                );
                return Ok(Some(LOOK_EVERY));
            }
        };
        n.metrics
            .pending(&channel.name, Delivered::Event, Some(pending));
        if planned.is_empty() {
            return Ok(Some(LOOK_EVERY));
        }
        self.work_through(n, channel, cursor, planned).await
    }

    async fn work_through(
        &mut self,
        n: &Notifier,
        channel: &Channel,
        mut cursor: Cursor,
        planned: Vec<Planned>,
    ) -> Result<Option<Duration>, StoreError> {
        let name = &channel.name;
        let mut passed: Option<(Position, u64, u64)> = None;
        for step in planned {
            let (at, notice) = match step {
                Planned::Pass {
                    through,
                    skipped,
                    dropped,
                } => {
                    note_passed(n, name, skipped, dropped);
                    let (s, d) = passed.map_or((0, 0), |(_, s, d)| (s, d));
                    passed = Some((
                        through,
                        s.saturating_add(skipped),
                        d.saturating_add(dropped),
                    ));
                    continue;
                }
                Planned::Send(at, notice) => (at, notice),
            };
            let received = notice.event.received;
            let age_at = |now: WallMs| Duration::from_millis(now.0.saturating_sub(received.0));
            let result = if self.sent_through.is_some_and(|sent| at <= sent) {
                // Sent before a failed record: only the record is missing.
                Ok(Answer("sent before".into()))
            } else if cursor.failing && age_at(n.clock.wall()) >= channel.give_up_after {
                // A failing channel gives up what is already too old without trying.
                Err(None)
            } else {
                deliver::deliver_event(&self.syslog, &notice, &n.site, &*n.clock)
                    .await
                    .map_err(Some)
            };
            let now = n.clock.wall();
            let (done, wait) = match result {
                Ok(_) => {
                    self.sent_through = Some(at);
                    n.metrics.delivered(
                        name,
                        Delivered::Event,
                        NoticeOutcome::Sent,
                        1,
                        Some(age_at(now)),
                    );
                    (Done::Sent, None)
                }
                Err(e) => failed(n, channel, &cursor, &notice, e, age_at(now)),
            };
            let (store, ch, pass) = (n.store.clone(), channel.clone(), passed.take());
            cursor =
                smol::unblock(move || record(&store, &ch, cursor, pass, Some((at, done)), now))
                    .await?;
            if wait.is_some() {
                return Ok(wait);
            }
        }
        if passed.is_some() {
            let (store, ch, now) = (n.store.clone(), channel.clone(), n.clock.wall());
            smol::unblock(move || record(&store, &ch, cursor, passed, None, now)).await?;
        }
        Ok(None)
    }
}

/// Counts what a pass steps over; events deleted before they were sent are logged too, since
/// someone's SIEM will lack them.
fn note_passed(n: &Notifier, channel: &str, skipped: u64, dropped: u64) {
    if skipped > 0 {
        let outcome = NoticeOutcome::Skipped;
        n.metrics
            .delivered(channel, Delivered::Event, outcome, skipped, None);
    }
    if dropped > 0 {
        let outcome = NoticeOutcome::Dropped;
        n.metrics
            .delivered(channel, Delivered::Event, outcome, dropped, None);
        log::warn!(
            "notifications: channel '{channel}' dropped {dropped} agent event(s) that event \
             retention deleted before they were sent"
        );
    }
}

/// What a failed attempt at `notice` leads to: given up, or retried after a wait.
fn failed(
    n: &Notifier,
    channel: &Channel,
    cursor: &Cursor,
    notice: &EventNotice,
    error: Option<SendError>,
    age: Duration,
) -> (Done, Option<Duration>) {
    let permanent = error.as_ref().is_some_and(SendError::is_permanent);
    let error = error.map_or_else(
        || {
            cursor
                .last_error
                .clone()
                .unwrap_or_else(|| "the channel is failing".to_string())
        },
        |e| e.chain(),
    );
    let attempts = cursor.attempts.saturating_add(1);
    let e = &notice.event;
    match after_refusal(permanent, attempts, age, channel.give_up_after) {
        AfterFailure::GiveUp => {
            log::error!(
                "notifications: channel '{}' gave up event {} of computer {} after {attempts} \
                 attempt(s): {error}",
                channel.name,
                e.seq,
                e.computer
            );
            let outcome = NoticeOutcome::Failed;
            n.metrics
                .delivered(&channel.name, Delivered::Event, outcome, 1, None);
            (Done::GaveUp { error }, None)
        }
        AfterFailure::RetryIn(wait) => {
            log::warn!(
                "notifications: channel '{}' could not send event {} of computer {} (attempt \
                 {attempts}), retrying in {}: {error}",
                channel.name,
                e.seq,
                e.computer,
                crate::model::format_duration(wait)
            );
            (Done::Failed { error }, Some(wait))
        }
    }
}

/// The channel's cursor and what to do with the events after it, with how many are pending;
/// `None` if the channel was removed or changed, or forwards nothing any more.
fn read(
    store: &Store,
    channel: &Channel,
    forwarded: &[u32],
) -> Result<Option<(Cursor, Vec<Planned>, u64)>, StoreError> {
    let txn = store.read()?;
    if txn.channel(&channel.name)?.as_ref() != Some(channel) {
        return Ok(None);
    }
    let Some(cursor) = txn.event_cursor(&channel.name)? else {
        return Ok(None);
    };
    let pending = txn.events_pending(cursor.done_through)?;
    let arrived = txn.events_after(cursor.done_through, BATCH)?;
    let mut computers = HashMap::new();
    let planned = feed::plan(forwarded, arrived)
        .into_iter()
        .map(|step| match step {
            Step::Send(at, event) => {
                let (hostname, address) = computers
                    .entry(event.computer)
                    .or_insert_with(|| about(&txn, event.computer))
                    .clone();
                Planned::Send(
                    at,
                    EventNotice {
                        event,
                        hostname,
                        address,
                    },
                )
            }
            Step::Pass {
                through,
                skipped,
                dropped,
            } => Planned::Pass {
                through,
                skipped,
                dropped,
            },
        })
        .collect();
    Ok(Some((cursor, planned, pending)))
}

/// The computer's host name and where its agent last connected from, as far as the store
/// says: a computer deleted since, or a record that does not decode, leaves them out rather
/// than hold the channel.
fn about(txn: &ReadTxn, computer: ComputerId) -> (String, Option<IpAddr>) {
    let hostname = match txn.computer(computer) {
        Ok(found) => found.map(|c| c.hostname).unwrap_or_default(),
        Err(e) => {
            log::warn!("notifications: an event's computer cannot be read: {e}");
            String::new()
        }
    };
    let address = txn
        .agent_state(computer)
        .ok()
        .flatten()
        .and_then(|state| state.address)
        .and_then(|a| ip_of(&a));
    (hostname, address)
}

/// The IP address of an agent's recorded address: `IP:PORT` as a session records it, or the
/// bare IP activation records.
fn ip_of(address: &str) -> Option<IpAddr> {
    address
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| address.parse::<IpAddr>())
        .ok()
}

/// Writes the channel's new cursor (and the alert a give-up raises, or the one a success
/// clears) in one transaction, then trims what every forwarding channel is done with.
fn record(
    store: &Store,
    channel: &Channel,
    mut cursor: Cursor,
    passed: Option<(Position, u64, u64)>,
    done: Option<(Position, Done)>,
    now: WallMs,
) -> Result<Cursor, StoreError> {
    let mut txn = store.write()?;
    // The channel may have been removed (or replaced) meanwhile: its cursor went with it.
    if txn.channel(&channel.name)?.as_ref() != Some(channel)
        || txn.event_cursor(&channel.name)?.is_none()
    {
        return Ok(cursor);
    }
    if let Some((through, skipped, dropped)) = passed {
        cursor.pass(through, skipped, dropped);
    }
    let failed = AlertKind::NotificationFailed;
    match done {
        None => {}
        Some((at, Done::Sent)) => {
            cursor.sent(at, now);
            record::clear_site(
                &mut txn,
                failed,
                &channel.name,
                now,
                "an event was delivered",
            )?;
        }
        Some((at, Done::GaveUp { error })) => {
            let message = format!(
                "channel '{}' gave up an agent event: not delivered within {}; last error: \
                 {error}",
                channel.name,
                crate::model::format_duration(channel.give_up_after)
            );
            cursor.gave_up(at, now, error);
            // Raised once while the channel fails, as for its notices.
            if txn.active_site_alert(failed, &channel.name)?.is_none() {
                record::raise_site(&mut txn, failed, &channel.name, message, now)?;
            }
        }
        Some((_, Done::Failed { error })) => cursor.failed(now, error),
    }
    txn.put_event_cursor(&channel.name, &cursor)?;
    txn.trim_event_arrivals()?;
    txn.commit()?;
    Ok(cursor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::metrics::{Metrics, StoreCounts};
    use crate::model::StoredEvent;
    use crate::notify::format::Site;
    use crate::notify::{SyslogFormat, SyslogTransport};
    use std::net::UdpSocket;
    use std::sync::Arc;

    const START: WallMs = WallMs(1_772_373_909_123);

    fn notifier(dir: &tempfile::TempDir) -> (Arc<ManualClock>, Notifier) {
        let clock = Arc::new(ManualClock::new(START));
        let notifier = Notifier {
            store: Arc::new(Store::open(&dir.path().join("picket.redb")).unwrap()),
            clock: clock.clone(),
            metrics: Arc::new(Metrics::new()),
            site: Site {
                manager: "dsm1".into(),
                version: "0.1.0",
            },
        };
        (clock, notifier)
    }

    fn channel(port: u16, transport: SyslogTransport) -> Channel {
        let syslog = Syslog {
            host: "127.0.0.1".into(),
            port,
            transport,
            format: SyslogFormat::Text,
            ca_cert: None,
            events: vec![1000],
        };
        Channel::new(
            "siem",
            Target::Syslog(syslog),
            Duration::from_secs(60),
            START,
        )
        .unwrap()
    }

    fn event(seq: u64, id: u32, received: WallMs) -> StoredEvent {
        StoredEvent {
            computer: ComputerId(7),
            seq,
            id,
            time: received,
            received,
            fields: Vec::new(),
        }
    }

    fn store_events(n: &Notifier, events: &[StoredEvent]) {
        let mut w = n.store.write().unwrap();
        w.insert_events(events).unwrap();
        w.commit().unwrap();
    }

    fn cursor(n: &Notifier) -> Cursor {
        n.store
            .read()
            .unwrap()
            .event_cursor("siem")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn chosen_ids_go_out_in_order_others_are_passed_and_deleted_ones_counted_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (_clock, n) = notifier(&dir);
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let ch = channel(collector.local_addr().unwrap().port(), SyslogTransport::Udp);
        let mut w = n.store.write().unwrap();
        w.put_channel(&ch).unwrap();
        w.commit().unwrap();
        store_events(
            &n,
            &[
                event(1, 1000, START),
                event(2, 1002, START),
                event(3, 1000, START),
            ],
        );
        let mut feed = Feed::of(&ch).unwrap();
        assert_eq!(smol::block_on(feed.round(&n, &ch)).unwrap(), None);
        let mut buf = [0u8; 2048];
        for seq in [1, 3] {
            let len = collector.recv(&mut buf).unwrap();
            let line = String::from_utf8_lossy(&buf[..len]).into_owned();
            assert!(
                line.ends_with(&format!("(computer 7, event 1000, seq {seq})")),
                "{line}"
            );
        }
        let c = cursor(&n);
        assert_eq!((c.sent, c.skipped, c.dropped), (2, 1, 0));
        // Retention deletes an event stored long ago before the channel got to it.
        store_events(&n, &[event(4, 1000, WallMs(10)), event(5, 1000, START)]);
        let mut w = n.store.write().unwrap();
        w.delete_events_received_before(WallMs(20), 100).unwrap();
        w.commit().unwrap();
        assert_eq!(smol::block_on(feed.round(&n, &ch)).unwrap(), None);
        let len = collector.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..len]).ends_with("seq 5)"));
        let c = cursor(&n);
        assert_eq!((c.sent, c.skipped, c.dropped), (3, 1, 1));
        let text = n.metrics.encode(&StoreCounts::default());
        for line in [
            "{channel=\"siem\",outcome=\"sent\",what=\"event\"} 3",
            "{channel=\"siem\",outcome=\"skipped\",what=\"event\"} 1",
            "{channel=\"siem\",outcome=\"dropped\",what=\"event\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        // Caught up: nothing pending, nothing left to read, the arrivals trimmed.
        assert_eq!(
            smol::block_on(feed.round(&n, &ch)).unwrap(),
            Some(LOOK_EVERY)
        );
        let r = n.store.read().unwrap();
        assert_eq!(r.events_pending(Position::default()).unwrap(), 0);
    }

    #[test]
    fn a_dead_collector_is_retried_with_backoff_then_given_up_raising_notification_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, n) = notifier(&dir);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ch = channel(closed.local_addr().unwrap().port(), SyslogTransport::Tcp);
        drop(closed);
        let mut w = n.store.write().unwrap();
        w.put_channel(&ch).unwrap();
        w.commit().unwrap();
        store_events(&n, &[event(1, 1000, START), event(2, 1000, START)]);
        let mut feed = Feed::of(&ch).unwrap();
        let round = |feed: &mut Feed| smol::block_on(feed.round(&n, &ch)).unwrap();
        assert_eq!(round(&mut feed), Some(Duration::from_secs(1)));
        assert_eq!(round(&mut feed), Some(Duration::from_secs(2)));
        let c = cursor(&n);
        assert_eq!((c.attempts, c.failing, c.sent), (2, true, 0));
        assert!(c.last_error.is_some_and(|e| e.contains("127.0.0.1")));
        // Older than give_up_after: both are given up, the second without an attempt.
        clock.set_wall(WallMs(START.0 + 61_000));
        assert_eq!(round(&mut feed), None);
        let c = cursor(&n);
        assert_eq!((c.failed, c.sent, c.attempts), (2, 0, 0));
        let r = n.store.read().unwrap();
        let alert = r
            .active_site_alert(AlertKind::NotificationFailed, "siem")
            .unwrap();
        assert!(alert.is_some(), "notification-failed is raised once");
        assert_eq!(round(&mut feed), Some(LOOK_EVERY));
    }

    #[test]
    fn an_agent_address_is_read_with_or_without_its_port() {
        let v4 = IpAddr::from([10, 0, 0, 5]);
        assert_eq!(ip_of("10.0.0.5:50000"), Some(v4));
        assert_eq!(ip_of("10.0.0.5"), Some(v4));
        assert_eq!(
            ip_of("[::1]:4118"),
            Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert_eq!(
            ip_of("::1"),
            Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert_eq!(ip_of("web1:4118"), None);
    }
}
