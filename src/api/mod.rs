//! The console and REST API over HTTPS: the HTTP shell (`server`), routing (`router`), who is
//! calling (`auth`: API key or console session), console login (`login`, `sessions`,
//! `throttle`, `password`), the embedded console files (`assets`), the handlers per resource,
//! JSON views and input, the error responses, and the refusal of a change that would lock the
//! manager out of an agent (`lockout`).
//!
//! Handlers are synchronous functions over the store, run on smol's blocking pool; the async
//! part only moves bytes. That keeps each handler testable without a socket.

mod alerts;
mod assets;
mod auth;
mod backup;
mod computers;
mod error;
mod events;
mod input;
mod install;
mod lockout;
mod login;
mod maintenance;
mod notifications;
mod operations;
mod policies;
mod router;
#[cfg(test)]
mod rule_tests;
mod server;
mod sessions;
mod throttle;
mod tokens;
mod views;

pub use error::ApiError;
pub use login::Console;
pub use router::{handle, percent_decode};
pub use server::serve;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::Store;
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What a handler returns.
pub type Handled = Result<ApiResponse, ApiError>;

/// What every handler shares.
pub struct ApiState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// SHA-256 of the admin API key; the key itself is never held.
    pub admin_key_hash: [u8; 32],
    /// `HOST:PORT` of the agent listener as agents should dial it, for agent command lines.
    pub agent_endpoint: String,
    /// The manager's host name, as notifications name their sender.
    pub manager_name: String,
    /// `https://HOST:PORT` of the console as agents should reach it: what the install line
    /// and script fetch from.
    pub console_url: String,
    /// curl's pin of the manager's key (`sha256//BASE64`), for the install line.
    pub key_pin: String,
    /// SHA-256 of the CA certificate (hex): the pin agents are given with `--ca-sha256`.
    pub ca_sha256: String,
    /// The agent certificates the agent port accepts; a deleted computer leaves it at once.
    pub registry: Arc<crate::registry::Registry>,
    /// Told of every change that can move a computer's deadlines.
    pub liveness: crate::handles::Liveness,
    /// Told of every change that can move a computer's configuration; dials for operations.
    pub dialer: crate::handles::Dialer,
    /// Console sessions and failed-login delays.
    pub console: Console,
    pub metrics: Arc<Metrics>,
    /// Set once every listener is up, cleared when shutdown begins: what `/readyz` reports.
    pub ready: AtomicBool,
}

impl ApiState {
    /// Effective settings, rules or assignments may have moved: liveness rules follow, and
    /// changed configurations are pushed to the agents that listen.
    pub fn settings_changed(&self) {
        self.liveness
            .send(crate::handles::LivenessEvent::SettingsChanged);
        self.dialer.send(crate::handles::DialerEvent::Refresh);
    }
}

/// A request with its body already read and size-checked. Its `Debug` leaves out the
/// credentials and the body (which may hold a password), so no log line can carry them.
#[derive(Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    /// The query string, without the `?`.
    pub query: Option<String>,
    pub authorization: Option<String>,
    /// Every `Cookie` header.
    pub cookies: Vec<String>,
    pub origin: Option<String>,
    pub host: Option<String>,
    /// The client's address, for the failed-login delay and the log.
    pub peer: Option<IpAddr>,
    /// Sent by the console's own refreshes (`X-Picket-Background`): not a user's action.
    pub background: bool,
    /// `X-Picket-Token`: an activation token for the agent install routes, kept out of the
    /// URL (and so out of the installing computer's process list).
    pub token: Option<String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("origin", &self.origin)
            .field("host", &self.host)
            .field("peer", &self.peer)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Option<Value>,
    /// A body that is not JSON (a console file, the metrics text), with its content type.
    pub raw: Option<(&'static str, Cow<'static, [u8]>)>,
    /// For 201: where the new resource lives; for 303: where to go.
    pub location: Option<String>,
    /// For 405: the methods the path accepts.
    pub allow: Option<&'static str>,
    pub set_cookie: Option<String>,
    /// For 429: seconds until the next attempt is considered.
    pub retry_after: Option<u64>,
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
            raw: None,
            location: None,
            allow: None,
            set_cookie: None,
            retry_after: None,
        }
    }

    pub fn error(e: &ApiError) -> Self {
        ApiResponse {
            retry_after: e.retry_after,
            ..ApiResponse::with_status(e.status, e.body())
        }
    }

    pub fn raw(content_type: &'static str, bytes: Cow<'static, [u8]>) -> Self {
        ApiResponse {
            status: StatusCode::OK,
            raw: Some((content_type, bytes)),
            ..ApiResponse::no_content()
        }
    }

    pub fn see_other(location: String) -> Self {
        ApiResponse {
            status: StatusCode::SEE_OTHER,
            location: Some(location),
            ..ApiResponse::no_content()
        }
    }

    fn with_status(status: StatusCode, body: Value) -> Self {
        ApiResponse {
            status,
            body: Some(body),
            ..ApiResponse::no_content()
        }
    }
}

/// Largest request body accepted; larger ones get 413 before they are read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
