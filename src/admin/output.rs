//! What the admin verbs print: the API's JSON with `--json`, else aligned tables.

use super::client::ClientOptions;
use crate::clock::{WallMs, format_utc};
use crate::model::SettingKey;
use serde_json::Value;

pub fn policy_list(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let rows: Vec<[String; 3]> = items(answer, "policies")
        .map(|p| [text(&p["id"]), text(&p["name"]), text(&p["parent"])])
        .collect();
    table(["ID", "NAME", "PARENT"], &rows);
}

pub fn computer_list(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let rows: Vec<[String; 5]> = items(answer, "computers")
        .map(|c| {
            [
                text(&c["id"]),
                text(&c["hostname"]),
                text(&c["kind"]),
                text(&c["policy"]),
                text(&c["status"]),
            ]
        })
        .collect();
    table(["ID", "HOSTNAME", "KIND", "POLICY", "STATUS"], &rows);
}

pub fn policy(options: &ClientOptions, p: &Value) {
    if print_json(options, p) {
        return;
    }
    out!("Policy:  {} (id {})", text(&p["name"]), text(&p["id"]));
    out!("Parent:  {}", text(&p["parent"]));
    out!();
    settings(p);
}

pub fn computer(options: &ClientOptions, c: &Value) {
    if print_json(options, c) {
        return;
    }
    out!("Computer: {} (id {})", text(&c["hostname"]), text(&c["id"]));
    out!("Kind:     {}", text(&c["kind"]));
    out!("Policy:   {}", text(&c["policy"]));
    out!("Status:   {}", text(&c["status"]));
    out!();
    settings(c);
}

/// Rules as `GET .../firewall-rules` gives them; the effective list shows inherited ones too.
pub fn rule_list(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let rows: Vec<[String; 11]> = items(answer, "effective")
        .map(|r| {
            [
                text(&r["id"]),
                text(&r["name"]),
                text(&r["action"]),
                text(&r["priority"]),
                format!(
                    "{} {}/{}",
                    text(&r["direction"]),
                    text(&r["frame_type"]),
                    text(&r["protocol"])
                ),
                joined(&r["destination_ports"]),
                joined(&r["source_ips"]),
                joined(&r["source_macs"]),
                joined(&r["destination_ips"]),
                if r["log"] == Value::Bool(true) {
                    "yes"
                } else {
                    "no"
                }
                .to_string(),
                text(&r["policy"]),
            ]
        })
        .collect();
    table(
        [
            "ID",
            "NAME",
            "ACTION",
            "PRI",
            "TRAFFIC",
            "PORTS",
            "SOURCE IPS",
            "SOURCE MACS",
            "DEST IPS",
            "LOG",
            "POLICY",
        ],
        &rows,
    );
}

/// A computer's rules as `GET /api/v1/computers/ID/firewall-rules` gives them: in the order its
/// agent evaluates them, each with where it comes from.
pub fn computer_rules(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let state = if answer["firewall_enabled"] == Value::Bool(true) {
        "on"
    } else {
        "off: the host firewall enforces none of these rules"
    };
    out!(
        "Firewall: {state} (firewall.enabled from {})",
        text(&answer["firewall_enabled_source"])
    );
    if let Some(withheld) = answer["firewall_withheld"].as_str() {
        out!("Withheld: {withheld}");
    }
    out!();
    let rows: Vec<[String; 11]> = items(answer, "rules")
        .map(|r| {
            let from = match r["origin"].as_str() {
                Some("policy") => text(&r["policy"]),
                Some(origin) => origin.to_string(),
                None => "-".to_string(),
            };
            let ports = match r["source_ports"].as_array() {
                Some(ports) if !ports.is_empty() => format!("from {}", joined(&r["source_ports"])),
                _ => joined(&r["destination_ports"]),
            };
            let name = match r["skipped"].as_str() {
                Some(why) => format!("{} (not enforced: {why})", text(&r["name"])),
                None => text(&r["name"]),
            };
            [
                text(&r["position"]),
                text(&r["counter"]),
                name,
                text(&r["action"]),
                text(&r["priority"]),
                format!(
                    "{} {}/{}",
                    text(&r["direction"]),
                    text(&r["frame_type"]),
                    text(&r["protocol"])
                ),
                ports,
                joined(&r["source_ips"]),
                joined(&r["source_macs"]),
                joined(&r["destination_ips"]),
                from,
            ]
        })
        .collect();
    table(
        [
            "#",
            "COUNTER",
            "NAME",
            "ACTION",
            "PRI",
            "TRAFFIC",
            "PORTS",
            "SOURCE IPS",
            "SOURCE MACS",
            "DEST IPS",
            "FROM",
        ],
        &rows,
    );
}

/// A list of ports, addresses or MACs on one line; empty matches anything.
fn joined(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
    if items.is_empty() {
        "any".to_string()
    } else {
        items.join(",")
    }
}

/// The answer to send-policy or check-status: what happened, or when it will.
pub fn operation(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    out!("{}", text(&answer["message"]));
}

pub fn token_list(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let rows: Vec<[String; 5]> = items(answer, "tokens")
        .map(|t| {
            [
                text(&t["id"]),
                text(&t["policy"]),
                uses(&t["uses_left"]),
                utc(&t["expires_ms"]),
                token_state(t).to_string(),
            ]
        })
        .collect();
    table(["ID", "POLICY", "USES LEFT", "EXPIRES", "STATE"], &rows);
}

/// The new token and its agent command, each on a line of its own so it can be copied.
pub fn token_created(options: &ClientOptions, t: &Value) {
    if print_json(options, t) {
        return;
    }
    out!("Activation token (shown only now; the manager keeps only its hash):");
    out!("  Token:    {}", text(&t["token"]));
    out!("  ID:       {}", text(&t["id"]));
    out!("  Policy:   {}", text(&t["policy"]));
    out!("  Uses:     {}", uses(&t["uses_left"]));
    out!("  Expires:  {}", utc(&t["expires_ms"]));
    out!("On the computer to protect, as root, this one line installs the agent, activates it and");
    out!("starts its service (it pins this manager's key; see README, Deploying agents):");
    out!("{}", text(&t["install_command"]));
    out!("Or, with picket already installed there, run the agent directly:");
    out!("{}", text(&t["agent_command"]));
}

pub fn deleted(options: &ClientOptions, what: &str, name: &str) {
    done(options, ("deleted", "Deleted"), what, name);
}

pub fn ended(options: &ClientOptions, what: &str, name: &str) {
    done(options, ("ended", "Ended"), what, name);
}

/// `{"deleted": {"kind": ..., "ref": ...}}`, or `Deleted maintenance window 3.`
fn done(options: &ClientOptions, (key, verb): (&str, &str), what: &str, name: &str) {
    if options.json {
        out!(
            "{}",
            serde_json::json!({ key: {"kind": what, "ref": name} })
        );
    } else {
        out!("{verb} {what} {name}.");
    }
}

/// Effective settings in the order of the settings table, not JSON's alphabetical order.
fn settings(v: &Value) {
    let rows: Vec<[String; 3]> = SettingKey::ALL
        .iter()
        .map(|key| {
            let e = &v["effective"][key.name()];
            [
                key.name().to_string(),
                text(&e["value"]),
                text(&e["source"]),
            ]
        })
        .collect();
    table(["SETTING", "VALUE", "FROM"], &rows);
}

fn uses(v: &Value) -> String {
    match v {
        Value::Null => "unlimited".to_string(),
        other => text(other),
    }
}

fn utc(ms: &Value) -> String {
    match ms.as_u64() {
        Some(ms) => format_utc(WallMs(ms)),
        None => "never".to_string(),
    }
}

fn token_state(t: &Value) -> &'static str {
    if t["expired"] == Value::Bool(true) {
        "expired"
    } else if t["uses_left"] == 0 {
        "used up"
    } else {
        "active"
    }
}

fn print_json(options: &ClientOptions, v: &Value) -> bool {
    if options.json {
        out!("{v:#}");
    }
    options.json
}

fn items<'a>(answer: &'a Value, list: &str) -> impl Iterator<Item = &'a Value> {
    answer[list].as_array().into_iter().flatten()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn event_list(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let rows: Vec<[String; 5]> = items(answer, "events")
        .map(|e| {
            let fields: Vec<String> = e["fields"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect();
            let name = match &e["name"] {
                Value::Null => text(&e["id"]),
                name => text(name),
            };
            [
                crate::clock::format_utc(crate::clock::WallMs(e["time_ms"].as_u64().unwrap_or(0))),
                text(&e["computer"]),
                text(&e["seq"]),
                name,
                fields.join(" "),
            ]
        })
        .collect();
    table(["TIME", "COMPUTER", "SEQ", "EVENT", "DETAILS"], &rows);
}

pub fn alert_list(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let rows: Vec<[String; 6]> = items(answer, "alerts")
        .map(|a| {
            let state = if a["active"] == true {
                "active"
            } else if a["dismissed_ms"].is_u64() {
                "dismissed"
            } else {
                "cleared"
            };
            let updated = a["updated_ms"].as_u64().unwrap_or(0);
            [
                text(&a["id"]),
                format!("{} {}", text(&a["severity"]), text(&a["kind"])),
                text(&a["hostname"]),
                state.to_string(),
                crate::clock::format_utc(crate::clock::WallMs(updated)),
                text(&a["message"]),
            ]
        })
        .collect();
    table(
        ["ID", "ALERT", "COMPUTER", "STATE", "UPDATED", "MESSAGE"],
        &rows,
    );
}

/// The last lines of a computer's history, oldest of them first, under its settings.
pub fn history(answer: &Value) {
    let mut rows: Vec<[String; 3]> = items(answer, "history")
        .take(10)
        .map(|h| {
            let at = h["at_ms"].as_u64().unwrap_or(0);
            [
                crate::clock::format_utc(crate::clock::WallMs(at)),
                text(&h["what"]),
                text(&h["detail"]),
            ]
        })
        .collect();
    rows.reverse();
    out!();
    table(["WHEN", "WHAT", "DETAIL"], &rows);
}

pub fn channel_list(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let rows: Vec<[String; 6]> = items(answer, "channels")
        .map(|c| {
            let d = &c["delivery"];
            let state = if d["failing"] == true {
                format!("failing: {}", text(&d["last_error"]))
            } else {
                "ok".to_string()
            };
            [
                text(&c["name"]),
                text(&c["kind"]),
                text(&d["pending"]),
                text(&d["sent"]),
                text(&d["failed"]),
                state,
            ]
        })
        .collect();
    table(
        ["NAME", "KIND", "PENDING", "SENT", "FAILED", "STATE"],
        &rows,
    );
    let routes: Vec<[String; 6]> = items(answer, "routes").map(route_row).collect();
    if !routes.is_empty() {
        out!();
        table(
            ["ROUTE", "CHANNEL", "KIND", "SEVERITY", "POLICY", "ON"],
            &routes,
        );
    }
}

fn route_row(r: &Value) -> [String; 6] {
    let on: Vec<String> = items(r, "on").map(text).collect();
    [
        text(&r["id"]),
        text(&r["channel"]),
        text(&r["kind"]),
        text(&r["severity"]),
        text(&r["policy"]),
        on.join(","),
    ]
}

pub fn channel(options: &ClientOptions, c: &Value) {
    if print_json(options, c) {
        return;
    }
    out!("Channel:  {} ({})", text(&c["name"]), text(&c["kind"]));
    if let Some(settings) = c["settings"].as_object() {
        for (key, value) in settings {
            out!("  {key}: {}", text(value));
        }
    }
    let d = &c["delivery"];
    out!(
        "Delivery: {} pending, {} sent, {} failed, {} skipped",
        text(&d["pending"]),
        text(&d["sent"]),
        text(&d["failed"]),
        text(&d["skipped"])
    );
    if d["last_error"].is_string() {
        out!("Last error: {}", text(&d["last_error"]));
    }
    let e = &c["event_delivery"];
    if e.is_object() {
        out!(
            "Events:   {} pending, {} sent, {} failed, {} skipped, {} dropped",
            text(&e["pending"]),
            text(&e["sent"]),
            text(&e["failed"]),
            text(&e["skipped"]),
            text(&e["dropped"])
        );
        if e["last_error"].is_string() {
            out!("Last event error: {}", text(&e["last_error"]));
        }
    }
    if c["secret"].is_string() {
        out!();
        out!("Signing secret (shown once; the receiver checks signatures with it):");
        out!("  {}", text(&c["secret"]));
    }
    let routes: Vec<[String; 6]> = items(c, "routes").map(route_row).collect();
    if !routes.is_empty() {
        out!();
        table(
            ["ROUTE", "CHANNEL", "KIND", "SEVERITY", "POLICY", "ON"],
            &routes,
        );
    }
}

pub fn channel_test(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    out!(
        "Delivered to '{}': {}",
        text(&answer["channel"]),
        text(&answer["answer"])
    );
}

pub fn route(options: &ClientOptions, r: &Value) {
    if print_json(options, r) {
        return;
    }
    table(
        ["ROUTE", "CHANNEL", "KIND", "SEVERITY", "POLICY", "ON"],
        &[route_row(r)],
    );
}

pub fn window_list(options: &ClientOptions, answer: &Value) {
    if print_json(options, answer) {
        return;
    }
    let rows: Vec<[String; 6]> = items(answer, "windows")
        .map(|w| {
            let target = if w["computer"].is_u64() {
                format!("computer {} ({})", text(&w["computer"]), text(&w["name"]))
            } else {
                format!("policy {} ({})", text(&w["policy"]), text(&w["name"]))
            };
            let at = |k: &str| format_utc(WallMs(w[k].as_u64().unwrap_or(0)));
            [
                text(&w["id"]),
                target,
                at("start_ms"),
                at("end_ms"),
                if w["active"] == true { "active" } else { "" }.to_string(),
                text(&w["reason"]),
            ]
        })
        .collect();
    table(["ID", "ON", "START", "END", "STATE", "REASON"], &rows);
}

/// A bulk acknowledgement or dismissal: one line per alert that could not be done, and an
/// error (exit 1) if any could not.
pub fn bulk(options: &ClientOptions, answer: &Value, verb: &str) -> Result<(), super::AdminError> {
    let failed: Vec<String> = items(answer, "results")
        .filter(|r| r["done"] != true)
        .map(|r| format!("alert {}: {}", text(&r["id"]), text(&r["error"])))
        .collect();
    if !print_json(options, answer) {
        out!("{} alert(s) {verb}", text(&answer["done"]));
        for line in &failed {
            out!("  not {verb}: {line}");
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(super::AdminError::Partial(format!(
            "{} alert(s) could not be {verb}",
            failed.len()
        )))
    }
}
