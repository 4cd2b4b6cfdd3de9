//! End-to-end: the REST API over real TLS. Every bad input of the foundation issue is refused
//! with the documented status and field, and nothing stored changes.

use crate::support::Manager;
use hyper::{Method, StatusCode};
use picket::admin::ApiClient;
use serde_json::{Value, json};

fn key(m: &Manager) -> String {
    std::fs::read_to_string(m.dir.join("admin-api-key"))
        .unwrap()
        .trim()
        .to_string()
}

fn send(
    client: &ApiClient,
    key: &str,
    method: Method,
    path: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    let raw = client.send(method, path, body.to_vec(), Some(key)).unwrap();
    let value = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
    (raw.status, value)
}

/// Everything stored that a refused request could have touched.
fn snapshot(client: &ApiClient, key: &str) -> (Value, Value) {
    let (_, policies) = send(client, key, Method::GET, "/api/v1/policies", b"");
    let (_, computers) = send(client, key, Method::GET, "/api/v1/computers", b"");
    (policies, computers)
}

#[test]
fn bad_inputs_are_refused_naming_the_field_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let client = m.client();
    let key = key(&m);
    let ok = |method, path, body: Value| {
        let (status, v) = send(&client, &key, method, path, body.to_string().as_bytes());
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    };
    ok(Method::POST, "/api/v1/policies", json!({"name": "Servers"}));
    ok(
        Method::POST,
        "/api/v1/policies",
        json!({"name": "Laptops", "parent": "Servers"}),
    );
    ok(
        Method::POST,
        "/api/v1/computers",
        json!({"hostname": "fw1", "kind": "appliance"}),
    );
    ok(
        Method::POST,
        "/api/v1/computers",
        json!({"hostname": "web1", "policy": "Laptops"}),
    );
    let before = snapshot(&client, &key);

    let ten_mb = vec![b' '; 10 * 1024 * 1024];
    let cases: Vec<(Method, &str, Vec<u8>, StatusCode, &str)> = vec![
        (Method::PATCH, "/api/v1/policies/Servers", br#"{"settings":{"heartbeat.bogus":"1"}}"#.to_vec(), StatusCode::BAD_REQUEST, "settings.heartbeat.bogus"),
        (Method::PATCH, "/api/v1/policies/Servers", br#"{"settings":{"heartbeat.interval":"0s"}}"#.to_vec(), StatusCode::BAD_REQUEST, "settings.heartbeat.interval"),
        (Method::PATCH, "/api/v1/policies/Servers", br#"{"settings":{"heartbeat.interval":"25h"}}"#.to_vec(), StatusCode::BAD_REQUEST, "settings.heartbeat.interval"),
        (Method::PATCH, "/api/v1/policies/Servers", br#"{"settings":{"heartbeat.interval":"abc"}}"#.to_vec(), StatusCode::BAD_REQUEST, "settings.heartbeat.interval"),
        (Method::PATCH, "/api/v1/policies/Servers", br#"{"settings":{"heartbeat.missed-before-alert":-1}}"#.to_vec(), StatusCode::BAD_REQUEST, "settings.heartbeat.missed-before-alert"),
        (Method::PATCH, "/api/v1/policies/Servers", br#"{"settings":{"heartbeat.missed-before-alert":1001}}"#.to_vec(), StatusCode::BAD_REQUEST, "settings.heartbeat.missed-before-alert"),
        // A valid setting before a bad one: the whole request is refused, the first not applied.
        (Method::PATCH, "/api/v1/policies/Servers", br#"{"settings":{"heartbeat.interval":"5m","communication.direction":"sideways"}}"#.to_vec(), StatusCode::BAD_REQUEST, "settings.communication.direction"),
        (Method::POST, "/api/v1/policies", br#"{"name":"X","parent":"Nope"}"#.to_vec(), StatusCode::BAD_REQUEST, "parent"),
        (Method::PATCH, "/api/v1/policies/Servers", br#"{"parent":"Laptops"}"#.to_vec(), StatusCode::BAD_REQUEST, "parent"),
        (Method::PATCH, "/api/v1/policies/Base%20Policy", br#"{"parent":"Servers"}"#.to_vec(), StatusCode::BAD_REQUEST, "parent"),
        (Method::POST, "/api/v1/policies", br#"{"name":"servers"}"#.to_vec(), StatusCode::CONFLICT, "name"),
        (Method::DELETE, "/api/v1/policies/Base%20Policy", Vec::new(), StatusCode::CONFLICT, "id"),
        (Method::DELETE, "/api/v1/policies/Servers", Vec::new(), StatusCode::CONFLICT, "id"),
        (Method::DELETE, "/api/v1/policies/Laptops", Vec::new(), StatusCode::CONFLICT, "id"),
        (Method::PATCH, "/api/v1/computers/1", br#"{"settings":{"communication.direction":"manager-initiated"}}"#.to_vec(), StatusCode::BAD_REQUEST, "settings.communication.direction"),
        (Method::POST, "/api/v1/computers", br#"{"hostname":"fw2","kind":"appliance","settings":{"communication.direction":"agent-initiated"}}"#.to_vec(), StatusCode::BAD_REQUEST, "kind"),
        (Method::POST, "/api/v1/computers", br#"{"hostname":"WEB1"}"#.to_vec(), StatusCode::CONFLICT, "hostname"),
        (Method::PATCH, "/api/v1/computers/2", br#"{"vm_power_state":"stopped"}"#.to_vec(), StatusCode::BAD_REQUEST, "vm_power_state"),
        (Method::POST, "/api/v1/policies/Servers/firewall-rules", br#"{"name":"r","action":"bypass","priority":5}"#.to_vec(), StatusCode::BAD_REQUEST, "priority"),
        (Method::POST, "/api/v1/policies/Servers/firewall-rules", br#"{"name":"r","action":"permit"}"#.to_vec(), StatusCode::BAD_REQUEST, "action"),
        (Method::POST, "/api/v1/policies/Servers/firewall-rules", br#"{"name":"r","action":"bypass","destination_ports":[0]}"#.to_vec(), StatusCode::BAD_REQUEST, "destination_ports"),
        (Method::POST, "/api/v1/policies/Servers/firewall-rules", br#"{"name":"r","action":"bypass","destination_ports":[70000]}"#.to_vec(), StatusCode::BAD_REQUEST, "destination_ports"),
        (Method::POST, "/api/v1/policies/Servers/firewall-rules", br#"{"name":"r","action":"bypass","source_ips":["10.0.0.0/33"]}"#.to_vec(), StatusCode::BAD_REQUEST, "source_ips"),
        (Method::POST, "/api/v1/policies/Servers/firewall-rules", br#"{"name":"r","action":"bypass","source_macs":["00:11:22:33:44"]}"#.to_vec(), StatusCode::BAD_REQUEST, "source_macs"),
        (Method::POST, "/api/v1/policies/Nope/firewall-rules", br#"{"name":"r","action":"bypass"}"#.to_vec(), StatusCode::NOT_FOUND, ""),
        (Method::DELETE, "/api/v1/policies/Servers/firewall-rules/99", Vec::new(), StatusCode::NOT_FOUND, ""),
        (Method::PATCH, "/api/v1/computers/2", br#"{"address":"web1:4118"}"#.to_vec(), StatusCode::BAD_REQUEST, "address"),
        // Host names are DNS names or IP addresses; names hold nothing that reorders or hides text.
        (Method::POST, "/api/v1/computers", br#"{"hostname":":::::"}"#.to_vec(), StatusCode::BAD_REQUEST, "hostname"),
        (Method::POST, "/api/v1/computers", br#"{"hostname":"."}"#.to_vec(), StatusCode::BAD_REQUEST, "hostname"),
        (Method::POST, "/api/v1/computers", format!(r#"{{"hostname":"{}.example"}}"#, "a".repeat(64)).into_bytes(), StatusCode::BAD_REQUEST, "hostname"),
        (Method::POST, "/api/v1/policies", br#"{"name":"Servers\u202etxt.exe"}"#.to_vec(), StatusCode::BAD_REQUEST, "name"),
        (Method::POST, "/api/v1/policies", br#"{"name":"Base\u200bPolicy"}"#.to_vec(), StatusCode::BAD_REQUEST, "name"),
        (Method::POST, "/api/v1/policies/Servers/firewall-rules", br#"{"name":"r\u2066","action":"bypass"}"#.to_vec(), StatusCode::BAD_REQUEST, "name"),
        (Method::POST, "/api/v1/policies", Vec::new(), StatusCode::BAD_REQUEST, "body"),
        (Method::POST, "/api/v1/policies", b"{\"name\": ".to_vec(), StatusCode::BAD_REQUEST, "body"),
        (Method::POST, "/api/v1/policies", ten_mb, StatusCode::PAYLOAD_TOO_LARGE, ""),
    ];
    for (method, path, body, status, field) in cases {
        let (got, answer) = send(&client, &key, method.clone(), path, &body);
        let label = format!(
            "{method} {path} {}",
            String::from_utf8_lossy(&body[..body.len().min(120)])
        );
        assert_eq!(got, status, "{label}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{label}: no message in {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], field, "{label}: {answer}");
        }
    }
    assert_eq!(
        snapshot(&client, &key),
        before,
        "a refused request changed the store"
    );
}

#[test]
fn firewall_rules_are_inherited_down_the_tree_and_removed_where_they_live() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let client = m.client();
    let key = key(&m);
    let call = |method, path: &str, body: Value| {
        send(&client, &key, method, path, body.to_string().as_bytes())
    };
    call(Method::POST, "/api/v1/policies", json!({"name": "Servers"}));
    call(
        Method::POST,
        "/api/v1/policies",
        json!({"name": "Web", "parent": "Servers"}),
    );
    let (_, web1) = call(
        Method::POST,
        "/api/v1/computers",
        json!({"hostname": "web1", "policy": "Web"}),
    );
    let rule = json!({"name": "agent port from the admin host", "action": "bypass", "priority": 4,
        "protocol": "tcp", "destination_ports": ["4118"], "source_ips": ["127.0.0.2"]});
    let (status, added) = call(
        Method::POST,
        "/api/v1/policies/Servers/firewall-rules",
        rule,
    );
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["governs_agent_port"], true);
    assert_eq!(added["source_ips"], json!(["127.0.0.2"]));
    let id = added["id"].as_u64().unwrap();

    let (_, web) = call(
        Method::GET,
        "/api/v1/policies/Web/firewall-rules",
        Value::Null,
    );
    assert_eq!(web["rules"], json!([]), "Web holds no rule of its own");
    assert_eq!(web["effective"][0]["id"], id);
    assert_eq!(web["effective"][0]["policy"], "Servers");
    let path = format!("/api/v1/computers/{}", web1["id"]);
    let (_, computer) = call(Method::GET, &path, Value::Null);
    assert_eq!(computer["firewall_rules"][0]["id"], id, "{computer}");
    let (_, history) = call(Method::GET, &format!("{path}/history"), Value::Null);
    assert!(history.to_string().contains("firewall rule"), "{history}");

    // A rule lives on its policy: removing it through a child is 404, through its policy 204.
    let (status, _) = call(
        Method::DELETE,
        &format!("/api/v1/policies/Web/firewall-rules/{id}"),
        Value::Null,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        Method::DELETE,
        &format!("/api/v1/policies/Servers/firewall-rules/{id}"),
        Value::Null,
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, computer) = call(Method::GET, &path, Value::Null);
    assert_eq!(computer["firewall_rules"], json!([]));
}

#[test]
fn an_appliance_shows_the_inherited_direction_it_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let client = m.client();
    let key = key(&m);
    let call = |method, path: &str, body: Value| {
        send(&client, &key, method, path, body.to_string().as_bytes())
    };
    call(
        Method::POST,
        "/api/v1/policies",
        json!({"name": "Branch",
        "settings": {"communication.direction": "agent-initiated"}}),
    );
    let (status, fw) = call(
        Method::POST,
        "/api/v1/computers",
        json!({"hostname": "fw1", "kind": "appliance", "policy": "Branch"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{fw}");
    let direction = &fw["effective"]["communication.direction"];
    assert_eq!(direction["value"], "bidirectional");
    assert_eq!(direction["source"], "kind:appliance");
    assert_eq!(direction["overrides"]["value"], "agent-initiated");
    assert_eq!(direction["overrides"]["source"], "policy:Branch");
}

#[test]
fn authentication_is_required_except_for_health() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let client = m.client();
    let health = client
        .send(Method::GET, "/healthz", Vec::new(), None)
        .unwrap();
    assert_eq!(health.status, StatusCode::OK);

    for key in [None, Some("wrong"), Some("")] {
        let raw = client
            .send(Method::GET, "/api/v1/policies", Vec::new(), key)
            .unwrap();
        assert_eq!(raw.status, StatusCode::UNAUTHORIZED, "key {key:?}");
        let body: Value = serde_json::from_slice(&raw.body).unwrap();
        assert!(body["error"]["message"].is_string());
    }
    let raw = client
        .send(
            Method::POST,
            "/api/v1/policies",
            br#"{"name":"Sneaky"}"#.to_vec(),
            Some("wrong"),
        )
        .unwrap();
    assert_eq!(raw.status, StatusCode::UNAUTHORIZED);
    let (_, policies) = send(&client, &key(&m), Method::GET, "/api/v1/policies", b"");
    assert_eq!(policies["policies"].as_array().map(Vec::len), Some(1));
}

#[test]
fn unknown_paths_and_methods_are_404_and_405() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let client = m.client();
    let key = key(&m);
    for (method, path, status) in [
        (Method::GET, "/api/v1/nothing", StatusCode::NOT_FOUND),
        (Method::GET, "/api/v1/policies/Nope", StatusCode::NOT_FOUND),
        (Method::GET, "/api/v1/computers/99", StatusCode::NOT_FOUND),
        (Method::GET, "/api/v1/computers/x", StatusCode::NOT_FOUND),
        (
            Method::PUT,
            "/api/v1/policies",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        assert_eq!(send(&client, &key, method, path, b"").0, status, "{path}");
    }
}

/// `schema/api.md` is the contract: every route it documents must exist (answer with neither
/// 404-for-path nor 405), so the document and the router cannot drift apart silently.
#[test]
fn every_documented_route_exists() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/api.md")).unwrap();
    let routes: Vec<(String, String)> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### `")?.split('`').next())
        .filter_map(|r| {
            let (method, path) = r.split_once(' ')?;
            Some((method.to_string(), path.to_string()))
        })
        .collect();
    assert!(routes.len() >= 11, "found only {routes:?}");

    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    let client = m.client();
    let key = key(&m);
    send(
        &client,
        &key,
        Method::POST,
        "/api/v1/computers",
        br#"{"hostname":"doc1"}"#,
    );
    for (method, path) in routes {
        let path = path
            .replace("{id or name}", "Base%20Policy")
            .replace("{id}", "1")
            .replace("{rule id}", "1")
            .replace("{name}", "x");
        let method: Method = method.parse().unwrap();
        let (status, body) = send(&client, &key, method.clone(), &path, b"{}");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if status == StatusCode::NOT_FOUND {
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !message.starts_with("path "),
                "{method} {path} is not routed"
            );
        }
    }
}
