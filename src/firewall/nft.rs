//! The translation of a computer's firewall rules into one nftables JSON ruleset (`nft -j -f`
//! input) for the table `inet picket`. Pure: the rules and the agent's port in, JSON out; the
//! agent applies it. `schema/firewall.md` is the mapping, with worked examples its tests compare.
//!
//! The ruleset is one transaction that adds, deletes and re-creates the table, so the kernel
//! swaps the old table for the new one at once or, if it refuses anything, keeps the old one:
//! there is never a moment with half a ruleset.

use super::order::{self, Entry, Origin, implicit_deny};
use crate::model::{FirewallRule, FrameType, IpMatch, PortRange, Protocol, RuleAction};
use crate::model::{MacAddr, TrafficDirection};
use serde_json::{Value, json};
use std::net::IpAddr;

pub const FAMILY: &str = "inet";
pub const TABLE: &str = "picket";
/// Every log line the ruleset asks for starts with this, then the counter's name and a space.
pub const LOG_PREFIX: &str = "picket ";
/// The NFLOG group the `log` statements send to. The agent reads the group over netlink in its
/// own network namespace (`agent/packet_log.rs`); the kernel log is not delivered per
/// namespace, and a group keeps the packets out of the host's syslog.
pub const LOG_GROUP: u16 = 4118;

/// Longest comment kept on an nft rule (the kernel's limit is 128 bytes).
const MAX_COMMENT: usize = 100;

/// The ruleset, and the rules it could not express (they match nothing in it).
#[derive(Clone, Debug, PartialEq)]
pub struct Ruleset {
    pub json: Value,
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub origin: Origin,
    pub why: &'static str,
}

/// The transaction that takes the table away (the firewall switched off): created first so
/// that deleting it cannot fail for want of it.
pub fn removal() -> Value {
    json!({"nftables": [
        {"add": {"table": table()}},
        {"delete": {"table": table()}},
    ]})
}

/// The whole ruleset for `rules` (a computer's effective rules, in inherited order) and the port
/// its agent listens on (`None`: no hidden agent-port rules).
pub fn translate(rules: &[FirewallRule], agent_port: Option<u16>) -> Ruleset {
    let entries = order::entries(rules, agent_port);
    let mut skipped = Vec::new();
    let usable: Vec<&Entry> = entries
        .iter()
        .filter(|e| match unusable(e) {
            Some(why) => {
                skipped.push(Skipped {
                    origin: e.origin,
                    why,
                });
                false
            }
            None => true,
        })
        .collect();
    let mut commands = vec![
        json!({"metainfo": {"json_schema_version": 1}}),
        json!({"add": {"table": table()}}),
        json!({"delete": {"table": table()}}),
        json!({"add": {"table": table()}}),
    ];
    let mut counters: Vec<String> = usable.iter().map(|e| e.origin.name()).collect();
    let mut chains = Vec::new();
    let mut rule_lines = Vec::new();
    for direction in [TrafficDirection::Incoming, TrafficDirection::Outgoing] {
        let chain = Chain::filter(direction);
        chains.push(chain.definition());
        rule_lines.extend(chain.opening().into_iter().map(|e| chain.rule(e, None)));
        for entry in usable.iter().filter(|e| e.direction == direction) {
            for expr in entry_exprs(entry) {
                rule_lines.push(chain.rule(expr, Some(&entry.name)));
            }
        }
        if implicit_deny(&entries, direction) {
            let name = implicit_name(direction);
            let log = entries
                .iter()
                .any(|e| e.direction == direction && e.action == RuleAction::Allow && e.log);
            let mut drop = vec![json!({"counter": name})];
            if log {
                drop.push(log_statement(&name));
            }
            drop.push(json!({"drop": null}));
            rule_lines.push(chain.rule(established(), None));
            rule_lines.push(chain.rule(drop, None));
            counters.push(name);
        }
    }
    for direction in [TrafficDirection::Incoming, TrafficDirection::Outgoing] {
        let mine: Vec<&Entry> = usable
            .iter()
            .copied()
            .filter(|e| e.direction == direction)
            .collect();
        let Some(last) = mine.iter().rposition(|e| e.action == RuleAction::Bypass) else {
            continue;
        };
        let chain = Chain::bypass(direction);
        chains.push(chain.definition());
        rule_lines.extend(chain.opening().into_iter().map(|e| chain.rule(e, None)));
        for entry in &mine[..=last] {
            for expr in bypass_exprs(entry) {
                rule_lines.push(chain.rule(expr, Some(&entry.name)));
            }
        }
    }
    commands.extend(
        counters.iter().map(
            |name| json!({"add": {"counter": {"family": FAMILY, "table": TABLE, "name": name}}}),
        ),
    );
    commands.extend(chains);
    commands.extend(rule_lines);
    Ruleset {
        json: json!({ "nftables": commands }),
        skipped,
    }
}

/// One command a line: readable in a file, a diff or `schema/firewall.md`, and what `nft -j -f`
/// reads.
pub fn render(ruleset: &Value) -> String {
    let commands = ruleset["nftables"].as_array().cloned().unwrap_or_default();
    let lines: Vec<String> = commands.iter().map(|c| format!("  {c}")).collect();
    format!("{{\"nftables\": [\n{}\n]}}\n", lines.join(",\n"))
}

fn table() -> Value {
    json!({"family": FAMILY, "name": TABLE})
}

/// `out-of-allowed-policy-in`: the implicit deny's counter and log name.
pub fn implicit_name(direction: TrafficDirection) -> String {
    match direction {
        TrafficDirection::Incoming => "out-of-allowed-policy-in".into(),
        TrafficDirection::Outgoing => "out-of-allowed-policy-out".into(),
    }
}

/// Why nftables' `inet` table cannot express an entry, if it cannot.
fn unusable(entry: &Entry) -> Option<&'static str> {
    let has_ports = !entry.destination_ports.is_empty() || !entry.source_ports.is_empty();
    if entry.frame_type == FrameType::Arp {
        Some("the inet family never sees ARP frames, so ARP is not filtered")
    } else if has_ports && entry.protocol == Protocol::Icmp {
        Some("ICMP has no ports")
    } else if !entry.source_macs.is_empty() && entry.direction == TrafficDirection::Outgoing {
        Some("an outgoing packet has no source MAC yet when the firewall sees it")
    } else if families(entry).is_empty() {
        Some("its source and destination addresses are of different IP versions")
    } else {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

/// The address families an entry's rules need: one nft rule cannot match `ip saddr` or
/// `ip6 saddr`, so an entry that lists both kinds becomes one rule per family.
fn families(entry: &Entry) -> Vec<Family> {
    let (src, dst) = (&entry.source_ips, &entry.destination_ips);
    if src.is_empty() && dst.is_empty() {
        return vec![Family::Any];
    }
    let has = |list: &[IpMatch], v6: bool| list.iter().any(|m| is_v6(*m) == v6);
    [(Family::V4, false), (Family::V6, true)]
        .into_iter()
        .filter(|(_, v6)| (src.is_empty() || has(src, *v6)) && (dst.is_empty() || has(dst, *v6)))
        .map(|(family, _)| family)
        .collect()
}

/// The matches, counter, log and verdict of an entry in its filter chain, one list per family.
fn entry_exprs(entry: &Entry) -> Vec<Vec<Value>> {
    families(entry)
        .into_iter()
        .map(|family| {
            let mut expr = matches(entry, family);
            expr.push(json!({"counter": entry.origin.name()}));
            if entry.log || entry.action == RuleAction::LogOnly {
                expr.push(log_statement(&entry.origin.name()));
            }
            match entry.action {
                RuleAction::LogOnly => {}
                RuleAction::Deny => expr.push(json!({"drop": null})),
                RuleAction::Allow | RuleAction::ForceAllow | RuleAction::Bypass => {
                    expr.push(json!({"accept": null}))
                }
            }
            expr
        })
        .collect()
}

/// The same entry in a bypass chain: a bypass rule stops connection tracking of what it
/// matches; any other deciding rule before the last bypass returns, so that a packet a
/// higher rule decides stays tracked. Log-only rules decide nothing and are left out.
fn bypass_exprs(entry: &Entry) -> Vec<Vec<Value>> {
    let tail: Vec<Value> = match entry.action {
        RuleAction::LogOnly => return Vec::new(),
        RuleAction::Bypass => vec![json!({"notrack": null}), json!({"accept": null})],
        _ => vec![json!({"return": null})],
    };
    families(entry)
        .into_iter()
        .map(|family| {
            let mut expr = matches(entry, family);
            expr.extend(tail.iter().cloned());
            expr
        })
        .collect()
}

fn matches(entry: &Entry, family: Family) -> Vec<Value> {
    let mut expr = Vec::new();
    let has_ports = !entry.destination_ports.is_empty() || !entry.source_ports.is_empty();
    let protocols: Vec<&str> = match (entry.protocol, family) {
        (Protocol::Tcp, _) => vec!["tcp"],
        (Protocol::Udp, _) => vec!["udp"],
        (Protocol::Icmp, Family::V4) => vec!["icmp"],
        (Protocol::Icmp, Family::V6) => vec!["ipv6-icmp"],
        (Protocol::Icmp, Family::Any) => vec!["icmp", "ipv6-icmp"],
        // Ports exist only for TCP and UDP: `th` would read other protocols' bytes as ports.
        (Protocol::Any, _) if has_ports => vec!["tcp", "udp"],
        (Protocol::Any, _) => vec![],
    };
    if !protocols.is_empty() {
        let right = one_or_set(protocols.into_iter().map(Value::from).collect());
        expr.push(eq(json!({"meta": {"key": "l4proto"}}), right));
    }
    let ip = match family {
        Family::V6 => Some(("ip6", true)),
        Family::V4 => Some(("ip", false)),
        Family::Any => None,
    };
    if let Some((protocol, v6)) = ip {
        for (field, list) in [
            ("saddr", &entry.source_ips),
            ("daddr", &entry.destination_ips),
        ] {
            if !list.is_empty() {
                let right = one_or_set(ip_values(list, v6));
                expr.push(eq(payload(protocol, field), right));
            }
        }
    }
    for (field, list) in [
        ("sport", &entry.source_ports),
        ("dport", &entry.destination_ports),
    ] {
        if !list.is_empty() {
            expr.push(eq(payload("th", field), one_or_set(port_values(list))));
        }
    }
    if !entry.source_macs.is_empty() {
        let macs = entry.source_macs.iter().map(mac_value).collect();
        expr.push(eq(payload("ether", "saddr"), one_or_set(macs)));
    }
    expr
}

/// A filter or bypass chain of one direction.
struct Chain {
    name: &'static str,
    hook: &'static str,
    prio: i32,
    direction: TrafficDirection,
    bypass: bool,
}

impl Chain {
    fn filter(direction: TrafficDirection) -> Chain {
        let (name, hook) = match direction {
            TrafficDirection::Incoming => ("input", "input"),
            TrafficDirection::Outgoing => ("output", "output"),
        };
        Chain {
            name,
            hook,
            prio: 0,
            direction,
            bypass: false,
        }
    }

    /// Conntrack runs at priority -200, so undoing it takes a chain before: the raw priority.
    fn bypass(direction: TrafficDirection) -> Chain {
        let (name, hook) = match direction {
            TrafficDirection::Incoming => ("bypass-input", "prerouting"),
            TrafficDirection::Outgoing => ("bypass-output", "output"),
        };
        Chain {
            name,
            hook,
            prio: -300,
            direction,
            bypass: true,
        }
    }

    /// Policy accept: what no rule drops passes, so a table with no rules changes nothing.
    fn definition(&self) -> Value {
        json!({"add": {"chain": {
            "family": FAMILY, "table": TABLE, "name": self.name,
            "type": "filter", "hook": self.hook, "prio": self.prio, "policy": "accept",
        }}})
    }

    /// What comes before the rules. Loopback is never filtered (the reference filters network
    /// interfaces) nor untracked. IPv6 neighbour discovery is IPv6's ARP, which the `inet`
    /// family never sees: like ARP it always passes. The prerouting bypass chain only
    /// untracks what is for this host, never forwarded traffic.
    fn opening(&self) -> Vec<Vec<Value>> {
        let lo_key = match self.direction {
            TrafficDirection::Incoming => "iifname",
            TrafficDirection::Outgoing => "oifname",
        };
        let mut lines = vec![vec![
            eq(json!({"meta": {"key": lo_key}}), json!("lo")),
            accept(),
        ]];
        if self.bypass {
            if self.direction == TrafficDirection::Incoming {
                let local = json!({"fib": {"result": "type", "flags": ["daddr"]}});
                lines.push(vec![
                    json!({"match": {"op": "!=", "left": local, "right": "local"}}),
                    accept(),
                ]);
            }
        } else {
            let nd = [
                "nd-router-solicit",
                "nd-router-advert",
                "nd-neighbor-solicit",
                "nd-neighbor-advert",
                "nd-redirect",
            ];
            let types = json!({"set": nd});
            lines.push(vec![eq(payload("icmpv6", "type"), types), accept()]);
        }
        lines
    }

    fn rule(&self, expr: Vec<Value>, name: Option<&str>) -> Value {
        let mut rule = json!({"family": FAMILY, "table": TABLE, "chain": self.name, "expr": expr});
        if let Some(name) = name {
            rule["comment"] = json!(comment(name));
        }
        json!({"add": {"rule": rule}})
    }
}

/// Stateful: an answer to a connection that was let through passes before the implicit deny
/// drops what no rule allowed. Deny rules still see it, so a deny cuts an open connection.
fn established() -> Vec<Value> {
    vec![
        json!({"match": {"op": "in", "left": {"ct": {"key": "state"}},
            "right": ["established", "related"]}}),
        accept(),
    ]
}

fn log_statement(name: &str) -> Value {
    json!({"log": {"prefix": format!("{LOG_PREFIX}{name} "), "group": LOG_GROUP}})
}

fn accept() -> Value {
    json!({"accept": null})
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn one_or_set(mut items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.remove(0)
    } else {
        json!({ "set": items })
    }
}

fn comment(name: &str) -> String {
    let mut end = name.len().min(MAX_COMMENT);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

fn mac_value(mac: &MacAddr) -> Value {
    Value::from(mac.to_string())
}

/// Sorted, with overlapping or touching ranges merged: nft refuses overlapping intervals in a
/// set on some versions, and a canonical form keeps equal rules equal.
fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => out.push((first, last)),
        }
    }
    out
}

fn port_values(list: &[PortRange]) -> Vec<Value> {
    let ranges = list
        .iter()
        .map(|r| (u128::from(r.first()), u128::from(r.last())))
        .collect();
    merge(ranges)
        .into_iter()
        .map(|(first, last)| {
            if first == last {
                json!(first)
            } else {
                json!({ "range": [first, last] })
            }
        })
        .collect()
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_v6(m: IpMatch) -> bool {
    match m {
        IpMatch::Net { addr, .. } => canonical(addr).is_ipv6(),
        IpMatch::Range { first, .. } => canonical(first).is_ipv6(),
    }
}

fn number(ip: IpAddr) -> u128 {
    match canonical(ip) {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The addresses of one family as merged intervals, each written as an address, a prefix or
/// a range.
fn ip_values(list: &[IpMatch], v6: bool) -> Vec<Value> {
    let bits: u32 = if v6 { 128 } else { 32 };
    let ranges = list
        .iter()
        .filter(|m| is_v6(**m) == v6)
        .map(|m| match *m {
            IpMatch::Net { addr, prefix } => {
                // A mapped v4 address's prefix counts the 96 mapped bits.
                let prefix = match (canonical(addr), addr) {
                    (IpAddr::V4(_), IpAddr::V6(_)) => prefix.saturating_sub(96),
                    _ => prefix,
                };
                let host = u128::MAX
                    .checked_shr(128 - bits + u32::from(prefix))
                    .unwrap_or(0);
                let first = number(addr) & !host;
                (first, first | host)
            }
            IpMatch::Range { first, last } => (number(first), number(last)),
        })
        .collect();
    merge(ranges)
        .into_iter()
        .map(|(first, last)| ip_interval(first, last, v6))
        .collect()
}

fn ip_text(n: u128, v6: bool) -> String {
    if v6 {
        std::net::Ipv6Addr::from(n).to_string()
    } else {
        // Below 2^32: it came from a v4 address.
        std::net::Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)).to_string()
    }
}

fn ip_interval(first: u128, last: u128, v6: bool) -> Value {
    let bits: u32 = if v6 { 128 } else { 32 };
    if first == last {
        return json!(ip_text(first, v6));
    }
    // A prefix when the interval is exactly one: its size a power of two and aligned on it.
    let host_bits = (last - first).checked_add(1).map_or(bits, |size| {
        if size.is_power_of_two() && first.is_multiple_of(size) {
            size.trailing_zeros()
        } else {
            u32::MAX
        }
    });
    if host_bits <= bits {
        json!({"prefix": {"addr": ip_text(first, v6), "len": bits - host_bits}})
    } else {
        json!({"range": [ip_text(first, v6), ip_text(last, v6)]})
    }
}
