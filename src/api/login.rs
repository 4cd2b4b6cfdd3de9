//! `/api/v1/session`: console login, logout, who is logged in, and the password change; the
//! console's in-memory state (live sessions, failed-login delays) they share.

use super::auth::{self, Caller};
use super::error::ApiError;
use super::input;
use super::password;
use super::router::{ApiRequest, ApiResponse, ApiState};
use super::sessions::{IDLE_TIMEOUT, Sessions};
use super::throttle::{LoginKey, LoginThrottle};
use crate::metrics::Outcome;
use crate::model::User;
use crate::pki;
use crate::store::Reads;
use hyper::StatusCode;
use serde_json::json;
use std::sync::{Mutex, MutexGuard, OnceLock};

type Handled = Result<ApiResponse, ApiError>;

/// What the console keeps in memory.
#[derive(Debug)]
pub struct Console {
    sessions: Mutex<Sessions>,
    throttle: Mutex<LoginThrottle>,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            sessions: Mutex::new(Sessions::new(IDLE_TIMEOUT)),
            throttle: Mutex::new(LoginThrottle::default()),
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
}

/// `POST /api/v1/session {"username", "password"}`.
pub fn login(state: &ApiState, req: &ApiRequest) -> Handled {
    if req.origin.is_some() {
        auth::check_same_origin(req)?;
    }
    let (name, password) = input::credentials(input::object(&req.body)?)?;
    let key = LoginKey::new(req.peer, &name);
    let now = state.clock.now();
    if let Some(wait) = state.console.throttle().wait(&key, now) {
        let secs = wait.as_secs() + 1;
        return Ok(ApiResponse {
            retry_after: Some(secs),
            ..ApiResponse::error(&ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed logins; try again in {secs} s"),
            ))
        });
    }
    let user = state.store.read()?.user(&name)?;
    if !password_matches(user.as_ref(), &password)? {
        let wait = state.console.throttle().failed(key, state.clock.now());
        state.metrics.login(Outcome::Failed);
        log::warn!(
            "failed console login as {name:?} from {}; next attempt allowed in {} s",
            peer_name(req),
            wait.as_secs()
        );
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "wrong user name or password".into(),
            field: Some("password".into()),
        });
    }
    let Some(user) = user else {
        return Err(ApiError::unauthorized("wrong user name or password"));
    };
    state.console.throttle().succeeded(&key);
    state.metrics.login(Outcome::Ok);
    let token = pki::random_secret().map_err(|e| {
        log::error!("cannot make a session token: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot start a session")
    })?;
    state.console.sessions().open(
        pki::sha256(token.as_bytes()),
        &user.name,
        user.must_change_password,
        state.clock.now(),
    );
    log::info!("console login as {:?} from {}", user.name, peer_name(req));
    Ok(ApiResponse {
        set_cookie: Some(auth::session_cookie(&token)),
        ..ApiResponse::ok(json!({
            "user": user.name,
            "must_change_password": user.must_change_password,
        }))
    })
}

/// Checks the password against the user's hash. For an unknown user a dummy hash is checked
/// all the same, so the answer's timing does not tell which user names exist.
fn password_matches(user: Option<&User>, password: &str) -> Result<bool, ApiError> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    match user {
        Some(user) => Ok(password::verify(password, &user.password_hash)?),
        None => {
            if let Some(dummy) = DUMMY.get_or_init(|| password::hash("not a password").ok()) {
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
/// own password. Every other session of the user ends.
pub fn change_password(state: &ApiState, req: &ApiRequest, caller: &Caller) -> Handled {
    let Caller::Session { token, session } = caller else {
        return Err(ApiError::bad_field(
            "body",
            "an API key has no password: log in to the console to change yours",
        ));
    };
    let (current, new) = input::password_change(input::object(&req.body)?)?;
    let key = LoginKey::new(req.peer, &session.user);
    let now = state.clock.now();
    if let Some(wait) = state.console.throttle().wait(&key, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong passwords; try again in {} s",
                wait.as_secs() + 1
            ),
        ));
    }
    let user = state
        .store
        .read()?
        .user(&session.user)?
        .ok_or_else(|| ApiError::unauthorized("this session's user no longer exists"))?;
    if !password::verify(&current, &user.password_hash)? {
        state.console.throttle().failed(key, state.clock.now());
        return Err(ApiError::bad_field(
            "current_password",
            "the current password is wrong",
        ));
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
    state
        .console
        .sessions()
        .password_changed(&changed.name, Some(token));
    log::info!("console user {:?} changed their password", changed.name);
    Ok(ApiResponse::no_content())
}
