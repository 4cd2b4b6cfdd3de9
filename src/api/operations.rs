//! `POST /api/v1/computers/{id}/send-policy` and `.../check-status`: the manager contacts the
//! agent now when it listens (bidirectional or manager-initiated) and answers with the result;
//! an agent-initiated computer is told at its next heartbeat, and the answer says when.

use super::error::ApiError;
use super::views;
use super::{ApiResponse, ApiState};
use crate::clock::format_utc;
use crate::model::{ComputerId, format_duration};
use crate::policy::PolicyTree;
use crate::store::Reads;
use hyper::StatusCode;
use serde_json::json;
use std::time::Duration;

use super::Handled;

/// Longest an operation waits for its dial: connecting, the handshake and a session's steps
/// each have their own timeouts well within it.
const OPERATION_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
pub enum Operation {
    SendPolicy,
    CheckStatus,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::SendPolicy => "send-policy",
            Operation::CheckStatus => "check-status",
        }
    }
}

pub fn run(state: &ApiState, id: &str, operation: Operation) -> Handled {
    let not_found = || ApiError::not_found(format!("computer '{id}'"));
    let id = ComputerId(id.parse().map_err(|_| not_found())?);
    let (computer, agent, tree) = {
        let txn = state.store.read()?;
        let computer = txn.computer(id)?.ok_or_else(not_found)?;
        (
            computer,
            txn.agent_state(id)?,
            PolicyTree::new(txn.policies()?),
        )
    };
    let name = format!("'{}' (id {id})", computer.hostname);
    let Some(agent) = agent else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("computer {name} is not activated: there is no agent to contact"),
        ));
    };
    let endpoints = std::slice::from_ref(&state.agent_endpoint);
    let expected = crate::policy::expected_config(&tree, &computer, endpoints);
    if agent.listen_port.is_none() {
        let due = agent
            .last_heartbeat
            .map(|t| crate::clock::WallMs(t.0.saturating_add(millis(expected.interval))));
        let when = due.map_or("when it next calls".to_string(), |t| {
            format!("due at {}", format_utc(t))
        });
        return Ok(ApiResponse::accepted(json!({
            "computer": id.0,
            "operation": operation.name(),
            "queued": true,
            "next_heartbeat_due_ms": due.map(|t| t.0),
            "message": format!(
                "computer {name} does not listen for the manager (agent-initiated): queued \
                 until its next heartbeat, {when} (every {})",
                format_duration(expected.interval)
            ),
        })));
    }
    let summary = state
        .dialer
        .dial_and_wait(&*state.clock, id, OPERATION_LIMIT)
        .map_err(|reason| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach the agent of computer {name}: {reason}"),
            )
        })?;
    // In the form the agent computes: the session's protocol, else the one last recorded.
    let fingerprint = expected.fingerprint_for(summary.protocol.unwrap_or(agent.protocol));
    let message = match (&summary.config_rejected, summary.applied) {
        (Some(reason), _) => format!("computer {name} rejected its configuration: {reason}"),
        (None, Some(applied)) if applied == fingerprint => format!(
            "computer {name} contacted: configuration {} is applied, {} event(s) received",
            &fingerprint.to_string()[..12],
            summary.events_stored
        ),
        (None, _) => format!("computer {name} contacted, but its configuration is not current"),
    };
    let txn = state.store.read()?;
    let (computer, agent) = (
        txn.computer(id)?.ok_or_else(not_found)?,
        txn.agent_state(id)?,
    );
    Ok(ApiResponse::ok(json!({
        "computer": views::computer(&tree, &computer, agent.as_ref(), endpoints),
        "operation": operation.name(),
        "queued": false,
        "config_up_to_date": summary.applied == Some(fingerprint),
        "message": message,
    })))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
