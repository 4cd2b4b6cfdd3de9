//! Who may connect to the agent's listening port: the reference's priority-4 rule, decided
//! before any TLS byte is read (sans-io: the rules, the port and the peer come in).

use crate::model::{ListenerRule, MacAddr};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule governs the port (the hidden bypass rule: anyone), or one admits the peer.
    Admit,
    /// Rules govern the port and none admits the peer; their names, for the log.
    Refuse { rules: Vec<String> },
}

/// The rules that cover `port`; if any, the peer must match one of them.
pub fn check(rules: &[ListenerRule], port: u16, ip: IpAddr, mac: Option<MacAddr>) -> Verdict {
    let governing: Vec<&ListenerRule> = rules.iter().filter(|r| r.covers_port(port)).collect();
    if governing.is_empty() || governing.iter().any(|r| r.admits(ip, mac)) {
        Verdict::Admit
    } else {
        Verdict::Refuse {
            rules: governing.iter().map(|r| r.name.clone()).collect(),
        }
    }
}

/// Whether deciding needs the peer's MAC: only when a governing rule lists MACs, so the
/// neighbour table is not read for every connection.
pub fn needs_mac(rules: &[ListenerRule], port: u16) -> bool {
    rules
        .iter()
        .any(|r| r.covers_port(port) && !r.source_macs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IpMatch, PortRange};

    fn rule(name: &str, port: &str, ips: &[&str], macs: &[MacAddr]) -> ListenerRule {
        ListenerRule {
            name: name.into(),
            destination_ports: vec![PortRange::parse(port).unwrap()],
            source_ips: ips.iter().map(|s| IpMatch::parse(s).unwrap()).collect(),
            source_macs: macs.to_vec(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_a_governing_rule_anyone_may_connect() {
        assert_eq!(check(&[], 4118, ip("203.0.113.9"), None), Verdict::Admit);
        let other_port = [rule("web", "443", &["127.0.0.2"], &[])];
        assert_eq!(
            check(&other_port, 4118, ip("203.0.113.9"), None),
            Verdict::Admit
        );
    }

    #[test]
    fn a_governing_rule_admits_only_its_sources_and_rules_add_up() {
        let narrow = [rule("admin host", "4118", &["127.0.0.2"], &[])];
        assert_eq!(
            check(&narrow, 4118, ip("127.0.0.1"), None),
            Verdict::Refuse {
                rules: vec!["admin host".into()]
            }
        );
        assert_eq!(check(&narrow, 4118, ip("127.0.0.2"), None), Verdict::Admit);
        let widened = [
            narrow[0].clone(),
            rule("loopback", "4000-4200", &["127.0.0.1"], &[]),
        ];
        assert_eq!(check(&widened, 4118, ip("127.0.0.1"), None), Verdict::Admit);
    }

    #[test]
    fn a_mac_rule_needs_the_peers_mac() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let by_mac = [rule("console", "4118", &[], &[mac])];
        assert!(needs_mac(&by_mac, 4118) && !needs_mac(&by_mac, 4119));
        assert_eq!(
            check(&by_mac, 4118, ip("10.0.0.5"), Some(mac)),
            Verdict::Admit
        );
        assert!(matches!(
            check(&by_mac, 4118, ip("10.0.0.5"), None),
            Verdict::Refuse { .. }
        ));
    }
}
