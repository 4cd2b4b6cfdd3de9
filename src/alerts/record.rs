//! The store transactions of the alert lifecycle: raise, clear, acknowledge, dismiss, and end
//! with a deleted computer, each with its line in the computer's history (computer 0's for an
//! alert about the site). Every alert record is written here and nowhere else, and a raise,
//! repeat or clear queues its notification in the same transaction, so a crash can never keep
//! the one without the other.

use super::incident::Notify;
use super::lifecycle::{self, AlertError};
use super::{AlertKind, catalogue};
use crate::clock::WallMs;
use crate::model::{Acknowledgement, Alert, AlertId, ComputerId, HistoryEntry, PolicyId};
use crate::notify::{Change, Notice, route};
use crate::store::{NotifyReads, Reads, StoreError, WriteTxn};
use std::fmt;

/// Queues the notice of `change` to `alert`, with its computer's name and policy as they are
/// now (a site incident's policy is the one it is about), or holds it back (`fate`). A repeat
/// is queued only if some route asks for repeats and nobody has acknowledged the alert; only a
/// raise is ever held.
fn notify(
    txn: &mut WriteTxn,
    change: Change,
    alert: &Alert,
    now: WallMs,
    fate: Notify,
) -> Result<(), StoreError> {
    if fate == Notify::Quiet || !txn.has_channels()? {
        return Ok(());
    }
    if change == Change::Repeated
        && (alert.acknowledged.is_some() || !route::any_wants_repeats(&txn.routes()?))
    {
        return Ok(());
    }
    let computer = match alert.computer {
        ComputerId(0) => None,
        id => txn.computer(id)?,
    };
    let about_policy = match alert.kind {
        AlertKind::SiteIncident => alert.about.as_deref().and_then(|a| a.parse().ok()),
        _ => None,
    };
    let notice = Notice {
        seq: 0,
        at: now,
        change,
        alert: alert.clone(),
        hostname: computer
            .as_ref()
            .map(|c| c.hostname.clone())
            .unwrap_or_default(),
        policy: computer.map(|c| c.policy).or(about_policy.map(PolicyId)),
    };
    if fate == Notify::Hold && change == Change::Raised {
        return txn.hold_notice(&notice);
    }
    txn.enqueue_notice(notice)?;
    Ok(())
}

/// A maintenance window that kept alert `id` quiet has ended and the alert is still active:
/// its raise is notified now (stamped now, so the window no longer silences it).
pub fn notify_after_maintenance(
    txn: &mut WriteTxn,
    id: AlertId,
    now: WallMs,
) -> Result<(), StoreError> {
    match txn.alert(id)? {
        Some(alert) if alert.is_active() => notify(txn, Change::Raised, &alert, now, Notify::Now),
        _ => Ok(()),
    }
}

/// Sends the notice held for `computer`'s offline alert, if its alert is still active and
/// nobody has acknowledged it (seen it, no need to tell anyone). Whether one was queued.
pub fn release(txn: &mut WriteTxn, computer: ComputerId) -> Result<bool, StoreError> {
    let Some(notice) = txn.take_held(computer)? else {
        return Ok(false);
    };
    let current = txn.alert(notice.alert.id)?;
    if !current.is_some_and(|a| a.is_active() && a.acknowledged.is_none()) {
        return Ok(false);
    }
    Ok(txn.enqueue_notice(notice)?.is_some())
}

/// Raises `kind` for `computer`, or updates its active alert of that kind. `message` gets the
/// computer's last heartbeat time. Nothing is written for a computer that no longer exists.
/// `fate` is what becomes of a new alert's notice (a repeat's is queued as usual).
pub fn raise(
    txn: &mut WriteTxn,
    computer: ComputerId,
    kind: AlertKind,
    now: WallMs,
    fate: Notify,
    message: impl FnOnce(Option<WallMs>) -> String,
) -> Result<Option<Alert>, StoreError> {
    if txn.computer(computer)?.is_none() {
        return Ok(None);
    }
    let last = txn.agent_state(computer)?.and_then(|a| a.last_heartbeat);
    let active = txn.active_alert(computer, kind)?;
    let raise = Raise {
        kind,
        computer,
        about: None,
        computers: Vec::new(),
        message: message(last),
    };
    Ok(Some(raised(txn, active.as_ref(), raise, now, fate)?))
}

/// Raises `kind` about `about` (a channel's name, a policy's id): an alert about the site, not
/// a computer. A repeat updates the active one.
pub fn raise_site(
    txn: &mut WriteTxn,
    kind: AlertKind,
    about: &str,
    message: String,
    now: WallMs,
) -> Result<Alert, StoreError> {
    let active = txn.active_site_alert(kind, about)?;
    let raise = Raise {
        kind,
        computer: ComputerId(0),
        about: Some(about.to_string()),
        computers: Vec::new(),
        message,
    };
    raised(txn, active.as_ref(), raise, now, Notify::Now)
}

/// Opens or updates the site incident of `policy`, which lists `computers`; `window` is the
/// detector's, for its words. The held notices of `absorbed` are dropped: this one stands for
/// them.
pub fn raise_incident(
    txn: &mut WriteTxn,
    policy: PolicyId,
    computers: &[ComputerId],
    absorbed: &[ComputerId],
    window: std::time::Duration,
    now: WallMs,
) -> Result<Alert, StoreError> {
    for computer in absorbed {
        txn.take_held(*computer)?;
    }
    let name = txn
        .policy(policy)?
        .map_or_else(|| policy.to_string(), |p| p.name);
    let names = hostnames(txn, computers, catalogue::INCIDENT_NAMES)?;
    let about = policy.to_string();
    let kind = AlertKind::SiteIncident;
    let active = txn.active_site_alert(kind, &about)?;
    let raise = Raise {
        kind,
        computer: ComputerId(0),
        about: Some(about),
        computers: computers.to_vec(),
        message: catalogue::incident_message(&name, computers.len(), window, &names),
    };
    raised(txn, active.as_ref(), raise, now, Notify::Now)
}

/// Closes the site incident of `policy`; `still_offline` are its computers not back yet.
pub fn clear_incident(
    txn: &mut WriteTxn,
    policy: PolicyId,
    computers: usize,
    still_offline: &[ComputerId],
    now: WallMs,
) -> Result<Option<Alert>, StoreError> {
    let names = hostnames(txn, still_offline, usize::MAX)?;
    let why = catalogue::incident_cleared(computers, &names);
    clear_site(txn, AlertKind::SiteIncident, &policy.to_string(), now, &why)
}

/// The host names of the first `limit` of `computers` (the id of one with no record).
fn hostnames(
    txn: &WriteTxn,
    computers: &[ComputerId],
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    computers
        .iter()
        .take(limit)
        .map(|id| {
            Ok(txn
                .computer(*id)?
                .map_or_else(|| format!("computer {id}"), |c| c.hostname))
        })
        .collect()
}

/// What a raise says and is about.
struct Raise {
    kind: AlertKind,
    computer: ComputerId,
    about: Option<String>,
    computers: Vec<ComputerId>,
    message: String,
}

/// Writes a raise over the `active` alert, if there is one: a new alert gets an id and its
/// history line, a repeat updates it; either queues its notice (a new one's as `fate` says).
fn raised(
    txn: &mut WriteTxn,
    active: Option<&Alert>,
    raise: Raise,
    now: WallMs,
    fate: Notify,
) -> Result<Alert, StoreError> {
    let new_id = match active {
        Some(_) => None,
        None => Some(txn.next_alert_id()?),
    };
    let Raise {
        kind,
        computer,
        about,
        computers,
        message,
    } = raise;
    let alert = Alert {
        about,
        computers,
        ..lifecycle::raise(
            active,
            || new_id.unwrap_or(AlertId(0)),
            kind,
            computer,
            message,
            now,
        )
    };
    if active.is_none() {
        txn.add_history(&HistoryEntry {
            computer,
            at: now,
            what: "alert-raised".into(),
            detail: format!("{} (alert {}): {}", kind.name(), alert.id, alert.message),
        })?;
    }
    txn.put_alert(&alert)?;
    let (change, fate) = match active {
        None => (Change::Raised, fate),
        // An incident's update (more computers joined) is no news to page about: its raise
        // and clear say it all, and a storm must not come back as a storm of repeats.
        Some(_) if kind == AlertKind::SiteIncident => (Change::Repeated, Notify::Quiet),
        Some(_) => (Change::Repeated, Notify::Now),
    };
    notify(txn, change, &alert, now, fate)?;
    Ok(alert)
}

/// Clears the active alert of `kind` for `computer` if its kind clears itself, saying `why` in
/// the history; `fate` is what becomes of the clear's notice.
pub fn clear(
    txn: &mut WriteTxn,
    computer: ComputerId,
    kind: AlertKind,
    now: WallMs,
    why: &str,
    fate: Notify,
) -> Result<Option<Alert>, StoreError> {
    let active = txn.active_alert(computer, kind)?;
    cleared(txn, active, now, why, fate)
}

/// Clears the active alert of `kind` about `about`, saying `why` in the site's history.
pub fn clear_site(
    txn: &mut WriteTxn,
    kind: AlertKind,
    about: &str,
    now: WallMs,
    why: &str,
) -> Result<Option<Alert>, StoreError> {
    let active = txn.active_site_alert(kind, about)?;
    cleared(txn, active, now, why, Notify::Now)
}

/// Ends `active` if its kind clears itself: the record, its history line and its notice. A
/// raise still held back goes out first, so that the two arrive in order (or neither, if the
/// clear is `Quiet`).
fn cleared(
    txn: &mut WriteTxn,
    active: Option<Alert>,
    now: WallMs,
    why: &str,
    fate: Notify,
) -> Result<Option<Alert>, StoreError> {
    let Some(cleared) = active.and_then(|alert| lifecycle::clear(&alert, now)) else {
        return Ok(None);
    };
    if cleared.computer != ComputerId(0)
        && let Some(held) = txn.take_held(cleared.computer)?
        && held.alert.id == cleared.id
        && fate != Notify::Quiet
    {
        txn.enqueue_notice(held)?;
    }
    txn.put_alert(&cleared)?;
    txn.add_history(&HistoryEntry {
        computer: cleared.computer,
        at: now,
        what: "alert-cleared".into(),
        detail: format!("{} (alert {}): {why}", cleared.kind.name(), cleared.id),
    })?;
    notify(txn, Change::Cleared, &cleared, now, fate)?;
    Ok(Some(cleared))
}

/// Someone on call has seen alert `id`: it stays active while its condition lasts, and its
/// repeats are no longer notified.
pub fn acknowledge(
    txn: &mut WriteTxn,
    id: AlertId,
    by: &str,
    comment: &str,
    now: WallMs,
) -> Result<Alert, DismissError> {
    let alert = txn.alert(id)?.ok_or(DismissError::NotFound(id))?;
    let acknowledged = lifecycle::acknowledge(
        &alert,
        Acknowledgement {
            by: by.to_string(),
            at: now,
            comment: comment.to_string(),
        },
    )
    .map_err(DismissError::NotActive)?;
    txn.put_alert(&acknowledged)?;
    let comment = if comment.is_empty() {
        String::new()
    } else {
        format!(": {comment}")
    };
    txn.add_history(&HistoryEntry {
        computer: acknowledged.computer,
        at: now,
        what: "alert-acknowledged".into(),
        detail: format!(
            "{} (alert {}) acknowledged by {by}{comment}",
            acknowledged.kind.name(),
            acknowledged.id
        ),
    })?;
    Ok(acknowledged)
}

/// Why an alert could not be dismissed or acknowledged.
#[derive(Debug)]
pub enum DismissError {
    NotFound(AlertId),
    /// Dismissed already, or cleared by itself.
    NotActive(AlertError),
    Store(StoreError),
}

impl fmt::Display for DismissError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DismissError::NotFound(id) => write!(f, "alert {id} does not exist"),
            DismissError::NotActive(e) => e.fmt(f),
            DismissError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DismissError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DismissError::Store(e) => Some(e),
            DismissError::NotFound(_) | DismissError::NotActive(_) => None,
        }
    }
}

impl From<StoreError> for DismissError {
    fn from(e: StoreError) -> Self {
        DismissError::Store(e)
    }
}

/// An administrator ends alert `id`.
pub fn dismiss(txn: &mut WriteTxn, id: AlertId, now: WallMs) -> Result<Alert, DismissError> {
    let alert = txn.alert(id)?.ok_or(DismissError::NotFound(id))?;
    let dismissed = lifecycle::dismiss(&alert, now).map_err(DismissError::NotActive)?;
    txn.put_alert(&dismissed)?;
    txn.add_history(&HistoryEntry {
        computer: dismissed.computer,
        at: now,
        what: "alert-dismissed".into(),
        detail: format!(
            "{} (alert {}) dismissed",
            dismissed.kind.name(),
            dismissed.id
        ),
    })?;
    Ok(dismissed)
}

/// The computer is being deleted: nothing would ever clear its alerts, so they end with it.
/// Returns how many ended.
pub fn end_with_computer(
    txn: &mut WriteTxn,
    computer: ComputerId,
    now: WallMs,
) -> Result<usize, StoreError> {
    let active = txn.active_alerts_of(computer)?;
    for alert in &active {
        txn.put_alert(&Alert {
            cleared: Some(now),
            ..alert.clone()
        })?;
    }
    Ok(active.len())
}

#[cfg(test)]
pub(crate) mod tests;
