//! What the agent's heartbeat loop and its listener share while it runs: identity, spool and
//! clock, the one-session-at-a-time lock, the port it listens on, counters, and the wake-ups
//! each side sends the other when the configuration or the listening port changes.

use super::clock_watch::ClockWatch;
use super::error::AgentError;
use super::firewall::{Firewall, FirewallError};
use super::identity::Identity;
use super::packet_log::PacketLog;
use super::session;
use super::spool::Spool;
use super::upgrade::Upgrades;
use crate::clock::{Clock, Instant};
use crate::model::events;
use crate::model::{Direction, ListenerRule};
use crate::policy::Fingerprint;
use crate::proto::{
    AgentSession, AgentStatus, Component, Counter, Hello, PROTOCOL_VERSION, Purpose,
};
use smol::io::{AsyncRead, AsyncWrite};
use std::cell::{Cell, RefCell};

/// A wake-up that coalesces: many notifications before a wait make one.
pub(super) struct Wake {
    tx: smol::channel::Sender<()>,
    rx: smol::channel::Receiver<()>,
}

impl Wake {
    pub fn new() -> Self {
        let (tx, rx) = smol::channel::bounded(1);
        Wake { tx, rx }
    }

    pub fn notify(&self) {
        // Full means a wake-up is already pending, which is all this promises.
        let _ = self.tx.try_send(());
    }

    pub async fn wait(&self) {
        let _ = self.rx.recv().await;
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub heartbeats_ok: Cell<u64>,
    pub heartbeats_failed: Cell<u64>,
    pub manager_sessions: Cell<u64>,
    pub listener_refused: Cell<u64>,
}

pub(super) struct Runtime<'a> {
    pub identity: Identity,
    pub spool: &'a Spool,
    pub clock: &'a dyn Clock,
    /// One session at a time, whoever dialed: both read and acknowledge the same spool.
    pub session_lock: smol::lock::Mutex<()>,
    pub counters: Counters,
    clock_watch: RefCell<ClockWatch>,
    listen_port: Cell<Option<u16>>,
    /// Set when the listening port changed: the manager must hear of it, whatever the direction.
    announce: Cell<bool>,
    /// When the last session with the manager completed, whoever dialed; the heartbeat loop
    /// takes it to count the silence (`Heartbeats::handle_heard`).
    heard: Cell<Option<Instant>>,
    /// Wakes the heartbeat loop: new configuration, or a port to announce.
    pub heartbeat_wake: Wake,
    /// Wakes the listener: new configuration (direction or rules).
    pub listener_wake: Wake,
    /// The host firewall, as applied from the configuration.
    pub firewall: Firewall,
    /// Upgrades from the manager: the download, the trial, the binary to run next.
    pub upgrades: Upgrades,
    /// The packets its rules log and the agent-port refusals, as events (`packet_log.rs`).
    pub packet_log: PacketLog,
}

impl<'a> Runtime<'a> {
    pub fn new(
        identity: Identity,
        spool: &'a Spool,
        clock: &'a dyn Clock,
        upgrades: Upgrades,
    ) -> Self {
        Runtime {
            identity,
            spool,
            clock,
            session_lock: smol::lock::Mutex::new(()),
            counters: Counters::default(),
            clock_watch: RefCell::new(ClockWatch::default()),
            listen_port: Cell::new(None),
            announce: Cell::new(false),
            heard: Cell::new(None),
            heartbeat_wake: Wake::new(),
            listener_wake: Wake::new(),
            firewall: Firewall::default(),
            upgrades,
            packet_log: PacketLog::new(),
        }
    }

    /// The direction of the configuration the agent runs (bidirectional before it has one).
    pub fn direction(&self) -> Direction {
        match self.spool.config() {
            Ok(Some((config, _))) => config.direction,
            Ok(None) => crate::model::defaults::DIRECTION,
            Err(e) => {
                log::error!("cannot read the configuration from the spool: {e}");
                crate::model::defaults::DIRECTION
            }
        }
    }

    pub fn listener_rules(&self) -> Vec<ListenerRule> {
        match self.spool.config() {
            Ok(Some((config, _))) => config.listener_rules,
            _ => Vec::new(),
        }
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        self.spool.config().ok().flatten().map(|(_, fp)| fp)
    }

    /// Records where the agent now listens; a change is announced at once.
    pub fn set_listen_port(&self, port: Option<u16>) {
        if self.listen_port.replace(port) != port {
            self.announce.set(true);
            self.heartbeat_wake.notify();
            // The hidden agent-port rules follow the port at once, not at the next heartbeat.
            if let Err(e) = self.enforce_firewall() {
                log::error!("cannot write the firewall's rejection to the spool: {e}");
            }
        }
    }

    /// Brings the host firewall to the applied configuration (at start, when the listening
    /// port changes, before each session). A failure keeps the last good table; it is logged
    /// and spooled as `configuration-rejected` once, not at every retry.
    pub fn enforce_firewall(&self) -> Result<(), AgentError> {
        let Some((config, fingerprint)) = self.spool.config()? else {
            return Ok(());
        };
        let before = self.firewall.status();
        let enforced = self.firewall.enforce(&config, self.listen_port.get());
        // The packet log opens once a table is in force, or retries if it could not.
        self.packet_log.wake.notify();
        if let Err(e) = enforced {
            log::error!("the firewall: {e}; the last good ruleset stays");
            if self.firewall.status() != before {
                self.spool.append(
                    events::CONFIG_REJECTED.id,
                    self.clock.wall(),
                    vec![
                        ("fingerprint".into(), fingerprint.to_string()),
                        ("reason".into(), format!("the firewall: {e}")),
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Checks the table on the host against what was applied; restores and reports a drift.
    fn watch_firewall(&self) -> Result<(), AgentError> {
        if let Some(change) = self.firewall.watch() {
            let status = self.firewall.status();
            self.spool.append(
                events::FIREWALL_RESTORED.id,
                self.clock.wall(),
                vec![("reason".into(), status.reason)],
            )?;
            log::warn!("the firewall: {change}");
        }
        Ok(())
    }

    /// The check a configuration passes before it is stored: its firewall applies.
    pub fn enforce_new(&self, config: &crate::policy::AgentConfig) -> Result<(), FirewallError> {
        self.firewall.enforce(config, self.listen_port.get())
    }

    pub fn announce_pending(&self) -> bool {
        self.announce.get()
    }

    /// Whether a port change waits to be announced; clears it.
    pub fn take_announce(&self) -> bool {
        self.announce.replace(false)
    }

    /// When a session with the manager last completed, if one did since the last call.
    pub fn take_heard(&self) -> Option<Instant> {
        self.heard.take()
    }

    /// Checked before each session, so the clock event travels with it.
    fn watch_clock(&self) -> Result<(), AgentError> {
        let step = self
            .clock_watch
            .borrow_mut()
            .observe(self.clock.now(), self.clock.wall());
        if let Some(step) = step {
            log::warn!("the system clock changed by {} ms", step.change_ms);
            self.spool.append(
                events::CLOCK_CHANGED.id,
                self.clock.wall(),
                vec![
                    ("old".into(), step.expected.0.to_string()),
                    ("new".into(), step.found.0.to_string()),
                    ("change_ms".into(), step.change_ms.to_string()),
                ],
            )?;
        }
        Ok(())
    }

    fn status(&self) -> Result<AgentStatus, AgentError> {
        let counter = |name: &str, value: u64| Counter {
            name: name.into(),
            value,
        };
        let c = &self.counters;
        let mut counters = vec![
            counter("heartbeats-ok", c.heartbeats_ok.get()),
            counter("heartbeats-failed", c.heartbeats_failed.get()),
            counter("manager-sessions", c.manager_sessions.get()),
            counter("listener-refused", c.listener_refused.get()),
            counter("events-spooled", self.spool.pending()?),
            counter("firewall-log-packets", self.packet_log.packets.get()),
            counter("firewall-log-lost", self.packet_log.lost.get()),
            counter("firewall-log-dropped", self.packet_log.dropped.get()),
        ];
        // The host firewall's per-rule counters (`firewall.md`, Counters and logs).
        for (name, packets, bytes) in self.firewall.counters() {
            counters.push(counter(&format!("firewall:{name}:packets"), packets));
            counters.push(counter(&format!("firewall:{name}:bytes"), bytes));
        }
        Ok(AgentStatus {
            wall_clock: self.clock.wall(),
            components: vec![
                Component::from_on("spool".into(), true),
                self.firewall_component(),
            ],
            counters,
            fingerprint: self.fingerprint(),
            spool: self.spool.range()?,
            listen_port: self.listen_port.get(),
        })
    }

    /// The firewall's component; while it is on, its reason says when the packets its rules
    /// log cannot be reported.
    fn firewall_component(&self) -> Component {
        let mut component = self.firewall.component();
        if let (true, Some(problem)) = (self.firewall.is_on(), self.packet_log.problem()) {
            let problem = format!("logged packets are not reported: {problem}");
            component.reason = match component.reason.is_empty() {
                true => problem,
                false => format!("{}; {problem}", component.reason),
            };
        }
        component
    }

    /// One session over an open connection, whoever dialed; the agent speaks first. Wakes the
    /// loops if it brought a new configuration, even when it failed after applying it.
    pub async fn session<S>(
        &self,
        stream: &mut S,
        purpose: Purpose,
    ) -> Result<session::Ended, AgentError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Debug builds (the tests') can make one version never reach its manager, as a broken
        // release would: `tests/e2e/upgrade.rs` checks that an upgrade to it rolls back.
        #[cfg(debug_assertions)]
        if std::env::var("PICKET_TEST_OFFLINE_VERSION")
            .is_ok_and(|v| v == crate::release::version())
        {
            return Err(AgentError::Protocol(
                "PICKET_TEST_OFFLINE_VERSION: this version never reaches its manager".into(),
            ));
        }
        let _one_at_a_time = self.session_lock.lock().await;
        let before = self.fingerprint();
        self.watch_clock()?;
        self.enforce_firewall()?;
        self.watch_firewall()?;
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: crate::release::version().into(),
            purpose,
        };
        let core = AgentSession::heartbeat(
            self.clock.now(),
            hello,
            self.status()?,
            session::STEP_TIMEOUT,
        );
        let result = session::drive(
            core,
            stream,
            self.spool,
            self.clock,
            &|c| self.enforce_new(c).map_err(|e| e.to_string()),
            Some(&self.upgrades),
        )
        .await;
        if result.is_ok() {
            self.heard.set(Some(self.clock.now()));
        }
        self.upgrades
            .session_ended(result.is_ok(), self.spool, self.clock)
            .await?;
        if self.upgrades.restart().is_some() {
            self.heartbeat_wake.notify();
        }
        if self.fingerprint() != before {
            self.heartbeat_wake.notify();
            self.listener_wake.notify();
        }
        result
    }
}
