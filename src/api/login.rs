//! `/api/v1/session`: console login, logout, who is logged in, and the password change; the
//! console's in-memory state (live sessions, failed-login delays) they share.

use super::auth::{self, Caller};
use super::error::ApiError;
use super::input;
use super::sessions::{IDLE_TIMEOUT, Sessions};
use super::throttle::{LoginKey, LoginThrottle, Refused};
use super::{ApiRequest, ApiResponse, ApiState};
use crate::clock::Instant;
use crate::metrics::Outcome;
use crate::model::User;
use crate::password;
use crate::pki;
use crate::store::Reads;
use hyper::StatusCode;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::Handled;

/// Argon2 checks running at once, at most. Each takes 19 MiB and a core for a few tens of
/// milliseconds; a burst of logins must not starve the agents' sessions of CPU or the box of
/// memory.
const MAX_HASHING: usize = 2;
/// Longest user name looked at: longer ones are refused before they are kept or logged.
const MAX_USER_NAME: usize = 128;

/// What the console keeps in memory.
#[derive(Debug)]
pub struct Console {
    sessions: Mutex<Sessions>,
    throttle: Mutex<LoginThrottle>,
    hashing: AtomicUsize,
    /// Checked for unknown users, so that they cost what a wrong password costs.
    dummy_hash: Option<String>,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            sessions: Mutex::new(Sessions::new(IDLE_TIMEOUT)),
            throttle: Mutex::new(LoginThrottle::default()),
            hashing: AtomicUsize::new(0),
            dummy_hash: password::hash("not a password").ok(),
        }
    }
}

impl Console {
    /// The sessions; a panic while they were held leaves them usable (they hold no invariant a
    /// half-done update could break).
    pub fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn throttle(&self) -> MutexGuard<'_, LoginThrottle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims the throttle for `key` and a hashing slot, or says why not (429 or 503).
    fn begin_check(&self, key: &LoginKey, now: Instant) -> Result<HashSlot<'_>, ApiError> {
        match self.throttle().begin(key, now) {
            Ok(()) => {}
            Err(Refused::Wait(wait)) => {
                let secs = u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
                return Err(too_many(
                    format!("too many failed logins; try again in {secs} s"),
                    secs,
                ));
            }
            Err(Refused::InFlight) => {
                return Err(too_many(
                    "another attempt for this user from your address is being checked".into(),
                    1,
                ));
            }
        }
        if self.hashing.fetch_add(1, Ordering::SeqCst) >= MAX_HASHING {
            self.hashing.fetch_sub(1, Ordering::SeqCst);
            self.throttle().abandon(key);
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the manager is checking other logins; try again in a second",
                )
            });
        }
        Ok(HashSlot(&self.hashing))
    }
}

/// A hashing slot, given back when dropped.
struct HashSlot<'a>(&'a AtomicUsize);

impl Drop for HashSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn too_many(message: String, retry_after: u64) -> ApiError {
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
    }
}

/// `POST /api/v1/session {"username", "password"}`.
pub fn login(state: &ApiState, req: &ApiRequest) -> Handled {
    if req.origin.is_some() {
        auth::check_same_origin(req)?;
    }
    let (name, password) = input::credentials(input::object(&req.body)?)?;
    check_lengths(&name, &password)?;
    let key = LoginKey::new(req.peer, &name);
    let console = &state.console;
    let slot = console.begin_check(&key, state.clock.now())?;
    let checked = state
        .store
        .read()
        .map_err(ApiError::from)
        .and_then(|txn| txn.user(&name).map_err(ApiError::from))
        .and_then(|user| Ok((password_matches(console, user.as_ref(), &password)?, user)));
    drop(slot);
    let user = match checked {
        Err(e) => {
            console.throttle().abandon(&key);
            return Err(e);
        }
        Ok((true, Some(user))) => user,
        Ok((_, user)) => {
            let wait = console.throttle().failed(key, state.clock.now());
            state.metrics.login(Outcome::Failed);
            // Only a known name is logged: an unknown one may be a password typed in the wrong
            // field.
            let who = user.map_or_else(
                || "an unknown user name".to_string(),
                |u| format!("{:?}", u.name),
            );
            log::warn!(
                "failed console login as {who} from {}; next attempt allowed in {} s",
                peer_name(req),
                wait.as_secs()
            );
            return Err(ApiError::bad_credentials());
        }
    };
    console.throttle().succeeded(&key, state.clock.now());
    state.metrics.login(Outcome::Ok);
    let cookie = open_session(state, &user.name, user.must_change_password)?;
    log::info!("console login as {:?} from {}", user.name, peer_name(req));
    Ok(ApiResponse {
        set_cookie: Some(cookie),
        ..ApiResponse::ok(json!({
            "user": user.name,
            "must_change_password": user.must_change_password,
        }))
    })
}

fn check_lengths(name: &str, password: &str) -> Result<(), ApiError> {
    if name.len() > MAX_USER_NAME {
        return Err(ApiError::bad_field(
            "username",
            format!("a user name has at most {MAX_USER_NAME} bytes"),
        ));
    }
    if password.len() > password::MAX_LENGTH {
        return Err(ApiError::bad_field(
            "password",
            format!("a password has at most {} bytes", password::MAX_LENGTH),
        ));
    }
    Ok(())
}

/// A new session for `user`; returns its `Set-Cookie`.
fn open_session(state: &ApiState, user: &str, must_change: bool) -> Result<String, ApiError> {
    let token = pki::random_secret().map_err(|e| {
        log::error!("cannot make a session token: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot start a session")
    })?;
    state.console.sessions().open(
        crate::secret::sha256(token.as_bytes()),
        user,
        must_change,
        state.clock.now(),
    );
    Ok(auth::session_cookie(&token))
}

/// Checks the password against the user's hash. For an unknown user a dummy hash is checked
/// all the same, so the answer's timing does not tell which user names exist.
fn password_matches(
    console: &Console,
    user: Option<&User>,
    password: &str,
) -> Result<bool, ApiError> {
    match user {
        Some(user) => Ok(password::verify(password, &user.password_hash)?),
        None => {
            if let Some(dummy) = &console.dummy_hash {
                let _ = password::verify(password, dummy);
            }
            Ok(false)
        }
    }
}

fn peer_name(req: &ApiRequest) -> String {
    req.peer
        .map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string())
}

/// `GET /api/v1/session`.
pub fn show(state: &ApiState, caller: &Caller) -> Handled {
    match caller {
        Caller::Session { session, .. } => Ok(ApiResponse::ok(json!({
            "user": session.user,
            "must_change_password": session.must_change_password,
            "idle_timeout_s": state.console.sessions().idle_timeout().as_secs(),
        }))),
        Caller::ApiKey => Ok(ApiResponse::ok(json!({
            "user": null,
            "api_key": true,
            "must_change_password": false,
        }))),
    }
}

/// `DELETE /api/v1/session`: ends the session and clears the cookie.
pub fn logout(state: &ApiState, caller: &Caller) -> Handled {
    if let Caller::Session { token, session } = caller {
        state.console.sessions().close(token);
        log::info!("console logout of {:?}", session.user);
    }
    Ok(ApiResponse {
        set_cookie: Some(auth::cleared_cookie()),
        ..ApiResponse::no_content()
    })
}

/// `POST /api/v1/session/password {"current_password", "new_password"}`: the logged-in user's
/// own password. Every other session of the user ends, and this one gets a new token.
pub fn change_password(state: &ApiState, req: &ApiRequest, caller: &Caller) -> Handled {
    let Caller::Session { session, .. } = caller else {
        return Err(ApiError::bad_field(
            "body",
            "an API key has no password: log in to the console to change yours",
        ));
    };
    let (current, new) = input::password_change(input::object(&req.body)?)?;
    if current.len() > password::MAX_LENGTH {
        return Err(ApiError::bad_field(
            "current_password",
            "the current password is wrong",
        ));
    }
    let user = state
        .store
        .read()?
        .user(&session.user)?
        .ok_or_else(|| ApiError::unauthorized("this session's user no longer exists"))?;
    let key = LoginKey::new(req.peer, &session.user);
    let console = &state.console;
    let slot = console.begin_check(&key, state.clock.now())?;
    let matches = password::verify(&current, &user.password_hash);
    drop(slot);
    match matches {
        Err(e) => {
            console.throttle().abandon(&key);
            return Err(e.into());
        }
        Ok(false) => {
            console.throttle().failed(key, state.clock.now());
            return Err(ApiError::bad_field(
                "current_password",
                "the current password is wrong",
            ));
        }
        Ok(true) => console.throttle().succeeded(&key, state.clock.now()),
    }
    if let Some(why) = password::weakness(&new, &current, &user.name) {
        return Err(ApiError::bad_field("new_password", why));
    }
    let changed = User {
        password_hash: password::hash(&new)?,
        must_change_password: false,
        password_changed: state.clock.wall(),
        ..user
    };
    let mut txn = state.store.write()?;
    txn.put_user(&changed)?;
    txn.commit()?;
    console.sessions().password_changed(&changed.name, None);
    let cookie = open_session(state, &changed.name, false)?;
    log::info!("console user {:?} changed their password", changed.name);
    Ok(ApiResponse {
        set_cookie: Some(cookie),
        ..ApiResponse::no_content()
    })
}
