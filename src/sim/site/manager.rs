//! The simulated manager: its start, its side of each session (the real `ManagerSession`), the
//! monitor and the dial plan fed as the verdicts task and the dialer feed them, and the alert
//! records their decisions write.

use super::*;

impl Site {
    /// What the verdicts task does whenever it wakes (`manager/verdicts/mod.rs::run`): a
    /// wake-up much later than it asked for means the manager did not run, and the monitor is
    /// told. It then sleeps again for at most `LOOK_EVERY`.
    pub(super) fn manager_look(&mut self) {
        let late = Duration::from_millis(self.now.saturating_sub(self.manager.wake_by));
        if late > crate::liveness::FROZEN_AFTER {
            let (from, to) = (at(self.manager.slept_at), at(self.now));
            self.trace(None, || {
                format!("the monitor is told of a freeze from {from:?}")
            });
            self.manager.monitor.handle_frozen(from, to);
        }
        self.manager.slept_at = self.now;
        self.manager.wake_by = self.now + crate::liveness::LOOK_EVERY.as_millis() as u64;
    }

    pub(super) fn manager_start(&mut self) {
        let now = at(self.now);
        self.manager.up = true;
        self.manager.slept_at = self.now;
        self.manager.wake_by = self.now;
        self.manager.frozen_until = 0;
        self.manager.monitor = Monitor::new();
        self.manager.dials = DialPlan::new(MAX_DIALS);
        let ids: Vec<ComputerId> = self.manager.settings.keys().copied().collect();
        for id in &ids {
            let settings = self.manager.settings[id];
            self.manager.monitor.track(now, *id, rules(&settings));
            self.manager.monitor.set_power(now, *id, settings.power);
        }
        for id in &ids {
            if self.active(*id, AlertKind::ComputerOffline).is_some() {
                self.manager.monitor.mark_offline_alerted(*id);
            }
            if self
                .active(*id, AlertKind::ManagerCannotReachAgent)
                .is_some()
            {
                self.manager.monitor.mark_unreachable_alerted(*id);
            }
            let target = self.target(*id);
            self.manager.dials.target(now, &target);
        }
        self.manager.incidents = self.incidents_start();
        let alerts = &self.manager.alerts;
        let active = |id: ComputerId| {
            alerts
                .iter()
                .any(|a| a.computer == id && a.kind == AlertKind::ComputerOffline && a.is_active())
        };
        self.oracle.manager_restarted(self.now, &active);
        self.decide();
        self.start_dials();
    }

    pub(super) fn target(&self, id: ComputerId) -> Target {
        let settings = self.manager.settings[&id];
        let recorded = self.manager.recorded.get(&id).cloned().unwrap_or_default();
        Target {
            computer: id,
            direction: settings.direction,
            interval: settings.interval,
            listens: recorded.listens,
            up_to_date: recorded.applied
                == Some(config(&settings).fingerprint_for(recorded.protocol)),
        }
    }

    pub(super) fn params(&self, id: ComputerId) -> SessionParams {
        let settings = self.manager.settings[&id];
        let recorded = self.manager.recorded.get(&id).cloned().unwrap_or_default();
        let stored = self
            .manager
            .events
            .range((id, 0)..=(id, u64::MAX))
            .next_back()
            .map_or(0, |((_, seq), _)| *seq);
        SessionParams {
            authenticated: true,
            expected: config(&settings),
            last_seq: recorded.last_seq.max(stored),
            next_heartbeat: settings.interval,
            step_timeout: STEP_TIMEOUT,
            max_batch: MAX_BATCH,
            manager_time: WallMs(WALL0 + self.now),
            // The simulated agents report no version: upgrades are not what this simulates.
            upgrade: None,
        }
    }

    pub(super) fn at_manager(&mut self, sid: u64, msg: AgentMsg) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        if !self.manager.up || s.manager_generation != self.manager.generation {
            return;
        }
        if self.now < self.manager.frozen_until {
            let until = self.manager.frozen_until;
            // The agent is at the manager's door on time; the manager is what is late.
            if s.manager.is_none() && !s.dialed {
                let computer = s.computer;
                self.oracle.session_began(computer, self.now);
            }
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.waited_ms += until - self.now;
            }
            self.schedule(until, Ev::ToManager(sid, msg));
            return;
        }
        let now = at(self.now);
        let (computer, fresh, dialed) = (s.computer, s.manager.is_none(), s.dialed);
        self.manager_look();
        if fresh {
            if dialed {
                return;
            }
            let params = self.params(computer);
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.manager = Some(ManagerSession::new(now, params));
            }
            // Verified and queued for a runner: its heartbeat is on its way.
            self.manager.monitor.handle_arrival(now, computer);
            self.oracle.session_began(computer, self.now);
        }
        if let Some(m) = self.sessions.get_mut(&sid).and_then(|s| s.manager.as_mut()) {
            m.handle_message(now, msg);
        }
        self.drive_manager(sid);
    }

    pub(super) fn drive_manager(&mut self, sid: u64) {
        let now = at(self.now);
        loop {
            let Some(session) = self.sessions.get_mut(&sid) else {
                return;
            };
            let computer = session.computer;
            let Some(output) = session
                .manager
                .as_mut()
                .and_then(ManagerSession::poll_output)
            else {
                return;
            };
            match output {
                ManagerOutput::Send(msg) => self.send_to_agent(sid, msg),
                ManagerOutput::StoreEvents(batch) => {
                    if self.now < self.manager.store_full_until {
                        session.events_refused = true;
                        if let Some(m) = session.manager.as_mut() {
                            m.handle_store_refused(now);
                        }
                        continue;
                    }
                    // Only steps stored now: the store keeps one copy of an event.
                    let fresh: Vec<AgentEvent> = batch
                        .iter()
                        .filter(|e| !self.manager.events.contains_key(&(computer, e.seq)))
                        .cloned()
                        .collect();
                    let steps = crate::manager::agent_port::clock_steps(&fresh);
                    for event in batch {
                        let key = (computer, event.seq);
                        match self.manager.events.get(&key) {
                            Some(stored) if *stored != event => {
                                let what = format!("event {} stored twice, differently", event.seq);
                                self.oracle.violations.push(what);
                            }
                            Some(_) => {}
                            None => {
                                self.manager.events.insert(key, event);
                            }
                        }
                    }
                    for (change_ms, seen) in steps {
                        self.trace(Some(computer), || format!("event 5004: {change_ms} ms"));
                        self.manager
                            .monitor
                            .handle_clock_event(computer, change_ms, seen);
                    }
                    if let Some(m) = self.sessions.get_mut(&sid).and_then(|s| s.manager.as_mut()) {
                        m.handle_committed(now);
                    }
                    self.decide();
                }
                ManagerOutput::Activate(_) | ManagerOutput::SendBinary(_) => {}
                ManagerOutput::Close(summary) => {
                    session.manager = None;
                    let dialed = session.dialed;
                    let (status_at, refused) = (session.status_at, session.events_refused);
                    // Every event the agent held when it sent its status is stored now.
                    let reports_stored = summary.status.as_ref().is_some_and(|s| {
                        s.spool.first > s.spool.last || s.spool.last <= summary.last_seq
                    });
                    let waited = Duration::from_millis(session.waited_ms);
                    let record = self.manager.recorded.entry(computer).or_default();
                    record.last_seq = record.last_seq.max(summary.last_seq);
                    let started_with = summary.status.as_ref().and_then(|s| s.fingerprint);
                    let config_applied =
                        summary.applied.is_some() && summary.applied != started_with;
                    if let Some(protocol) = summary.protocol {
                        record.protocol = protocol;
                    }
                    if let Some(status) = &summary.status {
                        record.applied = summary.applied;
                        record.listens = status.listen_port.is_some();
                    }
                    let listens = record.listens;
                    self.trace(Some(computer), || {
                        format!(
                            "session closed at the manager (dialed {dialed}, waited {waited:?}, \
                             events refused {refused}, stored {}): {:?} status {:?}",
                            summary.events_stored,
                            summary.result,
                            summary.status.as_ref().map(|s| s.wall_clock)
                        )
                    });
                    if summary.purpose == Some(Purpose::Goodbye) {
                        let clock = summary.status.as_ref().map(|s| s.wall_clock);
                        self.manager.monitor.handle_goodbye(now, computer, clock);
                        self.oracle
                            .heard(computer, self.now, status_at, reports_stored);
                    } else if let Some(status) = &summary.status {
                        self.manager.monitor.note_wait(now, waited);
                        self.oracle
                            .manager_wait(self.now, waited.as_millis() as u64);
                        self.manager.monitor.handle_heartbeat(
                            now,
                            computer,
                            Some(status.wall_clock),
                        );
                        self.oracle
                            .heard(computer, self.now, status_at, reports_stored);
                    } else {
                        self.manager.monitor.handle_left(now, computer);
                    }
                    self.oracle.session_ended(computer, self.now);
                    if dialed {
                        self.manager.dials.handle_done(computer);
                        match &summary.result {
                            Ok(()) => self.dial_succeeded(computer),
                            Err(e) => self.dial_failed(computer, format!("session: {e}")),
                        }
                    }
                    self.manager
                        .dials
                        .session_ended(computer, dialed, config_applied, listens);
                    self.decide();
                    self.close_towards_agent(sid);
                    self.reap(sid);
                    self.start_dials();
                    return;
                }
            }
        }
    }

    pub(super) fn start_dials(&mut self) {
        if !self.manager_running() {
            return;
        }
        while let Some((computer, due)) = self.manager.dials.poll_dial(at(self.now)) {
            self.dial(computer, due.as_millis());
        }
    }

    /// The manager dials an agent's listener.
    pub(super) fn dial(&mut self, id: ComputerId, due: u64) {
        let generation = self.manager.generation;
        let now_ms = self.now;
        let Some(agent) = self.agents.get_mut(&id) else {
            return;
        };
        let partitioned = self
            .partitioned_until
            .get(&id)
            .is_some_and(|u| *u > self.now);
        let failure = match agent.life {
            _ if partitioned => Some((CONNECT_TIMEOUT_MS, "connect timed out")),
            Life::Frozen(_) => Some((CONNECT_TIMEOUT_MS, "the TLS handshake timed out")),
            Life::Down => Some((1, "connection refused")),
            Life::Running if !agent.config.direction.agent_listens() => {
                Some((1, "connection refused"))
            }
            Life::Running if agent.blocks_manager() => {
                Some((1, "the agent's firewall rule refused the manager"))
            }
            Life::Running => None,
        };
        if let Some((after, reason)) = failure {
            let when = self.now + after;
            self.schedule(when, Ev::DialFailed(id, generation, reason.into()));
            return;
        }
        let stepped = watch_clock(agent, now_ms);
        let status = status(agent, now_ms);
        let protocol = agent.protocol;
        if let Some(change) = stepped {
            self.trace(Some(id), || {
                format!("the agent saw its clock step {change} ms")
            });
        }
        self.oracle.agent_looked(id);
        let now = at(self.now);
        let hello = Hello {
            protocol,
            agent_version: "sim".into(),
            purpose: Purpose::Heartbeat,
        };
        let agent_session = AgentSession::heartbeat(now, hello, status, STEP_TIMEOUT);
        let manager_session = ManagerSession::new(now, self.params(id));
        self.manager.monitor.handle_arrival(now, id);
        self.oracle.session_began(id, self.now);
        let sid = self.new_session(id, true, Some(agent_session), Some(manager_session));
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.waited_ms = self.now.saturating_sub(due);
        }
        self.drive_agent(sid);
        self.drive_manager(sid);
    }

    pub(super) fn dial_failed(&mut self, id: ComputerId, reason: String) {
        self.manager.dials.handle_done(id);
        self.manager.dials.dial_result(id, false);
        self.manager.monitor.handle_dial_failed(id, reason);
        self.decide();
        self.start_dials();
    }

    pub(super) fn dial_succeeded(&mut self, id: ComputerId) {
        self.manager.dials.dial_result(id, true);
        self.manager.monitor.handle_dial_succeeded(id);
    }

    pub(super) fn active(&self, id: ComputerId, kind: AlertKind) -> Option<usize> {
        self.manager
            .alerts
            .iter()
            .position(|a| a.computer == id && a.kind == kind && a.is_active())
    }

    /// Carries out the monitor's decisions on the alert records, as `verdicts/writes.rs` does.
    pub(super) fn decide(&mut self) {
        let wall = WallMs(WALL0 + self.now);
        while let Some(decision) = self.manager.monitor.poll_decision() {
            let who = match &decision {
                Decision::State { computer, .. }
                | Decision::RaiseOffline { computer, .. }
                | Decision::ClockChanged { computer, .. }
                | Decision::RaiseUnreachable { computer, .. }
                | Decision::ClearOffline { computer }
                | Decision::WithdrawOffline { computer, .. }
                | Decision::ClearUnreachable { computer } => *computer,
            };
            let delay = self.manager.monitor.manager_delay();
            self.trace(Some(who), || {
                format!("decision {decision:?} (delay {delay:?})")
            });
            if let Decision::RaiseOffline { computer, .. } = &decision {
                self.oracle.offline_raised(*computer, self.now);
            }
            if let Decision::ClockChanged { computer, .. } = &decision {
                self.oracle.clock_raised(*computer, self.now);
            }
            // The verdicts task's own mapping, onto the simulated records, with the incident
            // detector told as `verdicts/writes.rs` tells it.
            match effect(decision) {
                Effect::Status {
                    computer, state, ..
                } => self
                    .manager
                    .incidents
                    .set_online(computer, state == crate::liveness::State::Online),
                Effect::Raise {
                    computer,
                    kind,
                    words,
                } => {
                    let fresh = self.active(computer, kind).is_none();
                    let alert = self.raise(computer, kind, words.message(None), wall);
                    if kind == AlertKind::ComputerOffline {
                        self.offline_raised(computer, fresh, alert);
                    }
                }
                Effect::Clear { computer, kind, .. } => {
                    let cleared = self.clear(computer, kind, wall);
                    if kind == AlertKind::ComputerOffline {
                        self.offline_cleared(computer, cleared);
                    }
                }
            }
        }
        self.incidents_act();
    }

    pub(super) fn raise(
        &mut self,
        computer: ComputerId,
        kind: AlertKind,
        message: String,
        wall: WallMs,
    ) -> AlertId {
        let next_id = AlertId(self.manager.alerts.len() as u64 + 1);
        let index = self.active(computer, kind);
        let active = index.map(|i| self.manager.alerts[i].clone());
        let alert = lifecycle::raise(active.as_ref(), || next_id, kind, computer, message, wall);
        let id = alert.id;
        match index {
            Some(i) => self.manager.alerts[i] = alert,
            None => self.manager.alerts.push(alert),
        }
        id
    }

    /// Clears the active alert, if any; which one it cleared.
    pub(super) fn clear(
        &mut self,
        computer: ComputerId,
        kind: AlertKind,
        wall: WallMs,
    ) -> Option<AlertId> {
        let i = self.active(computer, kind)?;
        let cleared = lifecycle::clear(&self.manager.alerts[i], wall)?;
        let id = cleared.id;
        self.manager.alerts[i] = cleared;
        Some(id)
    }
}
