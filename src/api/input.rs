//! Request bodies: JSON objects read into checked changes. Unknown fields are refused so a typo
//! such as `"setings"` is reported instead of silently ignored.

use super::error::ApiError;
use crate::activation::{self, ActivationError};
use crate::model::{
    FirewallRule, FrameType, IpMatch, MacAddr, PortRange, Protocol, RuleAction, RuleError, RuleId,
    TrafficDirection, parse_priority,
};
use crate::policy::{ComputerChange, PolicyChange, PolicyError, SettingsPatch};
use serde_json::{Map, Value};
use std::time::Duration;

/// Parses a body that must be one JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_field(
            "body",
            "the request body is empty; expected a JSON object",
        ));
    }
    match serde_json::from_slice::<Strict>(body).map(|s| s.0) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_field("body", "expected a JSON object")),
        Err(e) => Err(ApiError::bad_field("body", format!("invalid JSON: {e}"))),
    }
}

/// A JSON value in which no object names a key twice. serde_json keeps the last of duplicates,
/// so `{"action":"deny","action":"allow"}` would mean whatever the last parser in a chain
/// decides (a proxy or a log may read the first): such a body is refused instead.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key '{key}' is given twice"
                )));
            }
            let Strict(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

pub fn policy_change(mut map: Map<String, Value>) -> Result<PolicyChange, ApiError> {
    let change = PolicyChange {
        name: optional_string(&mut map, "name")?,
        parent: optional_reference(&mut map, "parent")?,
        settings: settings(&mut map)?,
    };
    refuse_leftovers(map)?;
    Ok(change)
}

pub fn computer_change(mut map: Map<String, Value>) -> Result<ComputerChange, ApiError> {
    let change = ComputerChange {
        hostname: optional_string(&mut map, "hostname")?,
        policy: optional_reference(&mut map, "policy")?,
        kind: optional_string(&mut map, "kind")?,
        vm_power_state: optional_string(&mut map, "vm_power_state")?,
        address: optional_string(&mut map, "address")?,
        settings: settings(&mut map)?,
    };
    refuse_leftovers(map)?;
    Ok(change)
}

/// `{"name", "action", "priority", "direction", "frame_type", "protocol", "destination_ports",
/// "source_ips", "source_macs", "destination_ips", "log"}`: name and action are required; the
/// rest default to priority 0, incoming, IP, any protocol, empty lists (any) and no logging.
/// The id is the store's to give.
pub fn firewall_rule(mut map: Map<String, Value>) -> Result<FirewallRule, ApiError> {
    let name = optional_string(&mut map, "name")?
        .ok_or_else(|| ApiError::bad_field("name", "a rule needs a name"))?;
    let action = optional_string(&mut map, "action")?.ok_or_else(|| {
        ApiError::bad_field(
            "action",
            "a rule needs an action: allow, deny, force-allow, bypass or log-only",
        )
    })?;
    let word = |map: &mut Map<String, Value>, field: &str, default: &str| {
        optional_string(map, field).map(|v| v.unwrap_or_else(|| default.to_string()))
    };
    let rule = FirewallRule {
        id: RuleId(0),
        name,
        action: RuleAction::parse(&action).map_err(PolicyError::from)?,
        priority: match map.remove("priority") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => parse_priority(&n.to_string()).map_err(PolicyError::from)?,
            Some(Value::String(s)) => parse_priority(&s).map_err(PolicyError::from)?,
            Some(_) => {
                return Err(ApiError::bad_field(
                    "priority",
                    "priority is a number 0..=4",
                ));
            }
        },
        direction: TrafficDirection::parse(&word(&mut map, "direction", "incoming")?)
            .map_err(PolicyError::from)?,
        frame_type: FrameType::parse(&word(&mut map, "frame_type", "ip")?)
            .map_err(PolicyError::from)?,
        protocol: Protocol::parse(&word(&mut map, "protocol", "any")?)
            .map_err(PolicyError::from)?,
        destination_ports: list(&mut map, "destination_ports", PortRange::parse)?,
        source_ips: list(&mut map, "source_ips", IpMatch::parse)?,
        source_macs: list(&mut map, "source_macs", MacAddr::parse)?,
        destination_ips: list(&mut map, "destination_ips", |text| {
            IpMatch::parse(text).map_err(|e| e.for_field("destination_ips"))
        })?,
        log: match map.remove("log") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(log)) => log,
            Some(_) => return Err(ApiError::bad_field("log", "log is true or false")),
        },
    };
    refuse_leftovers(map)?;
    Ok(rule)
}

/// A JSON array of strings (numbers too, for ports), each parsed; absent or null is empty.
fn list<T>(
    map: &mut Map<String, Value>,
    field: &'static str,
    parse: impl Fn(&str) -> Result<T, RuleError>,
) -> Result<Vec<T>, ApiError> {
    let items = match map.remove(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::bad_field(
                field,
                format!("{field} must be a list"),
            ));
        }
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => parse(s).map_err(|e| PolicyError::from(e).into()),
            Value::Number(n) => parse(&n.to_string()).map_err(|e| PolicyError::from(e).into()),
            _ => Err(ApiError::bad_field(
                field,
                format!("{field} holds strings, such as \"4118\" or \"10.0.0.0/8\""),
            )),
        })
        .collect()
}

/// A request for a new activation token, its values checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// Name or id; `None` for the Base Policy.
    pub policy: Option<String>,
    /// `None`: no use limit.
    pub uses: Option<u32>,
    /// `None`: the default expiry.
    pub ttl: Option<Duration>,
}

/// `{"policy": NAME or ID, "uses": N | "unlimited" | null, "expires": "24h"}`, all optional.
pub fn token_request(mut map: Map<String, Value>) -> Result<TokenRequest, ApiError> {
    let policy = optional_reference(&mut map, "policy")?;
    let uses = match map.remove("uses") {
        None | Some(Value::Null) => Some(activation::DEFAULT_USES),
        Some(Value::String(s)) => activation::parse_uses(&s)?,
        Some(Value::Number(n)) => activation::parse_uses(&n.to_string())?,
        Some(other) => {
            let given = other.to_string();
            return Err(ActivationError::Uses { given }.into());
        }
    };
    let ttl = match map.remove("expires") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(activation::parse_ttl(&s)?),
        Some(other) => {
            let given = other.to_string();
            return Err(ActivationError::Expires { given }.into());
        }
    };
    refuse_leftovers(map)?;
    Ok(TokenRequest { policy, uses, ttl })
}

/// `{"username", "password"}`, both required.
pub fn credentials(mut map: Map<String, Value>) -> Result<(String, String), ApiError> {
    let user = required_string(&mut map, "username")?;
    let password = required_string(&mut map, "password")?;
    refuse_leftovers(map)?;
    Ok((user, password))
}

/// `{"current_password", "new_password"}`, both required.
pub fn password_change(mut map: Map<String, Value>) -> Result<(String, String), ApiError> {
    let current = required_string(&mut map, "current_password")?;
    let new = required_string(&mut map, "new_password")?;
    refuse_leftovers(map)?;
    Ok((current, new))
}

pub(super) fn required_string(
    map: &mut Map<String, Value>,
    field: &str,
) -> Result<String, ApiError> {
    optional_string(map, field)?
        .ok_or_else(|| ApiError::bad_field(field, format!("{field} is required")))
}

pub(super) fn optional_string(
    map: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_field(
            field,
            format!("{field} must be a string"),
        )),
    }
}

/// A policy named by its name (string) or id (number).
pub(super) fn optional_reference(
    map: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::bad_field(
            field,
            format!("{field} must be a policy name or id"),
        )),
    }
}

/// `"settings": {KEY: value}`; a value is a string, a number, a bool, or `"inherited"`/null.
fn settings(map: &mut Map<String, Value>) -> Result<SettingsPatch, ApiError> {
    let entries = match map.remove("settings") {
        None | Some(Value::Null) => return Ok(SettingsPatch::default()),
        Some(Value::Object(entries)) => entries,
        Some(_) => {
            return Err(ApiError::bad_field(
                "settings",
                "settings must be an object of KEY: value",
            ));
        }
    };
    let mut patch = SettingsPatch::default();
    for (key, value) in entries {
        let text = match value {
            Value::Null => "inherited".to_string(),
            Value::String(s) => s,
            // Numbers and booleans keep their JSON spelling, which the setting parser reads.
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            Value::Array(_) | Value::Object(_) => {
                return Err(ApiError::bad_field(
                    format!("settings.{key}"),
                    "a setting is a string, a number or a boolean",
                ));
            }
        };
        patch.0.push(SettingsPatch::entry(&key, &text)?);
    }
    Ok(patch)
}

pub(super) fn refuse_leftovers(map: Map<String, Value>) -> Result<(), ApiError> {
    match map.into_iter().next() {
        None => Ok(()),
        Some((field, _)) => Err(ApiError::bad_field(
            field.clone(),
            format!("unknown field '{field}'"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth_and_distinct_keys_are_kept() {
        for body in [
            r#"{"name":"a","name":"b"}"#,
            r#"{"settings":{"heartbeat.interval":"1m","heartbeat.interval":"2m"}}"#,
            r#"{"rules":[{"action":"deny","action":"allow"}]}"#,
        ] {
            let err = object(body.as_bytes()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("body"), "{body}");
            assert!(
                err.message.contains("given twice"),
                "{body}: {}",
                err.message
            );
        }
        let map = object(br#"{"a":1,"b":[1,2.5,"x",null,true],"c":{"a":-1}}"#).unwrap();
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"a":1,"b":[1,2.5,"x",null,true],"c":{"a":-1}})
        );
    }

    #[test]
    fn reads_a_policy_change() {
        let map = object(
            br#"{"name":"Laptops","parent":2,"settings":{"heartbeat.missed-before-alert":"unlimited","heartbeat.interval":null}}"#,
        )
        .unwrap();
        let change = policy_change(map).unwrap();
        assert_eq!(change.name.as_deref(), Some("Laptops"));
        assert_eq!(change.parent.as_deref(), Some("2"));
        assert_eq!(change.settings.0.len(), 2);
    }

    #[test]
    fn reads_a_firewall_rule_with_defaults() {
        let body = br#"{"name":"agent port","action":"bypass","priority":4,"protocol":"tcp",
            "destination_ports":[4118,"5000-5010"],"source_ips":["127.0.0.2"],"source_macs":[]}"#;
        let rule = firewall_rule(object(body).unwrap()).unwrap();
        assert_eq!(rule.priority, 4);
        assert_eq!(rule.direction, TrafficDirection::Incoming);
        assert_eq!(rule.frame_type, FrameType::Ip);
        assert_eq!(rule.destination_ports.len(), 2);
        assert!(rule.listener_rule().is_some());
        assert!(!rule.log && rule.destination_ips.is_empty());
        let logged =
            br#"{"name":"ssh","action":"allow","log":true,"destination_ips":["10.0.0.0/8"]}"#;
        let rule = firewall_rule(object(logged).unwrap()).unwrap();
        assert!(rule.log);
        assert_eq!(rule.destination_ips[0].to_string(), "10.0.0.0/8");
    }

    #[test]
    fn reads_a_token_request() {
        let map = object(br#"{"policy":"Servers","uses":2,"expires":"1h"}"#).unwrap();
        let request = token_request(map).unwrap();
        assert_eq!(
            request,
            TokenRequest {
                policy: Some("Servers".into()),
                uses: Some(2),
                ttl: Some(Duration::from_secs(3_600)),
            }
        );
        let map = object(br#"{"policy":3,"uses":"unlimited","expires":null}"#).unwrap();
        let request = token_request(map).unwrap();
        assert_eq!(request.policy.as_deref(), Some("3"));
        assert_eq!((request.uses, request.ttl), (None, None));
        assert_eq!(
            token_request(object(b"{}").unwrap()).unwrap(),
            TokenRequest {
                uses: Some(activation::DEFAULT_USES),
                ..TokenRequest::default()
            }
        );
    }

    #[test]
    fn refuses_bad_bodies_naming_the_field() {
        assert_eq!(object(b"").unwrap_err().field.as_deref(), Some("body"));
        assert_eq!(object(b"{").unwrap_err().field.as_deref(), Some("body"));
        assert_eq!(object(b"[1]").unwrap_err().field.as_deref(), Some("body"));
        let typo = object(br#"{"name":"x","setings":{}}"#).unwrap();
        assert_eq!(
            policy_change(typo).unwrap_err().field.as_deref(),
            Some("setings")
        );
        let missed = object(br#"{"settings":{"heartbeat.missed-before-alert":-1}}"#).unwrap();
        assert_eq!(
            policy_change(missed).unwrap_err().field.as_deref(),
            Some("settings.heartbeat.missed-before-alert")
        );
        for (body, field) in [
            (&br#"{"uses":0}"#[..], "uses"),
            (br#"{"uses":-1}"#, "uses"),
            (br#"{"uses":100001}"#, "uses"),
            (br#"{"uses":2.5}"#, "uses"),
            (br#"{"uses":true}"#, "uses"),
            (br#"{"expires":"0s"}"#, "expires"),
            (br#"{"expires":"abc"}"#, "expires"),
            (br#"{"expires":"400d"}"#, "expires"),
            (br#"{"expires":3600}"#, "expires"),
            (br#"{"policy":-2}"#, "policy"),
            (br#"{"secret":"x"}"#, "secret"),
        ] {
            let map = object(body).unwrap();
            let err = token_request(map).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{err}");
        }
        for (body, field) in [
            (&br#"{"action":"bypass"}"#[..], "name"),
            (br#"{"name":"r"}"#, "action"),
            (br#"{"name":"r","action":"permit"}"#, "action"),
            (
                br#"{"name":"r","action":"bypass","priority":5}"#,
                "priority",
            ),
            (
                br#"{"name":"r","action":"bypass","destination_ports":[0]}"#,
                "destination_ports",
            ),
            (
                br#"{"name":"r","action":"bypass","destination_ports":["70000"]}"#,
                "destination_ports",
            ),
            (
                br#"{"name":"r","action":"bypass","destination_ports":"4118"}"#,
                "destination_ports",
            ),
            (
                br#"{"name":"r","action":"bypass","source_ips":["10.0.0.0/33"]}"#,
                "source_ips",
            ),
            (
                br#"{"name":"r","action":"bypass","source_macs":["00:11:22"]}"#,
                "source_macs",
            ),
            (
                br#"{"name":"r","action":"bypass","protocol":"sctp"}"#,
                "protocol",
            ),
            (
                br#"{"name":"r","action":"bypass","colour":"red"}"#,
                "colour",
            ),
            (br#"{"name":"r","action":"deny","log":"yes"}"#, "log"),
            (
                br#"{"name":"r","action":"deny","destination_ips":["10.0.0.0/33"]}"#,
                "destination_ips",
            ),
        ] {
            let err = firewall_rule(object(body).unwrap()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{err}");
        }
        let kind = object(br#"{"kind":3}"#).unwrap();
        assert_eq!(
            computer_change(kind).unwrap_err().field.as_deref(),
            Some("kind")
        );
    }
}
