//! The network between agents and manager: latency, lost frames, partitions, connections that
//! close under one side, and the sessions they carry.

use super::*;

impl Site {
    pub(super) fn new_session(
        &mut self,
        computer: ComputerId,
        dialed: bool,
        agent: Option<AgentSession>,
        manager: Option<ManagerSession>,
    ) -> u64 {
        let sid = self.next_session;
        self.next_session += 1;
        self.sessions_run += 1;
        let agent_generation = self.agents.get(&computer).map_or(0, |a| a.generation);
        self.sessions.insert(
            sid,
            Session {
                computer,
                dialed,
                agent_generation,
                manager_generation: self.manager.generation,
                agent,
                manager,
                waited_ms: 0,
                to_manager_at: self.now,
                to_agent_at: self.now,
                broken: false,
                new_interval: None,
                status_at: self.now,
                events_refused: false,
            },
        );
        sid
    }

    pub(super) fn latency(&mut self, computer: ComputerId) -> u64 {
        let extra = self
            .links
            .get(&computer)
            .filter(|(_, _, until)| *until > self.now)
            .map_or(0, |(_, latency, _)| *latency);
        self.rng.between(1, 40) + self.rng.below(extra + 1)
    }

    /// Whether this frame is lost (and with it the connection, until a timeout).
    pub(super) fn lost(&mut self, computer: ComputerId) -> bool {
        if self
            .partitioned_until
            .get(&computer)
            .is_some_and(|u| *u > self.now)
        {
            return true;
        }
        let loss = self
            .links
            .get(&computer)
            .filter(|(_, _, until)| *until > self.now)
            .map_or(0.0, |(loss, _, _)| *loss);
        loss > 0.0 && self.rng.chance(loss)
    }

    /// A frame of session `sid` goes out: its latency, or `None` when it is lost (and with it
    /// the connection, which then hangs until a timeout).
    pub(super) fn transmit(&mut self, sid: u64) -> Option<u64> {
        let computer = self.sessions.get(&sid)?.computer;
        if self.sessions.get(&sid).is_some_and(|s| s.broken) || self.lost(computer) {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.broken = true;
            }
            return None;
        }
        Some(self.latency(computer))
    }

    pub(super) fn send_to_manager(&mut self, sid: u64, msg: AgentMsg) {
        let Some(latency) = self.transmit(sid) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !s.dialed && s.manager.is_none() && !self.manager.up {
            // Connection refused: the manager is not running.
            let when = self.now + 1;
            self.schedule(when, Ev::ClosedAtAgent(sid));
            return;
        }
        let when = (self.now + latency).max(s.to_manager_at);
        s.to_manager_at = when;
        self.schedule(when, Ev::ToManager(sid, msg));
    }

    pub(super) fn send_to_agent(&mut self, sid: u64, msg: Outgoing) {
        let Some(latency) = self.transmit(sid) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let when = (self.now + latency).max(s.to_agent_at);
        s.to_agent_at = when;
        self.schedule(when, Ev::ToAgent(sid, msg));
    }

    pub(super) fn close_towards_agent(&mut self, sid: u64) {
        if let Some(s) = self.sessions.get(&sid)
            && s.agent.is_some()
            && !s.broken
        {
            let when = s.to_agent_at.max(self.now) + 1;
            self.schedule(when, Ev::ClosedAtAgent(sid));
        }
    }

    pub(super) fn close_towards_manager(&mut self, sid: u64) {
        if let Some(s) = self.sessions.get(&sid)
            && s.manager.is_some()
            && !s.broken
        {
            let when = s.to_manager_at.max(self.now) + 1;
            self.schedule(when, Ev::ClosedAtManager(sid));
        }
    }

    /// Forgets a session both of whose sides are over.
    pub(super) fn reap(&mut self, sid: u64) {
        if self
            .sessions
            .get(&sid)
            .is_some_and(|s| s.agent.is_none() && s.manager.is_none())
        {
            self.sessions.remove(&sid);
        }
    }
}
