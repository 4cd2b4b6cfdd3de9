//! The shell around [`Admission`] and [`Tally`] that a listener shares between its accept loop
//! and its connections: a [`Ticket`] per unauthenticated connection, which closes it when the
//! budget evicts it or its deadline passes, and one summary line a window for what was closed.

use super::admission::{Admission, Budget, ConnId, Source};
use super::tally::Tally;
use crate::clock::{Clock, Instant, within};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Why a connection was closed before it authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Closed {
    /// The budget needed its place for a newer connection.
    Evicted,
    /// It did not authenticate within its deadline.
    TimedOut,
    /// Its TLS handshake failed (not TLS, an unknown certificate, a protocol error).
    HandshakeFailed,
    /// A firewall rule does not admit its source (the agent's listener).
    Refused,
    /// It failed after its handshake but before it authenticated: a refused activation token,
    /// a malformed message, a wrong login.
    Failed,
    /// Its source failed too often lately: refused before anything it sent was looked at.
    Slowed,
}

impl Closed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Closed::Evicted => "evicted",
            Closed::TimedOut => "timed-out",
            Closed::HandshakeFailed => "handshake-failed",
            Closed::Refused => "refused",
            Closed::Failed => "failed",
            Closed::Slowed => "slowed",
        }
    }

    /// The words of the summary line.
    fn words(self) -> &'static str {
        match self {
            Closed::Evicted => "closed to make room for newer ones",
            Closed::TimedOut => "too slow to authenticate",
            Closed::HandshakeFailed => "failed the TLS handshake",
            Closed::Refused => "refused by a firewall rule",
            Closed::Failed => "failed before authenticating",
            Closed::Slowed => "refused while their source waits after failures",
        }
    }
}

struct Inner {
    admission: Admission,
    /// A message on a connection's channel tells it that it was evicted; the channel closing
    /// without one means it authenticated and no longer counts.
    evictors: HashMap<ConnId, (smol::channel::Sender<()>, IpAddr)>,
    tally: Tally,
}

/// Told of every connection closed before it authenticated (a metric, say).
pub type OnClosed = Box<dyn Fn(Closed) + Send + Sync>;

/// One listener's unauthenticated connections.
pub struct Gate {
    inner: Mutex<Inner>,
    on_closed: Option<OnClosed>,
}

impl Gate {
    /// `what` names the listener in the summary line.
    pub fn new(what: &'static str, budget: Budget) -> Arc<Gate> {
        Gate::build(what, budget, None)
    }

    /// [`Gate::new`], telling `on_closed` of each connection it closes or is told closed.
    pub fn observed(what: &'static str, budget: Budget, on_closed: OnClosed) -> Arc<Gate> {
        Gate::build(what, budget, Some(on_closed))
    }

    fn build(what: &'static str, budget: Budget, on_closed: Option<OnClosed>) -> Arc<Gate> {
        Arc::new(Gate {
            inner: Mutex::new(Inner {
                admission: Admission::new(budget),
                evictors: HashMap::new(),
                tally: Tally::new(what),
            }),
            on_closed,
        })
    }

    fn observe(&self, why: Closed) {
        if let Some(on_closed) = &self.on_closed {
            on_closed(why);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing in the critical sections panics; a poisoned lock still holds sound counts.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a connection from `peer`, closing the one the budget evicts for it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, now: Instant) -> Ticket {
        let (evict, evicted) = smol::channel::bounded(1);
        let mut inner = self.lock();
        let admitted = inner.admission.admit(Source::of(peer));
        let mut evicted_one = false;
        if let Some(old) = admitted.evicted
            && let Some((evict, source)) = inner.evictors.remove(&old)
        {
            let _ = evict.try_send(());
            // Evictions come in floods and say nothing of their own: the summary counts them.
            let _ = inner.tally.record(now, source, Closed::Evicted.words());
            evicted_one = true;
        }
        inner.evictors.insert(admitted.id, (evict, peer));
        drop(inner);
        if evicted_one {
            self.observe(Closed::Evicted);
        }
        Ticket {
            gate: self.clone(),
            id: admitted.id,
            peer,
            evicted,
        }
    }

    /// Counts a connection closed before it authenticated, for the summary line; true if it
    /// is among the first few of the window, which the caller logs with its details.
    pub fn closed(&self, now: Instant, peer: IpAddr, why: Closed) -> bool {
        let detailed = self.lock().tally.record(now, peer, why.words());
        self.observe(why);
        detailed
    }

    /// The summary line, once a window with anything in it has passed.
    pub fn poll_summary(&self, now: Instant) -> Option<String> {
        self.lock().tally.poll_summary(now)
    }

    /// Unauthenticated connections open now.
    pub fn open(&self) -> usize {
        self.lock().admission.len()
    }

    fn release(&self, id: ConnId) {
        let mut inner = self.lock();
        inner.admission.release(id);
        inner.evictors.remove(&id);
    }
}

/// An unauthenticated connection's place in its listener's budget; dropping it gives the place
/// back (the connection authenticated, or closed).
pub struct Ticket {
    gate: Arc<Gate>,
    id: ConnId,
    peer: IpAddr,
    evicted: smol::channel::Receiver<()>,
}

impl Ticket {
    /// Runs `work` (a handshake, reading a request head) until it ends, `limit` passes or the
    /// budget evicts this connection; a deadline or an eviction is counted for the summary.
    pub async fn guard<T>(
        &self,
        clock: &dyn Clock,
        limit: Duration,
        work: impl Future<Output = T>,
    ) -> Result<T, Closed> {
        match self.until_evicted(within(clock, limit, work)).await? {
            Some(done) => Ok(done),
            None => {
                // An eviction was counted when it happened; a deadline is counted here.
                let _ = self.gate.closed(clock.now(), self.peer, Closed::TimedOut);
                Err(Closed::TimedOut)
            }
        }
    }

    /// Runs `work` until it ends or the budget evicts this connection (which cannot happen any
    /// more once it [authenticated](Ticket::authenticated)).
    pub async fn until_evicted<T>(&self, work: impl Future<Output = T>) -> Result<T, Closed> {
        smol::future::or(async { Ok(work.await) }, async {
            self.evicted().await;
            Err(Closed::Evicted)
        })
        .await
    }

    /// Completes when this connection is evicted; never once it authenticated.
    async fn evicted(&self) {
        if self.evicted.recv().await.is_err() {
            // Authenticated (or the gate is gone): nothing will evict it now.
            smol::future::pending::<()>().await;
        }
    }

    /// The connection proved who it is: it leaves the budget and can no longer be evicted.
    pub fn authenticated(&self) {
        self.gate.release(self.id);
    }

    /// Counts this connection as closed for `why` (a failed handshake, say); true if the
    /// caller should log it with its details (see [`Gate::closed`]).
    pub fn closed(&self, now: Instant, why: Closed) -> bool {
        self.gate.closed(now, self.peer, why)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.release(self.id);
    }
}

/// Logs a gate's summary line at most once a [`super::tally::WINDOW`], for as long as it runs.
pub async fn log_summaries(gate: Arc<Gate>, clock: &dyn Clock) {
    loop {
        clock.sleep(super::tally::WINDOW / 4).await;
        if let Some(line) = gate.poll_summary(clock.now()) {
            log::warn!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evicted_ticket_stops_its_work_and_a_dropped_one_frees_its_place() {
        let gate = Gate::new(
            "test",
            Budget {
                total: 2,
                per_source: 2,
            },
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = || Instant::from_millis(0);
        let clock = crate::clock::ManualClock::new(crate::clock::WallMs(0));
        smol::block_on(async {
            let first = gate.admit(ip, now());
            let second = gate.admit(ip, now());
            assert_eq!(gate.open(), 2);
            let third = gate.admit(ip, now());
            assert_eq!(gate.open(), 2);
            // The first was evicted: its work ends at once instead of waiting a minute.
            let forever = smol::future::pending::<()>();
            let result = first.guard(&clock, Duration::from_secs(60), forever).await;
            assert_eq!(result, Err(Closed::Evicted));
            let result = second
                .guard(&clock, Duration::ZERO, smol::future::pending::<()>())
                .await;
            assert_eq!(result, Err(Closed::TimedOut));
            assert_eq!(
                third
                    .guard(&clock, Duration::from_secs(1), async { 7 })
                    .await,
                Ok(7)
            );
            drop((first, second));
            assert_eq!(gate.open(), 1);
            // Authenticated, it no longer counts and is never evicted: its work runs on.
            third.authenticated();
            assert_eq!(gate.open(), 0);
            let (fourth, _fifth) = (gate.admit(ip, now()), gate.admit(ip, now()));
            let _sixth = gate.admit(ip, now());
            let forever = smol::future::pending::<()>();
            assert_eq!(fourth.until_evicted(forever).await, Err(Closed::Evicted));
            let slow = smol::future::yield_now();
            assert!(third.until_evicted(slow).await.is_ok());
            drop(third);
            assert_eq!(gate.open(), 2);
        });
        let line = gate
            .poll_summary(Instant::from_millis(0).saturating_add(super::super::tally::WINDOW))
            .unwrap();
        assert!(
            line.contains("closed 3 connections from 1 source"),
            "{line}"
        );
        assert!(
            line.contains("2 closed to make room") && line.contains("1 too slow"),
            "{line}"
        );
    }
}
