//! The alert lifecycle, sans-io: raising (a repeat updates the active alert of the same kind and
//! computer instead of adding one), clearing by itself where the kind allows, and dismissal.
//! `record.rs` stores what these decide.

use super::AlertKind;
use crate::clock::WallMs;
use crate::model::{Acknowledgement, Alert, AlertId, ComputerId};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertError {
    /// Dismissed already, or cleared by itself: there is nothing left to dismiss.
    NotActive { id: AlertId },
}

impl fmt::Display for AlertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertError::NotActive { id } => {
                write!(f, "alert {id} is not active (already dismissed or cleared)")
            }
        }
    }
}

impl std::error::Error for AlertError {}

/// The alert to store for a raise: `active` updated if there is one, else a new alert `id`.
pub fn raise(
    active: Option<&Alert>,
    new_id: impl FnOnce() -> AlertId,
    kind: AlertKind,
    computer: ComputerId,
    message: String,
    now: WallMs,
) -> Alert {
    match active.filter(|a| a.is_active() && a.kind == kind && a.computer == computer) {
        Some(alert) => Alert {
            updated: now,
            count: alert.count.saturating_add(1),
            message,
            ..alert.clone()
        },
        None => Alert {
            id: new_id(),
            kind,
            computer,
            raised: now,
            updated: now,
            count: 1,
            message,
            cleared: None,
            dismissed: None,
            acknowledged: None,
            about: None,
            computers: Vec::new(),
        },
    }
}

/// The condition ended: a kind that clears itself is cleared; any other stays for a human.
pub fn clear(alert: &Alert, now: WallMs) -> Option<Alert> {
    (alert.is_active() && alert.kind.clears_itself()).then(|| Alert {
        cleared: Some(now),
        ..alert.clone()
    })
}

/// Acknowledging keeps the alert active (its condition still holds) and says who is on it; a
/// second acknowledgement replaces the first (someone else took it over).
pub fn acknowledge(alert: &Alert, ack: Acknowledgement) -> Result<Alert, AlertError> {
    if !alert.is_active() {
        return Err(AlertError::NotActive { id: alert.id });
    }
    Ok(Alert {
        acknowledged: Some(ack),
        ..alert.clone()
    })
}

pub fn dismiss(alert: &Alert, now: WallMs) -> Result<Alert, AlertError> {
    if !alert.is_active() {
        return Err(AlertError::NotActive { id: alert.id });
    }
    Ok(Alert {
        dismissed: Some(now),
        ..alert.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(now: u64) -> Alert {
        raise(
            None,
            || AlertId(1),
            AlertKind::ComputerOffline,
            ComputerId(7),
            "3 missed".into(),
            WallMs(now),
        )
    }

    #[test]
    fn a_repeat_updates_the_active_alert_instead_of_adding_one() {
        let first = offline(10);
        let again = raise(
            Some(&first),
            || panic!("no new id for a repeat"),
            AlertKind::ComputerOffline,
            ComputerId(7),
            "4 missed".into(),
            WallMs(20),
        );
        assert_eq!(
            (again.id, again.count, again.raised, again.updated),
            (AlertId(1), 2, WallMs(10), WallMs(20))
        );
        assert_eq!(again.message, "4 missed");
    }

    #[test]
    fn offline_clears_itself_clock_changed_does_not() {
        let cleared = clear(&offline(10), WallMs(30)).unwrap();
        assert!(!cleared.is_active());
        let clock = raise(
            None,
            || AlertId(2),
            AlertKind::ClockChanged,
            ComputerId(7),
            "moved 1h".into(),
            WallMs(10),
        );
        assert_eq!(clear(&clock, WallMs(30)), None);
    }

    #[test]
    fn dismissing_twice_is_refused_and_a_new_raise_after_dismissal_is_a_new_alert() {
        let dismissed = dismiss(&offline(10), WallMs(11)).unwrap();
        assert_eq!(
            dismiss(&dismissed, WallMs(12)),
            Err(AlertError::NotActive { id: AlertId(1) })
        );
        let back = raise(
            Some(&dismissed),
            || AlertId(9),
            AlertKind::ComputerOffline,
            ComputerId(7),
            "still offline".into(),
            WallMs(13),
        );
        assert_eq!((back.id, back.count), (AlertId(9), 1));
    }
}
