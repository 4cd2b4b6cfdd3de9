//! The handles through which the API, the agent port and the dialer tell the manager's tasks
//! what happened: [`Liveness`] for the verdicts task, [`Dialer`] for the dialer task, and the
//! events they carry. Neutral ground, so the API reaches the manager's tasks without importing
//! the manager (which starts the API).

use crate::clock::{Clock, WallMs, within};
use crate::model::{ComputerId, ListenerRule};
use crate::proto::SessionSummary;
use smol::channel::{Receiver, Sender};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
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
    /// The agent stopped cleanly, with its wall clock if it sent its status.
    Goodbye {
        computer: ComputerId,
        agent_clock: Option<crate::clock::WallMs>,
    },
    Activated(ComputerId),
    Deleted(ComputerId),
    /// A policy or computer changed: effective settings may have moved.
    SettingsChanged,
    /// An administrator dismissed the computer's offline alert.
    OfflineDismissed(ComputerId),
    /// An administrator dismissed the site incident of this policy: it is over for the
    /// detector too, and its computers still offline are on their own.
    IncidentDismissed(crate::model::PolicyId),
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
    /// A session with the computer got into the manager (a verified connection queued for a
    /// runner, or a dial that reached the agent): its heartbeat is on its way.
    Arrived(ComputerId),
    /// That session ended without a heartbeat or goodbye.
    Left(ComputerId),
}

/// A cheap handle to send events; sending never blocks a request. Each event carries when it
/// was sent: the verdicts task judges deadlines only as far as it has taken every event sent
/// before, so a heartbeat still queued behind others is never a missed one.
#[derive(Clone)]
pub struct Liveness {
    events: smol::channel::Sender<(crate::clock::Instant, LivenessEvent)>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
}

/// The verdicts task's end of the channel: each event with when it was sent.
pub type LivenessEvents = smol::channel::Receiver<(crate::clock::Instant, LivenessEvent)>;

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liveness").finish_non_exhaustive()
    }
}

impl Liveness {
    pub fn channel(clock: std::sync::Arc<dyn crate::clock::Clock>) -> (Liveness, LivenessEvents) {
        let (events, receiver) = smol::channel::unbounded();
        (Liveness { events, clock }, receiver)
    }

    pub fn send(&self, event: LivenessEvent) {
        // Only fails once the task is gone, i.e. during shutdown.
        let _ = self.events.try_send((self.clock.now(), event));
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

/// Distinct agent-port rule sets the dialer remembers by configuration fingerprint; past it
/// the memory starts over (a site has a few dozen; this bounds a churn of edits).
const MAX_REMEMBERED_RULE_SETS: usize = 1024;

/// A cheap handle to the dialer task, and what its dials learned that others ask about.
#[derive(Clone, Debug)]
pub struct Dialer {
    events: Sender<DialerEvent>,
    /// The manager's own address in its latest dial to each computer (known once TCP connected,
    /// whatever came after): the address the agent's port rule judges. The API checks a rule
    /// change against it; held in memory only, so unknown until the first dial after a start.
    sources: Arc<RwLock<HashMap<ComputerId, IpAddr>>>,
    /// The agent-port rules of each configuration the manager expected an agent to run, by
    /// fingerprint: an agent that has not applied the newest one still runs one of these, and a
    /// refused dial can say which of its rules refused the manager.
    rule_sets: Arc<RwLock<HashMap<[u8; 32], Vec<ListenerRule>>>>,
}

impl Dialer {
    pub fn channel() -> (Dialer, Receiver<DialerEvent>) {
        let (events, receiver) = smol::channel::unbounded();
        let dialer = Dialer {
            events,
            sources: Arc::default(),
            rule_sets: Arc::default(),
        };
        (dialer, receiver)
    }

    pub fn note_source(&self, computer: ComputerId, manager: IpAddr) {
        let mut sources = self.sources.write().unwrap_or_else(|e| e.into_inner());
        sources.insert(computer, manager);
    }

    pub fn forget_source(&self, computer: ComputerId) {
        let mut sources = self.sources.write().unwrap_or_else(|e| e.into_inner());
        sources.remove(&computer);
    }

    /// The manager's address toward `computer`, as its latest dial there found it.
    pub fn source(&self, computer: ComputerId) -> Option<IpAddr> {
        let sources = self.sources.read().unwrap_or_else(|e| e.into_inner());
        sources.get(&computer).copied()
    }

    /// Remembers the agent-port rules of a configuration; one without any admits everyone and
    /// needs no remembering.
    pub fn note_rules(&self, fingerprint: [u8; 32], rules: &[ListenerRule]) {
        if rules.is_empty() {
            return;
        }
        let mut sets = self.rule_sets.write().unwrap_or_else(|e| e.into_inner());
        if !sets.contains_key(&fingerprint) {
            if sets.len() >= MAX_REMEMBERED_RULE_SETS {
                sets.clear();
            }
            sets.insert(fingerprint, rules.to_vec());
        }
    }

    /// The agent-port rules of the configuration with `fingerprint`, if remembered.
    pub fn rules(&self, fingerprint: &[u8; 32]) -> Option<Vec<ListenerRule>> {
        let sets = self.rule_sets.read().unwrap_or_else(|e| e.into_inner());
        sets.get(fingerprint).cloned()
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
