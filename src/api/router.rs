//! Routing and authentication: a request in, a response out, no sockets.

use super::error::ApiError;
use super::operations::{self, Operation};
use super::{alerts, computers, events, policies, tokens};
use crate::clock::Clock;
use crate::pki;
use crate::store::Store;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// What every handler shares.
pub struct ApiState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// SHA-256 of the admin API key; the key itself is never held.
    pub admin_key_hash: [u8; 32],
    /// `HOST:PORT` of the agent listener as agents should dial it, for agent command lines.
    pub agent_endpoint: String,
    /// SHA-256 of the CA certificate (hex): the pin agents are given with `--ca-sha256`.
    pub ca_sha256: String,
    /// The agent certificates the agent port accepts; a deleted computer leaves it at once.
    pub registry: Arc<crate::manager::Registry>,
    /// Told of every change that can move a computer's deadlines.
    pub liveness: crate::manager::Liveness,
    /// Told of every change that can move a computer's configuration; dials for operations.
    pub dialer: crate::manager::Dialer,
}

impl ApiState {
    /// Effective settings, rules or assignments may have moved: liveness rules follow, and
    /// changed configurations are pushed to the agents that listen.
    pub fn settings_changed(&self) {
        self.liveness
            .send(crate::manager::LivenessEvent::SettingsChanged);
        self.dialer.send(crate::manager::DialerEvent::Refresh);
    }
}

/// A request with its body already read and size-checked.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    /// The query string, without the `?`.
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Option<Value>,
    /// For 201: where the new resource lives.
    pub location: Option<String>,
    /// For 405: the methods the path accepts.
    pub allow: Option<&'static str>,
}

impl ApiResponse {
    pub fn ok(body: Value) -> Self {
        ApiResponse::with_status(StatusCode::OK, body)
    }

    pub fn created(location: String, body: Value) -> Self {
        ApiResponse {
            location: Some(location),
            ..ApiResponse::with_status(StatusCode::CREATED, body)
        }
    }

    /// For an operation queued until the agent's next heartbeat.
    pub fn accepted(body: Value) -> Self {
        ApiResponse::with_status(StatusCode::ACCEPTED, body)
    }

    pub fn no_content() -> Self {
        ApiResponse {
            status: StatusCode::NO_CONTENT,
            body: None,
            location: None,
            allow: None,
        }
    }

    pub fn error(e: &ApiError) -> Self {
        ApiResponse::with_status(e.status, e.body())
    }

    fn with_status(status: StatusCode, body: Value) -> Self {
        ApiResponse {
            status,
            body: Some(body),
            location: None,
            allow: None,
        }
    }
}

/// Serves one request. Errors become their JSON form here, so the HTTP shell never sees one.
pub fn handle(state: &ApiState, req: &ApiRequest) -> ApiResponse {
    match route(state, req) {
        Ok(response) => response,
        Err(AllowOnly("")) => {
            ApiResponse::error(&ApiError::not_found(format!("path {}", req.path)))
        }
        Err(AllowOnly(allow)) => ApiResponse {
            allow: Some(allow),
            ..ApiResponse::error(&ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed here; allowed: {allow}", req.method),
            ))
        },
    }
}

/// A path exists but not with this method (or, when empty, the path does not exist).
struct AllowOnly(&'static str);

fn route(state: &ApiState, req: &ApiRequest) -> Result<ApiResponse, AllowOnly> {
    let path = req.path.trim_end_matches('/');
    let segments: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let m = &req.method;
    let result = match segments.as_slice() {
        ["healthz"] => only(m, Method::GET, "GET", || {
            Ok(ApiResponse::ok(json!({"status": "ok"})))
        })?,
        ["api", "v1", rest @ ..] => {
            if let Err(e) = authenticate(state, req) {
                return Ok(ApiResponse::error(&e));
            }
            api_v1(state, req, rest)?
        }
        _ => return Err(AllowOnly("")),
    };
    Ok(result.unwrap_or_else(|e| ApiResponse::error(&e)))
}

type Handled = Result<ApiResponse, ApiError>;

fn api_v1(state: &ApiState, req: &ApiRequest, rest: &[&str]) -> Result<Handled, AllowOnly> {
    let body = &req.body;
    let handled = match (rest, &req.method) {
        (["policies"], &Method::GET) => policies::list(state),
        (["policies"], &Method::POST) => policies::create(state, body),
        (["policies"], _) => return Err(AllowOnly("GET, POST")),
        (["policies", r], &Method::GET) => policies::show(state, r),
        (["policies", r], &Method::PATCH) => policies::update(state, r, body),
        (["policies", r], &Method::DELETE) => policies::delete(state, r),
        (["policies", _], _) => return Err(AllowOnly("GET, PATCH, DELETE")),
        (["policies", r, "firewall-rules"], &Method::GET) => policies::rules(state, r),
        (["policies", r, "firewall-rules"], &Method::POST) => policies::add_rule(state, r, body),
        (["policies", _, "firewall-rules"], _) => return Err(AllowOnly("GET, POST")),
        (["policies", r, "firewall-rules", id], &Method::DELETE) => {
            policies::remove_rule(state, r, id)
        }
        (["policies", _, "firewall-rules", _], _) => return Err(AllowOnly("DELETE")),
        (["alerts"], &Method::GET) => alerts::list(state, req.query.as_deref()),
        (["alerts"], _) => return Err(AllowOnly("GET")),
        (["alerts", id, "dismiss"], &Method::POST) => alerts::dismiss(state, id),
        (["alerts", _, "dismiss"], _) => return Err(AllowOnly("POST")),
        (["events"], &Method::GET) => events::list(state, req.query.as_deref()),
        (["events"], _) => return Err(AllowOnly("GET")),
        (["computers"], &Method::GET) => computers::list(state),
        (["computers"], &Method::POST) => computers::create(state, body),
        (["computers"], _) => return Err(AllowOnly("GET, POST")),
        (["computers", id], &Method::GET) => computers::show(state, id),
        (["computers", id], &Method::PATCH) => computers::update(state, id, body),
        (["computers", id], &Method::DELETE) => computers::delete(state, id),
        (["computers", _], _) => return Err(AllowOnly("GET, PATCH, DELETE")),
        (["computers", id, "history"], &Method::GET) => computers::history(state, id),
        (["computers", _, "history"], _) => return Err(AllowOnly("GET")),
        (["computers", id, "send-policy"], &Method::POST) => {
            operations::run(state, id, Operation::SendPolicy)
        }
        (["computers", id, "check-status"], &Method::POST) => {
            operations::run(state, id, Operation::CheckStatus)
        }
        (["computers", _, "send-policy" | "check-status"], _) => return Err(AllowOnly("POST")),
        (["tokens"], &Method::GET) => tokens::list(state),
        (["tokens"], &Method::POST) => tokens::create(state, body),
        (["tokens"], _) => return Err(AllowOnly("GET, POST")),
        (["tokens", id], &Method::GET) => tokens::show(state, id),
        (["tokens", id], &Method::DELETE) => tokens::delete(state, id),
        (["tokens", _], _) => return Err(AllowOnly("GET, DELETE")),
        _ => return Err(AllowOnly("")),
    };
    Ok(handled)
}

fn only(
    method: &Method,
    allowed: Method,
    allow: &'static str,
    f: impl FnOnce() -> Handled,
) -> Result<Handled, AllowOnly> {
    if *method == allowed {
        Ok(f())
    } else {
        Err(AllowOnly(allow))
    }
}

/// `Authorization: Bearer KEY`, compared by hash in constant time.
fn authenticate(state: &ApiState, req: &ApiRequest) -> Result<(), ApiError> {
    let header = req.authorization.as_deref().ok_or_else(|| {
        ApiError::unauthorized("missing API key: send 'Authorization: Bearer KEY'")
    })?;
    let key = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer KEY'"))?;
    if pki::hashes_equal(&pki::sha256(key.trim().as_bytes()), &state.admin_key_hash) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("wrong API key"))
    }
}

/// Decodes `%XX` escapes in one path segment (policy names may contain spaces). Malformed
/// escapes are kept as written, so they simply match nothing.
pub fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_spaces_and_junk() {
        assert_eq!(percent_decode("Base%20Policy"), "Base Policy");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9t%C3%A9"), "été");
    }
}
