//! The agent process: activates once with a token, then heartbeats to the manager at the
//! effective interval (with jitter, and backoff after failures), delivering its spooled events
//! exactly once and applying the configuration it is sent. A clean stop says goodbye.
//!
//! Decisions live in the sans-io `proto::AgentSession` and `schedule`; this module only wires
//! files, sockets and timers to them.

mod clock_watch;
mod error;
pub mod events;
mod identity;
mod schedule;
mod session;
mod spool;

pub use error::AgentError;
pub use schedule::Schedule;
pub use spool::Spool;

use crate::clock::{Clock, RealClock, SkewFileClock};
use crate::pki::{self, AgentKey};
use crate::proto::{
    ActivationRequest, AgentSession, AgentStatus, Component, Counter, Hello, PROTOCOL_VERSION,
    Purpose,
};
use clock_watch::ClockWatch;
use identity::Identity;
use smol::stream::StreamExt;
use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::Duration;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Interval before the first configuration arrives (the activation answer carries one).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);

/// How the agent was asked to run (`picket agent ...`).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub data_dir: PathBuf,
    /// Activation: the manager's agent port, the token and the CA pin. Ignored once activated.
    pub manager: Option<String>,
    pub token: Option<String>,
    pub ca_sha256: Option<String>,
    pub hostname: String,
}

/// Runs until SIGINT or SIGTERM, then says goodbye.
pub fn run(options: AgentOptions) -> Result<(), AgentError> {
    use async_signal::{Signal, Signals};
    let mut signals = Signals::new([Signal::Int, Signal::Term]).map_err(AgentError::Signals)?;
    serve(options, async move {
        if let Some(Ok(signal)) = signals.next().await {
            log::info!("received {signal:?}: stopping");
        }
    })
}

/// Runs until `shutdown` completes.
pub fn serve(options: AgentOptions, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let dir = &options.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| AgentError::File {
            path: dir.clone(),
            source,
        })?;
    let spool = Spool::open(&dir.join("spool.redb"))?;
    let clock: Box<dyn Clock> = match std::env::var_os("PICKET_TEST_WALL_SKEW_FILE") {
        Some(path) => Box::new(SkewFileClock::new(path.into())),
        None => Box::new(RealClock::new()),
    };
    let clock = clock.as_ref();
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
        spool.append(
            events::AGENT_STARTED.id,
            clock.wall(),
            vec![("version".into(), VERSION.into())],
        )?;
        heartbeat_loop(&identity, &spool, clock, shutdown).await
    })
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
    let mut stream = session::connect(manager, tls).await?;
    let request = ActivationRequest {
        protocol: PROTOCOL_VERSION,
        agent_version: VERSION.into(),
        token: token.clone(),
        hostname: options.hostname.clone(),
        public_key: key.public_key_der(),
    };
    let session = AgentSession::activation(clock.now(), request, session::STEP_TIMEOUT);
    let ended = session::drive(session, &mut stream, spool, clock).await?;
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

async fn heartbeat_loop(
    identity: &Identity,
    spool: &Spool,
    clock: &dyn Clock,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let tls = pki::agent_client_config(&identity.ca, identity.cert.clone(), &identity.key)?;
    let interval = spool
        .config()?
        .map_or(DEFAULT_INTERVAL, |(c, _)| c.interval);
    let mut schedule = Schedule::new(interval);
    log::info!(
        "running as computer {}: heartbeats to {} every {}",
        identity.computer,
        identity.manager,
        crate::model::format_duration(interval)
    );
    let mut counters = Counters::default();
    let mut watch = ClockWatch::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Checked before each heartbeat, so the event travels with it.
        if let Some(step) = watch.observe(clock.now(), clock.wall()) {
            log::warn!("the system clock changed by {} ms", step.change_ms);
            spool.append(
                events::CLOCK_CHANGED.id,
                clock.wall(),
                vec![
                    ("old".into(), step.expected.0.to_string()),
                    ("new".into(), step.found.0.to_string()),
                    ("change_ms".into(), step.change_ms.to_string()),
                ],
            )?;
        }
        let wait =
            match heartbeat(identity, &tls, spool, clock, Purpose::Heartbeat, &counters).await {
                Ok(ended) => {
                    counters.ok += 1;
                    if let Some(interval) = ended.new_interval {
                        schedule.set_interval(interval);
                    }
                    schedule.after_success(Some(ended.next), unit())
                }
                Err(e) => {
                    counters.failed += 1;
                    let wait = schedule.after_failure(unit());
                    log::warn!(
                        "heartbeat failed ({e}); retrying in {:.1}s",
                        wait.as_secs_f64()
                    );
                    wait
                }
            };
        let stop = smol::future::or(
            async {
                shutdown.as_mut().await;
                true
            },
            async {
                smol::Timer::after(wait).await;
                false
            },
        )
        .await;
        if stop {
            break;
        }
    }
    spool.append(
        events::AGENT_STOPPED.id,
        clock.wall(),
        vec![("version".into(), VERSION.into())],
    )?;
    // A goodbye delivers the stop event and tells the manager this is no outage. If the manager
    // is unreachable, the event stays spooled and goes with the next start's first heartbeat.
    if let Err(e) = heartbeat(identity, &tls, spool, clock, Purpose::Goodbye, &counters).await {
        log::warn!("could not say goodbye to the manager: {e}");
    }
    Ok(())
}

#[derive(Default)]
struct Counters {
    ok: u64,
    failed: u64,
}

async fn heartbeat(
    identity: &Identity,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    spool: &Spool,
    clock: &dyn Clock,
    purpose: Purpose,
    counters: &Counters,
) -> Result<session::Ended, AgentError> {
    let mut stream = session::connect(&identity.manager, tls.clone()).await?;
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: VERSION.into(),
        purpose,
    };
    let status = AgentStatus {
        wall_clock: clock.wall(),
        components: vec![Component {
            name: "spool".into(),
            on: true,
        }],
        counters: vec![
            counter("heartbeats-ok", counters.ok),
            counter("heartbeats-failed", counters.failed),
            counter("events-spooled", spool.pending()?),
        ],
        fingerprint: spool.config()?.map(|(_, fp)| fp),
        spool: spool.range()?,
        listen_port: None,
    };
    let session = AgentSession::heartbeat(clock.now(), hello, status, session::STEP_TIMEOUT);
    session::drive(session, &mut stream, spool, clock).await
}

fn counter(name: &str, value: u64) -> Counter {
    Counter {
        name: name.into(),
        value,
    }
}

/// A number in 0..1 for jitter; a failing system RNG just means no jitter.
fn unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.0,
    }
}
