//! The agent's side of one session: it opens with hello (or an activation request) and then
//! answers what the manager asks, checking that the manager keeps to the protocol's order.

use super::PROTOCOL_VERSION;
use super::error::ProtoError;
use super::manager_session::BINARY_CHUNK;
use super::message::{
    Activated, ActivationRequest, AgentMsg, AgentStatus, EventBatch, Hello, ManagerMsg,
    UpgradeOffer,
};
use crate::clock::Instant;
use crate::policy::{AgentConfig, Fingerprint};
use std::collections::VecDeque;
use std::time::Duration;

/// What the agent's shell must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentOutput {
    Send(AgentMsg),
    /// Read up to `max` spooled events after `after`, then call
    /// [`AgentSession::provide_events`].
    ReadEvents {
        after: u64,
        max: u32,
    },
    /// The manager stored every event through `through`: they may leave the spool.
    Acked {
        through: u64,
    },
    /// Apply this configuration, then call [`AgentSession::config_result`].
    Apply {
        config: AgentConfig,
        fingerprint: Fingerprint,
    },
    /// The manager offers a newer binary: decide, then call [`AgentSession::upgrade_answer`].
    UpgradeOffered(UpgradeOffer),
    /// The next piece of the binary asked for; the session checks only that the pieces stay
    /// within the offer's size, the shell checks the whole against its hash.
    BinaryChunk(Vec<u8>),
    /// Activation succeeded: keep the certificate and configuration.
    Activated(Activated),
    /// The session is over: the next heartbeat is due after the given delay, or it failed.
    Finished(Result<Duration, ProtoError>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Waiting for the manager's first request (or its activation answer).
    Opening,
    /// Waiting for the manager's next command.
    Commands,
    /// Waiting on the shell: events to send or a configuration to apply.
    Shell,
    Finished,
}

pub struct AgentSession {
    step: Step,
    activation: bool,
    status: Option<AgentStatus>,
    step_timeout: Duration,
    deadline: Option<Instant>,
    /// Highest sequence sent and not yet acknowledged, and highest acknowledged.
    sent_through: u64,
    acked_through: u64,
    /// Highest sequence in the spool when the session began: the manager may acknowledge up to
    /// it without a resend when it stored those events in an earlier session.
    spool_last: u64,
    /// An offered binary being received: its size and the bytes received so far.
    fetching: Option<(u64, u64)>,
    /// The size of the binary last offered, until it is answered.
    offered: Option<u64>,
    /// An upgrade was offered in this session: one is all a session holds.
    upgrade_seen: bool,
    out: VecDeque<AgentOutput>,
}

impl AgentSession {
    /// A heartbeat (or goodbye) session. `status` is sent when the manager asks for it.
    pub fn heartbeat(
        now: Instant,
        hello: Hello,
        status: AgentStatus,
        step_timeout: Duration,
    ) -> Self {
        let mut session = AgentSession::new(now, false, Some(status), step_timeout);
        session.send(AgentMsg::Hello(hello));
        session
    }

    pub fn activation(now: Instant, request: ActivationRequest, step_timeout: Duration) -> Self {
        let mut session = AgentSession::new(now, true, None, step_timeout);
        session.send(AgentMsg::Activate(request));
        session
    }

    fn new(
        now: Instant,
        activation: bool,
        status: Option<AgentStatus>,
        step_timeout: Duration,
    ) -> Self {
        let spool_last = status.as_ref().map_or(0, |s| s.spool.last);
        AgentSession {
            step: Step::Opening,
            activation,
            status,
            step_timeout,
            deadline: Some(now.saturating_add(step_timeout)),
            sent_through: 0,
            acked_through: 0,
            spool_last,
            fetching: None,
            offered: None,
            upgrade_seen: false,
            out: VecDeque::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<AgentOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn is_finished(&self) -> bool {
        self.step == Step::Finished
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            self.finish(Err(ProtoError::Timeout {
                waiting_for: "the manager",
            }));
        }
    }

    pub fn handle_closed(&mut self) {
        self.finish(Err(ProtoError::Violation(
            "the manager closed the connection mid-session".into(),
        )));
    }

    pub fn handle_message(&mut self, now: Instant, message: ManagerMsg) {
        if let Err(e) = self.dispatch(now, message) {
            self.finish(Err(e));
        }
    }

    /// The shell read these events from the spool in answer to `ReadEvents`.
    pub fn provide_events(&mut self, now: Instant, batch: EventBatch) {
        if self.step != Step::Shell {
            return;
        }
        if let Some(last) = batch.events.last() {
            self.sent_through = last.seq;
        }
        self.send(AgentMsg::Events(batch));
        self.await_manager(now);
    }

    /// The result of applying a configuration: its fingerprint, or why it was refused.
    pub fn config_result(
        &mut self,
        now: Instant,
        result: Result<Fingerprint, (Fingerprint, String)>,
    ) {
        if self.step != Step::Shell {
            return;
        }
        self.send(match result {
            Ok(fingerprint) => AgentMsg::ConfigApplied { fingerprint },
            Err((fingerprint, reason)) => AgentMsg::ConfigRejected {
                fingerprint,
                reason,
            },
        });
        self.await_manager(now);
    }

    /// Whether to fetch the offered binary now: the manager streams it if so, else ends.
    pub fn upgrade_answer(&mut self, now: Instant, fetch: bool) {
        if self.step != Step::Shell {
            return;
        }
        if let Some(size) = self.offered.take().filter(|_| fetch) {
            self.fetching = Some((size, 0));
        }
        self.send(AgentMsg::UpgradeAnswer { fetch });
        self.await_manager(now);
    }

    fn dispatch(&mut self, now: Instant, message: ManagerMsg) -> Result<(), ProtoError> {
        let unexpected = |got| ProtoError::Unexpected {
            expected: if self.step == Step::Opening {
                "the manager's first request"
            } else {
                "a manager command"
            },
            got,
        };
        match (self.step, message) {
            (_, ManagerMsg::Refused(refusal)) => Err(ProtoError::Refused(explain(refusal.reason))),
            // Once the binary is asked for, only its pieces and the end may come.
            (Step::Commands, other)
                if self.fetching.is_some()
                    && !matches!(
                        other,
                        ManagerMsg::Done { .. } | ManagerMsg::BinaryChunk { .. }
                    ) =>
            {
                Err(unexpected(name(&other)))
            }
            (Step::Opening, ManagerMsg::Activated(activated)) if self.activation => {
                self.out.push_back(AgentOutput::Activated(activated));
                self.finish(Ok(Duration::ZERO));
                Ok(())
            }
            (Step::Opening, ManagerMsg::GetStatus { protocol, .. }) if !self.activation => {
                if protocol != PROTOCOL_VERSION {
                    return Err(ProtoError::Version {
                        theirs: protocol,
                        oldest: PROTOCOL_VERSION,
                        newest: PROTOCOL_VERSION,
                    });
                }
                let status = self.status.take().ok_or_else(|| unexpected("get-status"))?;
                self.send(AgentMsg::Status(status));
                self.await_manager(now);
                Ok(())
            }
            (Step::Commands, ManagerMsg::GetEvents { after, max }) => {
                if after < self.acked_through {
                    return Err(ProtoError::Violation(format!(
                        "events after {after} asked for, but {} were acknowledged",
                        self.acked_through
                    )));
                }
                self.out.push_back(AgentOutput::ReadEvents { after, max });
                self.await_shell();
                Ok(())
            }
            (Step::Commands, ManagerMsg::Ack { through }) => {
                let known = self.sent_through.max(self.spool_last);
                if through > known || through <= self.acked_through {
                    return Err(ProtoError::Violation(format!(
                        "acknowledgement through {through}, but the spool ends at {known} and {} \
                         were acknowledged",
                        self.acked_through
                    )));
                }
                self.acked_through = through;
                self.out.push_back(AgentOutput::Acked { through });
                self.await_manager(now);
                Ok(())
            }
            (
                Step::Commands,
                ManagerMsg::SetConfig {
                    config,
                    fingerprint,
                },
            ) => {
                self.out.push_back(AgentOutput::Apply {
                    config,
                    fingerprint,
                });
                self.await_shell();
                Ok(())
            }
            (Step::Commands, ManagerMsg::Upgrade(offer)) if !self.upgrade_seen => {
                self.upgrade_seen = true;
                self.offered = Some(offer.size);
                self.out.push_back(AgentOutput::UpgradeOffered(offer));
                self.await_shell();
                Ok(())
            }
            (Step::Commands, ManagerMsg::BinaryChunk { data }) => {
                let Some((size, received)) = self.fetching else {
                    return Err(unexpected("binary-chunk"));
                };
                if data.len() > BINARY_CHUNK {
                    return Err(ProtoError::Violation(format!(
                        "a piece of {} bytes (at most {BINARY_CHUNK})",
                        data.len()
                    )));
                }
                let received = received.saturating_add(data.len() as u64);
                if received > size {
                    return Err(ProtoError::Violation(format!(
                        "{received} bytes of a binary offered with {size}"
                    )));
                }
                self.fetching = Some((size, received));
                self.out.push_back(AgentOutput::BinaryChunk(data));
                self.await_manager(now);
                Ok(())
            }
            (Step::Commands, ManagerMsg::Done { next_heartbeat_ms }) => {
                self.finish(Ok(Duration::from_millis(next_heartbeat_ms)));
                Ok(())
            }
            (_, other) => Err(unexpected(name(&other))),
        }
    }

    fn await_manager(&mut self, now: Instant) {
        self.step = Step::Commands;
        self.deadline = Some(now.saturating_add(self.step_timeout));
    }

    fn await_shell(&mut self) {
        self.step = Step::Shell;
        self.deadline = None;
    }

    fn send(&mut self, message: AgentMsg) {
        self.out.push_back(AgentOutput::Send(message));
    }

    fn finish(&mut self, result: Result<Duration, ProtoError>) {
        if self.step == Step::Finished {
            return;
        }
        self.step = Step::Finished;
        self.deadline = None;
        self.out.push_back(AgentOutput::Finished(result));
    }
}

/// A manager that does not speak this agent's protocol refuses its `Hello` in its own words
/// (protocol 1's manager: "protocol version 2 is not supported (this build speaks 1)"); the
/// administrator reading the agent's log is also told what to do.
fn explain(reason: String) -> String {
    let ours = format!("protocol version {PROTOCOL_VERSION} is not supported");
    if reason.starts_with(&ours) {
        format!("{reason}: upgrade the manager, which must be at least as new as its agents")
    } else {
        reason
    }
}

fn name(message: &ManagerMsg) -> &'static str {
    match message {
        ManagerMsg::GetStatus { .. } => "get-status",
        ManagerMsg::GetEvents { .. } => "get-events",
        ManagerMsg::Ack { .. } => "ack",
        ManagerMsg::SetConfig { .. } => "set-config",
        ManagerMsg::Done { .. } => "done",
        ManagerMsg::Activated(_) => "activated",
        ManagerMsg::Refused(_) => "refused",
        ManagerMsg::Upgrade(_) => "upgrade",
        ManagerMsg::BinaryChunk { .. } => "binary-chunk",
    }
}
