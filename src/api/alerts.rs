//! `/api/v1/alerts`: what needs a human, and dismissing it.

use super::error::ApiError;
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
    if dismissed.kind == AlertKind::ComputerOffline {
        state
            .liveness
            .send(LivenessEvent::OfflineDismissed(dismissed.computer));
    }
    Ok(ApiResponse::ok(views::alert(
        &dismissed,
        hostname.as_deref(),
    )))
}
