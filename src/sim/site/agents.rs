//! The simulated agents: their processes starting and stopping, their side of each session
//! (the real `AgentSession`), the clock watch before each session, and the status they send. A
//! protocol-1 agent is the same session fed protocol 1's messages, read as a v1 agent reads them.

use super::*;

impl Site {
    pub(super) fn agent_start(&mut self, id: ComputerId) {
        let now = self.now;
        let Some(agent) = self.agents.get_mut(&id) else {
            return;
        };
        agent.life = Life::Running;
        agent.generation += 1;
        agent.own = None;
        agent.stopping = None;
        agent.plan = Heartbeats::new(at(now), agent.config.interval);
        agent.watch = ClockWatch::default();
        let version = vec![("version".into(), "sim".into())];
        agent.append(events::AGENT_STARTED.id, now, version);
    }

    /// The process ends: its sessions end with it (the manager sees the connection close).
    pub(super) fn agent_down(&mut self, id: ComputerId) {
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.life = Life::Down;
            agent.generation += 1;
            agent.own = None;
            agent.stopping = None;
        }
        self.oracle.agent_restarted(id);
        let sids: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.computer == id)
            .map(|(k, _)| *k)
            .collect();
        for sid in sids {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.agent = None;
            }
            self.close_towards_manager(sid);
        }
    }

    pub(super) fn agent_dial(&mut self, id: ComputerId, purpose: Purpose) {
        let now = self.now;
        let Some(agent) = self.agents.get_mut(&id) else {
            return;
        };
        let stepped = watch_clock(agent, now);
        let status = status(agent, now);
        let protocol = agent.protocol;
        if let Some(change) = stepped {
            self.trace(Some(id), || {
                format!("the agent saw its clock step {change} ms")
            });
        }
        self.oracle.agent_looked(id);
        let hello = Hello {
            protocol,
            agent_version: "sim".into(),
            purpose,
        };
        let session = AgentSession::heartbeat(at(now), hello, status, STEP_TIMEOUT);
        let sid = self.new_session(id, false, Some(session), None);
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.own = Some(sid);
        }
        self.drive_agent(sid);
    }

    pub(super) fn drive_agent(&mut self, sid: u64) {
        let now = self.now;
        loop {
            let Some(session) = self.sessions.get_mut(&sid) else {
                return;
            };
            let computer = session.computer;
            let Some(output) = session.agent.as_mut().and_then(AgentSession::poll_output) else {
                return;
            };
            let Some(agent) = self.agents.get_mut(&computer) else {
                return;
            };
            match output {
                AgentOutput::Send(msg) => self.send_to_manager(sid, msg),
                AgentOutput::ReadEvents { after, max } => {
                    let pending: Vec<AgentEvent> = agent
                        .spool
                        .iter()
                        .filter(|e| e.seq > after)
                        .cloned()
                        .collect();
                    let take = pending.len().min(max as usize);
                    let batch = EventBatch {
                        more: pending.len() > take,
                        events: pending.into_iter().take(take).collect(),
                    };
                    if let Some(a) = session.agent.as_mut() {
                        a.provide_events(at(now), batch);
                    }
                }
                AgentOutput::Acked { through } => {
                    // What leaves the spool now must be stored (retention never runs here).
                    let lost = agent
                        .spool
                        .iter()
                        .filter(|e| e.seq <= through)
                        .find(|e| !self.manager.events.contains_key(&(computer, e.seq)));
                    if let Some(event) = lost {
                        let what = format!("event {} acknowledged but never stored", event.seq);
                        self.oracle.violations.push(what);
                    }
                    agent.spool.retain(|e| e.seq > through);
                }
                AgentOutput::UpgradeOffered(_) => {
                    if let Some(a) = session.agent.as_mut() {
                        a.upgrade_answer(at(now), false);
                    }
                }
                AgentOutput::BinaryChunk(_) => {}
                AgentOutput::Apply {
                    config,
                    fingerprint,
                } => {
                    let changed = config.interval != agent.config.interval
                        || config.direction != agent.config.direction;
                    // As the real agent does, whatever the manager said: what it reports next.
                    let own = config.fingerprint_for(agent.protocol);
                    if own != fingerprint {
                        let what = format!(
                            "computer {computer}: sent fingerprint {fingerprint}, but a protocol-{} \
                             agent computes {own}",
                            agent.protocol
                        );
                        self.oracle.violations.push(what);
                    }
                    agent.config = config;
                    agent.fingerprint = own;
                    let fingerprint = own;
                    let interval = agent.config.interval;
                    if session.dialed {
                        if changed {
                            agent.plan.handle_changed(at(now), interval, false);
                        }
                    } else {
                        session.new_interval = Some(interval);
                    }
                    if let Some(a) = session.agent.as_mut() {
                        a.config_result(at(now), Ok(fingerprint));
                    }
                }
                AgentOutput::Activated(_) => {}
                AgentOutput::Finished(result) => {
                    let dialed = session.dialed;
                    // A session the manager dialed is contact too (`agent/heartbeat.rs::heard`).
                    if dialed && result.is_ok() {
                        agent.plan.handle_heard(at(now));
                    }
                    self.trace(Some(computer), || {
                        format!("agent's session over (dialed {dialed}): {result:?}")
                    });
                    let Some(session) = self.sessions.get_mut(&sid) else {
                        return;
                    };
                    let Some(agent) = self.agents.get_mut(&computer) else {
                        return;
                    };
                    session.agent = None;
                    if !session.dialed {
                        agent.own = None;
                        let unit = self.rng.unit();
                        match result {
                            Ok(next) => {
                                let new_interval = session.new_interval;
                                agent
                                    .plan
                                    .handle_success(at(now), Some(next), new_interval, unit);
                            }
                            Err(_) => {
                                agent.plan.handle_failure(at(now), unit);
                            }
                        }
                        if let Some(back) = agent.stopping {
                            self.agent_down(computer);
                            let generation = self.agents.get(&computer).map_or(0, |a| a.generation);
                            self.schedule(back, Ev::AgentBack(computer, generation));
                            return;
                        }
                    }
                    self.close_towards_manager(sid);
                    self.reap(sid);
                    return;
                }
            }
        }
    }

    pub(super) fn at_agent(&mut self, sid: u64, msg: Outgoing) {
        let Some(computer) = self.sessions.get(&sid).map(|s| s.computer) else {
            return;
        };
        if let Some(Life::Frozen(until)) = self.agents.get(&computer).map(|a| a.life) {
            self.schedule(until, Ev::ToAgent(sid, msg));
            return;
        }
        if !self.agent_side_runs(sid) {
            return;
        }
        let now = at(self.now);
        let protocol = self
            .agents
            .get(&computer)
            .map_or(PROTOCOL_VERSION, |a| a.protocol);
        let msg = match read(protocol, msg) {
            Ok(msg) => msg,
            Err(what) => {
                let what = format!("computer {computer}: {what}");
                self.oracle.violations.push(what);
                return;
            }
        };
        if let Some(a) = self.sessions.get_mut(&sid).and_then(|s| s.agent.as_mut()) {
            a.handle_message(now, msg);
        }
        self.drive_agent(sid);
    }
}

/// A manager message as an agent speaking `protocol` reads it, for the current `AgentSession`
/// that stands in for both: a protocol-1 agent decodes protocol 1's form (a configuration without
/// the firewall) and checks that `GetStatus` names its own protocol; the wrong form is a
/// violation, which on the wire would be a frame the agent cannot decode.
fn read(protocol: u16, msg: Outgoing) -> Result<ManagerMsg, String> {
    let msg = match (protocol, msg) {
        (1, Outgoing::V1(msg)) => msg,
        (PROTOCOL_VERSION, Outgoing::Current(msg)) => return Ok(msg),
        (protocol, msg) => return Err(format!("a protocol-{protocol} agent was sent {msg:?}")),
    };
    Ok(match msg {
        ManagerMsgV1::GetStatus {
            protocol: 1,
            manager_time,
        } => ManagerMsg::GetStatus {
            protocol: PROTOCOL_VERSION,
            manager_time,
        },
        ManagerMsgV1::GetStatus { protocol, .. } => {
            return Err(format!("a protocol-1 agent was told protocol {protocol}"));
        }
        ManagerMsgV1::GetEvents { after, max } => ManagerMsg::GetEvents { after, max },
        ManagerMsgV1::Ack { through } => ManagerMsg::Ack { through },
        ManagerMsgV1::SetConfig {
            config,
            fingerprint,
        } => ManagerMsg::SetConfig {
            config: config.into(),
            fingerprint,
        },
        ManagerMsgV1::Done { next_heartbeat_ms } => ManagerMsg::Done { next_heartbeat_ms },
        ManagerMsgV1::Activated(_) => return Err("an activation in a heartbeat".into()),
        ManagerMsgV1::Refused(refusal) => ManagerMsg::Refused(refusal),
    })
}

/// Before each session in either direction, as the agent's runtime does, so the clock event
/// travels with it.
pub(super) fn watch_clock(agent: &mut Agent, now: u64) -> Option<i64> {
    let step = agent.watch.observe(at(now), agent.wall(now));
    if let Some(step) = step {
        let fields = vec![
            ("old".into(), step.expected.0.to_string()),
            ("new".into(), step.found.0.to_string()),
            ("change_ms".into(), step.change_ms.to_string()),
        ];
        agent.append(events::CLOCK_CHANGED.id, now, fields);
    }
    step.map(|s| s.change_ms)
}

pub(super) fn status(agent: &Agent, now: u64) -> AgentStatus {
    AgentStatus {
        wall_clock: agent.wall(now),
        components: vec![],
        counters: vec![],
        fingerprint: Some(agent.fingerprint),
        spool: SpoolRange {
            first: agent.spool.first().map_or(agent.next_seq + 1, |e| e.seq),
            last: agent.next_seq,
        },
        listen_port: agent.config.direction.agent_listens().then_some(4118),
    }
}
