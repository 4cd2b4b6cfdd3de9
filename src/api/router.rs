//! Routing: a request in, a response out, no sockets. Which paths are public (health, the login
//! page and the console's files), which need an API key or a console session, and the checks a
//! session's requests pass (same origin, password chosen) before any handler runs.

use super::auth::{self, Caller};
use super::error::ApiError;
use super::login;
use super::operations::{self, Operation};
use super::{
    alerts, assets, backup, computers, events, install, maintenance, notifications, policies,
    tokens,
};
use crate::metrics::StoreCounts;
use crate::store::{NotifyReads, Reads};
use hyper::{Method, StatusCode};
use serde_json::json;
use std::borrow::Cow;
use std::sync::atomic::Ordering;

/// What a request without credentials may send as its body: a login is a few hundred bytes.
pub const PUBLIC_BODY_BYTES: usize = 8 * 1024;

/// What [`admit`] decided from a request's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The request presented an API key or a live console session.
    pub authenticated: bool,
    /// How many body bytes may be read for it.
    pub body_limit: usize,
}

/// Decides from the head alone, before a byte of the body is read: a request to a path that
/// needs credentials and has none is answered now (its body never read), and a request
/// without credentials may send at most [`PUBLIC_BODY_BYTES`]. Everything else about the
/// request (same origin, the password chosen) is checked by [`handle`] as before.
pub fn admit(state: &ApiState, req: &ApiRequest) -> Result<Admitted, ApiError> {
    let path = req.path.trim_end_matches('/');
    // An installer with a live token is somebody: its connection (a download of the binary
    // takes a while) is no longer one of the strangers a flood of them would evict.
    if path.starts_with("/agent/") && install::holds_live_token(state, req) {
        return Ok(Admitted {
            authenticated: true,
            body_limit: PUBLIC_BODY_BYTES,
        });
    }
    let login = path == "/api/v1/session" && req.method == Method::POST;
    let needs_caller = !login && (path == "/metrics" || path.starts_with("/api/"));
    match (auth::caller(state, req), needs_caller) {
        (Ok(Some(_)), _) => Ok(Admitted {
            authenticated: true,
            body_limit: super::MAX_BODY_BYTES,
        }),
        (Ok(None), true) => Err(required_caller_error()),
        (Err(e), true) => Err(e),
        // Nobody (or a wrong API key) on a public path, the login included.
        (_, false) => Ok(Admitted {
            authenticated: false,
            body_limit: PUBLIC_BODY_BYTES,
        }),
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
        ["readyz"] => only(m, Method::GET, "GET", || readyz(state))?,
        ["agent", "install.sh"] => only(m, Method::GET, "GET", || install::script(state, req))?,
        ["agent", "download", name] => only(m, Method::GET, "GET", || {
            install::download(state, name, req)
        })?,
        ["login"] => only(m, Method::GET, "GET", || Ok(login_page(state, req)))?,
        ["assets", name @ ..] if !name.is_empty() => {
            only(m, Method::GET, "GET", || asset(&name.join("/")))?
        }
        ["metrics"] => only(m, Method::GET, "GET", || {
            checked_caller(state, req, false)?;
            metrics(state)
        })?,
        ["api", "v1", "session"] if *m == Method::POST => login::login(state, req),
        ["api", "v1", rest @ ..] => {
            match checked_caller(state, req, rest.first() == Some(&"session")) {
                Ok(caller) => api_v1(state, req, &caller, rest)?,
                Err(e) => Err(e),
            }
        }
        page if assets::is_page(page) => {
            only(m, Method::GET, "GET", || Ok(console_page(state, req)))?
        }
        _ => return Err(AllowOnly("")),
    };
    Ok(result.unwrap_or_else(|e| ApiResponse::error(&e)))
}

use super::{ApiRequest, ApiResponse, ApiState, Handled};

/// The caller, who must have presented an API key or a live session.
fn required_caller(state: &ApiState, req: &ApiRequest) -> Result<Caller, ApiError> {
    auth::caller(state, req)?.ok_or_else(required_caller_error)
}

fn required_caller_error() -> ApiError {
    ApiError::unauthorized(
        "not logged in: send 'Authorization: Bearer KEY' or log in to the console",
    )
}

/// [`required_caller`], and for a console session the checks every request passes: same
/// origin, and a password of the user's own unless `session_route` (the routes that choose one).
fn checked_caller(
    state: &ApiState,
    req: &ApiRequest,
    session_route: bool,
) -> Result<Caller, ApiError> {
    let caller = required_caller(state, req)?;
    if let Caller::Session { .. } = caller {
        auth::check_same_origin(req)?;
        if !session_route {
            auth::check_password_chosen(&caller)?;
        }
    }
    Ok(caller)
}

fn api_v1(
    state: &ApiState,
    req: &ApiRequest,
    caller: &Caller,
    rest: &[&str],
) -> Result<Handled, AllowOnly> {
    let body = &req.body;
    let handled = match (rest, &req.method) {
        (["session"], &Method::GET) => login::show(state, caller),
        (["session"], &Method::DELETE) => login::logout(state, caller),
        (["session"], _) => return Err(AllowOnly("GET, POST, DELETE")),
        (["session", "password"], &Method::POST) => login::change_password(state, req, caller),
        (["session", "password"], _) => return Err(AllowOnly("POST")),
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
        (["policies", r, "firewall-rules", id], &Method::PUT) => {
            policies::edit_rule(state, r, id, body)
        }
        (["policies", r, "firewall-rules", id], &Method::DELETE) => {
            policies::remove_rule(state, r, id)
        }
        (["policies", _, "firewall-rules", _], _) => return Err(AllowOnly("PUT, DELETE")),
        (["alerts"], &Method::GET) => alerts::list(state, req.query.as_deref()),
        (["alerts"], _) => return Err(AllowOnly("GET")),
        (["alerts", "acknowledge"], &Method::POST) => alerts::bulk(state, caller, body, true),
        (["alerts", "dismiss"], &Method::POST) => alerts::bulk(state, caller, body, false),
        (["alerts", "acknowledge" | "dismiss"], _) => return Err(AllowOnly("POST")),
        (["alerts", id, "dismiss"], &Method::POST) => alerts::dismiss(state, id),
        (["alerts", id, "acknowledge"], &Method::POST) => {
            alerts::acknowledge(state, caller, id, body)
        }
        (["alerts", _, "dismiss" | "acknowledge"], _) => return Err(AllowOnly("POST")),
        (["notifications", "channels"], &Method::GET) => notifications::list(state),
        (["notifications", "channels"], &Method::POST) => notifications::create(state, body),
        (["notifications", "channels"], _) => return Err(AllowOnly("GET, POST")),
        (["notifications", "channels", name], &Method::GET) => notifications::show(state, name),
        (["notifications", "channels", name], &Method::DELETE) => {
            notifications::delete(state, name)
        }
        (["notifications", "channels", _], _) => return Err(AllowOnly("GET, DELETE")),
        (["notifications", "channels", name, "test"], &Method::POST) => {
            notifications::test(state, name)
        }
        (["notifications", "channels", _, "test"], _) => return Err(AllowOnly("POST")),
        (["notifications", "routes"], &Method::POST) => notifications::add_route(state, body),
        (["notifications", "routes"], _) => return Err(AllowOnly("POST")),
        (["notifications", "routes", id], &Method::DELETE) => {
            notifications::delete_route(state, id)
        }
        (["notifications", "routes", _], _) => return Err(AllowOnly("DELETE")),
        (["backup"], &Method::POST) => backup::snapshot(state, caller),
        (["backup"], _) => return Err(AllowOnly("POST")),
        (["maintenance"], &Method::GET) => maintenance::list(state),
        (["maintenance"], &Method::POST) => maintenance::create(state, caller, body),
        (["maintenance"], _) => return Err(AllowOnly("GET, POST")),
        (["maintenance", id], &Method::DELETE) => maintenance::delete(state, id),
        (["maintenance", _], _) => return Err(AllowOnly("DELETE")),
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
        (["computers", id, "firewall-rules"], &Method::GET) => computers::firewall_rules(state, id),
        (["computers", _, "firewall-rules"], _) => return Err(AllowOnly("GET")),
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

/// A console page for a logged-in user; otherwise the login page, which comes back here after.
fn console_page(state: &ApiState, req: &ApiRequest) -> ApiResponse {
    match auth::caller(state, req) {
        Ok(Some(_)) => page(assets::APP_PAGE),
        _ => {
            let here = match &req.query {
                Some(q) => format!("{}?{q}", req.path),
                None => req.path.clone(),
            };
            ApiResponse::see_other(format!("/login?next={}", percent_encode(&here)))
        }
    }
}

fn login_page(state: &ApiState, req: &ApiRequest) -> ApiResponse {
    match auth::caller(state, req) {
        Ok(Some(Caller::Session { .. })) => ApiResponse::see_other("/".into()),
        _ => page(assets::LOGIN_PAGE),
    }
}

fn page(name: &str) -> ApiResponse {
    match assets::get(name) {
        Some((content_type, bytes)) => ApiResponse::raw(content_type, bytes),
        None => ApiResponse::error(&ApiError::not_found(format!("page {name}"))),
    }
}

fn asset(name: &str) -> Handled {
    let (content_type, bytes) =
        assets::get(name).ok_or_else(|| ApiError::not_found(format!("file {name}")))?;
    Ok(ApiResponse::raw(content_type, bytes))
}

/// 200 once the store answers and takes writes and every listener is up; 503 otherwise
/// (starting, stopping, a store that fails or is short of space), so a load balancer or a
/// script waits rather than sends work.
fn readyz(state: &ApiState) -> Handled {
    let store = match state.store.read().and_then(|txn| txn.schema_version()) {
        Ok(_) => state.store.health().reason,
        // An I/O error the store is recovering from: its health says why, and the log already
        // has it.
        Err(e) if e.is_temporary() => Some(
            state
                .store
                .health()
                .reason
                .unwrap_or_else(|| format!("cannot read: {}", e.chain())),
        ),
        Err(e) => {
            // The error itself (paths and all) is for the log, not for whoever asks.
            log::error!("readyz: the store does not answer: {e}");
            Some("does not answer: see the manager's log".to_string())
        }
    };
    let listening = state.ready.load(Ordering::SeqCst);
    match (store, listening) {
        (None, true) => Ok(ApiResponse::ok(json!({"status": "ready"}))),
        (store, listening) => Ok(ApiResponse {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..ApiResponse::ok(json!({
                "status": "not ready",
                "store": store.map_or_else(|| "open".to_string(), |why| format!("failing: {why}")),
                "listeners": if listening { "up" } else { "not up" },
            }))
        }),
    }
}

fn metrics(state: &ApiState) -> Handled {
    let txn = state.store.read()?;
    let mut by_status: Vec<(String, u64)> = Vec::new();
    for computer in txn.computers()? {
        let name = computer.status.name();
        match by_status.iter_mut().find(|(s, _)| s == name) {
            Some((_, n)) => *n += 1,
            None => by_status.push((name.to_string(), 1)),
        }
    }

    let counts = StoreCounts {
        computers_by_status: by_status,
        events: txn.event_count()?,
        active_alerts: txn.active_alert_count()?,
        file_bytes: state.store.file_bytes(),
        health: state.store.health(),
        notices_queued: txn.outbox_len()?,
        notices_dropped: txn.notices_dropped()?,
    };
    let text = state.metrics.encode(&counts);
    Ok(ApiResponse::raw(
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        Cow::Owned(text.into_bytes()),
    ))
}

/// Escapes what a `next=` query value cannot hold as it is.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    fn a_next_path_survives_the_round_trip() {
        let path = "/computers?q=web 1&status=offline";
        assert_eq!(percent_decode(&percent_encode(path)), path);
        assert!(!percent_encode(path).contains(['?', '&', ' ']));
    }

    #[test]
    fn percent_decoding_handles_spaces_and_junk() {
        assert_eq!(percent_decode("Base%20Policy"), "Base Policy");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9t%C3%A9"), "été");
    }
}
