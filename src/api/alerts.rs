//! `/api/v1/alerts`: what needs a human; acknowledging and dismissing it, one or many at once.

use super::auth::Caller;
use super::error::ApiError;
use super::input::{object, optional_string, refuse_leftovers};
use super::views;
use super::{ApiResponse, ApiState};
use crate::alerts::record::{self, DismissError};
use crate::handles::LivenessEvent;
use crate::model::{AlertId, AlertKind};
use crate::store::Reads;
use hyper::StatusCode;
use serde_json::{Value, json};

/// Active alerts, newest first; `?all=true` adds cleared and dismissed ones.
pub fn list(state: &ApiState, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let all = match query.unwrap_or_default() {
        "" | "all=false" => false,
        "all=true" => true,
        other => {
            return Err(ApiError::bad_field(
                "all",
                format!("unknown query '{other}': use all=true or all=false"),
            ));
        }
    };
    let txn = state.store.read()?;
    let mut alerts = txn.alerts()?;
    alerts.retain(|a| all || a.is_active());
    alerts.sort_by_key(|a| std::cmp::Reverse((a.updated, a.id)));
    let hostnames = |id| txn.computer(id).ok().flatten().map(|c| c.hostname);
    let body: Vec<Value> = alerts
        .iter()
        .map(|a| views::alert(a, hostnames(a.computer).as_deref()))
        .collect();
    Ok(ApiResponse::ok(json!({ "alerts": body })))
}

pub fn dismiss(state: &ApiState, id: &str) -> Result<ApiResponse, ApiError> {
    let not_found = || ApiError::not_found(format!("alert '{id}'"));
    let id = AlertId(id.parse().map_err(|_| not_found())?);
    let mut txn = state.store.write()?;
    let dismissed = match record::dismiss(&mut txn, id, state.clock.wall()) {
        Ok(dismissed) => dismissed,
        Err(DismissError::NotFound(_)) => return Err(not_found()),
        // An alert that is no longer active (dismissed, or cleared by itself) is a conflict.
        Err(DismissError::NotActive(e)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, e.to_string()));
        }
        Err(DismissError::Store(e)) => return Err(e.into()),
    };
    let hostname = txn.computer(dismissed.computer)?.map(|c| c.hostname);
    txn.commit()?;
    log::info!(
        "alert {} ({}) of computer {} dismissed",
        dismissed.id,
        dismissed.kind.name(),
        dismissed.computer
    );
    tell_liveness(state, &dismissed);
    Ok(ApiResponse::ok(views::alert(
        &dismissed,
        hostname.as_deref(),
    )))
}

/// Who did it, as the history and the alert say.
pub fn caller_name(caller: &Caller) -> String {
    match caller {
        Caller::ApiKey => "admin-key".to_string(),
        Caller::Session { session, .. } => session.user.clone(),
    }
}

/// `POST /api/v1/alerts/{id}/acknowledge` with an optional `{"comment": "..."}`.
pub fn acknowledge(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    let comment = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        let mut map = object(body)?;
        let comment = optional_string(&mut map, "comment")?.unwrap_or_default();
        refuse_leftovers(map)?;
        comment
    };
    check_comment(&comment)?;
    let not_found = || ApiError::not_found(format!("alert '{id}'"));
    let id = AlertId(id.parse().map_err(|_| not_found())?);
    let by = caller_name(caller);
    let mut txn = state.store.write()?;
    let acked = match record::acknowledge(&mut txn, id, &by, &comment, state.clock.wall()) {
        Ok(acked) => acked,
        Err(DismissError::NotFound(_)) => return Err(not_found()),
        Err(DismissError::NotActive(e)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, e.to_string()));
        }
        Err(DismissError::Store(e)) => return Err(e.into()),
    };
    let hostname = txn.computer(acked.computer)?.map(|c| c.hostname);
    txn.commit()?;
    log::info!(
        "alert {} ({}) acknowledged by {by}",
        acked.id,
        acked.kind.name()
    );
    Ok(ApiResponse::ok(views::alert(&acked, hostname.as_deref())))
}

fn check_comment(comment: &str) -> Result<(), ApiError> {
    if comment.chars().count() > 500 {
        return Err(ApiError::bad_field("comment", "at most 500 characters"));
    }
    if let Some(problem) = crate::model::hidden_character(comment) {
        return Err(ApiError::bad_field("comment", problem));
    }
    Ok(())
}

/// `POST /api/v1/alerts/acknowledge` or `.../dismiss` with `{"ids": [..], "comment": ".."}`:
/// all in one transaction; each id's outcome is in the answer, and one that cannot be done
/// (unknown, no longer active) does not stop the others.
pub fn bulk(
    state: &ApiState,
    caller: &Caller,
    body: &[u8],
    ack: bool,
) -> Result<ApiResponse, ApiError> {
    let mut map = object(body)?;
    let ids: Vec<AlertId> = match map.remove("ids") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= 10_000 => items
            .iter()
            .map(|v| v.as_u64().map(AlertId))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad_field("ids", "ids is a list of alert ids"))?,
        _ => {
            return Err(ApiError::bad_field(
                "ids",
                "ids is a list of 1 to 10,000 alert ids",
            ));
        }
    };
    let comment = optional_string(&mut map, "comment")?.unwrap_or_default();
    if !ack && !comment.is_empty() {
        return Err(ApiError::bad_field(
            "comment",
            "only an acknowledgement takes a comment",
        ));
    }
    check_comment(&comment)?;
    refuse_leftovers(map)?;
    let by = caller_name(caller);
    let now = state.clock.wall();
    let mut txn = state.store.write()?;
    let mut results = Vec::new();
    let mut dismissed = Vec::new();
    for id in ids {
        let outcome = if ack {
            record::acknowledge(&mut txn, id, &by, &comment, now)
        } else {
            record::dismiss(&mut txn, id, now)
        };
        results.push(match outcome {
            Ok(alert) => {
                if !ack {
                    dismissed.push(alert);
                }
                json!({"id": id.0, "done": true})
            }
            Err(DismissError::Store(e)) => return Err(e.into()),
            Err(e) => json!({"id": id.0, "done": false, "error": e.to_string()}),
        });
    }
    txn.commit()?;
    let verb = if ack { "acknowledged" } else { "dismissed" };
    let done = results.iter().filter(|r| r["done"] == true).count();
    log::info!("{done} of {} alert(s) {verb} by {by}", results.len());
    for alert in &dismissed {
        tell_liveness(state, alert);
    }
    Ok(ApiResponse::ok(json!({ "done": done, "results": results })))
}

/// A dismissal the verdicts task must know of: an offline alert (raised again at the next
/// miss) or a site incident (over for the detector too).
fn tell_liveness(state: &ApiState, dismissed: &crate::model::Alert) {
    match dismissed.kind {
        AlertKind::ComputerOffline => state
            .liveness
            .send(LivenessEvent::OfflineDismissed(dismissed.computer)),
        AlertKind::SiteIncident => {
            if let Some(policy) = dismissed.about.as_deref().and_then(|a| a.parse().ok()) {
                state
                    .liveness
                    .send(LivenessEvent::IncidentDismissed(crate::model::PolicyId(
                        policy,
                    )));
            }
        }
        _ => {}
    }
}
