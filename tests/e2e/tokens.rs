//! End-to-end: activation tokens through the real manager and the `picket token` CLI. The secret
//! is shown once, at creation, and never again: not in lists, not in the manager's log.

use crate::support::Manager;
use hyper::{Method, StatusCode};
use picket::pki;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

const HOUR_MS: u64 = 3_600_000;

/// SHA-256 of the DER of `DIR/pki/ca.crt`, the pin an agent is given.
fn ca_pin(m: &Manager) -> String {
    let pem = std::fs::read(m.dir.join("pki/ca.crt")).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    pki::hex(&pki::sha256(der.as_ref()))
}

/// The agent address the manager wrote to `DIR/ports.json`.
fn agent_addr(m: &Manager) -> String {
    let text = std::fs::read_to_string(m.dir.join("ports.json")).unwrap();
    let ports: Value = serde_json::from_str(&text).unwrap();
    ports["agent"].as_str().unwrap().to_string()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn list(m: &Manager) -> Vec<Value> {
    m.cli_json(&["token", "list"])["tokens"]
        .as_array()
        .unwrap()
        .clone()
}

fn ids(tokens: &[Value]) -> Vec<String> {
    tokens
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_token_is_created_listed_and_revoked_and_its_secret_is_never_shown_again() {
    let tmp = tempfile::tempdir().unwrap();
    // At debug level, so no log line anywhere in the manager may hold the secret.
    let m = Manager::start_with_env(&tmp.path().join("data"), &[("RUST_LOG", "debug")]);
    m.cli_json(&["policies", "create", "Servers"]);
    let servers_id = m.cli_json(&["policies", "show", "Servers"])["id"].clone();

    let created = m.cli_json(&[
        "token",
        "create",
        "--policy",
        "Servers",
        "--uses",
        "2",
        "--expires",
        "1h",
    ]);
    let secret = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(is_hex(&secret, 64), "{created}");
    assert!(is_hex(&id, 16), "{created}");
    assert!(pki::hex(&pki::sha256(secret.as_bytes())).starts_with(&id));
    assert_eq!(created["policy"], "Servers");
    assert_eq!(created["policy_id"], servers_id);
    assert_eq!(created["uses_left"], 2);
    assert_eq!(created["expired"], false);
    let (created_ms, expires_ms) = (
        created["created_ms"].as_u64().unwrap(),
        created["expires_ms"].as_u64().unwrap(),
    );
    assert_eq!(expires_ms - created_ms, HOUR_MS);

    // The command names the bound agent port and the pin of DIR/pki/ca.crt.
    let pin = ca_pin(&m);
    assert!(is_hex(&pin, 64));
    assert_eq!(
        created["agent_command"],
        format!(
            "PICKET_TOKEN={secret} picket agent --data-dir /var/lib/picket-agent --manager {} --ca-sha256 {pin}",
            agent_addr(&m)
        )
    );

    // Defaults: the Base Policy, 10 uses, a day; same pin, another secret.
    let second = m.cli_json(&["token", "create"]);
    assert_eq!(second["policy"], "Base Policy");
    assert_eq!(second["uses_left"], 10);
    let day = second["expires_ms"].as_u64().unwrap() - second["created_ms"].as_u64().unwrap();
    assert_eq!(day, 24 * HOUR_MS);
    let second_secret = second["token"].as_str().unwrap().to_string();
    assert_ne!(second_secret, secret);
    let second_command = second["agent_command"].as_str().unwrap();
    assert!(second_command.ends_with(&format!("--ca-sha256 {pin}")));

    // Without --json: the token, its expiry, and the command alone on a line, ready to copy.
    let out = m.cli(&["token", "create", "--uses", "unlimited", "--expires", "7d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let command = text
        .lines()
        .find(|l| l.starts_with("PICKET_TOKEN="))
        .unwrap_or_else(|| panic!("no command line in:\n{text}"));
    assert!(command.contains(" picket agent "), "{command}");
    let third_secret = command
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PICKET_TOKEN="))
        .unwrap()
        .to_string();
    assert!(is_hex(&third_secret, 64), "{text}");
    assert!(
        text.contains(&format!("Token:    {third_secret}")),
        "{text}"
    );
    assert!(
        text.contains("Expires:  ") && text.contains(" UTC"),
        "{text}"
    );
    assert!(text.contains("Uses:     unlimited"), "{text}");
    let secrets = [secret.clone(), second_secret, third_secret];

    // Lists show ids, never a secret or the full hash.
    let tokens = list(&m);
    assert_eq!(tokens.len(), 3);
    let first = tokens.iter().find(|t| t["id"] == id.as_str()).unwrap();
    for field in [
        "policy",
        "policy_id",
        "uses_left",
        "expires_ms",
        "created_ms",
    ] {
        assert_eq!(first[field], created[field], "{field}");
    }
    assert_eq!(first["expired"], false);
    assert!(first.get("token").is_none() && first.get("agent_command").is_none());
    let shown = m.cli(&["token", "list"]);
    let listed = format!(
        "{}{}",
        serde_json::to_string(&tokens).unwrap(),
        String::from_utf8_lossy(&shown.stdout)
    );
    assert!(listed.contains(&id), "{listed}");
    for s in &secrets {
        assert!(!listed.contains(s.as_str()), "a list shows a secret");
        let full_hash = pki::hex(&pki::sha256(s.as_bytes()));
        assert!(!listed.contains(&full_hash), "a list shows a full hash");
    }

    // Delete revokes: gone from the list, and a second delete is refused.
    let deleted = m.cli(&["token", "delete", &id]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(!ids(&list(&m)).contains(&id));
    let again = m.cli(&["token", "delete", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("404"));

    let (_, log) = m.stop();
    assert!(
        log.contains(&format!("activation token {id} created")),
        "{log}"
    );
    assert!(
        log.contains(&format!("activation token {id} revoked")),
        "{log}"
    );
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "the manager logged a secret:\n{log}"
        );
    }
}

#[test]
fn bad_token_requests_are_refused_naming_the_field_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    m.cli_json(&["token", "create"]);
    let before = list(&m);
    let client = m.client();
    let key = std::fs::read_to_string(m.dir.join("admin-api-key")).unwrap();
    let key = key.trim();

    let cases: [(&str, &str); 12] = [
        (r#"{"policy":"Nope"}"#, "policy"),
        (r#"{"policy":99}"#, "policy"),
        (r#"{"uses":0}"#, "uses"),
        (r#"{"uses":-1}"#, "uses"),
        (r#"{"uses":100001}"#, "uses"),
        (r#"{"uses":"lots"}"#, "uses"),
        (r#"{"expires":"0s"}"#, "expires"),
        (r#"{"expires":"abc"}"#, "expires"),
        (r#"{"expires":"400d"}"#, "expires"),
        (r#"{"expires":3600}"#, "expires"),
        (r#"{"uses":1,"secret":"mine"}"#, "secret"),
        ("", "body"),
    ];
    for (body, field) in cases {
        let raw = client
            .send(Method::POST, "/api/v1/tokens", body.into(), Some(key))
            .unwrap();
        let answer: Value = serde_json::from_slice(&raw.body).unwrap();
        assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
    }

    // The CLI reports the same refusals with exit code 1 and the field on stderr.
    for (args, field) in [
        (&["--uses", "0"][..], "uses"),
        (&["--uses", "-1"][..], "uses"),
        (&["--expires", "400d"][..], "expires"),
        (&["--policy", "Nope"][..], "policy"),
    ] {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        let out = m.cli(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{field}: ")), "{args:?}: {stderr}");
    }

    for (method, path, status) in [
        (
            Method::DELETE,
            "/api/v1/tokens/0123456789abcdef",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            "/api/v1/tokens/not-an-id",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/tokens/0123456789abcdef",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            "/api/v1/tokens",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::PATCH,
            "/api/v1/tokens/0123456789abcdef",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let raw = client
            .send(method.clone(), path, Vec::new(), Some(key))
            .unwrap();
        assert_eq!(raw.status, status, "{method} {path}");
    }
    let unauthenticated = client
        .send(Method::POST, "/api/v1/tokens", b"{}".to_vec(), None)
        .unwrap();
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);

    assert_eq!(list(&m), before, "a refused request changed the tokens");
}

#[test]
fn a_token_is_shown_by_id_and_revoked_with_its_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    m.cli_json(&["policies", "create", "Temp"]);
    let kept = m.cli_json(&["token", "create"]);
    let doomed = m.cli_json(&["token", "create", "--policy", "Temp"]);
    let key = std::fs::read_to_string(m.dir.join("admin-api-key")).unwrap();
    let client = m.client();
    let id = doomed["id"].as_str().unwrap();
    // Ids are accepted in either case.
    let path = format!("/api/v1/tokens/{}", id.to_ascii_uppercase());
    let raw = client
        .send(Method::GET, &path, Vec::new(), Some(key.trim()))
        .unwrap();
    assert_eq!(raw.status, StatusCode::OK);
    let shown: Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(shown["id"], id);
    assert_eq!(shown["policy"], "Temp");
    assert!(shown.get("token").is_none());

    m.cli_json(&["policies", "delete", "Temp"]);
    assert_eq!(
        ids(&list(&m)),
        vec![kept["id"].as_str().unwrap().to_string()]
    );
}
