//! JSON views of policies and computers, with each effective setting and where it came from,
//! a computer's firewall rules in evaluation order, and activation tokens (never their secret).

use crate::activation;
use crate::clock::WallMs;
use crate::firewall::order::Origin;
use crate::model::RuleAction;
use crate::model::{
    AgentState, Alert, ClockChangeLimit, Computer, FirewallRule, MissedLimit, Policy, PolicyId,
    SettingKey, SettingValue, Settings, StoredEvent, Token,
};
use crate::policy::evaluated::Evaluation;
use crate::policy::{EffectiveSettings, PolicyTree, Source, resolve_computer, resolve_policy};
use serde_json::{Map, Value, json};

pub fn policy(tree: &PolicyTree, policy: &Policy) -> Value {
    let parent = policy.parent.and_then(|id| tree.get(id));
    json!({
        "id": policy.id.0,
        "name": policy.name,
        "parent": parent.map(|p| p.name.as_str()),
        "parent_id": policy.parent.map(|id| id.0),
        "settings": overrides(&policy.settings),
        "effective": effective(tree, &resolve_policy(tree, policy.id)),
        "firewall_rules": policy.rules.iter().map(rule).collect::<Vec<_>>(),
    })
}

/// A computer with its effective settings and, once activated, what its agent last reported.
/// `endpoints` are the manager addresses agents are sent, part of the expected configuration.
pub fn computer(
    tree: &PolicyTree,
    computer: &Computer,
    agent: Option<&AgentState>,
    endpoints: &[String],
) -> Value {
    let config = crate::policy::expected_config(tree, computer, endpoints);
    let agent = agent.map(|a| {
        // What the agent reports once it runs the configuration, in its protocol's form.
        let expected = config.fingerprint_for(a.protocol);
        json!({
            "activated_ms": a.activated.0,
            "agent_version": a.agent_version,
            "protocol": a.protocol,
            "address": a.address,
            "listen_port": a.listen_port,
            "last_heartbeat_ms": a.last_heartbeat.map(|t| t.0),
            "clock_offset_ms": a.clock_offset_ms,
            "tls_version": a.tls_version,
            "cipher_suite": a.cipher_suite,
            "applied_fingerprint": a.applied_fingerprint.map(|f| crate::secret::hex(&f)),
            "expected_fingerprint": expected.to_string(),
            "config_up_to_date": crate::policy::runs(&config, a),
            "config_rejected": a.config_rejected,
            "firewall_withheld": config
                .firewall_withheld_from(a.protocol)
                .then(|| crate::policy::firewall_withheld_reason(a.protocol)),
            "last_event_seq": a.last_seq,
            "components": a.components.iter().map(component).collect::<Vec<_>>(),
            "counters": a.counters.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<Map<String, Value>>(),
        })
    });
    json!({
        "agent": agent,
        "id": computer.id.0,
        "hostname": computer.hostname,
        "kind": computer.kind.name(),
        "vm_power_state": (computer.kind == crate::model::ComputerKind::Vm)
            .then(|| computer.vm_power_state.name()),
        "policy": tree.get(computer.policy).map(|p| p.name.as_str()),
        "policy_id": computer.policy.0,
        "status": computer.status.name(),
        "created_ms": computer.created.0,
        "address": computer.address,
        "settings": overrides(&computer.settings),
        "effective": computer_effective(tree, computer),
        "firewall_rules": effective_rules(tree, computer.policy),
    })
}

/// A computer's effective settings; an appliance's direction also shows what it overrides.
/// A component of the agent: `state` is the contract (`on`, `off`, `error`); `on` is kept for
/// the clients written before components had a state.
fn component(c: &crate::model::Component) -> Value {
    json!({
        "name": c.name,
        "state": c.state.name(),
        "reason": c.reason,
        "on": c.state == crate::model::ComponentState::On,
    })
}

fn computer_effective(tree: &PolicyTree, computer: &Computer) -> Value {
    let resolved = resolve_computer(tree, computer);
    let mut view = effective(tree, &resolved);
    if let (Some(overridden), Some(entry)) = (
        resolved.overridden_direction,
        view.get_mut(SettingKey::Direction.name()),
    ) {
        entry["overrides"] = json!({
            "value": overridden.value.name(),
            "source": source_name(tree, overridden.source),
            "reason": "an appliance is always bidirectional",
        });
    }
    view
}

/// The rules that apply under `policy`, inherited ones first, each with the policy holding it.
pub fn effective_rules(tree: &PolicyTree, policy: PolicyId) -> Value {
    let rules: Vec<Value> = crate::policy::effective_rules(tree, policy)
        .into_iter()
        .map(|(holder, r)| {
            let mut view = rule(r);
            view["policy"] = json!(tree.get(holder).map(|p| p.name.as_str()));
            view["policy_id"] = json!(holder.0);
            view
        })
        .collect();
    Value::Array(rules)
}

/// A computer's rules in evaluation order (`policy::evaluated`): each rule with the policy it
/// comes from, the hidden agent-port rules (`origin: "hidden"`) and, last in their direction,
/// the implicit denies of allow rules (`origin: "implicit"`). `counter` is the entry's nft
/// counter, the `NAME` of the agent's `firewall:NAME:packets`.
pub fn computer_rules(
    tree: &PolicyTree,
    computer: &Computer,
    evaluation: &Evaluation,
    withheld: Option<String>,
) -> Value {
    let mut rules: Vec<Value> = evaluation
        .entries
        .iter()
        .map(|e| {
            let entry = &e.entry;
            let id = match entry.origin {
                Origin::Rule(id) => Some(id.0),
                Origin::AgentPort | Origin::AgentPortReply => None,
            };
            json!({
                "origin": if id.is_some() { "policy" } else { "hidden" },
                "counter": entry.origin.name(),
                "id": id,
                "name": entry.name,
                "action": entry.action.name(),
                "priority": entry.priority,
                "direction": entry.direction.name(),
                "frame_type": entry.frame_type.name(),
                "protocol": entry.protocol.name(),
                "source_ports": texts(&entry.source_ports),
                "destination_ports": texts(&entry.destination_ports),
                "source_ips": texts(&entry.source_ips),
                "source_macs": texts(&entry.source_macs),
                "destination_ips": texts(&entry.destination_ips),
                "log": entry.log,
                "policy": e.policy.map(|p| p.name.as_str()),
                "policy_id": e.policy.map(|p| p.id.0),
                "skipped": e.skipped,
            })
        })
        .collect();
    for direction in &evaluation.implicit_deny {
        let logs = evaluation.entries.iter().any(|e| {
            e.entry.direction == *direction && e.entry.action == RuleAction::Allow && e.entry.log
        });
        rules.push(json!({
            "origin": "implicit",
            "counter": crate::firewall::nft::implicit_name(*direction),
            "id": null,
            "name": format!("Out of Allowed Policy ({})", direction.name()),
            "action": "deny",
            "priority": null,
            "direction": direction.name(),
            "frame_type": "any",
            "protocol": "any",
            "source_ports": [], "destination_ports": [], "source_ips": [], "source_macs": [],
            "destination_ips": [],
            "log": logs,
            "policy": null,
            "policy_id": null,
            "skipped": null,
        }));
    }
    for (position, rule) in rules.iter_mut().enumerate() {
        rule["position"] = json!(position + 1);
    }
    json!({
        "computer": computer.id.0,
        "hostname": computer.hostname,
        "firewall_enabled": evaluation.enabled.value,
        "firewall_enabled_source": source_name(tree, evaluation.enabled.source),
        "firewall_withheld": withheld,
        "agent_port": evaluation.agent_port,
        "rules": rules,
    })
}

pub fn rule(r: &FirewallRule) -> Value {
    let texts = |items: Vec<String>| Value::from(items);
    json!({
        "id": r.id.0,
        "name": r.name,
        "action": r.action.name(),
        "priority": r.priority,
        "direction": r.direction.name(),
        "frame_type": r.frame_type.name(),
        "protocol": r.protocol.name(),
        "destination_ports": texts(r.destination_ports.iter().map(ToString::to_string).collect()),
        "source_ips": texts(r.source_ips.iter().map(ToString::to_string).collect()),
        "source_macs": texts(r.source_macs.iter().map(ToString::to_string).collect()),
        "destination_ips": texts(r.destination_ips.iter().map(ToString::to_string).collect()),
        "log": r.log,
        "governs_agent_port": r.listener_rule().is_some(),
    })
}

/// A token as lists show it: no secret and no full hash, only the id taken from the hash.
pub fn token(tree: &PolicyTree, token: &Token, now: WallMs) -> Value {
    json!({
        "id": activation::token_id(&token.hash),
        "policy": tree.get(token.policy).map(|p| p.name.as_str()),
        "policy_id": token.policy.0,
        "uses_left": token.uses_left,
        "expires_ms": token.expires.map(|t| t.0),
        "created_ms": token.created.0,
        "expired": activation::is_expired(token, now),
    })
}

fn overrides(settings: &Settings) -> Value {
    let map: Map<String, Value> = settings
        .overrides()
        .map(|v| (v.key().name().to_string(), value(v)))
        .collect();
    Value::Object(map)
}

fn effective(tree: &PolicyTree, effective: &EffectiveSettings) -> Value {
    let map: Map<String, Value> = SettingKey::ALL
        .into_iter()
        .map(|key| {
            let (v, source) = effective.get(key);
            let entry = json!({"value": value(v), "source": source_name(tree, source)});
            (key.name().to_string(), entry)
        })
        .collect();
    Value::Object(map)
}

/// Counts and booleans are JSON numbers and booleans; everything else is its text form.
fn value(v: SettingValue) -> Value {
    match v {
        SettingValue::MissedBeforeAlert(MissedLimit::Count(n)) => json!(n),
        SettingValue::OfflineErrorsForInactiveVms(b)
        | SettingValue::FirewallEnabled(b)
        | SettingValue::AgentAutoUpgrade(b) => json!(b),
        SettingValue::MissedBeforeAlert(MissedLimit::Unlimited)
        | SettingValue::MaxClockChange(ClockChangeLimit::Unlimited | ClockChangeLimit::Max(_))
        | SettingValue::Interval(_)
        | SettingValue::Direction(_) => json!(v.to_string()),
    }
}

fn source_name(tree: &PolicyTree, source: Source) -> String {
    match source {
        Source::Computer => "computer".to_string(),
        Source::ApplianceKind => "kind:appliance".to_string(),
        Source::Default => "default".to_string(),
        Source::Policy(id) => match tree.get(id) {
            Some(p) => format!("policy:{}", p.name),
            None => format!("policy:{id}"),
        },
    }
}

/// An agent event, with its catalogue name when the id is known.
pub fn event(e: &StoredEvent) -> Value {
    json!({
        "computer": e.computer.0,
        "seq": e.seq,
        "id": e.id,
        "name": crate::model::events::name(e.id),
        "time_ms": e.time.0,
        "received_ms": e.received.0,
        "fields": e.fields.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<String, Value>>(),
    })
}

/// An alert, with its computer's hostname when it still exists.
pub fn alert(a: &Alert, hostname: Option<&str>) -> Value {
    crate::notify::format::webhook::alert_json(a, hostname)
}

/// Each item's text form, as the API writes ports, addresses and MACs.
fn texts<T: ToString>(items: &[T]) -> Value {
    Value::from(items.iter().map(ToString::to_string).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_auto_upgrade_is_a_json_boolean_with_its_source() {
        let mut base = Policy {
            rules: Vec::new(),
            id: PolicyId(1),
            name: "Base Policy".into(),
            parent: None,
            settings: Settings::default(),
        };
        let tree = PolicyTree::new([base.clone()]);
        let view = policy(&tree, &base);
        assert_eq!(view["settings"].get("agent.auto-upgrade"), None);
        assert_eq!(
            view["effective"]["agent.auto-upgrade"],
            json!({"value": false, "source": "default"})
        );
        base.settings.set(SettingValue::AgentAutoUpgrade(true));
        let tree = PolicyTree::new([base.clone()]);
        let view = policy(&tree, &base);
        assert_eq!(view["settings"]["agent.auto-upgrade"], json!(true));
        assert_eq!(
            view["effective"]["agent.auto-upgrade"],
            json!({"value": true, "source": "policy:Base Policy"})
        );
    }
}
