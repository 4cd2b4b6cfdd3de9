//! Who is calling: an API key (`Authorization: Bearer KEY`) or a console session (the
//! `picket_session` cookie), and the checks that go with a cookie: a state-changing request must
//! come from the console's own origin, and a user with a generated password may only replace it.

use super::error::ApiError;
use super::sessions::{Session, TokenHash};
use super::{ApiRequest, ApiState};
use hyper::Method;

/// The cookie that carries a console session's token. The `__Host-` prefix makes browsers
/// refuse it unless it is `Secure`, for `/`, and without a `Domain`: a page on another port or
/// a sibling host cannot plant or overwrite it.
pub const SESSION_COOKIE: &str = "__Host-picket_session";

#[derive(Debug, Clone)]
pub enum Caller {
    ApiKey,
    Session { token: TokenHash, session: Session },
}

/// The caller of `req`, if it presents credentials. A wrong API key is an error (not "nobody"),
/// so a script with a stale key hears why; an expired or unknown cookie is simply nobody.
pub fn caller(state: &ApiState, req: &ApiRequest) -> Result<Option<Caller>, ApiError> {
    if let Some(header) = req.authorization.as_deref() {
        return api_key(state, header).map(|()| Some(Caller::ApiKey));
    }
    let Some(token) = session_token(req) else {
        return Ok(None);
    };
    let token = crate::secret::sha256(token.as_bytes());
    let now = state.clock.now();
    // The console's background refreshes do not count as use: a session left open on a screen
    // nobody looks at still ends after its idle timeout.
    let session = if req.background {
        state.console.sessions().peek(&token, now)
    } else {
        state.console.sessions().touch(&token, now)
    };
    Ok(session.map(|session| Caller::Session { token, session }))
}

/// `Authorization: Bearer KEY`, compared by hash in constant time.
fn api_key(state: &ApiState, header: &str) -> Result<(), ApiError> {
    let key = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer KEY'"))?;
    if crate::secret::hashes_equal(
        &crate::secret::sha256(key.trim().as_bytes()),
        &state.admin_key_hash,
    ) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("wrong API key"))
    }
}

/// The session token from the request's cookies, if there is one.
pub fn session_token(req: &ApiRequest) -> Option<&str> {
    req.cookies
        .iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// A cookie-authenticated request that changes something must say it comes from this console:
/// browsers send `Origin` with every such request, and another site cannot forge it. (The
/// cookie's `SameSite=Strict` already keeps it off cross-site requests; this is the second
/// lock, for browsers or proxies that get that wrong.)
pub fn check_same_origin(req: &ApiRequest) -> Result<(), ApiError> {
    if matches!(req.method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let expected = req.host.as_deref().map(|h| format!("https://{h}"));
    match (req.origin.as_deref(), expected) {
        (Some(origin), Some(expected)) if origin.eq_ignore_ascii_case(&expected) => Ok(()),
        (origin, _) => {
            log::warn!(
                "refused a cross-site {} {} (Origin {:?}, Host {:?})",
                req.method,
                req.path,
                origin,
                req.host
            );
            Err(ApiError::forbidden(
                "cross-site request refused: a console request must come from the console's own page",
            ))
        }
    }
}

/// A user who logged in with a generated password may only look at their session, log out or
/// choose a password (the router lets those routes through without this check).
pub fn check_password_chosen(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Session { session, .. } if session.must_change_password => {
            Err(ApiError::forbidden(
                "the password you logged in with was a one-time password: change the one-time password first (POST /api/v1/session/password)",
            ))
        }
        _ => Ok(()),
    }
}

/// `Set-Cookie` for a new session. No `Max-Age`: the cookie goes when the browser closes, and
/// the manager ends the session after its idle timeout anyway.
pub fn session_cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

/// `Set-Cookie` that removes the session cookie.
pub fn cleared_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, origin: Option<&str>, cookies: &[&str]) -> ApiRequest {
        ApiRequest {
            method,
            path: "/api/v1/policies".into(),
            query: None,
            authorization: None,
            cookies: cookies.iter().map(|c| c.to_string()).collect(),
            origin: origin.map(str::to_string),
            host: Some("127.0.0.1:4119".into()),
            peer: None,
            background: false,
            token: None,
            body: Vec::new(),
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let r = request(Method::GET, None, &["a=1; __Host-picket_session=abc ; b=2"]);
        assert_eq!(session_token(&r), Some("abc"));
        let r = request(Method::GET, None, &["a=1", "__Host-picket_session=def"]);
        assert_eq!(session_token(&r), Some("def"));
        let r = request(
            Method::GET,
            None,
            &["picket_session=1; __Host-picket_session="],
        );
        assert_eq!(session_token(&r), None);
    }

    #[test]
    fn only_the_console_origin_may_change_things_with_a_cookie() {
        let same = Some("https://127.0.0.1:4119");
        assert!(check_same_origin(&request(Method::POST, same, &[])).is_ok());
        assert!(check_same_origin(&request(Method::GET, None, &[])).is_ok());
        for origin in [
            None,
            Some("https://evil.example"),
            Some("http://127.0.0.1:4119"),
            Some("https://127.0.0.1:4118"),
            Some("null"),
        ] {
            for method in [Method::POST, Method::PATCH, Method::DELETE] {
                let e = check_same_origin(&request(method.clone(), origin, &[])).unwrap_err();
                assert_eq!(
                    e.status,
                    hyper::StatusCode::FORBIDDEN,
                    "{method} {origin:?}"
                );
            }
        }
    }

    #[test]
    fn cookies_are_http_only_secure_and_strict() {
        let c = session_cookie("t0k");
        for part in [
            "__Host-picket_session=t0k",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(cleared_cookie().contains("Max-Age=0"));
    }
}
