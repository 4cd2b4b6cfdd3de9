//! The manager's side of one session, whoever dialed: hello, status, events in batches (each
//! acknowledged only after the shell reports it durably stored), configuration if stale, done.
//! Every message goes out in the form of the protocol the agent's first message named.

use super::error::ProtoError;
use super::message::{
    Activated, ActivationRequest, AgentEvent, AgentMsg, AgentStatus, ManagerMsg, Purpose, Refusal,
    UpgradeOffer,
};
use super::v1::Outgoing;
use super::{OLDEST_PROTOCOL, PROTOCOL_VERSION};
use crate::clock::{Instant, WallMs};
use crate::policy::{AgentConfig, Fingerprint};
use std::collections::VecDeque;
use std::time::Duration;

/// What the manager knows about the computer before the session starts.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// False on a connection without a client certificate: only activation is allowed there.
    pub authenticated: bool,
    pub expected: AgentConfig,
    /// Highest event sequence number already stored for this computer.
    pub last_seq: u64,
    pub next_heartbeat: Duration,
    /// How long the agent may take to answer any one step.
    pub step_timeout: Duration,
    pub max_batch: u32,
    pub manager_time: WallMs,
    /// The binary this manager carries, when the computer's `agent.auto-upgrade` is on: offered
    /// at the end of a heartbeat if it is newer than the version the agent reports.
    pub upgrade: Option<UpgradeOffer>,
}

/// The largest piece of a binary in one `BinaryChunk`, well inside a frame.
pub const BINARY_CHUNK: usize = 256 * 1024;

/// What the shell must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagerOutput {
    /// Send this, encoded as the form it holds.
    Send(Outgoing),
    /// Store these events durably, then call [`ManagerSession::handle_committed`] (or
    /// [`ManagerSession::handle_store_refused`] if the store cannot take them for now).
    StoreEvents(Vec<AgentEvent>),
    /// Decide this activation (token, computer, certificate), then call
    /// [`ManagerSession::handle_activation`].
    Activate(ActivationRequest),
    /// Send the offered binary as `BinaryChunk`s of at most [`BINARY_CHUNK`] bytes, in order,
    /// then call [`ManagerSession::handle_binary_sent`].
    SendBinary(UpgradeOffer),
    /// The session is over: record the summary and close the connection.
    Close(SessionSummary),
}

/// Everything the session learned, for the shell to record when it closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    pub purpose: Option<Purpose>,
    pub agent_version: Option<String>,
    /// The protocol the agent speaks, once its first message was accepted.
    pub protocol: Option<u16>,
    pub status: Option<AgentStatus>,
    /// The fingerprint the agent runs at the end of the session.
    pub applied: Option<Fingerprint>,
    pub config_rejected: Option<String>,
    /// Whether the agent's protocol is too old to be sent the firewall that its settings turn
    /// on; `None` when the session ended before the configuration step.
    pub firewall_withheld: Option<bool>,
    /// Whether the firewall is to be enforced by this agent (enabled and not withheld); `None`
    /// when the session ended before the configuration step.
    pub firewall_enforced: Option<bool>,
    /// Whether the status the agent reported was of the configuration the manager expects.
    pub ran_expected: bool,
    pub events_stored: u64,
    pub last_seq: u64,
    /// The version offered to the agent, and whether it asked for the binary.
    pub upgrade_offered: Option<String>,
    pub upgrade_fetched: bool,
    pub result: Result<(), ProtoError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Hello,
    Status,
    Events {
        after: u64,
    },
    Commit {
        through: u64,
        more: bool,
        count: u64,
    },
    Config,
    /// An upgrade was offered: waiting for the agent's answer.
    Upgrade,
    /// The shell streams the binary.
    Streaming,
    Activation,
    Closed,
}

impl Step {
    fn expecting(self) -> &'static str {
        match self {
            Step::Hello => "hello",
            Step::Status => "status",
            Step::Events { .. } => "events",
            Step::Config => "configuration result",
            Step::Upgrade => "upgrade answer",
            Step::Commit { .. } | Step::Streaming | Step::Activation | Step::Closed => "nothing",
        }
    }
}

pub struct ManagerSession {
    params: SessionParams,
    step: Step,
    deadline: Option<Instant>,
    out: VecDeque<ManagerOutput>,
    summary: SessionSummary,
}

impl ManagerSession {
    pub fn new(now: Instant, params: SessionParams) -> Self {
        let last_seq = params.last_seq;
        ManagerSession {
            deadline: Some(now.saturating_add(params.step_timeout)),
            params,
            step: Step::Hello,
            out: VecDeque::new(),
            summary: SessionSummary {
                purpose: None,
                agent_version: None,
                protocol: None,
                status: None,
                applied: None,
                config_rejected: None,
                firewall_withheld: None,
                firewall_enforced: None,
                ran_expected: false,
                events_stored: 0,
                last_seq,
                upgrade_offered: None,
                upgrade_fetched: false,
                result: Ok(()),
            },
        }
    }

    pub fn poll_output(&mut self) -> Option<ManagerOutput> {
        self.out.pop_front()
    }

    /// When the agent's answer is due; `None` while the session waits on the shell or is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// What the session learned so far (the whole of it once the binary is to be sent).
    pub fn summary(&self) -> &SessionSummary {
        &self.summary
    }

    pub fn is_closed(&self) -> bool {
        self.step == Step::Closed
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            let waiting_for = self.step.expecting();
            self.fail(ProtoError::Timeout { waiting_for });
        }
    }

    /// The connection ended before the session did.
    pub fn handle_closed(&mut self) {
        if self.step != Step::Closed {
            self.fail(ProtoError::Violation(format!(
                "connection closed while waiting for {}",
                self.step.expecting()
            )));
        }
    }

    pub fn handle_message(&mut self, now: Instant, message: AgentMsg) {
        let result = match (self.step, message) {
            (Step::Hello, AgentMsg::Hello(hello)) => self.on_hello(now, hello),
            (Step::Hello, AgentMsg::Activate(request)) => self.on_activate(request),
            (Step::Status, AgentMsg::Status(status)) => {
                self.on_status(now, status);
                Ok(())
            }
            (Step::Events { after }, AgentMsg::Events(batch)) => {
                self.on_events(now, after, batch.events, batch.more)
            }
            (Step::Config, AgentMsg::ConfigApplied { fingerprint }) => {
                self.summary.applied = Some(fingerprint);
                self.finish(now);
                Ok(())
            }
            (Step::Config, AgentMsg::ConfigRejected { reason, .. }) => {
                self.summary.config_rejected = Some(reason);
                self.finish(now);
                Ok(())
            }
            (Step::Upgrade, AgentMsg::UpgradeAnswer { fetch }) => {
                match self.params.upgrade.clone() {
                    Some(offer) if fetch => {
                        self.summary.upgrade_fetched = true;
                        self.step = Step::Streaming;
                        self.deadline = None;
                        self.out.push_back(ManagerOutput::SendBinary(offer));
                    }
                    _ => self.done(),
                }
                Ok(())
            }
            (step, got) => Err(ProtoError::Unexpected {
                expected: step.expecting(),
                got: name(&got),
            }),
        };
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// The events of the last `StoreEvents` are durable: acknowledge them and go on.
    pub fn handle_committed(&mut self, now: Instant) {
        let Step::Commit { through, more, .. } = self.step else {
            return;
        };
        self.summary.last_seq = through;
        self.send(ManagerMsg::Ack { through });
        if more {
            self.ask_events(now, through);
        } else {
            self.config_step(now);
        }
    }

    /// The store cannot take the events of the last `StoreEvents` for now (a full disk): they
    /// are not acknowledged, so the agent keeps them in its spool and offers them again at its
    /// next heartbeat. The session goes on to the configuration and ends as usual: the agent
    /// did heartbeat, and no earlier retry would find more room.
    pub fn handle_store_refused(&mut self, now: Instant) {
        let Step::Commit { count, .. } = self.step else {
            return;
        };
        self.summary.events_stored = self.summary.events_stored.saturating_sub(count);
        self.config_step(now);
    }

    /// The shell sent the binary (or could not: it said so in the log, and the agent, short of
    /// the offer's size, keeps what it runs): the session ends.
    pub fn handle_binary_sent(&mut self) {
        if self.step == Step::Streaming {
            self.done();
        }
    }

    /// The shell's decision on an activation request.
    pub fn handle_activation(&mut self, result: Result<Activated, String>) {
        if self.step != Step::Activation {
            return;
        }
        match result {
            Ok(activated) => {
                self.send(ManagerMsg::Activated(activated));
                self.close(Ok(()));
            }
            Err(reason) => {
                self.send(ManagerMsg::Refused(Refusal {
                    reason: reason.clone(),
                }));
                self.close(Err(ProtoError::Refused(reason)));
            }
        }
    }

    fn on_hello(&mut self, now: Instant, hello: super::Hello) -> Result<(), ProtoError> {
        self.check_version(hello.protocol)?;
        if !self.params.authenticated {
            let reason =
                "a heartbeat needs a client certificate; only activation is allowed without";
            self.send(ManagerMsg::Refused(Refusal {
                reason: reason.into(),
            }));
            return Err(ProtoError::Violation(reason.into()));
        }
        self.summary.purpose = Some(hello.purpose);
        self.summary.agent_version = Some(hello.agent_version);
        self.send(ManagerMsg::GetStatus {
            protocol: self.peer(),
            manager_time: self.params.manager_time,
        });
        self.await_agent(now, Step::Status);
        Ok(())
    }

    fn on_activate(&mut self, request: ActivationRequest) -> Result<(), ProtoError> {
        self.check_version(request.protocol)?;
        if self.params.authenticated {
            return Err(ProtoError::Violation(
                "an agent with a certificate is already activated".into(),
            ));
        }
        self.summary.agent_version = Some(request.agent_version.clone());
        self.step = Step::Activation;
        self.deadline = None;
        self.out.push_back(ManagerOutput::Activate(request));
        Ok(())
    }

    fn on_status(&mut self, now: Instant, status: AgentStatus) {
        let spool = status.spool;
        self.summary.applied = status.fingerprint;
        self.summary.status = Some(status);
        // The agent still holds events stored in an earlier session whose acknowledgement was
        // lost (a crash between commit and ack): they are durable, so release them now.
        if spool.first <= spool.last && spool.first <= self.params.last_seq {
            self.send(ManagerMsg::Ack {
                through: spool.last.min(self.params.last_seq),
            });
        }
        if spool.first <= spool.last && spool.last > self.params.last_seq {
            self.ask_events(now, self.params.last_seq);
        } else {
            self.config_step(now);
        }
    }

    fn on_events(
        &mut self,
        now: Instant,
        after: u64,
        events: Vec<AgentEvent>,
        more: bool,
    ) -> Result<(), ProtoError> {
        if events.len() > self.params.max_batch as usize {
            return Err(ProtoError::Violation(format!(
                "{} events sent, {} asked for",
                events.len(),
                self.params.max_batch
            )));
        }
        let mut previous = after;
        for event in &events {
            if event.seq <= previous {
                return Err(ProtoError::Violation(format!(
                    "event sequence {} after {previous}: sequences must increase",
                    event.seq
                )));
            }
            previous = event.seq;
        }
        if events.is_empty() {
            if more {
                return Err(ProtoError::Violation(
                    "an empty batch cannot have more".into(),
                ));
            }
            self.config_step(now);
            return Ok(());
        }
        let count = events.len() as u64;
        self.summary.events_stored += count;
        self.step = Step::Commit {
            through: previous,
            more,
            count,
        };
        self.deadline = None;
        self.out.push_back(ManagerOutput::StoreEvents(events));
        Ok(())
    }

    fn ask_events(&mut self, now: Instant, after: u64) {
        self.send(ManagerMsg::GetEvents {
            after,
            max: self.params.max_batch,
        });
        self.await_agent(now, Step::Events { after });
    }

    /// After the events: push the configuration if the agent's is stale, else end. "Stale" is
    /// judged by the fingerprint the agent computes in its protocol's form.
    fn config_step(&mut self, now: Instant) {
        let peer = self.peer();
        let expected = self.params.expected.fingerprint_for(peer);
        let withheld = self.params.expected.firewall_withheld_from(peer);
        self.summary.firewall_withheld = Some(withheld);
        self.summary.firewall_enforced = Some(self.params.expected.firewall_enabled && !withheld);
        self.summary.ran_expected =
            self.summary.status.as_ref().and_then(|s| s.fingerprint) == Some(expected);
        let going_away = self.summary.purpose == Some(Purpose::Goodbye);
        if self.summary.applied == Some(expected) || going_away {
            self.finish(now);
        } else {
            // In a protocol-1 agent's form, `send` drops the firewall and fingerprints the rest.
            self.send(ManagerMsg::SetConfig {
                config: self.params.expected.clone(),
                fingerprint: self.params.expected.fingerprint(),
            });
            self.await_agent(now, Step::Config);
        }
    }

    /// The end of a heartbeat: an upgrade offer if there is one for this agent, else done.
    fn finish(&mut self, now: Instant) {
        match self.offer() {
            Some(offer) => {
                self.summary.upgrade_offered = Some(offer.version.clone());
                self.send(ManagerMsg::Upgrade(offer));
                self.await_agent(now, Step::Upgrade);
            }
            None => self.done(),
        }
    }

    /// The offer this agent is made: only in a heartbeat (not a goodbye), only to protocol 2
    /// (protocol 1 has no such message), only of a version newer than the one it reported.
    fn offer(&self) -> Option<UpgradeOffer> {
        let offer = self.params.upgrade.as_ref()?;
        let running = self.summary.agent_version.as_deref()?;
        let wanted = self.summary.purpose == Some(Purpose::Heartbeat)
            && self.peer() >= 2
            && crate::release::is_newer(&offer.version, running);
        wanted.then(|| offer.clone())
    }

    fn done(&mut self) {
        let next_heartbeat_ms =
            u64::try_from(self.params.next_heartbeat.as_millis()).unwrap_or(u64::MAX);
        self.send(ManagerMsg::Done { next_heartbeat_ms });
        self.close(Ok(()));
    }

    /// Accepts every protocol from the oldest still deployed to this build's, and remembers the
    /// peer's for the rest of the session.
    fn check_version(&mut self, theirs: u16) -> Result<(), ProtoError> {
        if (OLDEST_PROTOCOL..=PROTOCOL_VERSION).contains(&theirs) {
            self.summary.protocol = Some(theirs);
            return Ok(());
        }
        let error = ProtoError::Version {
            theirs,
            oldest: OLDEST_PROTOCOL,
            newest: PROTOCOL_VERSION,
        };
        self.send(ManagerMsg::Refused(Refusal {
            reason: error.to_string(),
        }));
        Err(error)
    }

    fn await_agent(&mut self, now: Instant, step: Step) {
        self.step = step;
        self.deadline = Some(now.saturating_add(self.params.step_timeout));
    }

    /// The peer's protocol; before its first message is accepted (a refusal), the current one,
    /// whose `Refused` every version encodes alike.
    /// The protocol the agent's first message named (this build's until it has spoken): the
    /// form its messages are decoded in (`v1::decode_agent`) and its answers sent in.
    pub fn peer(&self) -> u16 {
        self.summary.protocol.unwrap_or(PROTOCOL_VERSION)
    }

    fn send(&mut self, message: ManagerMsg) {
        let message = Outgoing::for_peer(self.peer(), message);
        self.out.push_back(ManagerOutput::Send(message));
    }

    fn fail(&mut self, error: ProtoError) {
        self.close(Err(error));
    }

    fn close(&mut self, result: Result<(), ProtoError>) {
        if self.step == Step::Closed {
            return;
        }
        self.step = Step::Closed;
        self.deadline = None;
        self.summary.result = result;
        self.out
            .push_back(ManagerOutput::Close(self.summary.clone()));
    }
}

fn name(message: &AgentMsg) -> &'static str {
    match message {
        AgentMsg::Hello(_) => "hello",
        AgentMsg::Activate(_) => "activate",
        AgentMsg::Status(_) => "status",
        AgentMsg::Events(_) => "events",
        AgentMsg::ConfigApplied { .. } => "config-applied",
        AgentMsg::ConfigRejected { .. } => "config-rejected",
        AgentMsg::UpgradeAnswer { .. } => "upgrade-answer",
    }
}
