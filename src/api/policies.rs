//! `/api/v1/policies`: the policy tree and each policy's settings.

use super::error::ApiError;
use super::router::{ApiResponse, ApiState};
use super::{input, views};
use crate::manager::LivenessEvent;
use crate::model::HistoryEntry;
use crate::policy::{self, PolicyTree};
use crate::store::Reads;
use serde_json::{Value, json};

type Handled = Result<ApiResponse, ApiError>;

fn tree(txn: &impl Reads) -> Result<PolicyTree, ApiError> {
    Ok(PolicyTree::new(txn.policies()?))
}

pub fn list(state: &ApiState) -> Handled {
    let tree = tree(&state.store.read()?)?;
    let all: Vec<Value> = tree.iter().map(|p| views::policy(&tree, p)).collect();
    Ok(ApiResponse::ok(json!({ "policies": all })))
}

pub fn show(state: &ApiState, reference: &str) -> Handled {
    let tree = tree(&state.store.read()?)?;
    let found = find(&tree, reference)?;
    Ok(ApiResponse::ok(views::policy(&tree, found)))
}

pub fn create(state: &ApiState, body: &[u8]) -> Handled {
    let change = input::policy_change(input::object(body)?)?;
    let mut txn = state.store.write()?;
    let mut tree = tree(&txn)?;
    let id = txn.next_policy_id()?;
    let created = policy::create_policy(&tree, id, &change)?;
    txn.put_policy(&created)?;
    txn.commit()?;
    log::info!("policy '{}' (id {}) created", created.name, created.id);
    let location = format!("/api/v1/policies/{}", created.id);
    tree.upsert(created.clone());
    Ok(ApiResponse::created(
        location,
        views::policy(&tree, &created),
    ))
}

pub fn update(state: &ApiState, reference: &str, body: &[u8]) -> Handled {
    let change = input::policy_change(input::object(body)?)?;
    let mut txn = state.store.write()?;
    let mut tree = tree(&txn)?;
    let current = find(&tree, reference)?;
    let updated = policy::update_policy(&tree, current, &change)?;
    txn.put_policy(&updated)?;
    tree.upsert(updated.clone());
    // Every computer under the policy gets a line, so its history explains why its effective
    // settings (and expected fingerprint) moved.
    let detail = format!("policy '{}' changed: {}", updated.name, describe(&change));
    let now = state.clock.wall();
    for computer in txn.computers()? {
        if tree
            .chain(computer.policy)
            .iter()
            .any(|p| p.id == updated.id)
        {
            txn.add_history(&HistoryEntry {
                computer: computer.id,
                at: now,
                what: "policy-changed".into(),
                detail: detail.clone(),
            })?;
        }
    }
    txn.commit()?;
    log::info!("policy '{}' (id {}) changed", updated.name, updated.id);
    state.liveness.send(LivenessEvent::SettingsChanged);
    Ok(ApiResponse::ok(views::policy(&tree, &updated)))
}

/// What a policy change touched: `parent=Servers, heartbeat.interval=5m`.
fn describe(change: &policy::PolicyChange) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &change.name {
        parts.push(format!("name={name}"));
    }
    if let Some(parent) = &change.parent {
        parts.push(format!("parent={parent}"));
    }
    parts.extend(change.settings.describe());
    parts.join(", ")
}

pub fn delete(state: &ApiState, reference: &str) -> Handled {
    let mut txn = state.store.write()?;
    let tree = tree(&txn)?;
    let policy = find(&tree, reference)?;
    let assigned = txn
        .computers()?
        .iter()
        .filter(|c| c.policy == policy.id)
        .count();
    policy::check_policy_delete(&tree, policy, assigned)?;
    txn.delete_policy(policy.id)?;
    // A token for a deleted policy could never activate anything: it is revoked with it.
    let mut revoked = 0;
    for token in txn.tokens()?.iter().filter(|t| t.policy == policy.id) {
        revoked += usize::from(txn.delete_token(&token.hash)?);
    }
    txn.commit()?;
    log::info!(
        "policy '{}' (id {}) deleted, with {revoked} activation token(s) for it",
        policy.name,
        policy.id
    );
    Ok(ApiResponse::no_content())
}

fn find<'t>(tree: &'t PolicyTree, reference: &str) -> Result<&'t crate::model::Policy, ApiError> {
    tree.find(reference)
        .ok_or_else(|| ApiError::not_found(format!("policy '{reference}'")))
}
