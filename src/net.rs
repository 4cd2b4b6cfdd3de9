//! What every listener and dialer shares: an accept loop whose connections end with it (one
//! task each, or a fixed number taking them in turn), and a deadline around any future.

use crate::clock::{Clock, Instant};
use crate::tasks::{Spawner, TaskSet};
use smol::net::{SocketAddr, TcpListener, TcpStream};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Accepts connections on `listener` and runs `handle` on each, on the workers of `ex`, until
/// the returned future is dropped. Dropping it also ends every open connection (and lets go of
/// what they hold, such as the store) instead of leaving detached tasks behind. `what` names
/// the listener in logs.
pub async fn serve<F, Fut>(listener: TcpListener, what: &'static str, ex: Spawner, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = TaskSet::new(ex);
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => connections.spawn(handle(tcp, peer)),
            Err(e) => {
                // Out of file descriptors or similar: wait instead of spinning.
                log::warn!("{what} listener: accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Like [`serve`], but at most `sessions` connections are handled at once, in the order they
/// were accepted, by that many tasks on the workers of `ex`; the others wait in a queue,
/// accepted already and stamped with the time of their accept by `clock`.
///
/// Why not a task per connection: when connections come faster than the workers handle
/// them, a task each means thousands of TLS handshakes in progress, taking turns, so every
/// one of them is slow and many outlast their peer's patience, all the work on them wasted.
/// A fixed number finish quickly in the order they came, and the wait of the others is seen
/// (from the stamp) instead of hidden in the kernel's listen queue. Accepting still runs
/// wherever this future does, which should be a thread the sessions do not keep busy.
pub async fn serve_queued<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    ex: Spawner,
    sessions: usize,
    clock: Arc<dyn Clock>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Instant) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (queue, waiting) = smol::channel::unbounded::<(TcpStream, SocketAddr, Instant)>();
    let handle = Arc::new(handle);
    let mut runners = TaskSet::new(ex);
    for _ in 0..sessions.max(1) {
        let (waiting, handle) = (waiting.clone(), handle.clone());
        runners.spawn(async move {
            while let Ok((tcp, peer, accepted)) = waiting.recv().await {
                handle(tcp, peer, accepted).await;
            }
        });
    }
    loop {
        match listener.accept().await {
            // Never full (unbounded); closed only once the runners are gone with this future.
            Ok((tcp, peer)) => drop(queue.try_send((tcp, peer, clock.now()))),
            Err(e) => {
                log::warn!("{what} listener: accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `future`'s output, or `None` if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(future.await) }, async {
        smol::Timer::after(limit).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, WallMs};
    use crate::tasks::Workers;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_queued_listener_runs_a_few_at_once_in_the_order_they_came() {
        let workers = Workers::start("test-net", 1).unwrap();
        let ex = workers.spawner();
        let clock = Arc::new(ManualClock::new(WallMs(0)));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let handled: Arc<Mutex<Vec<(u16, Instant)>>> = Arc::default();
        workers.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (r, m, h) = (running.clone(), most.clone(), handled.clone());
            let serving = ex.spawn(serve_queued(
                listener,
                "test",
                ex.clone(),
                2,
                clock.clone(),
                move |mut tcp, peer, accepted| {
                    let (r, m, h) = (r.clone(), m.clone(), h.clone());
                    async move {
                        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        h.lock().unwrap().push((peer.port(), accepted));
                        // Held until the client closes, so the others must wait their turn.
                        let mut byte = [0u8; 1];
                        let _ = smol::io::AsyncReadExt::read(&mut tcp, &mut byte).await;
                        r.fetch_sub(1, Ordering::SeqCst);
                    }
                },
            ));
            let mut clients = Vec::new();
            for i in 0..6u64 {
                clock.advance(Duration::from_millis(10));
                let client = TcpStream::connect(addr).await.unwrap();
                clients.push((client.local_addr().unwrap().port(), client));
                // Accepted in order, not racing each other.
                while handled.lock().unwrap().len() < 2.min(i as usize + 1) {
                    smol::Timer::after(Duration::from_millis(1)).await;
                }
                smol::Timer::after(Duration::from_millis(20)).await;
            }
            let order: Vec<u16> = clients.iter().map(|(port, _)| *port).collect();
            for (_, client) in clients {
                drop(client);
                smol::Timer::after(Duration::from_millis(5)).await;
            }
            while handled.lock().unwrap().len() < 6 {
                smol::Timer::after(Duration::from_millis(1)).await;
            }
            serving.cancel().await;
            let handled = handled.lock().unwrap();
            let ports: Vec<u16> = handled.iter().map(|(port, _)| *port).collect();
            assert_eq!(ports, order, "handled in the order they connected");
            // Stamped at the accept (each connect was 10 ms later on the clock), not when a
            // runner took them (the last four: all at 60 ms).
            let stamps: Vec<u64> = handled.iter().map(|(_, t)| t.as_millis()).collect();
            assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
