//! The chaos a scenario plays, applied to the site, and the checks at its end.

use super::*;

impl Site {
    pub(super) fn chaos(&mut self, action: Action) {
        let now = self.now;
        let who = match &action {
            Action::Stop { computer, .. }
            | Action::Crash { computer, .. }
            | Action::Hang { computer, .. }
            | Action::Suspend { computer, .. }
            | Action::WallStep { computer, .. }
            | Action::BadLink { computer, .. }
            | Action::Settings { computer, .. } => Some(*computer),
            Action::Partition { computers, .. } => computers.first().copied(),
            _ => None,
        };
        self.trace(who, || format!("chaos {action:?}"));
        match action {
            Action::Stop { computer, down_ms } => {
                let Some(agent) = self.agents.get_mut(&computer) else {
                    return;
                };
                if agent.life != Life::Running || agent.stopping.is_some() {
                    return;
                }
                agent.append(events::AGENT_STOPPED.id, now, vec![]);
                let dials = agent.config.direction.agent_dials();
                let own = agent.own;
                if dials && own.is_none() {
                    if let Some(agent) = self.agents.get_mut(&computer) {
                        agent.stopping = Some(now + down_ms);
                    }
                    self.agent_dial(computer, Purpose::Goodbye);
                } else {
                    self.agent_down(computer);
                    let generation = self.agents.get(&computer).map_or(0, |a| a.generation);
                    self.schedule(now + down_ms, Ev::AgentBack(computer, generation));
                }
            }
            Action::Crash { computer, down_ms } => {
                if self
                    .agents
                    .get(&computer)
                    .is_some_and(|a| a.life == Life::Down)
                {
                    return;
                }
                self.agent_down(computer);
                let generation = self.agents.get(&computer).map_or(0, |a| a.generation);
                self.schedule(now + down_ms, Ev::AgentBack(computer, generation));
            }
            Action::Hang { computer, ms } | Action::Suspend { computer, ms } => {
                let Some(agent) = self.agents.get_mut(&computer) else {
                    return;
                };
                if agent.life != Life::Running {
                    return;
                }
                agent.life = Life::Frozen(now + ms);
                let generation = agent.generation;
                self.schedule(now + ms, Ev::Thaw(computer, generation));
            }
            Action::WallStep { computer, delta_ms } => {
                let Some(agent) = self.agents.get_mut(&computer) else {
                    return;
                };
                let large = u128::from(delta_ms.unsigned_abs()) > MAX_CLOCK_CHANGE.as_millis();
                if agent.life == Life::Down || (large && self.oracle.step_pending(computer)) {
                    return;
                }
                agent.wall_offset += delta_ms;
                self.oracle.wall_step(computer, now, large);
            }
            Action::Partition { computers, ms } => {
                for computer in computers {
                    self.partitioned_until.insert(computer, now + ms);
                }
            }
            Action::BadLink {
                computer,
                loss,
                latency_ms,
                ms,
            } => {
                self.links.insert(computer, (loss, latency_ms, now + ms));
            }
            Action::ManagerRestart { down_ms } => {
                if !self.manager.up {
                    return;
                }
                self.manager.up = false;
                self.manager.generation += 1;
                self.oracle.manager_stopped(now);
                for (id, agent) in &self.agents {
                    let reports = agent
                        .spool
                        .iter()
                        .filter(|e| e.id == events::CLOCK_CHANGED.id)
                        .count() as u64;
                    self.oracle.reports_outlived_manager(*id, reports);
                }
                let sids: Vec<u64> = self.sessions.keys().copied().collect();
                for sid in sids {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.manager = None;
                    }
                    self.close_towards_agent(sid);
                    self.reap(sid);
                }
                let generation = self.manager.generation;
                self.schedule(now + down_ms, Ev::ManagerBack(generation));
            }
            Action::ManagerStall { ms } => {
                if !self.manager.up {
                    return;
                }
                let from = self.manager.frozen_until.max(now);
                let to = now + ms;
                if to > from {
                    self.oracle.manager_stalled(from, to);
                    self.manager.frozen_until = to;
                }
            }
            Action::StoreFull { ms } => {
                self.manager.store_full_until = self.manager.store_full_until.max(now + ms);
            }
            Action::Settings { computer, settings } => {
                // The API is the manager's: no change while it is down or frozen.
                if !self.manager_running() {
                    return;
                }
                self.manager_look();
                let t = at(now);
                self.manager.settings.insert(computer, settings);
                let rules = rules(&settings);
                let monitor = &mut self.manager.monitor;
                monitor.set_settings(t, computer, rules, settings.power);
                self.oracle.settings(computer, settings, now);
                let target = self.target(computer);
                self.manager.dials.target(t, &target);
                self.decide();
                self.start_dials();
            }
        }
    }

    /// After the run: everything spooled was delivered once, and nothing is left owed.
    pub fn finish(&mut self) {
        let ids: Vec<ComputerId> = self.agents.keys().copied().collect();
        for id in ids {
            let Some(agent) = self.agents.get(&id) else {
                continue;
            };
            if let Some(first) = agent.spool.first() {
                let what = format!(
                    "computer {id}: {} event(s) still spooled at the end, from {} ({:?}, {:?})",
                    agent.spool.len(),
                    first.seq,
                    agent.life,
                    agent.config.direction
                );
                self.oracle.violations.push(what);
            }
            let missing = (1..=agent.next_seq)
                .filter(|seq| !self.manager.events.contains_key(&(id, *seq)))
                .count();
            if missing > 0 {
                let what = format!("computer {id}: {missing} event(s) never stored");
                self.oracle.violations.push(what);
            }
            // An agent that runs what its settings give it, in its protocol's form, and said so,
            // is up to date; otherwise the manager would push to it again and again.
            let expected = config(&self.manager.settings[&id]).fingerprint_for(agent.protocol);
            let reported = self.manager.recorded.get(&id).and_then(|r| r.applied);
            if agent.fingerprint == expected
                && reported == Some(expected)
                && !self.target(id).up_to_date
            {
                let what = format!(
                    "computer {id}: its protocol-{} agent runs the expected configuration, but \
                     the manager judges it out of date",
                    agent.protocol
                );
                self.oracle.violations.push(what);
            }
            let active = self.active(id, AlertKind::ComputerOffline).is_some();
            self.oracle.check(self.now, id, active);
        }
        let since = |t: WallMs| t.0.saturating_sub(WALL0);
        let offline: Vec<OfflineAlert> = self
            .manager
            .alerts
            .iter()
            .filter(|a| a.kind == AlertKind::ComputerOffline)
            .map(|a| OfflineAlert {
                id: a.id,
                computer: a.computer,
                raised: since(a.raised),
                cleared: a.cleared.map(since),
            })
            .collect();
        let open = self.incident_open();
        self.oracle.check_notices(
            &offline,
            &self.manager.notices.told,
            incidents::SIM_INCIDENTS,
            self.now,
            open,
        );
    }
}
