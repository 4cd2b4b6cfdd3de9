//! Loopback connections from spread-out source addresses: each simulated agent dials from its
//! own address in 127.0.0.0/8, so a hundred thousand agents never run out of ephemeral ports
//! (one address has about 28,000, each held a minute in TIME_WAIT after a close).

use smol::Async;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};

/// The source address of agent `index`: 127.a.b.c with c in 1..=254, so no address ends in
/// .0 or .255 and 127.0.0.1 (the usual one) is only agent 0's. Distinct for the first
/// 254 × 256 × 256 (about 16.6 million) agents.
pub fn source_address(index: u64) -> Ipv4Addr {
    let c = (index % 254) as u8 + 1;
    let b = ((index / 254) % 256) as u8;
    let a = ((index / (254 * 256)) % 256) as u8;
    Ipv4Addr::new(127, a, b, c)
}

/// Connects to `to` from `from` (any port), without blocking the executor: the socket is bound
/// first, then connected non-blocking, and the connection is complete once it is writable.
pub async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> io::Result<Async<TcpStream>> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto};
    let socket = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        Some(ipproto::TCP),
    )?;
    // As the agent does: a session is a few small messages each way, which Nagle's algorithm
    // would hold back for the peer's delayed acknowledgement (40 ms on Linux).
    rustix::net::sockopt::set_tcp_nodelay(&socket, true)?;
    rustix::net::bind(&socket, &SocketAddrV4::new(from, 0))?;
    match rustix::net::connect(&socket, &to) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = Async::new_nonblocking(TcpStream::from(socket))?;
    stream.writable().await?;
    match stream.get_ref().take_error()? {
        None => Ok(stream),
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn source_addresses_are_distinct_loopback_and_avoid_0_and_255() {
        let n = 300_000;
        let mut seen = HashSet::new();
        for i in 0..n {
            let ip = source_address(i);
            assert!(ip.is_loopback(), "{ip}");
            let last = ip.octets()[3];
            assert!(last != 0 && last != 255, "{ip}");
            assert!(seen.insert(ip), "{ip} given twice");
        }
        assert_eq!(source_address(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_address(254), Ipv4Addr::new(127, 0, 1, 1));
    }

    #[test]
    fn a_connection_comes_from_the_chosen_address() {
        smol::block_on(async {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let to = listener.local_addr().unwrap();
            let from = source_address(70_000);
            let (client, accepted) =
                smol::future::zip(connect_from(from, to), listener.accept()).await;
            client.unwrap();
            assert_eq!(accepted.unwrap().1.ip(), from);
        });
    }
}
