//! The rules a computer runs, in the order its agent evaluates them (`firewall::order`, the
//! hidden agent-port rules included), each with the policy it comes from: what
//! `GET /api/v1/computers/{id}/firewall-rules` and the console's computer page show.

use super::{Effective, PolicyTree, effective_rules, resolve_computer};
use crate::firewall::nft;
use crate::firewall::order::{self, Entry, Origin};
use crate::model::{Computer, Policy, TrafficDirection};

/// One entry of the ruleset and where it comes from.
#[derive(Clone, Debug)]
pub struct Evaluated<'t> {
    pub entry: Entry,
    /// The policy that holds the rule; `None` for the hidden rules the manager adds.
    pub policy: Option<&'t Policy>,
    /// Why nftables leaves the rule out (it then matches nothing), if it does.
    pub skipped: Option<&'static str>,
}

/// A computer's firewall as the manager expects its agent to run it.
#[derive(Clone, Debug)]
pub struct Evaluation<'t> {
    /// `firewall.enabled` and where it is set: when false the host firewall enforces none of
    /// the entries (the agent still checks its port's rules on every connection).
    pub enabled: Effective<bool>,
    /// The port the agent last reported listening on: the hidden rules open it. `None` (not
    /// activated, or not listening) leaves them out, as the agent does.
    pub agent_port: Option<u16>,
    pub entries: Vec<Evaluated<'t>>,
    /// The directions in which an allow rule drops what no entry accepts, after every entry
    /// of the direction (the reference's "Out of Allowed Policy").
    pub implicit_deny: Vec<TrafficDirection>,
}

/// `computer`'s rules (computers hold none of their own: they all come down its policy chain)
/// in evaluation order, for an agent listening on `agent_port`.
pub fn evaluate<'t>(
    tree: &'t PolicyTree,
    computer: &Computer,
    agent_port: Option<u16>,
) -> Evaluation<'t> {
    let held = effective_rules(tree, computer.policy);
    let rules: Vec<_> = held.iter().map(|(_, rule)| (*rule).clone()).collect();
    let skipped = nft::translate(&rules, agent_port).skipped;
    let entries: Vec<Entry> = order::entries(&rules, agent_port);
    let implicit_deny = [TrafficDirection::Incoming, TrafficDirection::Outgoing]
        .into_iter()
        .filter(|d| order::implicit_deny(&entries, *d))
        .collect();
    let entries = entries
        .into_iter()
        .map(|entry| Evaluated {
            policy: match entry.origin {
                // Rule ids are unique across policies: the one holding it is the policy.
                Origin::Rule(id) => held
                    .iter()
                    .find(|(_, rule)| rule.id == id)
                    .and_then(|(policy, _)| tree.get(*policy)),
                Origin::AgentPort | Origin::AgentPortReply => None,
            },
            skipped: skipped
                .iter()
                .find(|s| s.origin == entry.origin)
                .map(|s| s.why),
            entry,
        })
        .collect();
    Evaluation {
        enabled: resolve_computer(tree, computer).firewall_enabled,
        agent_port,
        entries,
        implicit_deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        FirewallRule, FrameType, PolicyId, PortRange, Protocol, RuleAction, RuleId, Setting,
        Settings,
    };
    use crate::policy::Source;

    fn rule(id: u64, action: RuleAction, priority: u8) -> FirewallRule {
        FirewallRule {
            id: RuleId(id),
            name: format!("rule {id}"),
            action,
            priority,
            direction: TrafficDirection::Incoming,
            frame_type: FrameType::Ip,
            protocol: Protocol::Tcp,
            destination_ports: vec![PortRange::single(22).unwrap()],
            source_ips: vec![],
            source_macs: vec![],
            destination_ips: vec![],
            log: false,
        }
    }

    fn tree() -> PolicyTree {
        let mut arp = rule(4, RuleAction::Deny, 2);
        arp.frame_type = FrameType::Arp;
        arp.protocol = Protocol::Any;
        arp.destination_ports.clear();
        PolicyTree::new([
            Policy {
                id: PolicyId(1),
                name: "Base Policy".into(),
                parent: None,
                settings: Settings {
                    firewall_enabled: Setting::Set(true),
                    ..Settings::default()
                },
                rules: vec![rule(1, RuleAction::Allow, 0), arp],
            },
            Policy {
                id: PolicyId(2),
                name: "Servers".into(),
                parent: Some(PolicyId(1)),
                settings: Settings::default(),
                rules: vec![rule(2, RuleAction::Deny, 3), rule(3, RuleAction::Allow, 0)],
            },
        ])
    }

    fn web1() -> Computer {
        Computer {
            policy: PolicyId(2),
            ..Computer::test(1, "web1")
        }
    }

    #[test]
    fn rules_come_in_evaluation_order_with_their_policy_and_the_hidden_ones() {
        let tree = tree();
        let evaluation = evaluate(&tree, &web1(), Some(4118));
        let seen: Vec<(String, Option<&str>)> = evaluation
            .entries
            .iter()
            .map(|e| (e.entry.origin.name(), e.policy.map(|p| p.name.as_str())))
            .collect();
        let want = [
            ("agent-port", None),
            ("agent-port-reply", None),
            ("rule-2", Some("Servers")),
            ("rule-4", Some("Base Policy")),
            // Same priority and action: the inherited rule first.
            ("rule-1", Some("Base Policy")),
            ("rule-3", Some("Servers")),
        ];
        let want: Vec<(String, Option<&str>)> =
            want.iter().map(|(o, p)| (o.to_string(), *p)).collect();
        assert_eq!(seen, want);
        assert_eq!(evaluation.implicit_deny, [TrafficDirection::Incoming]);
        assert!(evaluation.enabled.value);
        assert_eq!(evaluation.enabled.source, Source::Policy(PolicyId(1)));
        let arp = &evaluation.entries[3];
        assert!(arp.skipped.is_some(), "nftables never sees ARP");
        assert!(evaluation.entries[2].skipped.is_none());
    }

    #[test]
    fn a_computer_override_and_an_unknown_port_are_what_the_agent_runs() {
        let tree = tree();
        let mut web1 = web1();
        web1.settings.firewall_enabled = Setting::Set(false);
        let evaluation = evaluate(&tree, &web1, None);
        assert!(!evaluation.enabled.value);
        assert_eq!(evaluation.enabled.source, Source::Computer);
        assert!(
            evaluation.entries.iter().all(|e| e.policy.is_some()),
            "no port, no hidden rules"
        );
        // A rule that replaces the hidden one (priority 4 bypass for TCP to the agent's port).
        let mut tree = tree;
        let mut servers = tree.get(PolicyId(2)).unwrap().clone();
        let mut admin = rule(5, RuleAction::Bypass, 4);
        admin.destination_ports = vec![PortRange::single(4118).unwrap()];
        servers.rules.push(admin);
        tree.upsert(servers);
        let evaluation = evaluate(&tree, &web1, Some(4118));
        let first: Vec<String> = evaluation.entries[..2]
            .iter()
            .map(|e| e.entry.origin.name())
            .collect();
        assert_eq!(first, ["agent-port-reply", "rule-5"]);
    }
}
