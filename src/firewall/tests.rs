//! The translation's properties over arbitrary rulesets, and its acceptance by a real `nft`
//! (check mode, in a network namespace of its own) where the machine has one.

use super::nft::{self, implicit_name, translate};
use super::order::{self, Origin, precedence};
use crate::model::{
    FirewallRule, FrameType, IpMatch, MacAddr, PortRange, Protocol, RuleAction, RuleId,
    TrafficDirection,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A rule matching anything in its direction (IP, any protocol).
pub(crate) fn rule(id: u64, action: &str, priority: u8, direction: &str) -> FirewallRule {
    FirewallRule {
        id: RuleId(id),
        name: format!("rule {id}"),
        action: RuleAction::parse(action).unwrap(),
        priority,
        direction: TrafficDirection::parse(direction).unwrap(),
        frame_type: FrameType::Ip,
        protocol: Protocol::Any,
        destination_ports: vec![],
        source_ips: vec![],
        source_macs: vec![],
        destination_ips: vec![],
        log: false,
    }
}

/// The rules of one chain: (the counter it names, its verdict), in order.
fn chain(ruleset: &Value, name: &str) -> Vec<(Option<String>, Option<String>)> {
    commands(ruleset)
        .filter_map(|c| c["add"]["rule"].as_object().cloned())
        .filter(|r| r["chain"] == name)
        .map(|r| {
            let expr = r["expr"].as_array().cloned().unwrap_or_default();
            let counter = expr
                .iter()
                .find_map(|e| e["counter"].as_str().map(str::to_string));
            let verdict = expr.iter().find_map(|e| {
                ["accept", "drop", "return"]
                    .into_iter()
                    .find(|v| e.get(*v).is_some())
                    .map(str::to_string)
            });
            (counter, verdict)
        })
        .collect()
}

fn commands(ruleset: &Value) -> impl Iterator<Item = &Value> {
    ruleset["nftables"].as_array().into_iter().flatten()
}

fn counters(ruleset: &Value) -> Vec<String> {
    commands(ruleset)
        .filter_map(|c| c["add"]["counter"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn addresses_and_ports_are_merged_and_split_by_family() {
    let mut r = rule(7, "allow", 2, "incoming");
    r.protocol = Protocol::Tcp;
    r.destination_ports = ["4000-4200", "4118", "22", "23"]
        .iter()
        .map(|p| PortRange::parse(p).unwrap())
        .collect();
    r.source_ips = [
        "10.0.0.0/9",
        "10.128.0.0/9",
        "2001:db8::/32",
        "192.0.2.1-192.0.2.9",
    ]
    .iter()
    .map(|p| IpMatch::parse(p).unwrap())
    .collect();
    let ruleset = translate(&[r], None).json;
    let rules: Vec<&Value> = commands(&ruleset)
        .filter(|c| c["add"]["rule"]["comment"] == "rule 7")
        .collect();
    assert_eq!(rules.len(), 2, "one rule per address family");
    let text = ruleset.to_string();
    assert!(
        text.contains(r#"{"prefix":{"addr":"10.0.0.0","len":8}}"#),
        "{text}"
    );
    assert!(text.contains(r#"{"range":[22,23]}"#) && text.contains(r#"{"range":[4000,4200]}"#));
    assert!(
        text.contains(r#"{"prefix":{"addr":"2001:db8::","len":32}}"#),
        "{text}"
    );
}

#[test]
fn what_the_inet_table_cannot_express_is_skipped_and_said() {
    let mut arp = rule(1, "deny", 0, "incoming");
    arp.frame_type = FrameType::Arp;
    let mut mac_out = rule(2, "deny", 0, "outgoing");
    mac_out.source_macs = vec![MacAddr([2, 0, 0, 0, 0, 1])];
    let mut mixed = rule(3, "deny", 0, "incoming");
    mixed.source_ips = vec![IpMatch::parse("10.0.0.1").unwrap()];
    mixed.destination_ips = vec![IpMatch::parse("::1").unwrap()];
    let out = translate(&[arp, mac_out, mixed], None);
    let skipped: Vec<Origin> = out.skipped.iter().map(|s| s.origin).collect();
    assert_eq!(skipped, [1, 2, 3].map(|i| Origin::Rule(RuleId(i))));
    assert!(counters(&out.json).is_empty());
}

#[test]
fn logged_rules_and_log_only_rules_log_with_their_name() {
    let mut deny = rule(4, "deny", 1, "incoming");
    deny.log = true;
    let watch = rule(5, "log-only", 1, "incoming");
    let quiet = rule(6, "deny", 0, "incoming");
    let text = translate(&[deny, watch, quiet], None).json.to_string();
    assert!(text.contains(r#"{"log":{"group":4118,"prefix":"picket rule-4 "}}"#));
    assert!(text.contains(r#"{"log":{"group":4118,"prefix":"picket rule-5 "}}"#));
    assert!(!text.contains("picket rule-6 "));
}

#[test]
fn a_bypass_rule_untracks_only_what_no_higher_rule_decides() {
    let deny = rule(1, "deny", 4, "incoming");
    let bypass = rule(2, "bypass", 3, "incoming");
    let allow = rule(3, "allow", 0, "incoming");
    let ruleset = translate(&[deny, bypass, allow], None).json;
    let verdicts: Vec<Option<String>> = chain(&ruleset, "bypass-input")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let v = |s: &str| Some(s.to_string());
    // loopback, not for this host, rule 1 returns, rule 2 untracks; rule 3 is after the last
    // bypass and not mirrored.
    assert_eq!(
        verdicts,
        [v("accept"), v("accept"), v("return"), v("accept")]
    );
    assert!(
        chain(&ruleset, "bypass-output").is_empty(),
        "no outgoing bypass"
    );
}

#[test]
fn removal_deletes_the_table_whether_or_not_it_exists() {
    let text = nft::removal().to_string();
    assert_eq!(
        text,
        r#"{"nftables":[{"add":{"table":{"family":"inet","name":"picket"}}},{"delete":{"table":{"family":"inet","name":"picket"}}}]}"#
    );
}

fn any_ip() -> impl Strategy<Value = IpMatch> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| IpMatch::Net {
            addr: std::net::Ipv4Addr::from(a).into(),
            prefix: p
        }),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| IpMatch::Net {
            addr: std::net::Ipv6Addr::from(a).into(),
            prefix: p
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| IpMatch::Range {
            first: std::net::Ipv4Addr::from(a.min(b)).into(),
            last: std::net::Ipv4Addr::from(a.max(b)).into(),
        }),
    ]
}

fn any_port() -> impl Strategy<Value = PortRange> {
    (1u16..=65535, 0u16..200).prop_map(|(first, len)| {
        PortRange::parse(&format!("{first}-{}", first.saturating_add(len))).unwrap()
    })
}

fn any_rule() -> impl Strategy<Value = FirewallRule> {
    (
        prop::sample::select(RuleAction::ALL.to_vec()),
        0u8..=4,
        prop::sample::select(TrafficDirection::ALL.to_vec()),
        prop::sample::select(FrameType::ALL.to_vec()),
        prop::sample::select(Protocol::ALL.to_vec()),
        prop::collection::vec(any_port(), 0..3),
        prop::collection::vec(any_ip(), 0..3),
        prop::collection::vec(any_ip(), 0..2),
        prop::collection::vec(any::<[u8; 6]>().prop_map(MacAddr), 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(action, priority, direction, frame, protocol, ports, src, dst, macs, log)| {
                FirewallRule {
                    id: RuleId(0),
                    name: "r".into(),
                    action,
                    priority,
                    direction,
                    frame_type: frame,
                    protocol,
                    destination_ports: ports,
                    source_ips: src,
                    source_macs: macs,
                    destination_ips: dst,
                    log,
                }
            },
        )
}

fn any_ruleset() -> impl Strategy<Value = (Vec<FirewallRule>, Option<u16>)> {
    (
        prop::collection::vec(any_rule(), 0..12),
        prop_oneof![Just(None), Just(Some(4118)), (1u16..=65535).prop_map(Some)],
    )
        .prop_map(|(mut rules, port)| {
            for (i, r) in rules.iter_mut().enumerate() {
                r.id = RuleId(i as u64 + 1);
                r.name = format!("rule {}", i + 1);
            }
            (rules, port)
        })
}

proptest! {
    #[test]
    fn the_ruleset_is_one_table_rebuilt_in_one_transaction((rules, port) in any_ruleset()) {
        let out = translate(&rules, port);
        let text = out.json.to_string();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let kinds: Vec<String> = commands(&parsed)
            .take(4)
            .map(|c| c.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default())
            .collect();
        prop_assert_eq!(kinds, ["metainfo", "add", "delete", "add"]);
        prop_assert!(parsed["nftables"][2]["delete"]["table"].is_object());
        for c in commands(&parsed).skip(1) {
            let object = c.as_object().and_then(|o| o.values().next()).and_then(|v| v.as_object());
            let inner = object.and_then(|o| o.values().next()).unwrap();
            let (family, table) = match inner.get("table") {
                Some(Value::String(t)) => (inner["family"].clone(), t.clone()),
                _ => (inner["family"].clone(), inner["name"].as_str().unwrap_or_default().into()),
            };
            prop_assert_eq!(family, "inet");
            prop_assert_eq!(table, "picket");
        }
        prop_assert_eq!(serde_json::from_str::<Value>(&nft::render(&out.json)).unwrap(), parsed);
    }

    #[test]
    fn every_rule_has_one_counter_and_its_rules_follow_the_references_order(
        (rules, port) in any_ruleset()
    ) {
        let out = translate(&rules, port);
        let declared = counters(&out.json);
        let unique: BTreeSet<&String> = declared.iter().collect();
        prop_assert_eq!(unique.len(), declared.len(), "a counter is declared once");
        let skipped: BTreeSet<Origin> = out.skipped.iter().map(|s| s.origin).collect();
        for r in &rules {
            let name = Origin::Rule(r.id).name();
            prop_assert_eq!(declared.contains(&name), !skipped.contains(&Origin::Rule(r.id)));
        }
        let by_name: BTreeMap<String, &FirewallRule> =
            rules.iter().map(|r| (Origin::Rule(r.id).name(), r)).collect();
        for (chain_name, direction) in
            [("input", TrafficDirection::Incoming), ("output", TrafficDirection::Outgoing)]
        {
            let mut last: Option<(u8, u8)> = None;
            for (counter, _) in chain(&out.json, chain_name) {
                let Some(counter) = counter else { continue };
                prop_assert!(declared.contains(&counter), "{} is declared", counter);
                let Some(r) = by_name.get(&counter) else { continue };
                prop_assert_eq!(r.direction, direction);
                let key = (4 - r.priority, precedence(r.action));
                prop_assert!(last.is_none_or(|l| l <= key), "{:?} after {:?}", key, last);
                last = Some(key);
            }
        }
    }

    #[test]
    fn the_hidden_agent_port_rule_is_there_unless_a_rule_replaces_it(
        (rules, port) in any_ruleset()
    ) {
        let declared = counters(&translate(&rules, port).json);
        let replaced = port.is_some_and(|p| {
            rules.iter().filter_map(FirewallRule::listener_rule).any(|l| l.covers_port(p))
        });
        prop_assert_eq!(declared.contains(&"agent-port".to_string()), port.is_some() && !replaced);
        prop_assert_eq!(declared.contains(&"agent-port-reply".to_string()), port.is_some());
        let first = chain(&translate(&rules, port).json, "input")
            .into_iter()
            .filter_map(|(c, _)| c)
            .next();
        if port.is_some() && !replaced {
            prop_assert_eq!(first.as_deref(), Some("agent-port"), "the hidden rule comes first");
        }
    }

    #[test]
    fn loopback_and_established_traffic_are_never_dropped_by_the_translation(
        (rules, port) in any_ruleset()
    ) {
        let out = translate(&rules, port);
        let deny: BTreeSet<String> = rules
            .iter()
            .filter(|r| r.action == RuleAction::Deny)
            .map(|r| Origin::Rule(r.id).name())
            .collect();
        let entries = order::entries(&rules, port);
        for (chain_name, direction) in
            [("input", TrafficDirection::Incoming), ("output", TrafficDirection::Outgoing)]
        {
            let lines = chain(&out.json, chain_name);
            prop_assert_eq!(&lines[0], &(None, Some("accept".to_string())), "loopback first");
            let implicit = implicit_name(direction);
            for (i, (counter, verdict)) in lines.iter().enumerate() {
                if verdict.as_deref() != Some("drop") {
                    continue;
                }
                let counter = counter.clone().unwrap_or_default();
                if counter == implicit {
                    // The implicit deny is last, after every user rule and the established accept.
                    prop_assert_eq!(i, lines.len() - 1);
                    prop_assert_eq!(&lines[i - 1], &(None, Some("accept".to_string())));
                    prop_assert!(order::implicit_deny(&entries, direction));
                } else {
                    prop_assert!(deny.contains(&counter), "only deny rules drop: {}", counter);
                }
            }
        }
    }
}

/// `nft --check` of the JSON in a network namespace of its own, so nothing touches the host's
/// packet filter. `None` when this machine cannot (no `nft`, no `unshare`, not root).
pub(crate) fn nft_check(json: &str) -> Option<Result<(), String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    if !root {
        return None;
    }
    let mut child = Command::new("unshare")
        .args(["--net", nft, "--check", "-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(json.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

#[test]
fn a_real_nft_accepts_arbitrary_translations() {
    // The check itself must be able to fail, or a pass would mean nothing.
    let bogus = r#"{"nftables": [{"add": {"chain": {"family": "inet", "table": "nowhere"}}}]}"#;
    if let Some(result) = nft_check(bogus) {
        assert!(result.is_err(), "nft accepted a chain in no table");
    }
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = any_ruleset();
    for _ in 0..40 {
        let (rules, port) = strategy.new_tree(&mut runner).unwrap().current();
        let text = nft::render(&translate(&rules, port).json);
        match nft_check(&text) {
            None => {
                eprintln!("skipped: checking with nft needs root, unshare and nft (nftables)");
                return;
            }
            Some(result) => assert_eq!(result, Ok(()), "{text}"),
        }
    }
}
