//! The firewall-rule routes through the router, as a client calls them: editing a rule in place
//! (`PUT .../firewall-rules/{id}`) and a computer's rules in evaluation order
//! (`GET /api/v1/computers/{id}/firewall-rules`).

use super::lockout::tests::state;
use super::router::handle;
use super::{ApiRequest, ApiState};
use crate::model::{AgentState, Computer, ComputerId, Direction, Policy, PolicyId, Setting};
use crate::store::Reads;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "test-key";

/// A site whose Base Policy has the firewall on for agent-initiated computers, a `Servers`
/// policy under it, and `web1` in `Servers` with an agent listening on 4118; the manager's
/// agent port is 192.0.2.10:4120 (not loopback, so a rule can cut it).
fn site(dir: &std::path::Path) -> ApiState {
    let mut state = state(dir);
    state.admin_key_hash = crate::secret::sha256(KEY.as_bytes());
    state.agent_endpoint = "192.0.2.10:4120".into();
    let mut txn = state.store.write().unwrap();
    let mut base = Policy {
        id: PolicyId(1),
        name: "Base Policy".into(),
        parent: None,
        settings: Default::default(),
        rules: Vec::new(),
    };
    base.settings.direction = Setting::Set(Direction::AgentInitiated);
    base.settings.firewall_enabled = Setting::Set(true);
    txn.put_policy(&base).unwrap();
    txn.commit().unwrap();
    let (status, _) = call(
        &state,
        Method::POST,
        "/api/v1/policies",
        json!({"name": "Servers"}),
    );
    assert_eq!(status, StatusCode::CREATED);
    let mut txn = state.store.write().unwrap();
    let servers = txn
        .policies()
        .unwrap()
        .into_iter()
        .find(|p| p.name == "Servers");
    let web1 = Computer {
        policy: servers.unwrap().id,
        ..Computer::test(1, "web1")
    };
    txn.put_computer(&web1).unwrap();
    txn.put_agent_state(&AgentState {
        computer: ComputerId(1),
        listen_port: Some(4118),
        protocol: 2,
        ..AgentState::default()
    })
    .unwrap();
    txn.commit().unwrap();
    state
}

fn call(state: &ApiState, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let response = handle(state, &request(method, path, body));
    (response.status, response.body.unwrap_or(Value::Null))
}

fn request(method: Method, path: &str, body: Value) -> ApiRequest {
    ApiRequest {
        method,
        path: path.into(),
        query: None,
        authorization: Some(format!("Bearer {KEY}")),
        cookies: Vec::new(),
        origin: None,
        host: None,
        peer: None,
        background: false,
        token: None,
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    }
}

/// Adds a rule through the API and returns its id.
fn add(state: &ApiState, policy: &str, rule: Value) -> u64 {
    let path = format!("/api/v1/policies/{policy}/firewall-rules");
    let (status, added) = call(state, Method::POST, &path, rule);
    assert_eq!(status, StatusCode::CREATED, "{added}");
    added["id"].as_u64().unwrap()
}

fn to_manager() -> Value {
    json!({"name": "to the manager", "action": "allow", "direction": "outgoing",
        "protocol": "tcp", "destination_ports": ["4120"]})
}

fn own_rules(state: &ApiState, policy: &str) -> Value {
    let path = format!("/api/v1/policies/{policy}/firewall-rules");
    call(state, Method::GET, &path, Value::Null).1["rules"].clone()
}

#[test]
fn an_edited_rule_keeps_its_id_and_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let state = site(dir.path());
    let first = add(&state, "Servers", to_manager());
    let ssh =
        json!({"name": "ssh", "action": "deny", "protocol": "tcp", "destination_ports": [22]});
    let second = add(&state, "Servers", ssh);
    let third = add(
        &state,
        "Servers",
        json!({"name": "dns", "action": "log-only"}),
    );

    let fingerprint = |state: &ApiState| {
        let computer = call(state, Method::GET, "/api/v1/computers/1", Value::Null).1;
        computer["agent"]["expected_fingerprint"].clone()
    };
    let sent_before = fingerprint(&state);
    let path = format!("/api/v1/policies/Servers/firewall-rules/{second}");
    let edit = json!({"name": "ssh from the admin net", "action": "force-allow", "priority": 2,
        "protocol": "tcp", "destination_ports": ["22"], "source_ips": ["10.0.0.0/8"], "log": true});
    let (status, edited) = call(&state, Method::PUT, &path, edit);
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["id"], second);
    assert_eq!(
        (&edited["action"], &edited["priority"], &edited["log"]),
        (&json!("force-allow"), &json!(2), &json!(true))
    );
    let rules = own_rules(&state, "Servers");
    let ids: Vec<u64> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [first, second, third]);
    assert_eq!(rules[1]["source_ips"], json!(["10.0.0.0/8"]));
    assert_ne!(
        fingerprint(&state),
        sent_before,
        "the computers under the policy are sent the edited rule"
    );

    let txn = state.store.read().unwrap();
    let history = txn.history(ComputerId(1), 10).unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.detail.contains("edited (name, action, priority")),
        "{history:?}"
    );
}

#[test]
fn an_edit_naming_some_fields_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let state = site(dir.path());
    let narrow = json!({"name": "ssh", "action": "allow", "priority": 3, "protocol": "tcp",
        "destination_ports": ["22"], "source_ips": ["10.0.0.0/8"], "log": true});
    let id = add(&state, "Servers", narrow);
    let path = format!("/api/v1/policies/Servers/firewall-rules/{id}");
    let (status, edited) = call(&state, Method::PUT, &path, json!({"name": "ssh, admins"}));
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["name"], "ssh, admins");
    assert_eq!(
        (
            &edited["source_ips"],
            &edited["destination_ports"],
            &edited["priority"],
            &edited["log"]
        ),
        (
            &json!(["10.0.0.0/8"]),
            &json!(["22"]),
            &json!(3),
            &json!(true)
        ),
        "a rename does not widen the rule: {edited}"
    );
    // Emptied on purpose, and a default taken back with null.
    let body = json!({"source_ips": [], "priority": null});
    let (status, edited) = call(&state, Method::PUT, &path, body);
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(
        (&edited["source_ips"], &edited["priority"]),
        (&json!([]), &json!(0))
    );
    assert_eq!(edited["destination_ports"], json!(["22"]));
}

#[test]
fn a_bad_edit_is_400_naming_the_field_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = site(dir.path());
    let id = add(&state, "Servers", to_manager());
    let path = format!("/api/v1/policies/Servers/firewall-rules/{id}");
    let before = own_rules(&state, "Servers");
    let rule = |extra: Value| {
        let mut body = to_manager();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (rule(json!({"priority": 5})), "priority"),
        (rule(json!({"action": "permit"})), "action"),
        (rule(json!({"name": " "})), "name"),
        (json!({"name": null}), "name"),
        (json!({"id": 7}), "id"),
        (rule(json!({"destination_ports": [0]})), "destination_ports"),
        (rule(json!({"source_ips": ["10.0.0.0/33"]})), "source_ips"),
        (rule(json!({"protocol": "icmp"})), "destination_ports"),
        (rule(json!({"sauce": 1})), "sauce"),
    ] {
        let (status, answer) = call(&state, Method::PUT, &path, body.clone());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    assert_eq!(own_rules(&state, "Servers"), before);
}

#[test]
fn an_unknown_rule_or_policy_is_404_and_the_path_takes_put_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let state = site(dir.path());
    let id = add(&state, "Base%20Policy", to_manager());
    for path in [
        "/api/v1/policies/Servers/firewall-rules/99".to_string(),
        "/api/v1/policies/Servers/firewall-rules/x".to_string(),
        // A rule lives on its policy: a child cannot edit an inherited one.
        format!("/api/v1/policies/Servers/firewall-rules/{id}"),
        format!("/api/v1/policies/Nope/firewall-rules/{id}"),
    ] {
        let (status, answer) = call(&state, Method::PUT, &path, to_manager());
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    let path = format!("/api/v1/policies/1/firewall-rules/{id}");
    let response = handle(&state, &request(Method::PATCH, &path, to_manager()));
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.allow, Some("PUT, DELETE"));
    let (status, _) = call(&state, Method::PUT, &path, to_manager());
    assert_eq!(status, StatusCode::OK, "an unchanged rule is fine too");
}

#[test]
fn an_edit_that_would_cut_the_agent_from_its_manager_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = site(dir.path());
    let id = add(&state, "Servers", to_manager());
    let path = format!("/api/v1/policies/Servers/firewall-rules/{id}");
    let mut web_only = to_manager();
    web_only["name"] = json!("web only");
    web_only["destination_ports"] = json!(["443"]);
    let (status, answer) = call(&state, Method::PUT, &path, web_only);
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["field"], "destination_ports");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{id} 'web only'")) && message.contains("'web1'"),
        "{message}"
    );
    assert_eq!(
        own_rules(&state, "Servers")[0]["destination_ports"],
        json!(["4120"])
    );
}

#[test]
fn a_computers_rules_come_in_evaluation_order_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let state = site(dir.path());
    let inherited = add(&state, "Base%20Policy", to_manager());
    let ssh = json!({"name": "ssh", "action": "deny", "priority": 2, "protocol": "tcp",
        "destination_ports": ["22"], "log": true});
    let own = add(&state, "Servers", ssh);
    let arp = add(
        &state,
        "Servers",
        json!({"name": "arp", "action": "allow", "frame_type": "arp"}),
    );

    let (status, answer) = call(
        &state,
        Method::GET,
        "/api/v1/computers/1/firewall-rules",
        Value::Null,
    );
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["firewall_enabled"], true);
    assert_eq!(answer["firewall_enabled_source"], "policy:Base Policy");
    assert_eq!(answer["agent_port"], 4118);
    let rules = answer["rules"].as_array().unwrap();
    let seen: Vec<(&str, &str, Value)> = rules
        .iter()
        .map(|r| {
            let origin = r["origin"].as_str().unwrap();
            (origin, r["counter"].as_str().unwrap(), r["policy"].clone())
        })
        .collect();
    let (inherited, own, arp) = (
        format!("rule-{inherited}"),
        format!("rule-{own}"),
        format!("rule-{arp}"),
    );
    assert_eq!(
        seen,
        [
            ("hidden", "agent-port", Value::Null),
            ("hidden", "agent-port-reply", Value::Null),
            ("policy", own.as_str(), json!("Servers")),
            ("policy", inherited.as_str(), json!("Base Policy")),
            ("policy", arp.as_str(), json!("Servers")),
            ("implicit", "out-of-allowed-policy-in", Value::Null),
            ("implicit", "out-of-allowed-policy-out", Value::Null),
        ]
    );
    let positions: Vec<u64> = rules
        .iter()
        .map(|r| r["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(rules[0]["destination_ports"], json!(["4118"]));
    assert_eq!(rules[3]["policy_id"], 1);
    assert!(
        rules[4]["skipped"].as_str().unwrap().contains("ARP"),
        "{}",
        rules[4]
    );
    assert_eq!(rules[2]["log"], true);

    // The computer's own override turns the firewall off; the rules are still listed.
    let (status, _) = call(
        &state,
        Method::PATCH,
        "/api/v1/computers/1",
        json!({"settings": {"firewall.enabled": "false"}}),
    );
    assert_eq!(status, StatusCode::OK);
    let (_, answer) = call(
        &state,
        Method::GET,
        "/api/v1/computers/1/firewall-rules",
        Value::Null,
    );
    assert_eq!(answer["firewall_enabled"], false);
    assert_eq!(answer["firewall_enabled_source"], "computer");
    assert_eq!(answer["rules"].as_array().unwrap().len(), 7);
    let (status, _) = call(
        &state,
        Method::GET,
        "/api/v1/computers/9/firewall-rules",
        Value::Null,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
}
