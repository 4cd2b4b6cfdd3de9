//! `/api/v1/policies`: the policy tree and each policy's settings.

use super::error::ApiError;
use super::{ApiResponse, ApiState};
use super::{input, lockout, views};
use crate::model::HistoryEntry;
use crate::policy::{self, PolicyTree};
use crate::store::Reads;
use serde_json::{Value, json};

use super::Handled;

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
    let before = tree.clone();
    tree.upsert(updated.clone());
    let field = changed_field(&change);
    lockout::check_policy_change(state, &mut txn, &before, &tree, updated.id, &field)?;
    txn.put_policy(&updated)?;
    let detail = format!("policy '{}' changed: {}", updated.name, describe(&change));
    note_under(&mut txn, &tree, updated.id, state.clock.wall(), &detail)?;
    txn.commit()?;
    log::info!("policy '{}' (id {}) changed", updated.name, updated.id);
    state.settings_changed();
    Ok(ApiResponse::ok(views::policy(&tree, &updated)))
}

/// What to blame if a change would lock the manager out: the direction if it moved, else the
/// parent (which brings inherited rules).
fn changed_field(change: &policy::PolicyChange) -> String {
    let direction = crate::model::SettingKey::Direction;
    if change.settings.0.iter().any(|(key, _)| *key == direction) {
        format!("settings.{}", direction.name())
    } else {
        "parent".to_string()
    }
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

/// `GET .../firewall-rules`: the policy's own rules, and every rule that applies under it.
pub fn rules(state: &ApiState, reference: &str) -> Handled {
    let tree = tree(&state.store.read()?)?;
    let policy = find(&tree, reference)?;
    Ok(ApiResponse::ok(json!({
        "policy": policy.name,
        "rules": policy.rules.iter().map(views::rule).collect::<Vec<_>>(),
        "effective": views::effective_rules(&tree, policy.id),
    })))
}

pub fn add_rule(state: &ApiState, reference: &str, body: &[u8]) -> Handled {
    let rule = input::firewall_rule(input::object(body)?)?;
    let mut txn = state.store.write()?;
    let mut tree = tree(&txn)?;
    let current = find(&tree, reference)?;
    let id = txn.next_rule_id()?;
    let updated = policy::add_rule(current, id, rule)?;
    let added = updated.rules.last().map(views::rule).unwrap_or_default();
    let detail = format!(
        "policy '{}': firewall rule {id} '{}' added",
        updated.name,
        added["name"].as_str().unwrap_or_default()
    );
    let before = tree.clone();
    tree.upsert(updated.clone());
    lockout::check_policy_change(state, &mut txn, &before, &tree, updated.id, "source_ips")?;
    txn.put_policy(&updated)?;
    note_under(&mut txn, &tree, updated.id, state.clock.wall(), &detail)?;
    txn.commit()?;
    log::info!("{detail}");
    state.settings_changed();
    let location = format!("/api/v1/policies/{}/firewall-rules/{id}", updated.id);
    Ok(ApiResponse::created(location, added))
}

/// `PUT .../firewall-rules/{id}`: the rule with the body's fields (as `POST` takes them)
/// replacing its own, keeping its id and its place. A field left out keeps its value (`null`
/// takes `POST`'s default, `[]` empties a list), so an edit that names one field cannot widen
/// the rule by what it forgot to repeat; the merge is in the edit's own store transaction, so a
/// concurrent edit of another field is not undone. A body equal to the rule writes nothing.
pub fn edit_rule(state: &ApiState, reference: &str, rule: &str, body: &[u8]) -> Handled {
    let changes = input::object(body)?;
    let mut txn = state.store.write()?;
    let mut tree = tree(&txn)?;
    let current = find(&tree, reference)?;
    let id = rule_id(rule)?;
    let stored = current
        .rules
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("firewall rule '{rule}'")))?;
    let mut merged = match views::rule(stored) {
        Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    };
    // What the view adds that a rule body does not take.
    merged.remove("id");
    merged.remove("governs_agent_port");
    merged.extend(changes);
    let wanted = input::firewall_rule(merged)?;
    let updated = policy::replace_rule(current, id, wanted).map_err(unknown_rule_is_404)?;
    let (Some(before), Some(after)) = (
        current.rules.iter().find(|r| r.id == id),
        updated.rules.iter().find(|r| r.id == id),
    ) else {
        return Err(ApiError::not_found(format!("firewall rule '{rule}'")));
    };
    let changed = policy::changed_fields(before, after);
    let edited = views::rule(after);
    if changed.is_empty() {
        return Ok(ApiResponse::ok(edited));
    }
    let detail = format!(
        "policy '{}': firewall rule {id} '{}' edited ({})",
        updated.name,
        after.name,
        changed.join(", ")
    );
    // Blamed on the first field that moved and can move a packet's fate (a name or the log
    // cannot): the console shows the refusal beside it.
    let field = changed
        .iter()
        .copied()
        .find(|f| !matches!(*f, "name" | "log"))
        .unwrap_or(changed[0]);
    let before_tree = tree.clone();
    tree.upsert(updated.clone());
    lockout::check_policy_change(state, &mut txn, &before_tree, &tree, updated.id, field)?;
    txn.put_policy(&updated)?;
    note_under(&mut txn, &tree, updated.id, state.clock.wall(), &detail)?;
    txn.commit()?;
    log::info!("{detail}");
    state.settings_changed();
    Ok(ApiResponse::ok(edited))
}

pub fn remove_rule(state: &ApiState, reference: &str, rule: &str) -> Handled {
    let mut txn = state.store.write()?;
    let mut tree = tree(&txn)?;
    let current = find(&tree, reference)?;
    let id = rule_id(rule)?;
    let updated = policy::remove_rule(current, id).map_err(unknown_rule_is_404)?;
    let detail = format!("policy '{}': firewall rule {id} removed", updated.name);
    let before = tree.clone();
    tree.upsert(updated.clone());
    // Removing one of two rules can leave the other refusing the manager.
    lockout::check_policy_change(state, &mut txn, &before, &tree, updated.id, "rule")?;
    txn.put_policy(&updated)?;
    note_under(&mut txn, &tree, updated.id, state.clock.wall(), &detail)?;
    txn.commit()?;
    log::info!("{detail}");
    state.settings_changed();
    Ok(ApiResponse::no_content())
}

/// A history line on every computer under `policy`, so each one's history explains why its
/// configuration moved.
fn note_under(
    txn: &mut crate::store::WriteTxn,
    tree: &PolicyTree,
    policy: crate::model::PolicyId,
    now: crate::clock::WallMs,
    detail: &str,
) -> Result<(), ApiError> {
    for computer in txn.computers()? {
        if tree.chain(computer.policy).iter().any(|p| p.id == policy) {
            txn.add_history(&HistoryEntry {
                computer: computer.id,
                at: now,
                what: "policy-changed".into(),
                detail: detail.to_string(),
            })?;
        }
    }
    Ok(())
}

fn find<'t>(tree: &'t PolicyTree, reference: &str) -> Result<&'t crate::model::Policy, ApiError> {
    tree.find(reference)
        .ok_or_else(|| ApiError::not_found(format!("policy '{reference}'")))
}

fn rule_id(text: &str) -> Result<crate::model::RuleId, ApiError> {
    text.parse()
        .map(crate::model::RuleId)
        .map_err(|_| ApiError::not_found(format!("firewall rule '{text}'")))
}

/// A rule the policy does not hold is a path that does not exist; any other refusal keeps its
/// own status and field.
fn unknown_rule_is_404(e: policy::PolicyError) -> ApiError {
    match e {
        policy::PolicyError::UnknownRule { .. } => {
            ApiError::new(hyper::StatusCode::NOT_FOUND, e.to_string())
        }
        other => other.into(),
    }
}
