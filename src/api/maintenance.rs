//! `/api/v1/maintenance`: windows during which a computer's or a policy subtree's alerts are
//! recorded but not notified. Ending one early is deleting it.

use super::alerts::caller_name;
use super::auth::Caller;
use super::error::ApiError;
use super::input::{object, optional_reference, refuse_leftovers, required_string};
use super::{ApiResponse, ApiState, Handled};
use crate::clock::WallMs;
use crate::model::{ComputerId, format_duration, parse_duration};
use crate::notify::{Window, WindowTarget};
use crate::policy::PolicyTree;
use crate::store::{NotifyReads, Reads};
use serde_json::{Value, json};
use std::time::Duration;

/// The longest window: a longer silence is a decision to stop watching, not maintenance.
const LONGEST: Duration = Duration::from_secs(30 * 86400);

pub fn list(state: &ApiState) -> Handled {
    let txn = state.store.read()?;
    let tree = PolicyTree::new(txn.policies()?);
    let now = state.clock.wall();
    let windows: Vec<Value> = txn
        .windows()?
        .iter()
        .map(|w| view(w, &tree, &txn, now))
        .collect();
    Ok(ApiResponse::ok(json!({ "windows": windows })))
}

/// `{"computer": ID}` or `{"policy": NAME or ID}`, `"duration": "2h"`, `"reason": "..."`,
/// optionally `"start_ms"` (a window planned ahead; now if absent).
pub fn create(state: &ApiState, caller: &Caller, body: &[u8]) -> Handled {
    let mut map = object(body)?;
    let computer = match map.remove("computer") {
        None | Some(Value::Null) => None,
        Some(v) => Some(ComputerId(v.as_u64().ok_or_else(|| {
            ApiError::bad_field("computer", "computer is a computer id")
        })?)),
    };
    let policy = optional_reference(&mut map, "policy")?;
    let duration_text = required_string(&mut map, "duration")?;
    let duration = parse_duration(&duration_text)
        .map_err(|e| ApiError::bad_field("duration", format!("'{duration_text}': {e}")))?;
    if duration.is_zero() || duration > LONGEST {
        return Err(ApiError::bad_field(
            "duration",
            format!(
                "a window lasts more than 0s and at most {}",
                format_duration(LONGEST)
            ),
        ));
    }
    let reason = required_string(&mut map, "reason")?;
    if reason.trim().is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::bad_field(
            "reason",
            "say why, in 1 to 500 characters",
        ));
    }
    if let Some(problem) = crate::model::hidden_character(&reason) {
        return Err(ApiError::bad_field("reason", problem));
    }
    let now = state.clock.wall();
    let start = match map.remove("start_ms") {
        None | Some(Value::Null) => now,
        Some(v) => WallMs(
            v.as_u64()
                .ok_or_else(|| ApiError::bad_field("start_ms", "start_ms is ms since the epoch"))?,
        ),
    };
    refuse_leftovers(map)?;
    let mut txn = state.store.write()?;
    let tree = PolicyTree::new(txn.policies()?);
    let target = match (computer, policy) {
        (Some(id), None) => {
            txn.computer(id)?.ok_or_else(|| {
                ApiError::bad_field("computer", format!("no computer has id {id}"))
            })?;
            WindowTarget::Computer(id)
        }
        (None, Some(reference)) => WindowTarget::Policy(
            tree.find(&reference)
                .ok_or_else(|| {
                    ApiError::bad_field("policy", format!("no policy is named '{reference}'"))
                })?
                .id,
        ),
        _ => {
            return Err(ApiError::bad_field(
                "computer",
                "give either a computer or a policy",
            ));
        }
    };
    let window = Window {
        id: txn.next_window_id()?,
        target,
        start,
        end: WallMs(
            start
                .0
                .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
        ),
        reason,
        by: caller_name(caller),
    };
    txn.put_window(&window)?;
    let answer = view(&window, &tree, &txn, now);
    txn.commit()?;
    log::info!(
        "maintenance window {} opened by {} for {}: {}",
        window.id,
        window.by,
        format_duration(duration),
        window.reason
    );
    Ok(ApiResponse::created(
        format!("/api/v1/maintenance/{}", window.id),
        answer,
    ))
}

pub fn delete(state: &ApiState, id: &str) -> Handled {
    let not_found = || ApiError::not_found(format!("maintenance window '{id}'"));
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let now = state.clock.wall();
    let mut txn = state.store.write()?;
    let window = txn
        .windows()?
        .into_iter()
        .find(|w| w.id == id)
        .ok_or_else(not_found)?;
    if window.contains(now) {
        // Ended, not deleted: what it kept quiet and is still active is notified now, and
        // the notices from its time still wait in the outbox stay quiet.
        txn.put_window(&Window { end: now, ..window })?;
        log::info!("maintenance window {id} ended");
    } else {
        txn.delete_window(id)?;
        log::info!("maintenance window {id} deleted");
    }
    txn.commit()?;
    Ok(ApiResponse::no_content())
}

fn view(window: &Window, tree: &PolicyTree, txn: &impl Reads, now: WallMs) -> Value {
    let (kind, id, name) = match window.target {
        WindowTarget::Computer(c) => (
            "computer",
            c.0,
            txn.computer(c).ok().flatten().map(|c| c.hostname),
        ),
        WindowTarget::Policy(p) => ("policy", p.0, tree.get(p).map(|p| p.name.clone())),
    };
    json!({
        "id": window.id,
        kind: id,
        "name": name,
        "start_ms": window.start.0,
        "end_ms": window.end.0,
        "reason": window.reason,
        "by": window.by,
        "active": window.contains(now),
    })
}
