//! The handles through which the API, the agent port and the dialer tell the manager's tasks
//! what happened: [`Liveness`] for the verdicts task, [`Dialer`] for the dialer task, and the
//! events they carry. Neutral ground, so the API reaches the manager's tasks without importing
//! the manager (which starts the API).

use crate::clock::{Clock, WallMs, within};
use crate::model::ComputerId;
use crate::proto::SessionSummary;
use smol::channel::{Receiver, Sender};
use std::time::Duration;

/// What the rest of the manager tells the verdicts task.
#[derive(Debug, Clone)]
pub enum LivenessEvent {
    Heartbeat {
        computer: ComputerId,
        /// The agent's wall clock in its status, if it sent one.
        agent_clock: Option<WallMs>,
        /// How long the session had been owed by the manager when the heartbeat was recorded
        /// (see `Peer::since`).
        waited: Duration,
    },
    Goodbye(ComputerId),
    Activated(ComputerId),
    Deleted(ComputerId),
    /// A policy or computer changed: effective settings may have moved.
    SettingsChanged,
    /// An administrator dismissed the computer's offline alert.
    OfflineDismissed(ComputerId),
    /// The agent reported a step of its own clock (event 5004), seen when its clock read `at`.
    ClockStep {
        computer: ComputerId,
        change_ms: i64,
        at: crate::clock::WallMs,
    },
    /// The manager's dial to the agent failed, in words.
    DialFailed {
        computer: ComputerId,
        reason: String,
    },
    DialSucceeded(ComputerId),
}

/// A cheap handle to send events; sending never blocks a request.
#[derive(Clone, Debug)]
pub struct Liveness {
    events: smol::channel::Sender<LivenessEvent>,
}

impl Liveness {
    pub fn channel() -> (Liveness, smol::channel::Receiver<LivenessEvent>) {
        let (events, receiver) = smol::channel::unbounded();
        (Liveness { events }, receiver)
    }

    pub fn send(&self, event: LivenessEvent) {
        // Only fails once the task is gone, i.e. during shutdown.
        let _ = self.events.try_send(event);
    }

    /// Events sent and not yet taken by the task.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.events.len()
    }
}

/// The result of one dial: the session's summary, or why it failed, in words.
pub type DialResult = Result<SessionSummary, DialError>;

/// Why a dial failed, by stage; each holds its words for the log, the API and the
/// manager-cannot-reach-agent alert. Clone: one dial answers every caller that waited for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialError {
    /// Where to dial is not known (not activated, no port reported, no address), or the store
    /// could not say.
    NoTarget(String),
    Resolve(String),
    Connect(String),
    Tls(String),
    /// The listener answered with a certificate that is not the computer's.
    Identity(String),
    /// Connected, but the session failed.
    Session(String),
    /// An operation waited this long for the dial's answer.
    NoAnswer(Duration),
    ShuttingDown,
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::NoTarget(words)
            | DialError::Resolve(words)
            | DialError::Connect(words)
            | DialError::Tls(words)
            | DialError::Identity(words)
            | DialError::Session(words) => f.write_str(words),
            DialError::NoAnswer(limit) => write!(f, "no answer within {}s", limit.as_secs()),
            DialError::ShuttingDown => f.write_str("the manager is shutting down"),
        }
    }
}

impl std::error::Error for DialError {}

/// What the rest of the manager tells the dialer.
#[derive(Debug)]
pub enum DialerEvent {
    /// Policies or computers changed: re-plan, and push changed configurations.
    Refresh,
    /// One computer was activated: plan it alone (a refresh of everyone per activation made
    /// activating a fleet quadratic).
    Activated(ComputerId),
    /// Dial now; `reply` gets the result of a dial that starts after this request.
    Dial {
        computer: ComputerId,
        reply: Option<Sender<DialResult>>,
    },
    /// A session ended on either port.
    SessionEnded {
        computer: ComputerId,
        dialed: bool,
        /// The agent applied a new configuration in it.
        config_applied: bool,
        /// The agent listens, by its status in the session.
        listens: bool,
    },
    Deleted(ComputerId),
}

/// A cheap handle to the dialer task.
#[derive(Clone, Debug)]
pub struct Dialer {
    events: Sender<DialerEvent>,
}

impl Dialer {
    pub fn channel() -> (Dialer, Receiver<DialerEvent>) {
        let (events, receiver) = smol::channel::unbounded();
        (Dialer { events }, receiver)
    }

    pub fn send(&self, event: DialerEvent) {
        // Only fails once the task is gone, i.e. during shutdown.
        let _ = self.events.try_send(event);
    }

    /// Dials `computer` now and waits for the result (at most `limit`). Blocks: for API
    /// handlers, which run on the blocking pool.
    pub fn dial_and_wait(
        &self,
        clock: &dyn Clock,
        computer: ComputerId,
        limit: Duration,
    ) -> DialResult {
        let (reply, answer) = smol::channel::bounded(1);
        self.send(DialerEvent::Dial {
            computer,
            reply: Some(reply),
        });
        smol::block_on(within(clock, limit, answer.recv()))
            .ok_or(DialError::NoAnswer(limit))?
            .map_err(|_| DialError::ShuttingDown)?
    }
}
