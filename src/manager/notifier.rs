//! The notifier task: delivers the outbox (`store/notify.rs`) to every channel.
//!
//! Each channel has a task of its own, so a slow or dead mail server delays only its own
//! notices: never another channel's, never a heartbeat (the alerts were written before their
//! notices are read). A channel's task takes the notices after its position in order, skips
//! those its routes do not take or a maintenance window silences, sends the others one at a
//! time, and moves its position only once a notice is sent or given up: a crash in between
//! sends it again (at least once; the webhook's delivery id lets a receiver drop the repeat).
//! A failed send is retried with exponential backoff (`notify::delivery::after_failure`) until
//! the notice is older than the channel's `give_up_after`; then it is counted failed and the
//! channel's `notification-failed` alert is raised, to clear at its next delivery.
//!
//! A syslog channel that forwards agent events sends them from the same task, with the same
//! rules, whenever no notice waits (`notifier/events.rs`).

use crate::alerts::{AlertKind, record};
use crate::clock::{Clock, WallMs};
use crate::metrics::{Delivered, Metrics, NoticeOutcome};
use crate::model::PolicyId;
use crate::notify::delivery::{AfterFailure, after_refusal};
use crate::notify::format::Site;
use crate::notify::{Channel, Delivery, Notice, deliver, maintenance, route};
use crate::policy::PolicyTree;
use crate::store::{NotifyReads, Reads, Store, StoreError};
use crate::tasks::Spawner;
use smol::Task;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod events;

/// How often the outbox and the list of channels are looked at. A notice waits at most this
/// long before its first attempt.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How many notices a channel reads at a time.
const BATCH: usize = 200;

/// What every channel's task shares.
pub struct Notifier {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub site: Site,
}

/// Runs until cancelled: starts a task per channel, and restarts or ends it when the channel
/// is changed or removed.
pub async fn run(notifier: Arc<Notifier>, ex: Spawner) {
    let mut running: HashMap<String, (Channel, Task<()>)> = HashMap::new();
    loop {
        let store = notifier.store.clone();
        match smol::unblock(move || store.read().and_then(|t| t.channels())).await {
            Ok(channels) => {
                let names: Vec<String> = channels.iter().map(|c| c.name.to_lowercase()).collect();
                running.retain(|name, _| {
                    let keep = names.contains(name);
                    if !keep {
                        notifier.metrics.notices_pending(name, None);
                        notifier.metrics.pending(name, Delivered::Event, None);
                    }
                    keep
                });
                for channel in channels {
                    let key = channel.name.to_lowercase();
                    if running.get(&key).is_some_and(|(c, _)| *c == channel) {
                        continue;
                    }
                    let task = ex.spawn(deliver_channel(notifier.clone(), channel.clone()));
                    // Replacing the entry drops (cancels) the task of the channel's old settings.
                    running.insert(key, (channel, task));
                }
            }
            Err(e) => log::error!("notifications: cannot read the channels: {e}"),
        }
        let (store, now) = (notifier.store.clone(), notifier.clock.wall());
        if let Err(e) = smol::unblock(move || end_windows(&store, now)).await {
            log::error!("notifications: cannot deal with ended maintenance windows: {e}");
        }
        notifier.clock.sleep(LOOK_EVERY).await;
    }
}

/// Notifies the alerts that maintenance windows ended since the last look kept quiet and that
/// are still active, and deletes the windows ended a month ago, in one transaction (a manager
/// down when a window ended catches up at its start). Writes nothing when nothing ended.
fn end_windows(store: &Store, now: WallMs) -> Result<(), StoreError> {
    let (owed, expired) = {
        let txn = store.read()?;
        let windows = txn.windows()?;
        let done = txn.windows_done_through()?;
        let ending = maintenance::ending(&windows, done, now);
        if done.is_some() && ending.ended.is_empty() && ending.expired.is_empty() {
            return Ok(());
        }
        let mut owed = Vec::new();
        if !ending.ended.is_empty() {
            let tree = PolicyTree::new(txn.policies()?);
            let active = txn.active_alerts()?;
            // An open incident's computers were (or will be) told of through it.
            let in_incident: std::collections::HashSet<_> = active
                .iter()
                .filter(|a| a.kind == AlertKind::SiteIncident)
                .flat_map(|a| a.computers.iter().copied())
                .collect();
            for alert in active {
                if in_incident.contains(&alert.computer) {
                    continue;
                }
                let Some(computer) = txn.computer(alert.computer)? else {
                    continue;
                };
                let up: Vec<PolicyId> = tree.chain(computer.policy).iter().map(|p| p.id).collect();
                if ending
                    .ended
                    .iter()
                    .any(|w| maintenance::owed_at_end(w, &alert, &up))
                {
                    owed.push(alert.id);
                }
            }
        }
        (owed, ending.expired)
    };
    let mut txn = store.write()?;
    for id in owed {
        record::notify_after_maintenance(&mut txn, id, now)?;
    }
    for id in expired {
        txn.delete_window(id)?;
    }
    txn.set_windows_done_through(now)?;
    txn.commit()
}

/// One notice and what the channel does with it.
struct Planned {
    notice: Notice,
    send: bool,
}

/// The next notices for `channel`, each marked to send or to skip.
fn plan(store: &Store, channel: &Channel) -> Result<(Delivery, Vec<Planned>, u64), StoreError> {
    let txn = store.read()?;
    // A channel removed, or removed and added again under its name, is another task's now.
    if txn.channel(&channel.name)?.as_ref() != Some(channel) {
        return Ok((Delivery::default(), Vec::new(), 0));
    }
    let delivery = txn.delivery(&channel.name)?.unwrap_or_default();
    let notices = txn.notices_after(delivery.done_through, BATCH)?;
    let pending = txn.last_notice_seq()?.saturating_sub(delivery.done_through);
    if notices.is_empty() {
        return Ok((delivery, Vec::new(), pending));
    }
    let routes = txn.routes()?;
    let routes: Vec<&route::Route> = routes
        .iter()
        .filter(|r| r.channel.eq_ignore_ascii_case(&channel.name))
        .collect();
    let windows = txn.windows()?;
    let tree = PolicyTree::new(txn.policies()?);
    let ancestors = |policy: Option<PolicyId>| -> Vec<PolicyId> {
        policy.map_or_else(Vec::new, |p| tree.chain(p).iter().map(|p| p.id).collect())
    };
    let planned = notices
        .into_iter()
        .map(|notice| {
            let up = ancestors(notice.policy);
            let of_computer = |id| {
                let policy = txn.computer(id).ok().flatten().map(|c| c.policy);
                ancestors(policy)
            };
            let send = route::wanted(&routes, &notice, &up)
                && maintenance::silencing(&windows, &notice, &up).is_none()
                && !maintenance::silences_incident(&windows, &notice, of_computer);
            Planned { notice, send }
        })
        .collect();
    Ok((delivery, planned, pending))
}

/// What happened to a channel's notice, to be written with its position.
enum Done {
    Sent,
    GaveUp {
        error: String,
    },
    /// Retry later; the position stays.
    Failed {
        error: String,
    },
}

/// Writes the channel's new position (and the alert a give-up raises, or the one a success
/// clears) in one transaction, then trims what every channel is done with.
fn record_done(
    store: &Store,
    channel: &Channel,
    mut delivery: Delivery,
    skipped_through: Option<(u64, u64)>,
    done: Option<(u64, Done)>,
    now: WallMs,
) -> Result<Delivery, StoreError> {
    let mut txn = store.write()?;
    // The channel may have been removed (or replaced) meanwhile: its position goes with it.
    if txn.channel(&channel.name)?.as_ref() != Some(channel) {
        return Ok(delivery);
    }
    if let Some((through, skipped)) = skipped_through {
        delivery.done_through = through;
        delivery.skipped = delivery.skipped.saturating_add(skipped);
    }
    let failed = AlertKind::NotificationFailed;
    match done {
        None => {}
        Some((seq, Done::Sent)) => {
            delivery.done_through = seq;
            delivery.sent = delivery.sent.saturating_add(1);
            delivery.attempts = 0;
            delivery.last_attempt = Some(now);
            delivery.last_sent = Some(now);
            delivery.failing = false;
            record::clear_site(
                &mut txn,
                failed,
                &channel.name,
                now,
                "a notice was delivered",
            )?;
        }
        Some((seq, Done::GaveUp { error })) => {
            delivery.done_through = seq;
            delivery.failed = delivery.failed.saturating_add(1);
            delivery.attempts = 0;
            delivery.last_attempt = Some(now);
            delivery.failing = true;
            let message = format!(
                "channel '{}' gave up notice {seq}: not delivered within {}; last error: {error}",
                channel.name,
                crate::model::format_duration(channel.give_up_after)
            );
            delivery.last_error = Some(error);
            // Raised once while the channel fails: a backlog given up notice by notice must
            // not become a storm of repeats on the other channels.
            if txn.active_site_alert(failed, &channel.name)?.is_none() {
                record::raise_site(&mut txn, failed, &channel.name, message, now)?;
            }
        }
        Some((_, Done::Failed { error })) => {
            delivery.attempts = delivery.attempts.saturating_add(1);
            delivery.last_attempt = Some(now);
            delivery.last_error = Some(error);
            delivery.failing = true;
        }
    }
    txn.put_delivery(&channel.name, &delivery)?;
    txn.trim_outbox()?;
    txn.commit()?;
    Ok(delivery)
}

async fn deliver_channel(notifier: Arc<Notifier>, channel: Channel) {
    let n = &*notifier;
    let name = channel.name.clone();
    // The last notice sent, even if its record failed: a store that refuses writes (a full
    // disk) must not make the channel send it again every second.
    let mut sent_through = 0;
    let mut events = events::Feed::of(&channel);
    let mut store_wait = LOOK_EVERY;
    loop {
        let (store, ch) = (n.store.clone(), channel.clone());
        let (delivery, planned, pending) = match smol::unblock(move || plan(&store, &ch)).await {
            Ok(found) => found,
            Err(e) => {
                log::error!("notifications: channel '{name}' cannot read the outbox: {e}");
                n.clock.sleep(LOOK_EVERY).await;
                continue;
            }
        };
        n.metrics.notices_pending(&name, Some(pending));
        // Alerts first: the channel's agent events go when no notice waits, a batch at a time.
        let round = match (planned.is_empty(), events.as_mut()) {
            (false, _) => work_through(n, &channel, delivery, planned, &mut sent_through).await,
            (true, Some(feed)) => feed.round(n, &channel).await,
            (true, None) => Ok(Some(LOOK_EVERY)),
        };
        match round {
            Ok(wait) => {
                store_wait = LOOK_EVERY;
                if let Some(wait) = wait {
                    n.clock.sleep(wait).await;
                }
            }
            Err(e) => {
                log::error!(
                    "notifications: channel '{name}' cannot record its progress (retrying in \
                     {}): {e}",
                    crate::model::format_duration(store_wait)
                );
                n.clock.sleep(store_wait).await;
                store_wait = (store_wait * 2).min(crate::notify::delivery::LONGEST_RETRY);
            }
        }
    }
}

/// Sends the planned notices in order; `Some(wait)` after a failure to retry later.
async fn work_through(
    n: &Notifier,
    channel: &Channel,
    mut delivery: Delivery,
    planned: Vec<Planned>,
    sent_through: &mut u64,
) -> Result<Option<Duration>, StoreError> {
    let mut skipped: Option<(u64, u64)> = None;
    for Planned { notice, send } in planned {
        if !send {
            let count = skipped.map_or(0, |(_, c)| c) + 1;
            skipped = Some((notice.seq, count));
            n.metrics
                .notice(&channel.name, NoticeOutcome::Skipped, None);
            continue;
        }
        let age_at = |now: WallMs| Duration::from_millis(now.0.saturating_sub(notice.at.0));
        // A channel that is failing gives up what is already too old without trying: a
        // backlog of a dead channel is not worth a connection timeout per notice.
        let result = if notice.seq <= *sent_through {
            // Sent before a failed record: only the record is missing.
            Ok(crate::notify::send::Answer("sent before".into()))
        } else if delivery.failing && age_at(n.clock.wall()) >= channel.give_up_after {
            Err(None)
        } else {
            deliver::deliver(channel, &notice, &n.site, &*n.clock)
                .await
                .map_err(Some)
        };
        let now = n.clock.wall();
        let age = age_at(now);
        let (done, wait) = match result {
            Ok(answer) => {
                *sent_through = notice.seq;
                log::debug!(
                    "notifications: notice {} sent to '{}': {}",
                    notice.seq,
                    channel.name,
                    answer.0
                );
                n.metrics
                    .notice(&channel.name, NoticeOutcome::Sent, Some(age));
                (Done::Sent, None)
            }
            Err(e) => {
                let permanent = e.as_ref().is_some_and(|e| e.is_permanent());
                let e = e.map_or_else(
                    || {
                        delivery
                            .last_error
                            .clone()
                            .unwrap_or_else(|| "the channel is failing".to_string())
                    },
                    |e| e.chain(),
                );
                let attempts = delivery.attempts.saturating_add(1);
                match after_refusal(permanent, attempts, age, channel.give_up_after) {
                    AfterFailure::GiveUp => {
                        log::error!(
                            "notifications: channel '{}' gave up notice {} after {attempts} \
                             attempt(s): {e}",
                            channel.name,
                            notice.seq
                        );
                        n.metrics.notice(&channel.name, NoticeOutcome::Failed, None);
                        (Done::GaveUp { error: e }, None)
                    }
                    AfterFailure::RetryIn(wait) => {
                        log::warn!(
                            "notifications: channel '{}' could not send notice {} (attempt \
                             {attempts}), retrying in {}: {e}",
                            channel.name,
                            notice.seq,
                            crate::model::format_duration(wait)
                        );
                        (Done::Failed { error: e }, Some(wait))
                    }
                }
            }
        };
        let (store, ch, skip) = (n.store.clone(), channel.clone(), skipped.take());
        delivery = smol::unblock(move || {
            record_done(&store, &ch, delivery, skip, Some((notice.seq, done)), now)
        })
        .await?;
        if wait.is_some() {
            return Ok(wait);
        }
    }
    if skipped.is_some() {
        let (store, ch, now) = (n.store.clone(), channel.clone(), n.clock.wall());
        smol::unblock(move || record_done(&store, &ch, delivery, skipped, None, now)).await?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ComputerId;
    use crate::notify::{Change, Window, WindowTarget};

    #[test]
    fn an_alert_a_window_kept_quiet_is_notified_when_it_ends_and_the_window_goes_a_month_later() {
        let (_dir, store) = crate::alerts::record::tests::store_with_computer();
        let mut txn = store.write().unwrap();
        txn.put_channel(&crate::notify::channel::tests::sample())
            .unwrap();
        txn.put_window(&Window {
            id: 1,
            target: WindowTarget::Computer(ComputerId(7)),
            start: WallMs(100),
            end: WallMs(200),
            reason: "patching".into(),
            by: "admin".into(),
        })
        .unwrap();
        txn.commit().unwrap();
        // The first look only notes the time: nothing is owed from before it.
        end_windows(&store, WallMs(120)).unwrap();
        let mut txn = store.write().unwrap();
        let offline = AlertKind::ComputerOffline;
        let now = crate::alerts::incident::Notify::Now;
        record::raise(&mut txn, ComputerId(7), offline, WallMs(150), now, |_| {
            "m".into()
        })
        .unwrap();
        txn.commit().unwrap();
        let told = |store: &Store| -> Vec<(Change, WallMs)> {
            let txn = store.read().unwrap();
            let notices = txn.notices_after(0, 10).unwrap();
            notices.iter().map(|n| (n.change, n.at)).collect()
        };
        end_windows(&store, WallMs(199)).unwrap();
        assert_eq!(told(&store), [(Change::Raised, WallMs(150))]);
        // It ends with the computer still offline: its raise goes out again, stamped now, once.
        end_windows(&store, WallMs(250)).unwrap();
        end_windows(&store, WallMs(260)).unwrap();
        assert_eq!(
            told(&store),
            [(Change::Raised, WallMs(150)), (Change::Raised, WallMs(250))]
        );
        let month = maintenance::KEEP_ENDED.as_millis() as u64;
        end_windows(&store, WallMs(200 + month)).unwrap();
        assert!(store.read().unwrap().windows().unwrap().is_empty());
    }
}
