//! `/api/v1/events`: what agents reported, newest first.

use super::error::ApiError;
use super::views;
use super::{ApiResponse, ApiState, percent_decode};
use crate::model::ComputerId;
use crate::store::Reads;
use serde_json::{Value, json};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// `?computer=ID&limit=N`.
pub fn list(state: &ApiState, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let mut computer = None;
    let mut limit = DEFAULT_LIMIT;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "computer" => {
                let id = value.parse().map_err(|_| {
                    ApiError::bad_field("computer", format!("'{value}' is not a computer id"))
                })?;
                computer = Some(ComputerId(id));
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_field("limit", format!("'{value}' is not 1 to {MAX_LIMIT}"))
                    })?;
            }
            other => {
                return Err(ApiError::bad_field(
                    other,
                    format!("unknown query parameter '{other}'"),
                ));
            }
        }
    }
    let txn = state.store.read()?;
    if let Some(id) = computer
        && txn.computer(id)?.is_none()
    {
        return Err(ApiError::not_found(format!("computer '{id}'")));
    }
    let events: Vec<Value> = txn
        .events(computer, limit)?
        .iter()
        .map(views::event)
        .collect();
    Ok(ApiResponse::ok(json!({ "events": events })))
}
