//! `POST /api/v1/backup`: a snapshot of the store as of one read transaction, written into the
//! data dir's `snapshots/` for `picket backup` on the same host to pack with the PKI
//! (`src/backup/`). The bytes never cross the API: a backup holds the CA key, and the
//! passphrase that may encrypt it stays with the CLI.

use super::auth::Caller;
use super::{ApiError, ApiResponse, ApiState, Handled};
use crate::backup;
use hyper::StatusCode;
use serde_json::{Map, Value, json};

pub fn snapshot(state: &ApiState, caller: &Caller) -> Handled {
    if !matches!(caller, Caller::ApiKey) {
        return Err(ApiError::forbidden(
            "backups are taken with the admin API key: run picket backup --data-dir DIR on the \
             manager's host",
        ));
    }
    let Some(data_dir) = state.store.path().parent() else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store has no data dir",
        ));
    };
    let now = state.clock.wall();
    let path = backup::snapshot_path(data_dir, now).map_err(|e| {
        log::error!("backup: {}", crate::errors::one_line(&e));
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?;
    let snapshot = state.store.snapshot(&path)?;
    let name = path
        .strip_prefix(data_dir)
        .unwrap_or(&path)
        .to_string_lossy()
        .into_owned();
    log::info!(
        "backup: snapshot of the store written to {}",
        path.display()
    );
    let tables: Map<String, Value> = snapshot
        .tables
        .iter()
        .map(|(t, n)| (t.clone(), json!(n)))
        .collect();
    Ok(ApiResponse::created(
        format!("/api/v1/backup/{name}"),
        json!({"snapshot": name, "schema": snapshot.schema, "tables": tables}),
    ))
}
