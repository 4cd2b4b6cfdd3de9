//! What every listener and dialer shares: an accept loop whose connections end with it, a
//! deadline around any future, the budget of connections that have not authenticated yet with
//! its summary log line, and the backoff of sources whose attempts keep failing.

pub mod admission;
pub mod backoff;
pub mod gate;
pub mod tally;

pub use admission::Budget;
pub use backoff::Backoff;
pub use gate::{Closed, Gate, Ticket};

use crate::clock::Clock;
use crate::tasks::{Spawner, TaskSet};
use smol::net::{SocketAddr, TcpListener, TcpStream};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Accepts connections on `listener` and runs `handle` on each, on the workers of `ex`, until
/// the returned future is dropped. Dropping it also ends every open connection (and lets go of
/// what they hold, such as the store) instead of leaving detached tasks behind. `what` names
/// the listener in logs.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    ex: Spawner,
    clock: Arc<dyn Clock>,
    handle: F,
) where
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
                clock.sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
