//! Firewall rules as an administrator writes them on a policy, and the one rule the agent
//! enforces itself: who may connect to its listening port (the reference's priority-4 rule).
//!
//! Values are built only through the parsers here, so a port 0, a priority 5 or a malformed
//! CIDR cannot reach the store or an agent.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// A rule's id: unique across every policy, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleId(pub u64);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The reference's actions. Only `force-allow` and `bypass` can replace the hidden rule that
/// opens the agent's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleAction {
    Allow,
    Deny,
    ForceAllow,
    Bypass,
    LogOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrafficDirection {
    Incoming,
    Outgoing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FrameType {
    Ip,
    Arp,
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

/// `first..=last`, both in 1..=65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// A source address: one address or a network (`prefix` bits), or an inclusive range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpMatch {
    Net { addr: IpAddr, prefix: u8 },
    Range { first: IpAddr, last: IpAddr },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MacAddr(pub [u8; 6]);

/// Highest priority; the only one that can replace the hidden agent-port rule.
pub const MAX_PRIORITY: u8 = 4;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRule {
    pub id: RuleId,
    pub name: String,
    pub action: RuleAction,
    /// 0..=4, 4 highest.
    pub priority: u8,
    pub direction: TrafficDirection,
    pub frame_type: FrameType,
    pub protocol: Protocol,
    /// Empty: any port.
    pub destination_ports: Vec<PortRange>,
    /// Empty: any address.
    pub source_ips: Vec<IpMatch>,
    /// Empty: any MAC.
    pub source_macs: Vec<MacAddr>,
    /// Empty: any address. Where the packet goes: this computer for an incoming rule, the peer
    /// for an outgoing one.
    pub destination_ips: Vec<IpMatch>,
    /// Log what the rule matches, so the agent can report it as events (a log-only rule always
    /// logs).
    pub log: bool,
}

/// What an agent needs of a rule that may govern its listening port: the rule passed every
/// test but the port, which only the agent knows for sure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRule {
    pub name: String,
    pub destination_ports: Vec<PortRange>,
    pub source_ips: Vec<IpMatch>,
    pub source_macs: Vec<MacAddr>,
}

impl FirewallRule {
    /// The reference's criteria for replacing the hidden rule, all but the port: action
    /// force-allow or bypass, priority 4, incoming, frame type IP, protocol TCP.
    pub fn listener_rule(&self) -> Option<ListenerRule> {
        let qualifies = matches!(self.action, RuleAction::ForceAllow | RuleAction::Bypass)
            && self.priority == MAX_PRIORITY
            && self.direction == TrafficDirection::Incoming
            && self.frame_type == FrameType::Ip
            && self.protocol == Protocol::Tcp;
        qualifies.then(|| ListenerRule {
            name: self.name.clone(),
            destination_ports: self.destination_ports.clone(),
            source_ips: self.source_ips.clone(),
            source_macs: self.source_macs.clone(),
        })
    }
}

impl ListenerRule {
    pub fn covers_port(&self, port: u16) -> bool {
        self.destination_ports.is_empty() || self.destination_ports.iter().any(|r| r.contains(port))
    }

    /// Whether a peer may connect under this rule: its address must match one of the source
    /// addresses and its MAC one of the MACs (an empty list matches anything). A peer whose MAC
    /// is unknown never matches a rule that lists MACs.
    pub fn admits(&self, ip: IpAddr, mac: Option<MacAddr>) -> bool {
        let ip_ok = self.source_ips.is_empty() || self.source_ips.iter().any(|m| m.contains(ip));
        let mac_ok =
            self.source_macs.is_empty() || mac.is_some_and(|m| self.source_macs.contains(&m));
        ip_ok && mac_ok
    }
}

/// Why a rule field was refused: the field, what was given, what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub field: &'static str,
    pub given: String,
    pub expected: &'static str,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} '{}': expected {}",
            self.field, self.given, self.expected
        )
    }
}

impl std::error::Error for RuleError {}

impl RuleError {
    /// The same refusal about another field that takes the same values (a destination list
    /// parsed with the source list's parser).
    pub fn for_field(self, field: &'static str) -> RuleError {
        RuleError { field, ..self }
    }
}

fn refuse<T>(field: &'static str, given: &str, expected: &'static str) -> Result<T, RuleError> {
    Err(RuleError {
        field,
        given: given.to_string(),
        expected,
    })
}

/// [`words!`](super::words::words) and a `parse` that names the field and what it takes.
macro_rules! named {
    ($ty:ident, $field:literal, $expected:literal, { $($words:tt)* }) => {
        super::words::words!($ty { $($words)* });

        impl $ty {
            pub fn parse(text: &str) -> Result<$ty, RuleError> {
                $ty::from_name(text).map_or_else(|| refuse($field, text, $expected), Ok)
            }
        }
    };
}

named!(RuleAction, "action", "allow, deny, force-allow, bypass or log-only", {
    Allow => "allow", Deny => "deny", ForceAllow => "force-allow", Bypass => "bypass",
    LogOnly => "log-only",
});
named!(TrafficDirection, "direction", "incoming or outgoing", {
    Incoming => "incoming", Outgoing => "outgoing",
});
named!(FrameType, "frame_type", "ip, arp or any", { Ip => "ip", Arp => "arp", Any => "any" });
named!(Protocol, "protocol", "tcp, udp, icmp or any", {
    Tcp => "tcp", Udp => "udp", Icmp => "icmp", Any => "any",
});

pub fn parse_priority(text: &str) -> Result<u8, RuleError> {
    match text.parse::<u8>() {
        Ok(p) if p <= MAX_PRIORITY => Ok(p),
        _ => refuse("priority", text, "a number from 0 to 4 (4 highest)"),
    }
}

impl PortRange {
    pub fn single(port: u16) -> Option<PortRange> {
        (port != 0).then_some(PortRange {
            first: port,
            last: port,
        })
    }

    /// `4118` or `4000-4200`.
    pub fn parse(text: &str) -> Result<PortRange, RuleError> {
        const EXPECTED: &str = "a port from 1 to 65535, or a range like 4000-4200";
        let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p != 0);
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a), port(b)),
            None => (port(text), port(text)),
        };
        match (first, last) {
            (Some(first), Some(last)) if first <= last => Ok(PortRange { first, last }),
            _ => refuse("destination_ports", text, EXPECTED),
        }
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    pub fn first(self) -> u16 {
        self.first
    }

    pub fn last(self) -> u16 {
        self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl IpMatch {
    /// `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32` or `192.0.2.1-192.0.2.9`.
    pub fn parse(text: &str) -> Result<IpMatch, RuleError> {
        const EXPECTED: &str = "an IP address, a CIDR such as 10.0.0.0/8, or a range a-b";
        let bad = || refuse("source_ips", text, EXPECTED);
        let addr = |s: &str| s.trim().parse::<IpAddr>().ok();
        if let Some((a, b)) = text.split_once('-') {
            return match (addr(a), addr(b)) {
                (Some(first), Some(last)) if first.is_ipv4() == last.is_ipv4() && first <= last => {
                    Ok(IpMatch::Range { first, last })
                }
                _ => bad(),
            };
        }
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (text, None),
        };
        let Some(addr) = addr(ip) else {
            return bad();
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(bits) => match bits.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return bad(),
            },
        };
        Ok(IpMatch::Net { addr, prefix })
    }

    pub fn contains(self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self {
            IpMatch::Net { addr, prefix } => match (canonical(addr), ip) {
                (IpAddr::V4(net), IpAddr::V4(ip)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    u32::from(net) & mask == u32::from(ip) & mask
                }
                (IpAddr::V6(net), IpAddr::V6(ip)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    u128::from(net) & mask == u128::from(ip) & mask
                }
                _ => false,
            },
            IpMatch::Range { first, last } => {
                let (first, last) = (canonical(first), canonical(last));
                first.is_ipv4() == ip.is_ipv4() && first <= ip && ip <= last
            }
        }
    }
}

/// A peer on a dual-stack socket shows up as `::ffff:a.b.c.d`; rules say `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl fmt::Display for IpMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpMatch::Net { addr, prefix } => {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if *prefix == max {
                    write!(f, "{addr}")
                } else {
                    write!(f, "{addr}/{prefix}")
                }
            }
            IpMatch::Range { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

impl MacAddr {
    /// `00:1a:2b:3c:4d:5e` or `00-1A-2B-3C-4D-5E`.
    pub fn parse(text: &str) -> Result<MacAddr, RuleError> {
        let parts: Vec<&str> = text.split([':', '-']).collect();
        let mut mac = [0u8; 6];
        let ok = parts.len() == 6
            && parts.iter().zip(mac.iter_mut()).all(|(part, byte)| {
                part.len() == 2 && u8::from_str_radix(part, 16).map(|b| *byte = b).is_ok()
            });
        if ok {
            Ok(MacAddr(mac))
        } else {
            refuse(
                "source_macs",
                text,
                "a MAC address such as 00:1a:2b:3c:4d:5e",
            )
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_are_checked_and_ranges_contain_their_ends() {
        assert_eq!(PortRange::parse("4118").unwrap().to_string(), "4118");
        let range = PortRange::parse("4000-4200").unwrap();
        assert!(range.contains(4000) && range.contains(4118) && range.contains(4200));
        assert!(!range.contains(4201));
        for bad in ["0", "70000", "-1", "abc", "4200-4000", "", "1-0"] {
            let err = PortRange::parse(bad).unwrap_err();
            assert_eq!(err.field, "destination_ports", "{bad}");
        }
    }

    #[test]
    fn addresses_networks_and_ranges_match_what_they_say() {
        assert!(
            IpMatch::parse("127.0.0.2")
                .unwrap()
                .contains(ip("127.0.0.2"))
        );
        assert!(
            !IpMatch::parse("127.0.0.2")
                .unwrap()
                .contains(ip("127.0.0.1"))
        );
        let net = IpMatch::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.255.3")) && !net.contains(ip("10.2.0.1")));
        assert!(IpMatch::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        let range = IpMatch::parse("192.0.2.1-192.0.2.9").unwrap();
        assert!(range.contains(ip("192.0.2.5")) && !range.contains(ip("192.0.2.10")));
        let v6 = IpMatch::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("10.0.0.1")));
        // A v4 peer seen through a dual-stack socket still matches a v4 rule.
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.256",
            "10.0.0.0/",
            "1.2.3.4-::1",
            "x",
            "9.9.9.9-1.1.1.1",
        ] {
            assert_eq!(
                IpMatch::parse(bad).unwrap_err().field,
                "source_ips",
                "{bad}"
            );
        }
        for text in [
            "127.0.0.2",
            "10.1.0.0/16",
            "192.0.2.1-192.0.2.9",
            "2001:db8::/32",
        ] {
            assert_eq!(IpMatch::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn macs_parse_in_both_notations() {
        let mac = MacAddr::parse("00-1A-2b-3c-4d-5e").unwrap();
        assert_eq!(mac.to_string(), "00:1a:2b:3c:4d:5e");
        for bad in [
            "00:1a:2b:3c:4d",
            "00:1a:2b:3c:4d:5e:6f",
            "zz:1a:2b:3c:4d:5e",
            "001a2b3c4d5e",
        ] {
            assert_eq!(
                MacAddr::parse(bad).unwrap_err().field,
                "source_macs",
                "{bad}"
            );
        }
    }

    #[test]
    fn priorities_and_names_are_closed_sets() {
        assert_eq!(parse_priority("4").unwrap(), 4);
        assert_eq!(parse_priority("5").unwrap_err().field, "priority");
        assert_eq!(parse_priority("-1").unwrap_err().field, "priority");
        assert_eq!(
            RuleAction::parse("force-allow").unwrap(),
            RuleAction::ForceAllow
        );
        assert_eq!(RuleAction::parse("permit").unwrap_err().field, "action");
        for action in RuleAction::ALL {
            assert_eq!(RuleAction::parse(action.name()).unwrap(), *action);
        }
    }

    fn rule(
        action: RuleAction,
        priority: u8,
        frame: FrameType,
        protocol: Protocol,
    ) -> FirewallRule {
        FirewallRule {
            id: RuleId(1),
            name: "agent port".into(),
            action,
            priority,
            direction: TrafficDirection::Incoming,
            frame_type: frame,
            protocol,
            destination_ports: vec![PortRange::single(4118).unwrap()],
            source_ips: vec![IpMatch::parse("127.0.0.2").unwrap()],
            source_macs: vec![],
            destination_ips: vec![],
            log: false,
        }
    }

    #[test]
    fn only_the_references_exact_shape_governs_the_agent_port() {
        use FrameType::Ip;
        use Protocol::Tcp;
        assert!(
            rule(RuleAction::Bypass, 4, Ip, Tcp)
                .listener_rule()
                .is_some()
        );
        assert!(
            rule(RuleAction::ForceAllow, 4, Ip, Tcp)
                .listener_rule()
                .is_some()
        );
        assert!(
            rule(RuleAction::Allow, 4, Ip, Tcp)
                .listener_rule()
                .is_none()
        );
        assert!(
            rule(RuleAction::Bypass, 3, Ip, Tcp)
                .listener_rule()
                .is_none()
        );
        assert!(
            rule(RuleAction::Bypass, 4, FrameType::Any, Tcp)
                .listener_rule()
                .is_none()
        );
        assert!(
            rule(RuleAction::Bypass, 4, Ip, Protocol::Udp)
                .listener_rule()
                .is_none()
        );
        let mut outgoing = rule(RuleAction::Bypass, 4, Ip, Tcp);
        outgoing.direction = TrafficDirection::Outgoing;
        assert!(outgoing.listener_rule().is_none());
    }

    #[test]
    fn a_listener_rule_admits_by_address_and_mac() {
        let mut r = rule(RuleAction::Bypass, 4, FrameType::Ip, Protocol::Tcp)
            .listener_rule()
            .unwrap();
        assert!(r.covers_port(4118) && !r.covers_port(4119));
        assert!(r.admits(ip("127.0.0.2"), None));
        assert!(!r.admits(ip("127.0.0.1"), None));
        let mac = MacAddr::parse("00:1a:2b:3c:4d:5e").unwrap();
        r.source_ips.clear();
        r.source_macs.push(mac);
        assert!(r.admits(ip("127.0.0.1"), Some(mac)));
        assert!(
            !r.admits(ip("127.0.0.1"), None),
            "unknown MAC never matches"
        );
        assert!(!r.admits(ip("127.0.0.1"), Some(MacAddr([0; 6]))));
    }
}
