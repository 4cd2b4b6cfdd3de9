//! The admin verbs (`picket policies ...`, `picket computers ...`, `picket token ...`): each is a client of the
//! running manager's REST API, printing a table or, with `--json`, the API's JSON.

/// `println!` that ignores a closed stdout: `picket computers list | head` must not panic when
/// `head` stops reading. (Defined before the modules, so each of them can use it.)
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod backup;
mod client;
mod error;
mod notifications;
mod output;

pub use backup::{backup, check, restore};
pub use client::{ApiClient, ClientOptions, RawResponse, percent_encode};
pub use error::AdminError;
pub use notifications::{maintenance, notifications};

use crate::cli::{AlertsVerb, ComputersVerb, EventsVerb, PoliciesVerb, RulesVerb, TokenVerb};
use hyper::Method;
use serde_json::{Map, Value, json};

/// Fields of a policy that `set` changes directly; every other key is a setting.
const POLICY_FIELDS: [&str; 2] = ["name", "parent"];
/// Fields of a computer that `set` changes directly; every other key is a setting.
const COMPUTER_FIELDS: [&str; 5] = ["hostname", "policy", "kind", "vm_power_state", "address"];

pub fn policies(verb: PoliciesVerb) -> Result<(), AdminError> {
    match verb {
        PoliciesVerb::List(a) => {
            let answer = connect(&a.client())?.call(Method::GET, "/api/v1/policies", None)?;
            output::policy_list(&a.client(), &answer);
        }
        PoliciesVerb::Show(a) => {
            let path = format!("/api/v1/policies/{}", percent_encode(&a.policy));
            let answer = connect(&a.client())?.call(Method::GET, &path, None)?;
            output::policy(&a.client(), &answer);
        }
        PoliciesVerb::Create(a) => {
            let body = json!({"name": a.name, "parent": a.parent});
            let answer =
                connect(&a.client())?.call(Method::POST, "/api/v1/policies", Some(&body))?;
            output::policy(&a.client(), &answer);
        }
        PoliciesVerb::Set(a) => {
            let body = change_body(&a.pairs, &POLICY_FIELDS)?;
            let path = format!("/api/v1/policies/{}", percent_encode(&a.policy));
            let answer = connect(&a.client())?.call(Method::PATCH, &path, Some(&body))?;
            output::policy(&a.client(), &answer);
        }
        PoliciesVerb::Delete(a) => {
            let path = format!("/api/v1/policies/{}", percent_encode(&a.policy));
            connect(&a.client())?.call(Method::DELETE, &path, None)?;
            output::deleted(&a.client(), "policy", &a.policy);
        }
        PoliciesVerb::Rules(rules) => firewall_rules(rules.verb)?,
    }
    Ok(())
}

/// The rule `add` and `edit` send, from the flags both take. Values go as written; the manager
/// parses them and names the field it refuses.
macro_rules! rule_body {
    ($a:expr) => {
        json!({
            "name": $a.name, "action": $a.action, "priority": $a.priority,
            "direction": $a.direction, "frame_type": $a.frame_type, "protocol": $a.protocol,
            "destination_ports": $a.port, "source_ips": $a.source_ip,
            "source_macs": $a.source_mac, "destination_ips": $a.destination_ip, "log": $a.log,
        })
    };
}

/// What `edit` sends: only the flags given, so the rule keeps the rest (`any` empties a list).
fn edit_body(a: &crate::cli::RulesEdit) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    let words = [
        ("name", &a.name),
        ("action", &a.action),
        ("priority", &a.priority),
        ("direction", &a.direction),
        ("frame_type", &a.frame_type),
        ("protocol", &a.protocol),
    ];
    for (field, value) in words {
        if let Some(value) = value {
            body.insert(field.into(), json!(value));
        }
    }
    let lists = [
        ("destination_ports", &a.port),
        ("source_ips", &a.source_ip),
        ("source_macs", &a.source_mac),
        ("destination_ips", &a.destination_ip),
    ];
    for (field, values) in lists {
        match values.as_slice() {
            [] => {}
            [any] if any == "any" => {
                body.insert(field.into(), json!([]));
            }
            values => {
                body.insert(field.into(), json!(values));
            }
        }
    }
    if a.log || a.no_log {
        body.insert("log".into(), json!(a.log));
    }
    serde_json::Value::Object(body)
}

fn firewall_rules(verb: RulesVerb) -> Result<(), AdminError> {
    let path = |policy: &str| format!("/api/v1/policies/{}/firewall-rules", percent_encode(policy));
    match verb {
        RulesVerb::List(a) => {
            let answer = connect(&a.client())?.call(Method::GET, &path(&a.policy), None)?;
            output::rule_list(&a.client(), &answer);
        }
        RulesVerb::Add(a) => {
            let body = rule_body!(a);
            let answer = connect(&a.client())?.call(Method::POST, &path(&a.policy), Some(&body))?;
            output::rule_list(&a.client(), &json!({"effective": [answer]}));
        }
        RulesVerb::Edit(a) => {
            let body = edit_body(&a);
            let rule = format!("{}/{}", path(&a.policy), a.rule);
            let answer = connect(&a.client())?.call(Method::PUT, &rule, Some(&body))?;
            output::rule_list(&a.client(), &json!({"effective": [answer]}));
        }
        RulesVerb::Remove(a) => {
            let rule = format!("{}/{}", path(&a.policy), a.rule);
            connect(&a.client())?.call(Method::DELETE, &rule, None)?;
            output::deleted(&a.client(), "firewall rule", &a.rule.to_string());
        }
    }
    Ok(())
}

pub fn computers(verb: ComputersVerb) -> Result<(), AdminError> {
    match verb {
        ComputersVerb::List(a) => {
            let answer = connect(&a.client())?.call(Method::GET, "/api/v1/computers", None)?;
            output::computer_list(&a.client(), &answer);
        }
        ComputersVerb::Show(a) => {
            let path = format!("/api/v1/computers/{}", a.id);
            let client = connect(&a.client())?;
            let answer = client.call(Method::GET, &path, None)?;
            output::computer(&a.client(), &answer);
            if !a.json {
                let history = client.call(Method::GET, &format!("{path}/history"), None)?;
                output::history(&history);
            }
        }
        ComputersVerb::Rules(a) => {
            let path = format!("/api/v1/computers/{}/firewall-rules", a.id);
            let answer = connect(&a.client())?.call(Method::GET, &path, None)?;
            output::computer_rules(&a.client(), &answer);
        }
        ComputersVerb::Add(a) => {
            let body = json!({"hostname": a.hostname, "policy": a.policy, "kind": a.kind,
                "address": a.address});
            let answer =
                connect(&a.client())?.call(Method::POST, "/api/v1/computers", Some(&body))?;
            output::computer(&a.client(), &answer);
        }
        ComputersVerb::Set(a) => {
            let body = change_body(&a.pairs, &COMPUTER_FIELDS)?;
            let path = format!("/api/v1/computers/{}", a.id);
            let answer = connect(&a.client())?.call(Method::PATCH, &path, Some(&body))?;
            output::computer(&a.client(), &answer);
        }
        ComputersVerb::Delete(a) => {
            let path = format!("/api/v1/computers/{}", a.id);
            connect(&a.client())?.call(Method::DELETE, &path, None)?;
            output::deleted(&a.client(), "computer", &a.id.to_string());
        }
        ComputersVerb::SendPolicy(a) => {
            let path = format!("/api/v1/computers/{}/send-policy", a.id);
            let answer = connect(&a.client())?.call(Method::POST, &path, None)?;
            output::operation(&a.client(), &answer);
        }
        ComputersVerb::CheckStatus(a) => {
            let path = format!("/api/v1/computers/{}/check-status", a.id);
            let answer = connect(&a.client())?.call(Method::POST, &path, None)?;
            output::operation(&a.client(), &answer);
        }
    }
    Ok(())
}

pub fn tokens(verb: TokenVerb) -> Result<(), AdminError> {
    match verb {
        TokenVerb::Create(a) => {
            // Values go as written; the manager parses and range-checks them.
            let body = json!({"policy": a.policy, "uses": a.uses, "expires": a.expires});
            let answer = connect(&a.client())?.call(Method::POST, "/api/v1/tokens", Some(&body))?;
            output::token_created(&a.client(), &answer);
        }
        TokenVerb::List(a) => {
            let answer = connect(&a.client())?.call(Method::GET, "/api/v1/tokens", None)?;
            output::token_list(&a.client(), &answer);
        }
        TokenVerb::Delete(a) => {
            let path = format!("/api/v1/tokens/{}", percent_encode(&a.id));
            connect(&a.client())?.call(Method::DELETE, &path, None)?;
            output::deleted(&a.client(), "token", &a.id);
        }
    }
    Ok(())
}

pub fn alerts(verb: AlertsVerb) -> Result<(), AdminError> {
    match verb {
        AlertsVerb::List(a) => {
            let path = if a.all {
                "/api/v1/alerts?all=true"
            } else {
                "/api/v1/alerts"
            };
            let answer = connect(&a.client())?.call(Method::GET, path, None)?;
            output::alert_list(&a.client(), &answer);
        }
        AlertsVerb::Dismiss(a) => match a.ids.as_slice() {
            [] => return Err(AdminError::Usage("give the id of an alert".into())),
            [id] => {
                let path = format!("/api/v1/alerts/{id}/dismiss");
                let answer = connect(&a.client())?.call(Method::POST, &path, None)?;
                output::alert_list(&a.client(), &json!({"alerts": [answer]}));
            }
            ids => {
                let body = json!({ "ids": ids });
                let answer = connect(&a.client())?.call(
                    Method::POST,
                    "/api/v1/alerts/dismiss",
                    Some(&body),
                )?;
                output::bulk(&a.client(), &answer, "dismissed")?;
            }
        },
        AlertsVerb::Ack(a) => match a.ids.as_slice() {
            [] => return Err(AdminError::Usage("give the id of an alert".into())),
            [id] => {
                let path = format!("/api/v1/alerts/{id}/acknowledge");
                let body = json!({ "comment": a.comment.clone().unwrap_or_default() });
                let answer = connect(&a.client())?.call(Method::POST, &path, Some(&body))?;
                output::alert_list(&a.client(), &json!({"alerts": [answer]}));
            }
            ids => {
                let body = json!({ "ids": ids, "comment": a.comment.clone().unwrap_or_default() });
                let answer = connect(&a.client())?.call(
                    Method::POST,
                    "/api/v1/alerts/acknowledge",
                    Some(&body),
                )?;
                output::bulk(&a.client(), &answer, "acknowledged")?;
            }
        },
    }
    Ok(())
}

pub fn events(verb: EventsVerb) -> Result<(), AdminError> {
    match verb {
        EventsVerb::List(a) => {
            let mut path = format!("/api/v1/events?limit={}", a.limit);
            if let Some(id) = a.computer {
                path.push_str(&format!("&computer={id}"));
            }
            let answer = connect(&a.client())?.call(Method::GET, &path, None)?;
            output::event_list(&a.client(), &answer);
        }
    }
    Ok(())
}

fn connect(options: &ClientOptions) -> Result<ApiClient, AdminError> {
    ApiClient::new(options)
}

/// `KEY=VALUE` pairs into a PATCH body: `fields` go at the top level, the rest under
/// `settings`. Values stay strings; the manager parses and range-checks them.
fn change_body(pairs: &[String], fields: &[&str]) -> Result<Value, AdminError> {
    if pairs.is_empty() {
        return Err(AdminError::Usage(
            "nothing to set: give KEY=VALUE pairs, e.g. heartbeat.interval=5m".into(),
        ));
    }
    let mut body = Map::new();
    let mut settings = Map::new();
    for pair in pairs {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            AdminError::Usage(format!(
                "'{pair}' is not KEY=VALUE (e.g. heartbeat.interval=5m)"
            ))
        })?;
        let target = if fields.contains(&key) {
            &mut body
        } else {
            &mut settings
        };
        target.insert(key.to_string(), Value::String(value.to_string()));
    }
    if !settings.is_empty() {
        body.insert("settings".into(), Value::Object(settings));
    }
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_pairs_split_into_fields_and_settings() {
        let pairs = [
            "parent=Servers".to_string(),
            "heartbeat.interval=5m".to_string(),
        ];
        let body = change_body(&pairs, &POLICY_FIELDS).unwrap();
        assert_eq!(
            body,
            json!({"parent": "Servers", "settings": {"heartbeat.interval": "5m"}})
        );
        let err = change_body(&["interval".to_string()], &POLICY_FIELDS).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(change_body(&[], &POLICY_FIELDS).unwrap_err().exit_code(), 2);
    }
}
