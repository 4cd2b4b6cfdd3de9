//! The manager the bench runs in its own process, on its own thread and temporary data dir.

use super::*;

/// A loopback address with a port free now, for a manager that must listen where the agents'
/// configuration already says it does. (Another process could take it first: the manager then
/// fails to start, in words.)
pub(super) fn free_loopback_address() -> Result<SocketAddr, BenchError> {
    let probe = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(BenchError::Listen)?;
    probe.local_addr().map_err(BenchError::Listen)
}

/// The manager, running in-process on its own thread until [`Manager::stop`].
pub(super) struct Manager {
    thread: std::thread::JoinHandle<Result<(), manager::ManagerError>>,
    stop: smol::channel::Sender<()>,
    pub(super) agent_addr: SocketAddr,
}

impl Manager {
    /// Starts it with its agent port at `agent_listen` (port 0: of the system's choosing) and
    /// its console on a loopback port, and waits for its ports file.
    pub(super) fn start(dir: &Path, agent_listen: SocketAddr) -> Result<Manager, BenchError> {
        let config = ManagerConfig {
            data_dir: dir.to_path_buf(),
            agent_listen,
            console_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: MANAGER_HOSTNAME.into(),
            // As shipped: the retention pass runs (the bench's events are all younger).
            event_retention: Some(manager::DEFAULT_RETENTION),
            store_reserve: crate::store::Reserve::Auto,
            incidents: crate::alerts::incident::IncidentRules::default(),
            backups: None,
        };
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("bench-manager".into())
            .spawn(move || {
                manager::serve_quietly(
                    config,
                    Arc::new(crate::clock::RealClock::new()),
                    async move {
                        let _ = stopped.recv().await;
                    },
                )
            })
            .map_err(BenchError::Thread)?;
        let ports = dir.join(PORTS_FILE);
        let deadline = Stopwatch::now() + Duration::from_secs(60);
        loop {
            if let Some(agent_addr) = read_agent_port(&ports) {
                return Ok(Manager {
                    thread,
                    stop,
                    agent_addr,
                });
            }
            if thread.is_finished() {
                return match thread.join() {
                    Ok(Err(e)) => Err(e.into()),
                    _ => Err(BenchError::ManagerNotListening(ports)),
                };
            }
            if Stopwatch::now() > deadline {
                return Err(BenchError::ManagerNotListening(ports));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it and waits until its store is closed; returns how long that took.
    pub(super) fn stop(self) -> Result<Duration, BenchError> {
        let started = Stopwatch::now();
        let _ = self.stop.try_send(());
        match self.thread.join() {
            Ok(result) => result?,
            Err(_) => {
                return Err(BenchError::Thread(std::io::Error::other(
                    "the manager thread panicked",
                )));
            }
        }
        Ok(started.elapsed())
    }
}

pub(super) fn read_agent_port(ports: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(ports).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("agent")?.as_str()?.parse().ok()
}

/// The run's data dir under the system's temporary directory, removed when dropped.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn create() -> Result<TempDir, BenchError> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = crate::clock::real_wall()
            .to_system_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("picket-bench-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| BenchError::File {
                path: path.clone(),
                source,
            })?;
        Ok(TempDir(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!("cannot remove {}: {e}", self.0.display());
        }
    }
}
