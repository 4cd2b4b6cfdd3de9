//! Syslog delivery: the caller's framed message to a collector over UDP, TCP, or TCP in TLS
//! (RFC 5425). Collectors answer nothing, so the answer says what was sent where.

use super::tls::{client_config_off_thread, handshake};
use super::{Answer, SendError, bounded, connect, host_port, resolve};
use crate::clock::{Clock, within};
use crate::notify::{Syslog, SyslogTransport};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpStream, UdpSocket};
use std::net::SocketAddr;
use std::time::Duration;

/// The longest a delivery waits, after its close, for the collector to close in turn.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Sends `framed` (a whole datagram for UDP; octet-counted frames for TCP and TLS, as the
/// caller made them) to the collector, within `limit`.
pub async fn syslog(
    cfg: &Syslog,
    framed: &[u8],
    clock: &dyn Clock,
    limit: Duration,
) -> Result<Answer, SendError> {
    let target = host_port(&cfg.host, cfg.port);
    let started = clock.now();
    let (answer, stream) = bounded(clock, limit, &target, deliver(cfg, framed, &target)).await?;
    if let Some(mut stream) = stream {
        // The bytes are out and our close_notify after them; reading until the collector
        // closes takes in what it sent meanwhile (TLS 1.3 session tickets), since a socket
        // dropped with unread bytes is reset, and a reset can destroy frames the collector has
        // received but not yet read. A collector that keeps the connection open costs a short
        // wait, not a failure: everything was written.
        let left = limit.saturating_sub(clock.now().saturating_since(started));
        let _ = within(clock, left.min(CLOSE_WAIT), drain(&mut stream)).await;
    }
    Ok(answer)
}

type TlsStream = futures_rustls::client::TlsStream<TcpStream>;

/// Sends and closes; returns the TLS stream still to be drained.
async fn deliver(
    cfg: &Syslog,
    framed: &[u8],
    target: &str,
) -> Result<(Answer, Option<TlsStream>), SendError> {
    let addrs = resolve(&cfg.host, cfg.port, target).await?;
    let io_error = |e: std::io::Error| SendError::Io {
        target: target.to_string(),
        source: Box::new(e),
    };
    match cfg.transport {
        SyslogTransport::Udp => {
            // `resolve` never returns an empty list.
            let peer = addrs[0];
            let sent = send_datagram(peer, framed).await.map_err(io_error)?;
            Ok((sent_answer(sent, "udp", peer), None))
        }
        SyslogTransport::Tcp => {
            let mut tcp = connect(&addrs, target).await?;
            let peer = tcp.peer_addr().map_err(io_error)?;
            tcp.write_all(framed).await.map_err(io_error)?;
            tcp.close().await.map_err(io_error)?;
            Ok((sent_answer(framed.len(), "tcp", peer), None))
        }
        SyslogTransport::Tls => {
            let config = client_config_off_thread(cfg.ca_cert.as_deref()).await?;
            let tcp = connect(&addrs, target).await?;
            let peer = tcp.peer_addr().map_err(io_error)?;
            let mut tls = handshake(config, &cfg.host, tcp, target).await?;
            tls.write_all(framed).await.map_err(io_error)?;
            // Sends close_notify, so the collector knows the stream ended here and not in a cut.
            tls.close().await.map_err(io_error)?;
            Ok((sent_answer(framed.len(), "tls", peer), Some(tls)))
        }
    }
}

/// One datagram from an unbound socket of `peer`'s family.
async fn send_datagram(peer: SocketAddr, datagram: &[u8]) -> std::io::Result<usize> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let socket = UdpSocket::bind(any).await?;
    socket.send_to(datagram, peer).await
}

fn sent_answer(bytes: usize, transport: &str, peer: SocketAddr) -> Answer {
    Answer(format!("sent {bytes} bytes over {transport} to {peer}"))
}

/// Reads and drops whatever the collector still sends, until it closes.
async fn drain(stream: &mut TlsStream) {
    let mut sink = [0u8; 1024];
    while let Ok(1..) = stream.read(&mut sink).await {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::RealClock;
    use crate::notify::SyslogFormat;
    use crate::notify::send::testing::{PATIENCE, TestCa, run};
    use futures_rustls::TlsAcceptor;
    use smol::net::TcpListener;

    fn channel(port: u16, transport: SyslogTransport, ca_cert: Option<String>) -> Syslog {
        Syslog {
            host: "127.0.0.1".into(),
            port,
            transport,
            format: SyslogFormat::Cef,
            ca_cert,
            events: Vec::new(),
        }
    }

    const FRAME: &[u8] = b"61 <113>1 2026-03-01T14:05:09Z mgr picket - - - CEF:0|Picket|x|1";

    #[test]
    fn udp_sends_the_datagram_as_given() {
        run(async {
            let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = collector.local_addr().unwrap().port();
            let cfg = channel(port, SyslogTransport::Udp, None);
            let answer = syslog(&cfg, FRAME, &RealClock::new(), PATIENCE)
                .await
                .unwrap();
            assert_eq!(
                answer.0,
                format!("sent {} bytes over udp to 127.0.0.1:{port}", FRAME.len())
            );
            let mut buf = [0u8; 2048];
            let (n, _) = collector.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], FRAME);
        });
    }

    #[test]
    fn tcp_sends_the_frames_then_closes() {
        run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let collector = async {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let mut got = Vec::new();
                tcp.read_to_end(&mut got).await.unwrap();
                got
            };
            let cfg = channel(port, SyslogTransport::Tcp, None);
            let (answer, got) =
                smol::future::zip(syslog(&cfg, FRAME, &RealClock::new(), PATIENCE), collector)
                    .await;
            assert_eq!(
                answer.unwrap().0,
                format!("sent {} bytes over tcp to 127.0.0.1:{port}", FRAME.len())
            );
            assert_eq!(got, FRAME);
        });
    }

    /// A collector presenting a certificate of `server_ca`, reading until the client's
    /// close_notify; `None` if the handshake failed.
    async fn tls_collector(listener: TcpListener, server_ca: &TestCa) -> Option<Vec<u8>> {
        let config = server_ca.server_cert().server_config(&[]);
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(config).accept(tcp).await.ok()?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        Some(got)
    }

    #[test]
    fn tls_trusts_the_channel_ca_and_delivers_every_byte() {
        let ca = TestCa::new();
        run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let cfg = channel(port, SyslogTransport::Tls, Some(ca.pem.clone()));
            let many: Vec<u8> = FRAME.repeat(200);
            let (answer, got) = smol::future::zip(
                syslog(&cfg, &many, &RealClock::new(), PATIENCE),
                tls_collector(listener, &ca),
            )
            .await;
            assert_eq!(
                answer.unwrap().0,
                format!("sent {} bytes over tls to 127.0.0.1:{port}", many.len())
            );
            assert_eq!(got.unwrap(), many);
        });
    }

    #[test]
    fn tls_refuses_a_collector_another_ca_signed() {
        let (ours, theirs) = (TestCa::new(), TestCa::new());
        run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let cfg = channel(port, SyslogTransport::Tls, Some(ours.pem.clone()));
            let (answer, got) = smol::future::zip(
                syslog(&cfg, FRAME, &RealClock::new(), PATIENCE),
                tls_collector(listener, &theirs),
            )
            .await;
            let err = answer.unwrap_err();
            assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
            assert!(err.chain().contains("UnknownIssuer"), "{}", err.chain());
            assert_eq!(got, None);
        });
    }

    #[test]
    fn a_collector_that_never_answers_times_out_within_the_limit() {
        run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let cfg = channel(port, SyslogTransport::Tls, Some(TestCa::new().pem));
            let limit = Duration::from_millis(300);
            let silent = async {
                let (tcp, _) = listener.accept().await.unwrap();
                // Holds the connection open, saying nothing, until the client gives up.
                let mut tcp = tcp;
                let _ = tcp.read_to_end(&mut Vec::new()).await;
            };
            let clock = RealClock::new();
            let client = syslog(&cfg, FRAME, &clock, limit);
            let (answer, ()) = smol::future::zip(client, silent).await;
            let err = answer.unwrap_err();
            assert!(matches!(err, SendError::Timeout { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("127.0.0.1:{port} did not answer within 0.3s")
            );
        });
    }
}
