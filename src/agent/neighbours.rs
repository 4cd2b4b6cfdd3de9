//! The peer's MAC address, from the kernel's neighbour table (`/proc/net/arp`), for firewall
//! rules that name MACs. Only IPv4 neighbours are listed there; an IPv6 or loopback peer has no
//! entry, and its MAC is unknown.

use crate::model::MacAddr;
use std::net::{IpAddr, Ipv4Addr};

const ARP_TABLE: &str = "/proc/net/arp";

/// The MAC the kernel has for `ip`, if it has a complete entry.
pub fn mac_of(ip: IpAddr) -> Option<MacAddr> {
    let IpAddr::V4(ip) = canonical(ip) else {
        return None;
    };
    let table = std::fs::read_to_string(ARP_TABLE).ok()?;
    lookup(&table, ip)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Reads the table's text: `IP address  HW type  Flags  HW address  Mask  Device`, one header
/// line. Flags 0x2 (ATF_COM) marks a complete entry; an incomplete one has no usable MAC.
fn lookup(table: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [addr, _, flags, mac, ..] = fields.as_slice() else {
            return None;
        };
        let complete =
            u32::from_str_radix(flags.trim_start_matches("0x"), 16).is_ok_and(|f| f & 0x2 != 0);
        (addr.parse::<Ipv4Addr>().ok()? == ip && complete)
            .then(|| MacAddr::parse(mac).ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.1      0x1         0x2         00:1a:2b:3c:4d:5e     *        eth0
192.168.1.7      0x1         0x0         00:00:00:00:00:00     *        eth0
";

    #[test]
    fn finds_complete_entries_only() {
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(
            lookup(TABLE, ip("192.168.1.1")).map(|m| m.to_string()),
            Some("00:1a:2b:3c:4d:5e".to_string())
        );
        assert_eq!(lookup(TABLE, ip("192.168.1.7")), None, "incomplete entry");
        assert_eq!(lookup(TABLE, ip("192.168.1.9")), None);
        assert_eq!(lookup("", ip("192.168.1.1")), None);
        assert_eq!(mac_of("::1".parse().unwrap()), None);
    }
}
