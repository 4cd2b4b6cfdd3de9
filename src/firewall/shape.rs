//! Whether the table `inet picket` on the host is still the one the agent applied: both the
//! ruleset the agent sent (`nft::translate`) and what `nft -j list table inet picket` prints
//! are reduced to a [`Shape`], and the two shapes compared.
//!
//! A shape keeps what nft prints back exactly as it was given: the counters' names, each
//! chain's name, type, hook, priority and policy, and, chain by chain and in order, each rule's
//! comment and its statements other than matches (named counters, `log` prefixes, verdicts).
//! Matches are left out on purpose: nft rewrites them when it lists them (`meta l4proto tcp` and
//! `th dport 22` come back as `tcp dport 22`, sets are merged, prefixes reordered), so comparing
//! them would report a drift after every apply. Handles are left out too: they change with each
//! transaction. A flushed chain, a deleted or added rule, a changed verdict, a missing counter
//! or chain, or a deleted table all change the shape.

use serde_json::Value;
use std::collections::BTreeSet;

/// The comparable form of one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    counters: BTreeSet<String>,
    /// `name type hook prio policy`, sorted.
    chains: BTreeSet<String>,
    /// `chain`, `comment`, then the statements, one string per rule, in listing order.
    rules: Vec<String>,
}

impl Shape {
    /// The shape of a ruleset: either the transaction the agent applies (`{"add": {...}}`
    /// commands) or nft's listing of the table (the objects themselves). Objects of other tables
    /// are ignored.
    pub fn of(ruleset: &Value) -> Shape {
        let mut shape = Shape::default();
        let Some(commands) = ruleset.get("nftables").and_then(Value::as_array) else {
            return shape;
        };
        for command in commands {
            if command.get("delete").is_some() {
                // The transaction rebuilds the table: what came before the delete is gone.
                shape = Shape::default();
                continue;
            }
            shape.add(command.get("add").unwrap_or(command));
        }
        shape
    }

    fn add(&mut self, object: &Value) {
        if let Some(counter) = object.get("counter").filter(|c| ours(c)) {
            self.counters.insert(text(counter, "name"));
        } else if let Some(chain) = object.get("chain").filter(|c| ours(c)) {
            self.chains.insert(format!(
                "{} {} {} {} {}",
                text(chain, "name"),
                text(chain, "type"),
                text(chain, "hook"),
                chain.get("prio").map(Value::to_string).unwrap_or_default(),
                text(chain, "policy"),
            ));
        } else if let Some(rule) = object.get("rule").filter(|r| ours(r)) {
            let statements: Vec<String> = rule
                .get("expr")
                .and_then(Value::as_array)
                .map(|exprs| {
                    exprs
                        .iter()
                        .filter(|e| e.get("match").is_none())
                        .map(Value::to_string)
                        .collect()
                })
                .unwrap_or_default();
            self.rules.push(format!(
                "{} | {} | {}",
                text(rule, "chain"),
                text(rule, "comment"),
                statements.join(" ")
            ));
        }
    }

    /// Whether the table exists at all in this shape (a listing of a missing table is empty).
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.chains.is_empty() && self.rules.is_empty()
    }
}

/// What differs between the applied shape and the one found, in words; `None` when they agree.
pub fn drift(applied: &Shape, found: &Shape) -> Option<String> {
    if applied == found {
        return None;
    }
    if found.is_empty() {
        return Some("the table inet picket is gone".into());
    }
    let mut parts = Vec::new();
    let missing = applied.counters.difference(&found.counters).count();
    if missing > 0 {
        parts.push(format!("{missing} counter(s) missing"));
    }
    let chains = applied.chains.symmetric_difference(&found.chains).count();
    if chains > 0 {
        parts.push(format!("{chains} chain(s) differ"));
    }
    if applied.rules != found.rules {
        parts.push(format!(
            "{} rule(s) found where {} were applied",
            found.rules.len(),
            applied.rules.len()
        ));
    }
    if parts.is_empty() {
        parts.push("extra counters".into());
    }
    Some(format!(
        "the table inet picket was changed: {}",
        parts.join(", ")
    ))
}

/// Most named counters a heartbeat carries: two numbers each, well under a frame's 1 MiB.
pub const MAX_COUNTERS: usize = 4096;

/// The named counters of the table in nft's listing: `(name, packets, bytes)`, in listing
/// order, at most [`MAX_COUNTERS`]. A counter without numbers reads as zero.
pub fn counters(listing: &Value) -> Vec<(String, u64, u64)> {
    let Some(objects) = listing.get("nftables").and_then(Value::as_array) else {
        return Vec::new();
    };
    objects
        .iter()
        .filter_map(|o| o.get("counter").filter(|c| ours(c)))
        .map(|c| {
            let number = |key: &str| c.get(key).and_then(Value::as_u64).unwrap_or(0);
            (text(c, "name"), number("packets"), number("bytes"))
        })
        .take(MAX_COUNTERS)
        .collect()
}

fn ours(object: &Value) -> bool {
    object.get("family").and_then(Value::as_str) == Some(super::nft::FAMILY)
        && object.get("table").and_then(Value::as_str) == Some(super::nft::TABLE)
}

fn text(object: &Value, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::nft::translate;
    use serde_json::json;

    fn listing_of(ruleset: &Value) -> Value {
        // What nft prints: the objects without "add", with handles, the table and metainfo.
        let mut out = vec![json!({"metainfo": {"version": "1.0.6", "json_schema_version": 1}})];
        for (handle, c) in ruleset["nftables"].as_array().unwrap().iter().enumerate() {
            if let Some(object) = c.get("add") {
                let mut object = object.clone();
                for inner in object.as_object_mut().unwrap().values_mut() {
                    inner["handle"] = json!(handle);
                }
                out.push(object);
            }
        }
        json!({ "nftables": out })
    }

    fn sample() -> Value {
        use crate::firewall::tests::rule;
        let rules = vec![
            rule(1, "allow", 2, "incoming"),
            rule(2, "deny", 3, "outgoing"),
        ];
        translate(&rules, Some(4118)).json
    }

    #[test]
    fn a_listing_of_what_was_applied_has_its_shape() {
        let applied = sample();
        let shape = Shape::of(&applied);
        assert!(!shape.is_empty());
        assert_eq!(drift(&shape, &Shape::of(&listing_of(&applied))), None);
    }

    #[test]
    fn counters_are_read_from_the_listing() {
        let listing = json!({"nftables": [
            {"metainfo": {"json_schema_version": 1}},
            {"counter": {"family": "inet", "table": "picket", "name": "rule-1", "packets": 3, "bytes": 180}},
            {"counter": {"family": "inet", "table": "other", "name": "theirs", "packets": 1, "bytes": 1}},
            {"counter": {"family": "inet", "table": "picket", "name": "agent-port"}},
        ]});
        assert_eq!(
            counters(&listing),
            vec![
                ("rule-1".to_string(), 3, 180),
                ("agent-port".to_string(), 0, 0)
            ]
        );
    }

    #[test]
    fn a_flushed_chain_or_a_missing_table_is_a_drift() {
        let applied = sample();
        let mut listing = listing_of(&applied);
        let objects = listing["nftables"].as_array_mut().unwrap();
        objects.retain(|o| o.get("rule").is_none_or(|r| r["chain"] != "input"));
        let found = drift(&Shape::of(&applied), &Shape::of(&listing)).unwrap();
        assert!(found.contains("rule(s) found"), "{found}");
        let gone = drift(&Shape::of(&applied), &Shape::of(&json!({"nftables": []})));
        assert_eq!(gone.as_deref(), Some("the table inet picket is gone"));
    }

    #[test]
    fn a_changed_verdict_is_a_drift_but_a_rewritten_match_is_not() {
        let applied = sample();
        let mut listing = listing_of(&applied);
        let position = listing["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .position(|o| o.get("rule").is_some_and(|r| r.get("comment").is_some()))
            .unwrap();
        let exprs = listing["nftables"][position]["rule"]["expr"]
            .as_array_mut()
            .unwrap();
        exprs.retain(|e| e.get("match").is_none());
        assert_eq!(drift(&Shape::of(&applied), &Shape::of(&listing)), None);
        let exprs = listing["nftables"][position]["rule"]["expr"]
            .as_array_mut()
            .unwrap();
        *exprs.last_mut().unwrap() = json!({"drop": null});
        assert!(drift(&Shape::of(&applied), &Shape::of(&listing)).is_some());
    }

    /// Applies `ruleset` in a network namespace of its own and lists it back; `None` without
    /// root, `unshare` or `nft`.
    fn applied_and_listed(ruleset: &Value) -> Option<Value> {
        let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        });
        if !root {
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let file = dir.path().join("ruleset.json");
        std::fs::write(&file, crate::firewall::nft::render(ruleset)).ok()?;
        let script = format!(
            "nft -j -f {} && nft -j list table inet picket",
            file.display()
        );
        let out = std::process::Command::new("unshare")
            .args(["--net", "sh", "-c", &script])
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    #[test]
    fn what_a_real_nft_lists_back_has_the_applied_shape() {
        use crate::firewall::tests::rule;
        let mut logged = rule(3, "allow", 1, "incoming");
        logged.log = true;
        logged.protocol = crate::model::Protocol::Tcp;
        logged.destination_ports = vec![crate::model::PortRange::parse("22").unwrap()];
        let rules = vec![
            rule(1, "bypass", 4, "incoming"),
            rule(2, "deny", 3, "outgoing"),
            logged,
            rule(4, "log-only", 2, "outgoing"),
        ];
        let applied = translate(&rules, Some(4118)).json;
        let Some(listed) = applied_and_listed(&applied) else {
            eprintln!("skipped: listing a real table needs root, unshare and nft (nftables)");
            return;
        };
        assert_eq!(drift(&Shape::of(&applied), &Shape::of(&listed)), None);
    }
}
