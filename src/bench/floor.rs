//! The floor: bare mutual-TLS handshakes and one small round trip over loopback, with the same
//! certificates, verifier and threads as the agent port but none of Picket's session. Picket's
//! saturated throughput is compared against it.

use super::connect::connect_from;
use super::enroll::Identity;
use super::error::BenchError;
use crate::clock::Stopwatch;
use crate::tasks::{Workers, cores};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use smol::Executor;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The round trip's size: about a heartbeat's hello.
const PING: usize = 64;

pub struct FloorResult {
    pub completed: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

/// Runs `sessions` handshakes and round trips on `concurrency` connections. The server runs on
/// workers like the manager's agent port, a task per connection (at the bench's concurrency,
/// far below the agent port's session limit, that is the same as its queue).
pub async fn measure(
    ex: &Arc<Executor<'static>>,
    server: Arc<ServerConfig>,
    template: &ClientConfig,
    identities: &[Identity],
    sessions: u64,
    concurrency: usize,
) -> Result<FloorResult, BenchError> {
    let listener = smol::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(BenchError::Floor)?;
    let addr = listener.local_addr().map_err(BenchError::Floor)?;
    let acceptor = TlsAcceptor::from(server);
    // The server on as many workers as the manager's listeners have (a core but one).
    let threads = cores().saturating_sub(1).max(1);
    let workers = Workers::start("bench-floor", threads).map_err(BenchError::Floor)?;
    let server = workers.spawner();
    let serving = server.spawn(crate::net::serve(
        listener,
        "floor",
        server.clone(),
        Arc::new(crate::clock::RealClock::new()),
        move |tcp, _| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; PING];
                    if tls.read_exact(&mut buf).await.is_ok() {
                        let _ = tls.write_all(&buf).await;
                        let _ = tls.flush().await;
                    }
                }
            }
        },
    ));
    let configs: Vec<(Arc<ClientConfig>, std::net::Ipv4Addr)> = identities
        .iter()
        .take(concurrency.max(1))
        .map(|id| {
            let mut config = template.clone();
            config.client_auth_cert_resolver = Arc::new(super::agent::fixed(id.key.clone()));
            (Arc::new(config), id.source)
        })
        .collect();
    let left = Arc::new(AtomicU64::new(sessions));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Stopwatch::now();
    let workers: Vec<_> = configs
        .into_iter()
        .map(|(config, source)| {
            let (left, failed) = (left.clone(), failed.clone());
            ex.spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    if one(&config, source, addr).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await;
    }
    let elapsed = start.elapsed();
    serving.cancel().await;
    let failed = failed.load(Ordering::Relaxed);
    Ok(FloorResult {
        completed: sessions - failed,
        failed,
        elapsed,
    })
}

async fn one(
    config: &Arc<ClientConfig>,
    source: std::net::Ipv4Addr,
    to: SocketAddr,
) -> std::io::Result<()> {
    let tcp = connect_from(source, to).await?;
    let name = ServerName::IpAddress(to.ip().into());
    let mut tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await?;
    tls.write_all(&[7u8; PING]).await?;
    tls.flush().await?;
    let mut back = [0u8; PING];
    tls.read_exact(&mut back).await?;
    Ok(())
}
