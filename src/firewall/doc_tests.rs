//! `schema/firewall.md`'s worked examples are the translator's output: each ```` ```json rules ````
//! block (the agent's port and rules as the API takes them) is followed by a ```` ```json nft ````
//! block that must equal the translation. `PICKET_BLESS=1` rewrites the nft blocks after a
//! deliberate change; review the diff.

use super::nft::{render, translate};
use crate::model::{
    FirewallRule, FrameType, IpMatch, MacAddr, PortRange, Protocol, RuleAction, RuleId,
    TrafficDirection, parse_priority,
};
use serde_json::Value;

const DOC: &str = "schema/firewall.md";

/// A rule as `POST .../firewall-rules` takes it; ids count from 1 in the block's order.
fn rule(id: u64, body: &Value) -> FirewallRule {
    let text = |key: &str, default: &str| body[key].as_str().unwrap_or(default).to_string();
    let list = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect()
    };
    FirewallRule {
        id: RuleId(id),
        name: text("name", ""),
        action: RuleAction::parse(&text("action", "")).unwrap(),
        priority: parse_priority(&body["priority"].as_u64().unwrap_or(0).to_string()).unwrap(),
        direction: TrafficDirection::parse(&text("direction", "incoming")).unwrap(),
        frame_type: FrameType::parse(&text("frame_type", "ip")).unwrap(),
        protocol: Protocol::parse(&text("protocol", "any")).unwrap(),
        destination_ports: list("destination_ports")
            .iter()
            .map(|p| PortRange::parse(p).unwrap())
            .collect(),
        source_ips: list("source_ips")
            .iter()
            .map(|p| IpMatch::parse(p).unwrap())
            .collect(),
        source_macs: list("source_macs")
            .iter()
            .map(|p| MacAddr::parse(p).unwrap())
            .collect(),
        destination_ips: list("destination_ips")
            .iter()
            .map(|p| IpMatch::parse(p).unwrap())
            .collect(),
        log: body["log"].as_bool().unwrap_or(false),
    }
}

/// Each example: the text of its rules block, and the line range of its nft block's body.
fn examples(doc: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let lines: Vec<&str> = doc.lines().collect();
    let block = |start: usize| {
        let end = (start + 1..lines.len())
            .find(|i| lines[*i] == "```")
            .unwrap_or_else(|| panic!("{DOC}: the block at line {} never ends", start + 1));
        start + 1..end
    };
    let mut out = Vec::new();
    let mut pending = None;
    for (i, line) in lines.iter().enumerate() {
        if *line == "```json rules" {
            pending = Some(lines[block(i)].join("\n"));
        } else if *line == "```json nft" {
            let rules = pending
                .take()
                .unwrap_or_else(|| panic!("{DOC}: line {}: an nft block with no rules", i + 1));
            out.push((rules, block(i)));
        }
    }
    out
}

#[test]
fn the_worked_examples_are_what_the_translator_writes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    let doc = std::fs::read_to_string(&path).unwrap();
    let bless = std::env::var_os("PICKET_BLESS").is_some();
    let mut lines: Vec<String> = doc.lines().map(str::to_string).collect();
    let found = examples(&doc);
    assert!(found.len() >= 4, "{DOC} has {} examples", found.len());
    // Rewritten from the last, so earlier line numbers still hold.
    for (text, range) in found.into_iter().rev() {
        let input: Value = serde_json::from_str(&text).unwrap();
        let port = input["agent_port"]
            .as_u64()
            .map(|p| u16::try_from(p).unwrap());
        let rules: Vec<FirewallRule> = input["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, body)| rule(i as u64 + 1, body))
            .collect();
        let out = translate(&rules, port);
        let rendered = render(&out.json);
        if let Some(result) = super::tests::nft_check(&rendered) {
            assert_eq!(result, Ok(()), "nft refuses an example of {DOC}");
        }
        if bless {
            lines.splice(range, rendered.lines().map(str::to_string));
            continue;
        }
        let written: Value = serde_json::from_str(&lines[range].join("\n"))
            .unwrap_or_else(|e| panic!("{DOC}: an nft block is not JSON: {e}"));
        assert_eq!(
            written,
            out.json,
            "{DOC} differs from the translation of\n{rules}\n\nwhich is\n{rendered}\n\
             (PICKET_BLESS=1 rewrites it)",
            rules = text
        );
    }
    if bless {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
}
