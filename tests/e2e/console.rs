//! End-to-end: the console's login, sessions and their guards, `/metrics` and `/readyz`, over
//! real TLS against a real manager. (The pages themselves are driven in a browser by
//! `tests/e2e/browser.rs`.)

use crate::support::agent::{Agent, activation, set_base, wait_for};
use crate::support::{BIN, Manager};
use hyper::{Method, StatusCode};
use picket::admin::{ApiClient, RawResponse};
use serde_json::{Value, json};
use std::time::Duration;

const NEW_PASSWORD: &str = "a passphrase of my own";

/// A browser, as far as the manager can tell: a cookie jar of one and this console's Origin.
struct Browser {
    client: ApiClient,
    origin: String,
    cookie: std::cell::RefCell<Option<String>>,
}

impl Browser {
    fn new(m: &Manager) -> Browser {
        let ports: Value =
            serde_json::from_str(&std::fs::read_to_string(m.dir.join("ports.json")).unwrap())
                .unwrap();
        Browser {
            client: m.client(),
            origin: format!("https://{}", ports["console"].as_str().unwrap()),
            cookie: std::cell::RefCell::new(None),
        }
    }

    fn send_from(
        &self,
        origin: Option<&str>,
        method: Method,
        path: &str,
        body: Value,
    ) -> RawResponse {
        let cookie = self
            .cookie
            .borrow()
            .as_ref()
            .map(|c| format!("__Host-picket_session={c}"));
        let mut headers = Vec::new();
        if let Some(c) = &cookie {
            headers.push(("cookie", c.as_str()));
        }
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let r = self
            .client
            .send_with_headers(method, path, body, None, &headers)
            .unwrap();
        // Kept like a browser keeps it: a new cookie replaces the old, Max-Age=0 removes it.
        if let Some(set) = r.headers.get("set-cookie") {
            let set = set.to_str().unwrap();
            let value = set
                .split(';')
                .next()
                .unwrap()
                .trim_start_matches("__Host-picket_session=");
            *self.cookie.borrow_mut() = (!value.is_empty()).then(|| value.to_string());
        }
        r
    }

    /// A browser holding `token` as its session cookie (a replayed or made-up one).
    fn with_token(m: &Manager, token: Option<String>) -> Browser {
        Browser {
            cookie: std::cell::RefCell::new(token),
            ..Browser::new(m)
        }
    }

    /// The status of a `GET`.
    fn get_status(&self, path: &str) -> StatusCode {
        self.send(Method::GET, path, Value::Null).status
    }

    fn send(&self, method: Method, path: &str, body: Value) -> RawResponse {
        let origin = self.origin.clone();
        self.send_from(Some(&origin), method, path, body)
    }

    fn login(&self, user: &str, password: &str) -> RawResponse {
        self.send(
            Method::POST,
            "/api/v1/session",
            json!({"username": user, "password": password}),
        )
    }

    /// Logs in with the one-time password and replaces it, as the console asks.
    fn login_and_choose_password(&self, m: &Manager) {
        assert_eq!(
            self.login("admin", &m.admin_password()).status,
            StatusCode::OK
        );
        let r = self.send(
            Method::POST,
            "/api/v1/session/password",
            json!({"current_password": m.admin_password(), "new_password": NEW_PASSWORD}),
        );
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", text(&r));
    }
}

fn text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn json_of(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn header<'a>(r: &'a RawResponse, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn key(m: &Manager) -> String {
    std::fs::read_to_string(m.dir.join("admin-api-key"))
        .unwrap()
        .trim()
        .to_string()
}

/// A path of each route of the console's router (`assets/console/router.js`), `(\d+)` as 1: a
/// page the router draws must be one the manager answers with the console.
fn console_paths() -> Vec<String> {
    let router = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/console/router.js"
    ))
    .unwrap();
    let paths: Vec<String> = router
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[/^")?.split_once("$/, "))
        .map(|(pattern, _)| pattern.replace("\\/", "/").replace("(\\d+)", "1"))
        .collect();
    assert!(paths.len() >= 5, "router.js: found only {paths:?}");
    paths
}

#[test]
fn without_a_session_or_key_pages_redirect_to_login_and_the_api_is_401() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let anonymous = Browser::new(&m);
    let pages = console_paths();
    assert!(pages.contains(&"/notifications".to_string()), "{pages:?}");
    for page in &pages {
        let r = anonymous.send(Method::GET, page, Value::Null);
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}");
        assert!(
            header(&r, "location").starts_with("/login?next=/"),
            "{page}: {}",
            header(&r, "location")
        );
    }
    let routes = [
        (Method::GET, "/api/v1/policies"),
        (Method::POST, "/api/v1/policies"),
        (Method::GET, "/api/v1/policies/1"),
        (Method::PATCH, "/api/v1/policies/1"),
        (Method::DELETE, "/api/v1/policies/2"),
        (Method::GET, "/api/v1/policies/1/firewall-rules"),
        (Method::POST, "/api/v1/policies/1/firewall-rules"),
        (Method::PUT, "/api/v1/policies/1/firewall-rules/1"),
        (Method::DELETE, "/api/v1/policies/1/firewall-rules/1"),
        (Method::GET, "/api/v1/computers/1/firewall-rules"),
        (Method::GET, "/api/v1/computers"),
        (Method::POST, "/api/v1/computers"),
        (Method::GET, "/api/v1/computers/1"),
        (Method::PATCH, "/api/v1/computers/1"),
        (Method::DELETE, "/api/v1/computers/1"),
        (Method::GET, "/api/v1/computers/1/history"),
        (Method::POST, "/api/v1/computers/1/send-policy"),
        (Method::POST, "/api/v1/computers/1/check-status"),
        (Method::GET, "/api/v1/alerts"),
        (Method::POST, "/api/v1/alerts/1/dismiss"),
        (Method::GET, "/api/v1/events"),
        (Method::GET, "/api/v1/tokens"),
        (Method::POST, "/api/v1/tokens"),
        (Method::GET, "/api/v1/tokens/0123456789abcdef"),
        (Method::DELETE, "/api/v1/tokens/0123456789abcdef"),
        (Method::GET, "/api/v1/session"),
        (Method::DELETE, "/api/v1/session"),
        (Method::POST, "/api/v1/session/password"),
        (Method::GET, "/metrics"),
    ];
    for (method, path) in routes {
        let r = anonymous.send(method.clone(), path, json!({}));
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            text(&r)
        );
    }
    // A made-up cookie is nobody.
    let forged = Browser::with_token(&m, Some("00".repeat(32)));
    assert_eq!(
        forged.get_status("/api/v1/computers"),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(forged.get_status("/"), StatusCode::SEE_OTHER);
    // What the login page needs is public, and locked down.
    for public in [
        "/login",
        "/assets/login.js",
        "/assets/style.css",
        "/healthz",
        "/readyz",
    ] {
        let r = anonymous.send(Method::GET, public, Value::Null);
        assert_eq!(r.status, StatusCode::OK, "{public}");
        assert_eq!(header(&r, "x-frame-options"), "DENY", "{public}");
        assert!(header(&r, "content-security-policy").contains("default-src 'self'"));
    }
    assert!(
        header(
            &anonymous.send(Method::GET, "/login", Value::Null),
            "content-type"
        )
        .starts_with("text/html")
    );
    assert_eq!(
        anonymous
            .send(Method::GET, "/assets/../admin-api-key", Value::Null)
            .status,
        StatusCode::NOT_FOUND
    );
    // The console's scripts are ES modules in folders: a browser runs one only when it comes
    // with a JavaScript content type.
    for module in ["/assets/console/main.js", "/assets/console/pages/policy.js"] {
        let r = anonymous.send(Method::GET, module, Value::Null);
        assert_eq!(r.status, StatusCode::OK, "{module}");
        assert!(
            header(&r, "content-type").starts_with("text/javascript"),
            "{module}: {}",
            header(&r, "content-type")
        );
    }
    for missing in [
        "/assets/app.js",
        "/assets/console/",
        "/assets/console/nothing.js",
    ] {
        assert_eq!(
            anonymous.send(Method::GET, missing, Value::Null).status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
}

#[test]
fn the_one_time_password_opens_a_strict_session_that_must_choose_a_password() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let b = Browser::new(&m);
    let r = b.login("Admin", &m.admin_password());
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert_eq!(json_of(&r)["must_change_password"], true);
    let cookie = header(&r, "set-cookie").to_string();
    for part in [
        "__Host-picket_session=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }

    // Until a password is chosen, only the session routes answer; pages load (they show the form).
    let r = b.send(Method::GET, "/api/v1/computers", Value::Null);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        text(&r).contains("change the one-time password"),
        "{}",
        text(&r)
    );
    assert_eq!(
        b.send(Method::GET, "/metrics", Value::Null).status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        b.send(Method::GET, "/computers", Value::Null).status,
        StatusCode::OK
    );
    assert_eq!(
        json_of(&b.send(Method::GET, "/api/v1/session", Value::Null))["user"],
        "admin"
    );

    let change = |b: &Browser, current: &str, new: &str| {
        b.send(
            Method::POST,
            "/api/v1/session/password",
            json!({"current_password": current, "new_password": new}),
        )
    };
    let r = change(&b, "not it", NEW_PASSWORD);
    assert_eq!(
        (r.status, json_of(&r)["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("current_password"))
    );
    let r = change(&b, &m.admin_password(), "short");
    assert_eq!(
        (r.status, json_of(&r)["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("new_password"))
    );
    assert!(text(&r).contains("at least 12"), "{}", text(&r));
    let one_time_session = b.cookie.borrow().clone();
    let r = change(&b, &m.admin_password(), NEW_PASSWORD);
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", text(&r));
    // The session carries on under a new token; the one the one-time password opened is dead.
    assert_ne!(*b.cookie.borrow(), one_time_session);
    let stale = Browser::with_token(&m, one_time_session);
    assert_eq!(
        stale.get_status("/api/v1/session"),
        StatusCode::UNAUTHORIZED
    );

    // Now everything answers, pages are the console, and the old password is gone.
    assert_eq!(
        b.send(Method::GET, "/api/v1/computers", Value::Null).status,
        StatusCode::OK
    );
    let page = b.send(Method::GET, "/policies/1", Value::Null);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let other = Browser::new(&m);
    assert_eq!(
        other.login("admin", &m.admin_password()).status,
        StatusCode::UNAUTHORIZED
    );
    let r = other.login("admin", NEW_PASSWORD);
    assert_eq!(json_of(&r)["must_change_password"], false);

    // Logout ends the session and clears the cookie; the token is dead even if replayed; the
    // other session lives on.
    let token = b.cookie.borrow().clone();
    let r = b.send(Method::DELETE, "/api/v1/session", Value::Null);
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(header(&r, "set-cookie").contains("Max-Age=0"));
    assert!(b.cookie.borrow().is_none());
    *b.cookie.borrow_mut() = token;
    assert_eq!(
        b.send(Method::GET, "/api/v1/computers", Value::Null).status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        other
            .send(Method::GET, "/api/v1/computers", Value::Null)
            .status,
        StatusCode::OK
    );
    // The API key still works beside sessions.
    let r = m
        .client()
        .send(Method::GET, "/api/v1/computers", Vec::new(), Some(&key(&m)))
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn a_cross_site_request_with_the_session_cookie_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let b = Browser::new(&m);
    b.login_and_choose_password(&m);
    let create = |name: &str| json!({"name": name});
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let r = b.send_from(origin, Method::POST, "/api/v1/policies", create("Forged"));
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin:?}: {}", text(&r));
        let r = b.send_from(origin, Method::DELETE, "/api/v1/session", Value::Null);
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin:?}");
    }
    // A cross-site login attempt is refused too, before the password is looked at.
    let r = b.send_from(
        Some("https://evil.example"),
        Method::POST,
        "/api/v1/session",
        json!({"username": "admin", "password": NEW_PASSWORD}),
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let policies = m.cli_json(&["policies", "list"]);
    assert!(!policies.to_string().contains("Forged"), "{policies}");
    // From the console's own page it goes through.
    assert_eq!(
        b.send(Method::POST, "/api/v1/policies", create("Mine"))
            .status,
        StatusCode::CREATED
    );
}

#[test]
fn wrong_passwords_are_refused_then_slowed_and_no_password_reaches_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start_with_env(&tmp.path().join("data"), &[("RUST_LOG", "debug")]);
    let b = Browser::new(&m);
    let guesses = ["guess-number-one", "guess-number-two", "guess-number-three"];
    for guess in guesses {
        let r = b.login("admin", guess);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", text(&r));
        assert_eq!(json_of(&r)["error"]["field"], "password");
        assert!(b.cookie.borrow().is_none());
    }
    // The third failure costs a wait: even the right password is not looked at until it passes.
    let r = b.login("admin", &m.admin_password());
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", text(&r));
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
    assert!(b.cookie.borrow().is_none());
    let r = wait_for(Duration::from_secs(10), || {
        let r = b.login("admin", &m.admin_password());
        (r.status != StatusCode::TOO_MANY_REQUESTS).then_some(r)
    });
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    // A name no user could have is refused before it is kept or logged.
    let r = Browser::new(&m).login(&"n".repeat(5000), "whatever-it-is");
    assert_eq!(
        (r.status, json_of(&r)["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("username"))
    );
    // An unknown user gets the same answer as a wrong password.
    let r = Browser::new(&m).login("root", "whatever-it-is");
    assert_eq!(
        (r.status, json_of(&r)["error"]["message"].clone()),
        (
            StatusCode::UNAUTHORIZED,
            json!("wrong user name or password")
        )
    );
    b.send(
        Method::POST,
        "/api/v1/session/password",
        json!({"current_password": m.admin_password(), "new_password": NEW_PASSWORD}),
    );

    let one_time = m.admin_password();
    let (_, log) = m.stop();
    assert!(log.contains("failed console login as \"admin\""), "{log}");
    for secret in guesses
        .iter()
        .copied()
        .chain([one_time.as_str(), NEW_PASSWORD])
    {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

#[test]
fn reset_admin_password_prints_a_new_one_time_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let m = Manager::start(&dir);
    let first = m.admin_password();
    let reset = || {
        std::process::Command::new(BIN)
            .args(["manager", "--reset-admin-password", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    // Not while the manager runs: the store is its.
    let out = reset();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
    m.stop();

    let out = reset();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let second = printed
        .lines()
        .find_map(|l| l.strip_prefix("New one-time password for the console user admin: "))
        .unwrap()
        .to_string();
    assert_ne!(second, first);

    let m = Manager::start(&dir);
    let b = Browser::new(&m);
    assert_eq!(b.login("admin", &first).status, StatusCode::UNAUTHORIZED);
    let r = b.login("admin", &second);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(json_of(&r)["must_change_password"], true);
}

#[test]
fn metrics_count_sessions_and_computers_and_readyz_says_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    set_base(&m, "heartbeat.interval=1s");
    let _agent = Agent::start(&tmp.path().join("agent"), Some(&activation(&m)), "metered");
    let client = m.client();
    let scrape = || {
        let r = client
            .send(Method::GET, "/metrics", Vec::new(), Some(&key(&m)))
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        text(&r)
    };
    let text = wait_for(Duration::from_secs(20), || {
        let t = scrape();
        t.contains("picket_computers{status=\"online\"} 1")
            .then_some(t)
    });
    for expected in [
        "picket_sessions_total{direction=\"agent-initiated\",kind=\"activation\",outcome=\"ok\"} 1",
        "picket_session_duration_seconds_bucket",
        "picket_store_commit_duration_seconds_count",
        "picket_events_stored ",
        "picket_alerts_active 0",
    ] {
        assert!(text.contains(expected), "no {expected} in\n{text}");
    }
    let heartbeats = |t: &str| -> u64 {
        t.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "picket_sessions_total{direction=\"agent-initiated\",kind=\"heartbeat\",outcome=\"ok\"} ",
                )
            })
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    let before = heartbeats(&text);
    wait_for(Duration::from_secs(20), || {
        (heartbeats(&scrape()) > before).then_some(())
    });

    let r = Browser::new(&m).send(Method::GET, "/readyz", Value::Null);
    assert_eq!(
        (r.status, json_of(&r)["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
}
