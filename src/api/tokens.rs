//! `/api/v1/tokens`: activation tokens. A token's secret is in the answer that creates it and
//! nowhere else: the store keeps its hash, lists show an id taken from the hash, and the log
//! names tokens by that id only.

use super::error::ApiError;
use super::{ApiResponse, ApiState};
use super::{input, views};
use crate::activation::{self, ActivationError};
use crate::model::{BASE_POLICY_NAME, Token, format_duration};
use crate::policy::PolicyTree;
use crate::store::Reads;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::Handled;

pub fn list(state: &ApiState) -> Handled {
    let txn = state.store.read()?;
    let tree = PolicyTree::new(txn.policies()?);
    let now = state.clock.wall();
    let mut tokens = txn.tokens()?;
    tokens.sort_by_key(|t| (t.created, t.hash));
    let all: Vec<Value> = tokens.iter().map(|t| views::token(&tree, t, now)).collect();
    Ok(ApiResponse::ok(json!({ "tokens": all })))
}

pub fn show(state: &ApiState, id: &str) -> Handled {
    let txn = state.store.read()?;
    let token = find(&txn, id)?;
    let tree = PolicyTree::new(txn.policies()?);
    Ok(ApiResponse::ok(views::token(
        &tree,
        &token,
        state.clock.wall(),
    )))
}

pub fn create(state: &ApiState, body: &[u8]) -> Handled {
    let request = input::token_request(input::object(body)?)?;
    let mut txn = state.store.write()?;
    let tree = PolicyTree::new(txn.policies()?);
    let policy = match &request.policy {
        Some(reference) => tree.find(reference),
        None => tree.base(),
    }
    .ok_or_else(|| ActivationError::UnknownPolicy {
        reference: request
            .policy
            .clone()
            .unwrap_or_else(|| BASE_POLICY_NAME.to_string()),
    })?;
    let now = state.clock.wall();
    let (secret, token) = activation::new_token(policy.id, request.uses, request.ttl, now)?;
    txn.put_token(&token)?;
    txn.commit()?;
    let id = activation::token_id(&token.hash);
    log::info!(
        "activation token {id} created for policy '{}' (id {}), {} uses, valid for {}",
        policy.name,
        policy.id,
        request
            .uses
            .map_or("unlimited".to_string(), |n| n.to_string()),
        format_duration(request.ttl.unwrap_or(activation::DEFAULT_TTL)),
    );
    let mut answer = views::token(&tree, &token, now);
    answer["token"] = json!(secret);
    answer["agent_command"] = json!(activation::agent_command(
        &state.agent_endpoint,
        &secret,
        &state.ca_sha256
    ));
    answer["install_command"] = json!(super::install::install_command(state, &secret));
    Ok(ApiResponse::created(format!("/api/v1/tokens/{id}"), answer))
}

/// Revokes the token: it is removed, so an agent presenting it is refused as unknown.
pub fn delete(state: &ApiState, id: &str) -> Handled {
    let mut txn = state.store.write()?;
    let token = find(&txn, id)?;
    txn.delete_token(&token.hash)?;
    txn.commit()?;
    log::info!(
        "activation token {} revoked",
        activation::token_id(&token.hash)
    );
    Ok(ApiResponse::no_content())
}

/// The token whose id is `id` (16 hex digits, any case). Anything else is not echoed back, in
/// case it is a secret pasted in the wrong place.
fn find(txn: &impl Reads, id: &str) -> Result<Token, ApiError> {
    let wanted = id.to_ascii_lowercase();
    if wanted.len() != activation::ID_LEN || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no such token: a token id is {} hex digits, as `picket token list` shows",
                activation::ID_LEN
            ),
        ));
    }
    let mut found = txn
        .tokens()?
        .into_iter()
        .filter(|t| activation::token_id(&t.hash) == wanted);
    match (found.next(), found.next()) {
        (Some(token), None) => Ok(token),
        (None, _) => Err(ApiError::not_found(format!("token '{wanted}'"))),
        // Two random 256-bit hashes sharing 64 bits: not seen in practice, but never guess.
        (Some(_), Some(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("more than one token has id '{wanted}', so it names neither"),
        )),
    }
}
