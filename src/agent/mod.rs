//! The agent process: activates once with a token, then runs two things side by side: the
//! heartbeat loop (it dials the manager at the effective interval, with jitter and backoff,
//! unless the direction is manager-initiated) and the listener (the manager dials it, unless
//! the direction is agent-initiated), beside the reader of the packets its firewall logs.
//! Either way the manager drives the same session, which
//! delivers spooled events exactly once and applies the configuration. A clean stop says
//! goodbye.
//!
//! Decisions live in the sans-io `proto::AgentSession`, `schedule` and `policy::port_rule`;
//! this module only wires files, sockets and timers to them.

pub(crate) mod clock_watch;
mod error;
mod firewall;
use crate::model::events;
mod heartbeat;
mod identity;
mod listener;
mod neighbours;
mod packet_log;
mod runtime;
pub(crate) mod schedule;
mod session;
mod spool;
mod upgrade;
mod upgrade_plan;

pub use error::AgentError;
pub use schedule::Schedule;
pub use spool::Spool;

use crate::clock::Clock;
use crate::pki::{self, AgentKey};
use crate::proto::{ActivationRequest, AgentSession, PROTOCOL_VERSION};
use crate::release;
use crate::service::notify::{READY, STOPPING};
use crate::service::{StopSignals, Systemd};
use identity::Identity;
use runtime::Runtime;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

/// How the agent was asked to run (`picket agent ...`).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub data_dir: PathBuf,
    /// Activation: the manager's agent port, the token and the CA pin. Ignored once activated.
    pub manager: Option<String>,
    pub token: Option<String>,
    pub ca_sha256: Option<String>,
    pub hostname: String,
    /// Where to listen for the manager while the direction lets it dial.
    pub listen: SocketAddr,
    /// Activate if not yet, then return (`--activate-only`).
    pub activate_only: bool,
}
/// Runs until SIGINT or SIGTERM (SIGHUP is logged and ignored), then says goodbye; under
/// systemd it says when it is ready, that it is alive (`WatchdogSec=`) and when it stops.
pub fn run(options: AgentOptions, clock: &dyn Clock) -> Result<(), AgentError> {
    // Before anything is opened: a newer binary an upgrade staged runs instead of this one (or
    // a binary on trial that keeps failing goes back).
    if let Some((path, e)) = upgrade::exec(&upgrade::at_start(&options.data_dir)) {
        upgrade::exec_failed(&options.data_dir, &path, &e)?;
    }
    let systemd = Systemd::from_env();
    loop {
        let signals = StopSignals::install().map_err(AgentError::Signals)?;
        let shutdown = async {
            signals.wait("stopping").await;
            systemd.notify(STOPPING);
        };
        match serve_with(options.clone(), clock, shutdown, &systemd)? {
            Stopped::Shutdown => return Ok(()),
            // The spool and the sockets are closed (close-on-exec): the next binary opens them.
            // If it cannot be run, its version is refused and this binary serves again.
            Stopped::Restart(start) => {
                if let Some((path, e)) = upgrade::exec(&start) {
                    upgrade::exec_failed(&options.data_dir, &path, &e)?;
                }
            }
        }
    }
}

/// How the agent's loops ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop: it said goodbye.
    Shutdown,
    /// An upgrade (or its rollback) hands over to another binary, which the process is to exec.
    Restart(upgrade_plan::Start),
}

/// Runs until `shutdown` completes.
pub fn serve(
    options: AgentOptions,
    clock: &dyn Clock,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, AgentError> {
    serve_with(options, clock, shutdown, &Systemd::default())
}

fn serve_with(
    options: AgentOptions,
    clock: &dyn Clock,
    shutdown: impl Future<Output = ()>,
    systemd: &Systemd,
) -> Result<Stopped, AgentError> {
    let dir = &options.data_dir;
    crate::files::create_private_dir(dir).map_err(|source| AgentError::File {
        path: dir.clone(),
        source,
    })?;
    let spool = Spool::open(&dir.join("spool.redb"))?;
    // The spool holds every event not yet delivered, the dir the agent's key.
    crate::files::make_private_logged(dir);
    smol::block_on(async {
        let identity = match Identity::load(dir)? {
            Some(identity) => {
                if options.token.is_some() {
                    log::warn!(
                        "already activated as computer {} with {}: --token is ignored",
                        identity.computer,
                        identity.manager
                    );
                }
                identity
            }
            None => activate(&options, &spool, clock).await?,
        };
        if options.activate_only {
            log::info!(
                "activated as computer {} with {}; --activate-only: not starting",
                identity.computer,
                identity.manager
            );
            return Ok(Stopped::Shutdown);
        }
        let upgrades = upgrade::Upgrades::open(dir, clock.now());
        upgrades.report(&spool, clock)?;
        spool.append(
            events::AGENT_STARTED.id,
            clock.wall(),
            vec![("version".into(), release::version().into())],
        )?;
        let client_tls =
            pki::agent_client_config(&identity.ca, identity.cert.clone(), &identity.key)?;
        let server_tls =
            pki::agent_server_config(&identity.ca, identity.cert.clone(), &identity.key)?;
        let rt = Runtime::new(identity, &spool, clock, upgrades);
        // At start, before the listener binds: the table the last configuration asks for (the
        // agent-port rules follow once the port is known).
        rt.enforce_firewall()?;
        // The listener never ends by itself; the heartbeat loop ends at shutdown. The listener
        // is polled first so it is bound before the first heartbeat, which then reports its port.
        let listening = async {
            listener::run(&rt, options.listen, dir, server_tls).await;
            Ok(Stopped::Shutdown)
        };
        systemd.notify(READY);
        // On the one thread the heartbeat loop and the listener run on: a keep-alive goes out
        // only while that thread keeps turning, and the loops end with it at shutdown.
        let keep_alive = async {
            systemd.keep_alive(clock, async || Ok(())).await;
            Ok(Stopped::Shutdown)
        };
        // The packets the firewall logs, read as they come; it never ends by itself either.
        let packet_log = async {
            packet_log::run(&rt).await;
            Ok(Stopped::Shutdown)
        };
        let serving = smol::future::or(smol::future::or(listening, keep_alive), packet_log);
        smol::future::or(serving, heartbeat::run(&rt, &client_tls, shutdown)).await
    })
}

/// The clock `picket agent` runs on: the real one, counting time suspended (a laptop asleep is
/// not a clock change; see `BootClock`). Debug builds (the tests') read a wall-clock
/// skew from the file named by `PICKET_TEST_WALL_SKEW_FILE`, to step a real process's clock
/// without root; release builds have no such hook, so nobody can fake a clock step through an
/// agent's environment.
pub fn process_clock() -> Box<dyn Clock> {
    #[cfg(debug_assertions)]
    if let Some(path) = std::env::var_os("PICKET_TEST_WALL_SKEW_FILE") {
        return Box::new(crate::clock::SkewFileClock::new(path.into()));
    }
    Box::new(crate::clock::BootClock::new())
}

async fn activate(
    options: &AgentOptions,
    spool: &Spool,
    clock: &dyn Clock,
) -> Result<Identity, AgentError> {
    let (Some(manager), Some(token), Some(pin)) =
        (&options.manager, &options.token, &options.ca_sha256)
    else {
        return Err(AgentError::NotActivated);
    };
    let pin = pki::parse_pin(pin)?;
    let key = AgentKey::generate()?;
    let (tls, pinned) = pki::activation_client_config(pin)?;
    let mut stream = session::connect(manager, tls, clock).await?;
    let request = ActivationRequest {
        protocol: PROTOCOL_VERSION,
        agent_version: release::version().into(),
        token: token.clone(),
        hostname: options.hostname.clone(),
        public_key: key.public_key_der(),
    };
    let session = AgentSession::activation(clock.now(), request, session::STEP_TIMEOUT);
    let ended = session::drive(session, &mut stream, spool, clock, &|_| Ok(()), None).await?;
    let activated = ended
        .activated
        .ok_or_else(|| AgentError::Protocol("the session ended without activation".into()))?;
    let ca = pinned
        .cert()
        .ok_or_else(|| AgentError::Protocol("no pinned CA after the handshake".into()))?;
    let identity = Identity {
        manager: manager.clone(),
        computer: activated.computer,
        ca,
        cert: activated.certificate.into(),
        key,
    };
    identity.save(&options.data_dir)?;
    spool.set_config(&activated.config)?;
    spool.append(
        events::ACTIVATED.id,
        clock.wall(),
        vec![
            ("computer".into(), activated.computer.to_string()),
            ("manager".into(), manager.clone()),
        ],
    )?;
    log::info!(
        "activated as computer {} with the manager at {manager}",
        activated.computer
    );
    Ok(identity)
}

/// A number in 0..1 for jitter; a failing system RNG just means no jitter.
pub(crate) fn unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.0,
    }
}
