//! The bytes of nfnetlink_log, sans-io: the configuration request that binds the agent's socket to
//! the ruleset's NFLOG group ([`bind_request`]), and the parser of what the kernel sends back
//! ([`messages`]): acknowledgements, and the packets the table's `log` statements logged, each
//! reduced to its rule (from the log prefix, `nft::LOG_PREFIX`) and its IP and TCP/UDP/ICMP
//! headers.
//!
//! Everything read here is untrusted input: every length is checked against what is there,
//! nothing is allocated from a length field, and a malformed message is an error for that
//! message only, never a panic (a proptest feeds it arbitrary bytes).

use super::nft::{LOG_PREFIX, implicit_name};
use crate::model::TrafficDirection;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `struct nlmsghdr`: length, type, flags, sequence, port id.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// `NFNL_SUBSYS_ULOG`: the message types of nfnetlink_log are `subsystem << 8 | type`.
const SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = SUBSYS_ULOG << 8;
const NFULNL_MSG_CONFIG: u16 = SUBSYS_ULOG << 8 | 1;
/// `struct nfgenmsg`: family, version, resource id (the group, big-endian).
const NFGENMSG_LEN: usize = 4;
/// Attribute types carry two flag bits (nested, network byte order) above the type.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFULA_PACKET_HDR: u16 = 1;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
/// The longest rule name a prefix may carry (`rule-18446744073709551615`,
/// `out-of-allowed-policy-out`): anything longer is not one of ours.
const MAX_RULE_NAME: usize = 64;

/// How many bytes of each packet the kernel copies to the agent: enough for an IPv6 header, a
/// few extension headers and the transport header's ports; nothing of the data.
pub const COPY_RANGE: u32 = 128;

/// What is wrong with a message the kernel sent (or something pretending to be the kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NflogError {
    /// A netlink header or attribute whose length does not fit what is there.
    Truncated { what: &'static str },
    /// A logged packet without the prefix of a Picket rule (another program's rule on the group).
    NotOurs,
    /// A logged packet without its headers (the copy mode was not applied).
    NoPayload,
    /// The copied headers are not IPv4 or IPv6, or too short to read.
    BadPacket { why: &'static str },
}

impl fmt::Display for NflogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NflogError::Truncated { what } => write!(f, "a truncated {what}"),
            NflogError::NotOurs => write!(f, "a logged packet without a Picket rule's prefix"),
            NflogError::NoPayload => write!(f, "a logged packet without its headers"),
            NflogError::BadPacket { why } => write!(f, "a logged packet that is not IP: {why}"),
        }
    }
}

impl std::error::Error for NflogError {}

/// One netlink message of a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// The answer to a request: `errno` 0 is success, else the (positive) error number.
    Ack {
        seq: u32,
        errno: i32,
    },
    Packet(Logged),
    /// Anything else (no-ops, other message types): ignored.
    Other,
}

/// A packet a rule of the table logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The name in its log prefix: `rule-42`, `out-of-allowed-policy-in`.
    pub rule: String,
    /// The netfilter hook it was logged at, when the kernel said (1 input, 3 output).
    pub hook: Option<u8>,
    pub packet: Packet,
}

impl Logged {
    /// `incoming` or `outgoing` by the hook, when it says.
    pub fn direction(&self) -> Option<&'static str> {
        match self.hook? {
            0 | 1 => Some("incoming"),
            3 | 4 => Some("outgoing"),
            2 => Some("forwarded"),
            _ => None,
        }
    }
}

/// What the event says of a packet: its addresses, protocol and ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    pub source: IpAddr,
    pub destination: IpAddr,
    /// TCP, UDP, UDP-Lite and SCTP: the ports, unless the packet is a later fragment.
    pub ports: Option<(u16, u16)>,
    /// ICMP and ICMPv6: type and code.
    pub icmp: Option<(u8, u8)>,
}

/// The protocol's name as `nft` writes it, else its number.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// The request that binds the sending socket to `group` and asks for the first
/// [`COPY_RANGE`] bytes of each packet, with an acknowledgement numbered `seq`. One message
/// carries both: the kernel binds first, then sets the mode of the new instance.
pub fn bind_request(group: u16, seq: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, the group.
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&group.to_be_bytes());
    attribute(&mut body, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    let mut mode = COPY_RANGE.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    attribute(&mut body, NFULA_CFG_MODE, &mode);
    let mut message = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    let len = u32::try_from(NLMSG_HDRLEN + body.len()).unwrap_or(u32::MAX);
    message.extend_from_slice(&len.to_ne_bytes());
    message.extend_from_slice(&NFULNL_MSG_CONFIG.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    message.extend_from_slice(&seq.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&body);
    message
}

fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// The messages of one datagram, in order. A header whose length does not fit ends the
/// datagram with an error (nothing after it can be framed); an error inside one message is that
/// message's only.
pub fn messages(datagram: &[u8]) -> Vec<Result<Message, NflogError>> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let Some(header) = rest.get(..NLMSG_HDRLEN) else {
            out.push(Err(NflogError::Truncated {
                what: "netlink header",
            }));
            break;
        };
        let len = usize::try_from(u32_ne(header, 0)).unwrap_or(usize::MAX);
        if len < NLMSG_HDRLEN || len > rest.len() {
            out.push(Err(NflogError::Truncated {
                what: "netlink message",
            }));
            break;
        }
        let kind = u16_ne(header, 4);
        let seq = u32_ne(header, 8);
        let body = &rest[NLMSG_HDRLEN..len];
        out.push(message(kind, seq, body));
        rest = rest.get(align4(len)..).unwrap_or_default();
    }
    out
}

fn message(kind: u16, seq: u32, body: &[u8]) -> Result<Message, NflogError> {
    match kind {
        NLMSG_ERROR => {
            let code = body
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(NflogError::Truncated {
                    what: "netlink error",
                })?;
            Ok(Message::Ack {
                seq,
                errno: code.saturating_neg(),
            })
        }
        NFULNL_MSG_PACKET => packet(body).map(Message::Packet),
        _ => Ok(Message::Other),
    }
}

fn packet(body: &[u8]) -> Result<Logged, NflogError> {
    let mut attrs = body
        .get(NFGENMSG_LEN..)
        .ok_or(NflogError::Truncated { what: "nfgenmsg" })?;
    let (mut prefix, mut hook, mut payload) = (None, None, None);
    while attrs.len() >= 4 {
        let len = usize::from(u16_ne(attrs, 0));
        let kind = u16_ne(attrs, 2) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return Err(NflogError::Truncated { what: "attribute" });
        }
        let value = &attrs[4..len];
        match kind {
            NFULA_PREFIX => prefix = Some(value),
            NFULA_PACKET_HDR => hook = value.get(2).copied(),
            NFULA_PAYLOAD => payload = Some(value),
            _ => {}
        }
        attrs = attrs.get(align4(len)..).unwrap_or_default();
    }
    let rule = rule_of(prefix.ok_or(NflogError::NotOurs)?)?;
    let packet = ip(payload.ok_or(NflogError::NoPayload)?)?;
    Ok(Logged { rule, hook, packet })
}

/// The rule's name in a prefix `picket NAME ` (NUL-terminated as the kernel sends it).
fn rule_of(prefix: &[u8]) -> Result<String, NflogError> {
    let end = prefix.iter().position(|b| *b == 0).unwrap_or(prefix.len());
    let text = std::str::from_utf8(&prefix[..end]).map_err(|_| NflogError::NotOurs)?;
    let name = text
        .strip_prefix(LOG_PREFIX)
        .ok_or(NflogError::NotOurs)?
        .trim_end_matches(' ');
    // Only the names the translation writes: `rule-ID` and the implicit denies. Anything else
    // (another program's rule with a look-alike prefix) is not ours, and cannot take the key
    // the agent-port refusals are counted under.
    let rule = name.strip_prefix("rule-").is_some_and(|id| {
        !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
    });
    let implicit = [TrafficDirection::Incoming, TrafficDirection::Outgoing]
        .into_iter()
        .any(|d| name == implicit_name(d));
    if name.len() > MAX_RULE_NAME || !(rule || implicit) {
        return Err(NflogError::NotOurs);
    }
    Ok(name.to_string())
}

/// The IP header (and what follows of it) of a copied packet.
fn ip(bytes: &[u8]) -> Result<Packet, NflogError> {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => ipv4(bytes),
        Some(6) => ipv6(bytes),
        Some(_) => Err(NflogError::BadPacket {
            why: "neither IPv4 nor IPv6",
        }),
        None => Err(NflogError::NoPayload),
    }
}

fn ipv4(b: &[u8]) -> Result<Packet, NflogError> {
    let short = NflogError::BadPacket {
        why: "a short IPv4 header",
    };
    let header_len = usize::from(b[0] & 0x0f) * 4;
    if header_len < 20 || b.len() < header_len {
        return Err(short);
    }
    let fragment_offset = u16::from_be_bytes([b[6], b[7]]) & 0x1fff;
    let protocol = b[9];
    let address = |at: usize| IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]));
    let later_fragment = fragment_offset != 0;
    Ok(transport(
        protocol,
        address(12),
        address(16),
        &b[header_len..],
        later_fragment,
    ))
}

fn ipv6(b: &[u8]) -> Result<Packet, NflogError> {
    let Some(fixed) = b.get(..40) else {
        return Err(NflogError::BadPacket {
            why: "a short IPv6 header",
        });
    };
    let address = |at: usize| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&fixed[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let (source, destination) = (address(8), address(24));
    let mut next = fixed[6];
    let mut at: usize = 40;
    let mut later_fragment = false;
    // Extension headers, a bounded number of them: hop-by-hop, routing, destination options,
    // fragment, authentication. What they hide past the copied bytes is simply not read.
    for _ in 0..8 {
        let Some(ext) = b.get(at..at.saturating_add(8)) else {
            break;
        };
        let len = match next {
            0 | 43 | 60 => (usize::from(ext[1]) + 1) * 8,
            44 => {
                later_fragment = u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0;
                8
            }
            51 => (usize::from(ext[1]) + 2) * 4,
            _ => break,
        };
        next = ext[0];
        at = at.saturating_add(len);
        if later_fragment {
            break;
        }
    }
    let rest = b.get(at..).unwrap_or_default();
    Ok(transport(next, source, destination, rest, later_fragment))
}

fn transport(
    protocol: u8,
    source: IpAddr,
    destination: IpAddr,
    rest: &[u8],
    later_fragment: bool,
) -> Packet {
    let head = if later_fragment { None } else { rest.get(..4) };
    let (ports, icmp) = match (protocol, head) {
        (6 | 17 | 132 | 136, Some(h)) => (
            Some((
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
            )),
            None,
        ),
        (1 | 58, Some(h)) => (None, Some((h[0], h[1]))),
        _ => (None, None),
    };
    Packet {
        protocol,
        source,
        destination,
        ports,
        icmp,
    }
}

fn u16_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_ne(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
#[path = "nflog_tests.rs"]
mod tests;
