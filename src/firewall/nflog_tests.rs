//! The parser on hand-built nfnetlink_log messages, as the kernel lays them out, and on
//! arbitrary bytes.

use super::*;
use proptest::prelude::*;

/// A packet message as the kernel sends it: nlmsghdr, nfgenmsg, then the attributes.
fn packet_message(family: u8, group: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![family, 0];
    body.extend_from_slice(&group.to_be_bytes());
    for (kind, value) in attrs {
        attribute(&mut body, *kind, value);
    }
    let mut message = Vec::new();
    message.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&NFULNL_MSG_PACKET.to_ne_bytes());
    message.extend_from_slice(&0u16.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&body);
    message
}

fn prefix(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// `struct nfulnl_msg_packet_hdr`: hw_protocol (0x0800), hook, pad.
fn hdr(hook: u8) -> Vec<u8> {
    vec![0x08, 0x00, hook, 0]
}

fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 16]);
    p
}

fn ipv6_header(next: u8, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 8, next, 64];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p
}

fn one(datagram: &[u8]) -> Result<Message, NflogError> {
    let mut all = messages(datagram);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[test]
fn a_denied_tcp_syn_over_ipv4_names_its_rule_addresses_and_ports() {
    let datagram = packet_message(
        2,
        crate::firewall::nft::LOG_GROUP,
        &[
            (NFULA_PACKET_HDR, hdr(1)),
            (NFULA_PREFIX, prefix("picket rule-42 ")),
            (
                NFULA_PAYLOAD,
                ipv4_tcp([10, 231, 0, 2], [10, 231, 0, 1], 40000, 22),
            ),
        ],
    );
    let Ok(Message::Packet(logged)) = one(&datagram) else {
        panic!("{:?}", messages(&datagram));
    };
    assert_eq!(logged.rule, "rule-42");
    assert_eq!(logged.direction(), Some("incoming"));
    assert_eq!(logged.packet.protocol, 6);
    assert_eq!(protocol_name(logged.packet.protocol), "tcp");
    assert_eq!(
        logged.packet.source,
        "10.231.0.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        logged.packet.destination,
        "10.231.0.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(logged.packet.ports, Some((40000, 22)));
    assert_eq!(logged.packet.icmp, None);
}

#[test]
fn ipv6_udp_behind_an_extension_header_and_icmpv6_are_read() {
    let (src, dst): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::2".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    );
    // Hop-by-hop options (8 bytes, next UDP), then UDP 5353 -> 53.
    let mut udp = ipv6_header(0, src, dst);
    udp.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
    udp.extend_from_slice(&[0x14, 0xe9, 0, 53, 0, 8, 0, 0]);
    let datagram = packet_message(
        10,
        1,
        &[
            (NFULA_PREFIX, prefix("picket out-of-allowed-policy-out ")),
            (NFULA_PACKET_HDR, hdr(3)),
            (NFULA_PAYLOAD, udp),
        ],
    );
    let Ok(Message::Packet(logged)) = one(&datagram) else {
        panic!();
    };
    assert_eq!(logged.rule, "out-of-allowed-policy-out");
    assert_eq!(logged.direction(), Some("outgoing"));
    assert_eq!(logged.packet.protocol, 17);
    assert_eq!(logged.packet.source, IpAddr::V6(src));
    assert_eq!(logged.packet.ports, Some((5353, 53)));

    let mut echo = ipv6_header(58, src, dst);
    echo.extend_from_slice(&[128, 0, 0, 0]);
    let datagram = packet_message(
        10,
        1,
        &[
            (NFULA_PREFIX, prefix("picket rule-7 ")),
            (NFULA_PAYLOAD, echo),
        ],
    );
    let Ok(Message::Packet(logged)) = one(&datagram) else {
        panic!();
    };
    assert_eq!(protocol_name(logged.packet.protocol), "ipv6-icmp");
    assert_eq!(logged.packet.icmp, Some((128, 0)));
    assert_eq!(logged.packet.ports, None);
    assert_eq!(logged.direction(), None, "no packet header: no hook");
}

#[test]
fn a_later_fragment_has_no_ports() {
    let mut p = ipv4_tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    p[6] = 0x00;
    p[7] = 0x10; // fragment offset 16
    let datagram = packet_message(
        2,
        1,
        &[(NFULA_PREFIX, prefix("picket rule-1 ")), (NFULA_PAYLOAD, p)],
    );
    let Ok(Message::Packet(logged)) = one(&datagram) else {
        panic!();
    };
    assert_eq!(logged.packet.ports, None);
}

#[test]
fn another_programs_prefix_and_bad_headers_are_errors_of_their_message_only() {
    let tcp = ipv4_tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let theirs = packet_message(
        2,
        1,
        &[
            (NFULA_PREFIX, prefix("ulogd drop ")),
            (NFULA_PAYLOAD, tcp.clone()),
        ],
    );
    let forged = packet_message(
        2,
        1,
        &[
            (NFULA_PREFIX, prefix("picket rule-1; rm -rf ")),
            (NFULA_PAYLOAD, tcp.clone()),
        ],
    );
    // A look-alike of the key the agent-port refusals are counted under.
    let look_alike = packet_message(
        2,
        1,
        &[
            (NFULA_PREFIX, prefix("picket agent-port-refused ")),
            (NFULA_PAYLOAD, tcp.clone()),
        ],
    );
    let no_payload = packet_message(2, 1, &[(NFULA_PREFIX, prefix("picket rule-1 "))]);
    let not_ip = packet_message(
        2,
        1,
        &[
            (NFULA_PREFIX, prefix("picket rule-1 ")),
            (NFULA_PAYLOAD, vec![0x25; 30]),
        ],
    );
    let short = packet_message(
        2,
        1,
        &[
            (NFULA_PREFIX, prefix("picket rule-1 ")),
            (NFULA_PAYLOAD, tcp[..19].to_vec()),
        ],
    );
    let good = packet_message(
        2,
        1,
        &[
            (NFULA_PREFIX, prefix("picket rule-1 ")),
            (NFULA_PAYLOAD, tcp),
        ],
    );
    let datagram = [theirs, forged, look_alike, no_payload, not_ip, short, good].concat();
    let mut all = messages(&datagram);
    assert_eq!(all.len(), 7);
    assert_eq!(all.remove(2), Err(NflogError::NotOurs));
    assert_eq!(all[0], Err(NflogError::NotOurs));
    assert_eq!(all[1], Err(NflogError::NotOurs));
    assert_eq!(all[2], Err(NflogError::NoPayload));
    assert!(matches!(all[3], Err(NflogError::BadPacket { .. })));
    assert!(matches!(all[4], Err(NflogError::BadPacket { .. })));
    assert!(matches!(&all[5], Ok(Message::Packet(l)) if l.rule == "rule-1"));
}

#[test]
fn a_length_that_does_not_fit_ends_the_datagram() {
    let good = packet_message(
        2,
        1,
        &[
            (NFULA_PREFIX, prefix("picket rule-1 ")),
            (NFULA_PAYLOAD, ipv4_tcp([1; 4], [2; 4], 1, 2)),
        ],
    );
    let mut lying = good.clone();
    lying[0..4].copy_from_slice(&4096u32.to_ne_bytes());
    let all = messages(&[good.clone(), lying, good].concat());
    assert_eq!(all.len(), 2);
    assert!(all[0].is_ok());
    assert!(matches!(all[1], Err(NflogError::Truncated { .. })));
    // An attribute longer than its message.
    let mut bad_attr = packet_message(2, 1, &[(NFULA_PREFIX, prefix("picket rule-1 "))]);
    bad_attr[20..22].copy_from_slice(&200u16.to_ne_bytes());
    assert_eq!(
        one(&bad_attr),
        Err(NflogError::Truncated { what: "attribute" })
    );
}

#[test]
fn acknowledgements_carry_their_sequence_and_error() {
    let ack = |seq: u32, code: i32| {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&code.to_ne_bytes());
        m.extend_from_slice(&[0; 16]); // the request's header, echoed
        m
    };
    assert_eq!(one(&ack(7, 0)), Ok(Message::Ack { seq: 7, errno: 0 }));
    assert_eq!(one(&ack(8, -1)), Ok(Message::Ack { seq: 8, errno: 1 }));
}

#[test]
fn the_bind_request_is_laid_out_as_the_kernel_reads_it() {
    let request = bind_request(0x1016, 9);
    let mut expected = Vec::new();
    expected.extend_from_slice(&40u32.to_ne_bytes());
    expected.extend_from_slice(&0x0401u16.to_ne_bytes());
    expected.extend_from_slice(&5u16.to_ne_bytes());
    expected.extend_from_slice(&9u32.to_ne_bytes());
    expected.extend_from_slice(&0u32.to_ne_bytes());
    expected.extend_from_slice(&[0, 0, 0x10, 0x16]);
    // NFULA_CFG_CMD: bind, padded.
    expected.extend_from_slice(&5u16.to_ne_bytes());
    expected.extend_from_slice(&1u16.to_ne_bytes());
    expected.extend_from_slice(&[1, 0, 0, 0]);
    // NFULA_CFG_MODE: copy range 128 (big-endian), copy packet, pad; padded.
    expected.extend_from_slice(&10u16.to_ne_bytes());
    expected.extend_from_slice(&2u16.to_ne_bytes());
    expected.extend_from_slice(&[0, 0, 0, 128, 2, 0, 0, 0]);
    assert_eq!(request, expected);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = messages(&bytes);
    }

    #[test]
    fn arbitrary_attributes_and_payloads_never_panic(
        attrs in proptest::collection::vec(
            (0u16..20, proptest::collection::vec(any::<u8>(), 0..80)), 0..6),
        payload in proptest::collection::vec(any::<u8>(), 0..140),
        version in prop_oneof![Just(0x45u8), Just(0x60u8), Just(0x4fu8), any::<u8>()],
    ) {
        let mut attrs = attrs;
        let mut payload = payload;
        if let Some(first) = payload.first_mut() {
            *first = version;
        }
        attrs.push((NFULA_PREFIX, prefix("picket rule-1 ")));
        attrs.push((NFULA_PAYLOAD, payload));
        let datagram = packet_message(2, 1, &attrs);
        let all = messages(&datagram);
        prop_assert_eq!(all.len(), 1);
    }
}
