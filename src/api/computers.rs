//! `/api/v1/computers`: computers added by hostname, their policy, kind and overrides.

use super::error::ApiError;
use super::{ApiResponse, ApiState};
use super::{input, lockout, views};
use crate::handles::LivenessEvent;
use crate::model::{AgentState, Computer, ComputerId, HistoryEntry};
use crate::policy::{self, PolicyTree};
use crate::store::Reads;
use serde_json::{Value, json};

use super::Handled;

pub fn list(state: &ApiState) -> Handled {
    let txn = state.store.read()?;
    let tree = PolicyTree::new(txn.policies()?);
    let agents: std::collections::HashMap<ComputerId, AgentState> = txn
        .agent_states()?
        .into_iter()
        .map(|a| (a.computer, a))
        .collect();
    let endpoints = std::slice::from_ref(&state.agent_endpoint);
    let all: Vec<Value> = txn
        .computers()?
        .iter()
        .map(|c| views::computer(&tree, c, agents.get(&c.id), endpoints))
        .collect();
    Ok(ApiResponse::ok(json!({ "computers": all })))
}

pub fn show(state: &ApiState, id: &str) -> Handled {
    let txn = state.store.read()?;
    let computer = find(&txn, id)?;
    let tree = PolicyTree::new(txn.policies()?);
    let agent = txn.agent_state(computer.id)?;
    let endpoints = std::slice::from_ref(&state.agent_endpoint);
    Ok(ApiResponse::ok(views::computer(
        &tree,
        &computer,
        agent.as_ref(),
        endpoints,
    )))
}

pub fn create(state: &ApiState, body: &[u8]) -> Handled {
    let change = input::computer_change(input::object(body)?)?;
    let mut txn = state.store.write()?;
    let tree = PolicyTree::new(txn.policies()?);
    let holder = hostname_holder(&txn, &change)?;
    let id = txn.next_computer_id()?;
    let computer = policy::create_computer(
        &tree,
        |h| hostname_taken(holder.as_ref(), h),
        id,
        state.clock.wall(),
        &change,
    )?;
    txn.put_computer(&computer)?;
    txn.commit()?;
    log::info!(
        "computer '{}' (id {}) added",
        computer.hostname,
        computer.id
    );
    let location = format!("/api/v1/computers/{}", computer.id);
    Ok(ApiResponse::created(
        location,
        views::computer(
            &tree,
            &computer,
            None,
            std::slice::from_ref(&state.agent_endpoint),
        ),
    ))
}

pub fn update(state: &ApiState, id: &str, body: &[u8]) -> Handled {
    let change = input::computer_change(input::object(body)?)?;
    let mut txn = state.store.write()?;
    let current = find(&txn, id)?;
    let tree = PolicyTree::new(txn.policies()?);
    let holder = hostname_holder(&txn, &change)?;
    let updated = policy::apply_computer_change(
        &tree,
        |h| hostname_taken(holder.as_ref(), h),
        &current,
        &change,
    )?;
    let field = if change.settings.0.is_empty() {
        "policy"
    } else {
        "settings"
    };
    let changed = lockout::Changed {
        before: (&tree, &current),
        after: (&tree, &updated),
    };
    lockout::check(state, &mut txn, std::slice::from_ref(&changed), field)?;
    txn.put_computer(&updated)?;
    txn.add_history(&HistoryEntry {
        computer: updated.id,
        at: state.clock.wall(),
        what: "changed".into(),
        detail: format!("by an administrator: {}", changed_fields(&change)),
    })?;
    let agent = txn.agent_state(updated.id)?;
    txn.commit()?;
    state.settings_changed();
    log::info!(
        "computer '{}' (id {}) changed",
        updated.hostname,
        updated.id
    );
    let endpoints = std::slice::from_ref(&state.agent_endpoint);
    Ok(ApiResponse::ok(views::computer(
        &tree,
        &updated,
        agent.as_ref(),
        endpoints,
    )))
}

pub fn delete(state: &ApiState, id: &str) -> Handled {
    let mut txn = state.store.write()?;
    let computer = find(&txn, id)?;
    txn.delete_computer(computer.id)?;
    // Its agent state holds the only certificate serial accepted for it: gone, it is revoked.
    txn.delete_agent_state(computer.id)?;
    crate::alerts::record::end_with_computer(&mut txn, computer.id, state.clock.wall())?;
    txn.add_history(&HistoryEntry {
        computer: computer.id,
        at: state.clock.wall(),
        what: "deleted".into(),
        detail: format!("'{}' deleted by an administrator", computer.hostname),
    })?;
    txn.commit()?;
    state.registry.remove_computer(computer.id);
    state.liveness.send(LivenessEvent::Deleted(computer.id));
    state
        .dialer
        .send(crate::handles::DialerEvent::Deleted(computer.id));
    log::info!(
        "computer '{}' (id {}) deleted",
        computer.hostname,
        computer.id
    );
    Ok(ApiResponse::no_content())
}

fn find(txn: &impl Reads, id: &str) -> Result<Computer, ApiError> {
    let not_found = || ApiError::not_found(format!("computer '{id}'"));
    let id: u64 = id.parse().map_err(|_| not_found())?;
    txn.computer(ComputerId(id))?.ok_or_else(not_found)
}

/// What a change touched, for the history: `hostname, settings.heartbeat.interval`.
fn changed_fields(change: &policy::ComputerChange) -> String {
    let mut fields: Vec<String> = [
        ("hostname", change.hostname.is_some()),
        ("policy", change.policy.is_some()),
        ("kind", change.kind.is_some()),
        ("vm_power_state", change.vm_power_state.is_some()),
        ("address", change.address.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name.to_string())
    .collect();
    fields.extend(change.settings.describe());
    fields.join(", ")
}

/// `GET /api/v1/computers/{id}/history?limit=N`: newest first.
pub fn history(state: &ApiState, id: &str) -> Handled {
    let txn = state.store.read()?;
    let computer = find(&txn, id)?;
    let lines: Vec<Value> = txn
        .history(computer.id, 1000)?
        .iter()
        .map(|h| json!({"at_ms": h.at.0, "what": h.what, "detail": h.detail}))
        .collect();
    Ok(ApiResponse::ok(json!({ "history": lines })))
}

/// `GET /api/v1/computers/{id}/firewall-rules`: the rules the computer runs, in the order its
/// agent evaluates them, each with the policy it comes from.
pub fn firewall_rules(state: &ApiState, id: &str) -> Handled {
    let txn = state.store.read()?;
    let computer = find(&txn, id)?;
    let tree = PolicyTree::new(txn.policies()?);
    let agent = txn.agent_state(computer.id)?;
    let evaluation =
        policy::evaluated::evaluate(&tree, &computer, agent.as_ref().and_then(|a| a.listen_port));
    let endpoints = std::slice::from_ref(&state.agent_endpoint);
    // A protocol-1 agent is not sent the firewall: its rules are listed, not enforced.
    let withheld = agent.as_ref().and_then(|a| {
        policy::expected_config(&tree, &computer, endpoints)
            .firewall_withheld_from(a.protocol)
            .then(|| policy::firewall_withheld_reason(a.protocol))
    });
    Ok(ApiResponse::ok(views::computer_rules(
        &tree,
        &computer,
        &evaluation,
        withheld,
    )))
}

/// The computer that already has the hostname a change asks for, if any: one index lookup
/// rather than a read of every computer.
fn hostname_holder(
    txn: &impl Reads,
    change: &policy::ComputerChange,
) -> Result<Option<Computer>, ApiError> {
    match &change.hostname {
        Some(hostname) => Ok(txn.computer_by_hostname(hostname)?),
        None => Ok(None),
    }
}

fn hostname_taken(holder: Option<&Computer>, hostname: &str) -> bool {
    holder.is_some_and(|c| c.hostname.eq_ignore_ascii_case(hostname))
}
