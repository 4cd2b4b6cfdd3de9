//! The store transactions of the alert lifecycle: raise, clear, dismiss, and end with a deleted
//! computer, each with its line in the computer's history. Every alert record is written here
//! and nowhere else, so whatever must follow an alert (a notification) has one place to hook in.

use super::AlertKind;
use super::lifecycle::{self, AlertError};
use crate::clock::WallMs;
use crate::model::{Alert, AlertId, ComputerId, HistoryEntry};
use crate::store::{Reads, StoreError, WriteTxn};
use std::fmt;

/// Raises `kind` for `computer`, or updates its active alert of that kind. `message` gets the
/// computer's last heartbeat time. Nothing is written for a computer that no longer exists.
pub fn raise(
    txn: &mut WriteTxn,
    computer: ComputerId,
    kind: AlertKind,
    now: WallMs,
    message: impl FnOnce(Option<WallMs>) -> String,
) -> Result<Option<Alert>, StoreError> {
    if txn.computer(computer)?.is_none() {
        return Ok(None);
    }
    let last = txn.agent_state(computer)?.and_then(|a| a.last_heartbeat);
    let active = txn.active_alert(computer, kind)?;
    let new_id = match active {
        Some(_) => None,
        None => Some(txn.next_alert_id()?),
    };
    let alert = lifecycle::raise(
        active.as_ref(),
        || new_id.unwrap_or(AlertId(0)),
        kind,
        computer,
        message(last),
        now,
    );
    if active.is_none() {
        txn.add_history(&HistoryEntry {
            computer,
            at: now,
            what: "alert-raised".into(),
            detail: format!("{} (alert {}): {}", kind.name(), alert.id, alert.message),
        })?;
    }
    txn.put_alert(&alert)?;
    Ok(Some(alert))
}

/// Clears the active alert of `kind` for `computer` if its kind clears itself, saying `why` in
/// the history.
pub fn clear(
    txn: &mut WriteTxn,
    computer: ComputerId,
    kind: AlertKind,
    now: WallMs,
    why: &str,
) -> Result<Option<Alert>, StoreError> {
    let Some(cleared) = txn
        .active_alert(computer, kind)?
        .and_then(|alert| lifecycle::clear(&alert, now))
    else {
        return Ok(None);
    };
    txn.put_alert(&cleared)?;
    txn.add_history(&HistoryEntry {
        computer,
        at: now,
        what: "alert-cleared".into(),
        detail: format!("{} (alert {}): {why}", cleared.kind.name(), cleared.id),
    })?;
    Ok(Some(cleared))
}

/// Why an alert could not be dismissed.
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
mod tests {
    use super::*;
    use crate::model::{AgentState, Computer};
    use crate::store::Store;

    fn store_with_computer() -> (tempfile::TempDir, Store) {
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
        let first = raise(&mut txn, ComputerId(7), offline, WallMs(10), |last| {
            format!("last {last:?}")
        })
        .unwrap()
        .unwrap();
        assert_eq!(first.message, "last Some(WallMs(5))");
        let again = raise(&mut txn, ComputerId(7), offline, WallMs(20), |_| "x".into())
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.count), (first.id, 2));
        let cleared = clear(&mut txn, ComputerId(7), offline, WallMs(30), "back")
            .unwrap()
            .unwrap();
        assert_eq!(cleared.cleared, Some(WallMs(30)));
        assert!(
            clear(&mut txn, ComputerId(7), offline, WallMs(31), "again")
                .unwrap()
                .is_none()
        );
        let clock = raise(
            &mut txn,
            ComputerId(7),
            AlertKind::ClockChanged,
            WallMs(40),
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
                |_| "m".into()
            )
            .unwrap()
            .is_none()
        );
    }
}
