//! The manager process: checks and initialises its data dir, opens the store, binds its
//! listeners, serves the API, tells systemd it is ready and alive when run as a service, and
//! shuts down cleanly on SIGINT or SIGTERM.

pub(crate) mod agent_port;
pub mod backups;
mod data_dir;
pub(crate) mod dial_plan;
mod dialer;
mod error;
mod notifier;
mod open_files;
mod retention;
pub(crate) mod verdicts;
mod vitals;

pub use crate::handles::{DialError, DialResult, Dialer, DialerEvent};
pub use crate::handles::{Liveness, LivenessEvent};
pub use crate::policy::expected_config;
pub use crate::registry::Registry;
pub use crate::site::{ADMIN_KEY_FILE, PKI_DIR, PORTS_FILE, STORE_FILE, system_hostname};
pub use dialer::MAX_DIALS_IN_FLIGHT;
pub use error::ManagerError;
pub use retention::{DEFAULT_RETENTION, MIN_RETENTION};

use crate::api::{self, ApiState, Console};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::pki::ManagerPki;
use crate::service::notify::{READY, STOPPING};
use crate::service::{StopSignals, Systemd};
use crate::store::{Reads, Store, Writer};
use crate::tasks::Workers;
use agent_port::AgentPort;
use smol::net::TcpListener;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long an agent may take for its TLS handshake and for each step of a session.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most events asked for in one round of a session.
const MAX_EVENT_BATCH: u32 = 500;

/// How the manager was asked to run (`picket manager ...`).
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub data_dir: PathBuf,
    pub agent_listen: SocketAddr,
    pub console_listen: SocketAddr,
    /// The name in the manager certificate and the agent command lines.
    pub hostname: String,
    /// How long agent events are kept after the manager stored them; `None` keeps them all.
    pub event_retention: Option<Duration>,
    /// Free space kept for everything but agent events (`--store-reserve`).
    pub store_reserve: crate::store::Reserve,
    /// When computers going offline together are one site incident (`--incident-*`).
    pub incidents: crate::alerts::incident::IncidentRules,
    /// Scheduled backups (`--backup-*`), if asked for.
    pub backups: Option<backups::Schedule>,
}

/// How often the store's free space is read and, after an I/O error, a reopen considered.
const STORE_TEND_EVERY: Duration = Duration::from_secs(1);

/// Keeps the store's health current (see `store/health.rs`); the work is a `statvfs` and, rarely,
/// a reopen, so it runs off the async threads.
async fn tend_store(store: Arc<Store>, clock: Arc<dyn Clock>) {
    loop {
        let (store, now) = (store.clone(), clock.now());
        smol::unblock(move || store.tend(now)).await;
        clock.sleep(STORE_TEND_EVERY).await;
    }
}

/// `picket manager --data-dir DIR --reset-admin-password`: gives the console's `admin` a new
/// one-time password and prints it. The manager must be stopped (the store is locked while it
/// runs); every session it had ended with it.
pub fn reset_admin_password(dir: &std::path::Path, clock: &dyn Clock) -> Result<(), ManagerError> {
    data_dir::prepare(dir)?;
    data_dir::check_store_present(dir)?;
    let store = Store::open(&dir.join(STORE_FILE))?;
    data_dir::check_store_matches_site(dir, &store)?;
    // Snapshots a `picket backup` asked for and did not take away (it was killed).
    crate::backup::sweep_snapshots(dir);
    let password = data_dir::set_admin_password(&store, clock.wall())?;
    close_store(Arc::new(store));
    println!("New one-time password for the console user admin: {password}");
    println!(
        "It is shown only now; the console asks for a password of your own at the next login."
    );
    Ok(())
}

/// Runs until SIGINT or SIGTERM (SIGHUP is logged and ignored); under systemd it says when it
/// is ready, that it is alive (`WatchdogSec=`) and when it stops.
pub fn run(config: ManagerConfig, clock: Arc<dyn Clock>) -> Result<(), ManagerError> {
    let signals = StopSignals::install().map_err(ManagerError::Signals)?;
    let systemd = Systemd::from_env();
    serve_with(config, clock, signals.wait("shutting down"), true, &systemd)
}

/// Runs until `shutdown` completes; tests pass their own future instead of a signal.
pub fn serve(
    config: ManagerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ManagerError> {
    serve_with(config, clock, shutdown, true, &Systemd::default())
}

/// As [`serve`], without the banner on stdout: `picket bench` runs a manager in-process and its
/// stdout is the report.
pub fn serve_quietly(
    config: ManagerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ManagerError> {
    serve_with(config, clock, shutdown, false, &Systemd::default())
}

fn serve_with(
    config: ManagerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
    banner: bool,
    systemd: &Systemd,
) -> Result<(), ManagerError> {
    let dir = &config.data_dir;
    open_files::raise();
    crate::tasks::limit_blocking_threads();
    data_dir::prepare(dir)?;
    data_dir::check_store_present(dir)?;
    // The store comes first: its lock is what keeps a second manager off this data dir.
    let store = Arc::new(Store::open_with(
        &dir.join(STORE_FILE),
        config.store_reserve,
    )?);
    data_dir::check_store_matches_site(dir, &store)?;
    // Snapshots a `picket backup` asked for and did not take away (it was killed).
    crate::backup::sweep_snapshots(dir);
    let (pki, pki_created) = ManagerPki::load_or_create(
        &dir.join(PKI_DIR),
        &config.hostname,
        clock.wall().to_system_time(),
    )?;
    let first_start = data_dir::ensure_base_policy(&store)?;
    let admin_key_hash = data_dir::ensure_admin_key(&store, dir)?;
    // Every file is in place now; the store file was created by redb under the umask.
    crate::files::make_private_logged(dir);
    let admin_password = data_dir::ensure_admin_user(&store, clock.wall())?;
    if pki_created || first_start {
        log::info!("initialised data dir {}", dir.display());
    }
    let tls = pki.api_server_config()?;
    let registry = Arc::new(Registry::load(&store.read()?.agent_states()?));
    let mut agent_tls = Arc::unwrap_or_clone(pki.agent_port_config(registry.clone())?);
    // Tickets that outlive this process: after a restart, agents still resume.
    agent_tls.ticketer = crate::pki::persistent_ticketer(&dir.join(PKI_DIR), clock.clone())?;
    let agent_tls = Arc::new(agent_tls);
    let pki = Arc::new(pki);
    let metrics = Arc::new(Metrics::new());
    let on_commit = {
        let metrics = metrics.clone();
        Box::new(move |jobs, took| metrics.commit(jobs, took))
    };
    let (writer, writer_thread) =
        Writer::start(store.clone(), on_commit).map_err(ManagerError::Writer)?;
    let (liveness, liveness_events) = Liveness::channel(clock.clone());
    let (dialer, dialer_events) = Dialer::channel();
    let dial_tls = pki.dial_client_config()?;
    let tracked = verdicts::prepare(&store, clock.wall())?;

    // TLS and sessions on the cores the store writer leaves; the workers stop when this
    // function returns.
    let workers = Workers::per_core_but_one("picket-worker").map_err(ManagerError::Workers)?;
    let ex = workers.spawner();
    // The agent port's accept loop has a thread of its own: on the workers it waited its turn
    // behind every session while new connections waited in the kernel, unseen, so the manager
    // could not tell how late it heard heartbeats (see `liveness::delay`); accepted at once, a
    // connection's wait is measured from its accept. (The verdicts task stays on the workers:
    // on this thread each heartbeat's event woke it across threads, 0.71 against 0.67 ms of
    // manager CPU per saturated session over four alternating runs; and the agent port's
    // session limit keeps its turns behind the sessions short.)
    let accepting = Workers::start("picket-accept", 1).map_err(ManagerError::Workers)?;
    workers.block_on(async {
        let console = bind("the console and API", config.console_listen).await?;
        let agents = bind("agents", config.agent_listen).await?;
        let (console_addr, agent_addr) = (local_addr(&console)?, local_addr(&agents)?);
        // Built once the agent port is bound: the agent command of a new token names it.
        let agent_endpoint = dial_address(&config.hostname, agent_addr);
        let state = Arc::new(ApiState {
            store: store.clone(),
            clock: clock.clone(),
            admin_key_hash,
            agent_endpoint: agent_endpoint.clone(),
            manager_name: config.hostname.clone(),
            console_url: format!("https://{}", dial_address(&config.hostname, console_addr)),
            key_pin: pki.manager_key_pin(),
            ca_sha256: pki.ca_sha256_hex(),
            registry: registry.clone(),
            liveness: liveness.clone(),
            dialer: dialer.clone(),
            console: Console::default(),
            metrics: metrics.clone(),
            ready: AtomicBool::new(false),
        });
        let port = Arc::new(AgentPort {
            store: store.clone(),
            writer: writer.clone(),
            pki: pki.clone(),
            registry,
            clock: clock.clone(),
            endpoints: vec![agent_endpoint],
            step_timeout: STEP_TIMEOUT,
            max_batch: MAX_EVENT_BATCH,
            liveness,
            dialer,
            metrics: metrics.clone(),
            activation_backoff: std::sync::Mutex::default(),
            downloads: Default::default(),
        });
        if banner {
            print_banner(
                &config,
                &pki,
                console_addr,
                agent_addr,
                admin_password.as_deref(),
            );
        }
        // After the banner: whoever waits for this file may read the banner at once.
        data_dir::write_ports(dir, agent_addr, console_addr)?;
        let api_task = ex.spawn(api::serve(console, tls, state.clone(), ex.clone()));
        let dialer_task = ex.spawn(dialer::run(
            port.clone(),
            dial_tls,
            dialer_events,
            ex.clone(),
        ));
        let agent_task =
            accepting
                .spawner()
                .spawn(agent_port::serve(agents, agent_tls, port, ex.clone()));
        let retention_task = config.event_retention.map(|keep| {
            ex.spawn(retention::run(
                writer.clone(),
                clock.clone(),
                keep,
                metrics.clone(),
            ))
        });
        let store_task = ex.spawn(tend_store(store.clone(), clock.clone()));
        let backup_task = config.backups.clone().map(|schedule| {
            ex.spawn(backups::run(
                store.clone(),
                dir.clone(),
                clock.clone(),
                schedule,
            ))
        });
        let notifier = Arc::new(notifier::Notifier {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            site: crate::notify::format::Site {
                manager: config.hostname.clone(),
                version: crate::release::version(),
            },
        });
        let notifier_task = ex.spawn(notifier::run(notifier, ex.clone()));
        let liveness_task = ex.spawn(verdicts::run(
            store.clone(),
            writer,
            clock.clone(),
            tracked,
            config.incidents,
            liveness_events,
            metrics,
        ));
        state.ready.store(true, Ordering::SeqCst);
        systemd.notify(&format!(
            "{READY}\nSTATUS=console on {console_addr}, agents on {agent_addr}"
        ));
        let mut parts: Vec<(&'static str, &dyn vitals::Ends)> = vec![
            ("the console and API", &api_task),
            ("the agent port", &agent_task),
            ("the dialer", &dialer_task),
            ("the verdicts task", &liveness_task),
            ("store tending", &store_task),
            ("the notifier", &notifier_task),
            ("the store writer", &writer_thread),
        ];
        if let Some(task) = &retention_task {
            parts.push(("event retention", task));
        }
        if let Some(task) = &backup_task {
            parts.push(("scheduled backups", task));
        }
        let vitals = vitals::Vitals {
            parts,
            executors: vec![
                ("the workers", ex.clone()),
                ("the agent port's accept thread", accepting.spawner()),
            ],
            clock: &*clock,
            within: systemd.keep_alive_every().unwrap_or_default(),
        };
        // Raced with the shutdown on this thread, a worker itself: a stuck worker stops it too.
        smol::future::or(
            shutdown,
            systemd.keep_alive(&*clock, async || vitals.check().await),
        )
        .await;
        systemd.notify(STOPPING);
        state.ready.store(false, Ordering::SeqCst);
        api_task.cancel().await;
        agent_task.cancel().await;
        dialer_task.cancel().await;
        liveness_task.cancel().await;
        store_task.cancel().await;
        notifier_task.cancel().await;
        if let Some(task) = retention_task {
            task.cancel().await;
        }
        if let Some(task) = backup_task {
            task.cancel().await;
        }
        Ok::<(), ManagerError>(())
    })?;
    // Every writer handle went with the agent port and the liveness and retention tasks; the
    // thread ends once its queue is empty.
    if writer_thread.join().is_err() {
        log::error!("the store writer thread panicked");
    }

    data_dir::remove_ports(dir);
    close_store(store);
    log::info!("manager stopped");
    Ok(())
}

/// Connections the kernel may hold for a listener before the manager accepts them. The
/// standard library listens with 128: at a thousand heartbeats a second that is 0.1 s of
/// arrivals, and while the manager is busy a moment longer the kernel drops new connection
/// attempts, which agents only retry after 1, 3, 7... seconds. The kernel caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 65_535;

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ManagerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ManagerError::Bind { what, addr, source })?;
    // Listening again on a listening socket only changes its backlog.
    rustix::net::listen(&listener, LISTEN_BACKLOG).map_err(|e| ManagerError::Bind {
        what,
        addr,
        source: e.into(),
    })?;
    Ok(listener)
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ManagerError> {
    listener.local_addr().map_err(|source| ManagerError::Bind {
        what: "a listener",
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Closes the store once the last request still on the blocking pool lets go of it. Every
/// commit is already durable; a clean close only spares the next start a recovery check.
fn close_store(mut store: Arc<Store>) {
    for _ in 0..100 {
        match Arc::try_unwrap(store) {
            Ok(owned) => {
                if let Err(e) = owned.close() {
                    log::warn!("store did not close cleanly: {e}");
                }
                return;
            }
            Err(shared) => {
                store = shared;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    log::warn!("a request still held the store at shutdown; it was not closed cleanly");
}

/// `HOST:PORT` as others should dial a listener bound to `addr`: a wildcard address (0.0.0.0,
/// [::]) is not dialable, so the manager's host name stands in for it.
pub fn dial_address(hostname: &str, addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{hostname}:{}", addr.port())
    } else {
        addr.to_string()
    }
}

fn print_banner(
    config: &ManagerConfig,
    pki: &ManagerPki,
    console: SocketAddr,
    agent: SocketAddr,
    admin_password: Option<&str>,
) {
    let host = |addr: SocketAddr| dial_address(&config.hostname, addr);
    let dir = config.data_dir.display();
    println!("Picket manager is running.");
    println!("  Console:              https://{}/", host(console));
    if let Some(password) = admin_password {
        println!("  Console login:        admin / {password}");
        println!("                        (a one-time password, shown only now: the console asks");
        println!("                        for your own at the first login; lost it? stop the");
        println!(
            "                        manager and run: picket manager --data-dir {dir} --reset-admin-password)"
        );
    }
    println!("  REST API:             https://{}/api/v1/", host(console));
    println!("  Admin API key:        {dir}/{ADMIN_KEY_FILE}");
    println!("  CA certificate:       {dir}/{PKI_DIR}/ca.crt");
    println!("  Agents connect to:    {}", host(agent));
    println!("  CA pin for agents:    {}", pki.ca_sha256_hex());
    println!("Try it:  picket policies list --data-dir {dir}");
    println!("To activate an agent, create a token:");
    println!("  picket token create --data-dir {dir}");
    println!("then run the agent command it prints on the computer to protect:");
    println!(
        "  {}",
        crate::activation::agent_command(&host(agent), "TOKEN", &pki.ca_sha256_hex())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_address_is_dialled_by_host_name() {
        let dial = |addr: &str| dial_address("mgr.example", addr.parse().unwrap());
        assert_eq!(dial("0.0.0.0:4120"), "mgr.example:4120");
        assert_eq!(dial("[::]:4120"), "mgr.example:4120");
        assert_eq!(dial("127.0.0.1:41234"), "127.0.0.1:41234");
        assert_eq!(dial("[::1]:4120"), "[::1]:4120");
        assert_eq!(dial("192.0.2.7:4120"), "192.0.2.7:4120");
    }
}
