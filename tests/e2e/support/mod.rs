//! Test harness: a real `picket manager` process on 127.0.0.1 with a temporary data dir, and
//! the CLI and API client pointed at it. Waits are on conditions with deadlines, never fixed.

// A harness may panic: a failed set-up is a failed test.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub mod agent;
pub mod wire;

use picket::admin::{ApiClient, ClientOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_picket");
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A manager process; killed when dropped so a failing test leaves nothing behind.
pub struct Manager {
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Manager {
    /// Starts a manager on `dir` and waits until it has written its ports.
    pub fn start(dir: &Path) -> Manager {
        Manager::start_with_env(dir, &[])
    }

    /// [`Manager::start`] with extra environment variables (`RUST_LOG=debug`, say). A restart
    /// on the same data dir listens on the same agent port as before, as a real manager on 4120
    /// would, so activated agents find it again.
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Manager {
        Manager::spawn(dir, env, None, &[])
    }

    /// [`Manager::start`] running the binary at `bin` (a copy whose version slot was rewritten,
    /// say), which is then the binary it serves.
    pub fn start_from(bin: &Path, dir: &Path) -> Manager {
        Manager::spawn_from(bin, dir, &[], None, &[])
    }

    /// [`Manager::start`] with extra options (`--store-reserve 0`, say).
    pub fn start_with_args(dir: &Path, args: &[&str]) -> Manager {
        Manager::spawn(dir, &[], None, args)
    }

    /// [`Manager::start`] under `umask` (through `sh -c 'umask U; exec ...'`): what the files
    /// it creates get when the umask hides nothing.
    pub fn start_with_umask(dir: &Path, umask: &str) -> Manager {
        Manager::spawn(dir, &[], Some(umask), &[])
    }

    fn spawn(dir: &Path, env: &[(&str, &str)], umask: Option<&str>, args: &[&str]) -> Manager {
        Manager::spawn_from(Path::new(BIN), dir, env, umask, args)
    }

    fn spawn_from(
        bin: &Path,
        dir: &Path,
        env: &[(&str, &str)],
        umask: Option<&str>,
        args: &[&str],
    ) -> Manager {
        let _ = std::fs::remove_file(dir.join("ports.json"));
        let remembered = dir.with_extension("agent-addr");
        let agent_listen =
            std::fs::read_to_string(&remembered).unwrap_or_else(|_| "127.0.0.1:0".to_string());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(dir))
            .expect("open manager log");
        let child = command_of(bin, umask)
            .args(["manager", "--data-dir"])
            .arg(dir)
            .args(["--agent-listen", agent_listen.trim()])
            .args(["--console-listen", "127.0.0.1:0"])
            .args(["--hostname", "localhost"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(stdout_file(dir))
            .stderr(log)
            .spawn()
            .expect("spawn manager");
        let mut manager = Manager {
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        manager.wait_for_ports();
        let ports: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("ports.json")).expect("ports"))
                .expect("ports.json is JSON");
        if let Some(agent) = ports["agent"].as_str() {
            std::fs::write(&remembered, agent).expect("remember the agent port");
        }
        manager
    }

    fn wait_for_ports(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        while !self.dir.join("ports.json").exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("manager exited early with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "manager did not start in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The console's one-time admin password, as the first start printed it.
    pub fn admin_password(&self) -> String {
        let printed = std::fs::read_to_string(stdout_path(&self.dir)).unwrap_or_default();
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix("Console login:"))
            .and_then(|l| l.trim().strip_prefix("admin / "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no console password in the banner:\n{printed}"))
    }

    /// The manager's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The manager's resident memory, in bytes (`VmRSS` of `/proc/PID/status`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }

    /// `picket computers list`: every computer as the API shows it.
    pub fn computers(&self) -> Vec<serde_json::Value> {
        self.cli_json(&["computers", "list"])["computers"]
            .as_array()
            .expect("a computers array")
            .clone()
    }

    /// The sum of a metric's samples (on `/metrics`) whose labels contain `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.client().get_text("/metrics").expect("metrics");
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Where a listener is (`"agent"` or `"console"` in `ports.json`).
    pub fn addr(&self, listener: &str) -> std::net::SocketAddr {
        let text = std::fs::read_to_string(self.dir.join("ports.json")).expect("ports.json");
        let ports: serde_json::Value = serde_json::from_str(&text).expect("ports.json is JSON");
        ports[listener]
            .as_str()
            .expect("listener")
            .parse()
            .expect("an address")
    }

    /// Everything the manager logged so far (all its runs on this data dir).
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.dir)).unwrap_or_default()
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.options()).expect("client")
    }

    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            data_dir: Some(self.dir.clone()),
            ..Default::default()
        }
    }

    /// SIGTERM, then waits for the exit; returns the status and the log.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "manager did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the crash case.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `picket ARGS... --data-dir DIR`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(&self.dir)
            .env_remove("PICKET_API_KEY")
            .output()
            .expect("run cli")
    }

    /// Runs the CLI with `--json` and parses what it printed; panics with stderr on failure.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "picket {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("cli printed JSON")
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `picket`, or `picket` run by a shell that set `umask` first.
pub fn command(umask: Option<&str>) -> Command {
    command_of(Path::new(BIN), umask)
}

/// [`command`] for the binary at `bin`.
pub fn command_of(bin: &Path, umask: Option<&str>) -> Command {
    match umask {
        None => Command::new(bin),
        Some(umask) => {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")]);
            cmd.arg(bin);
            cmd
        }
    }
}

/// The manager's stderr goes beside its data dir, not into it.
/// Where the manager's stdout (its banner) goes, beside the data dir.
pub fn stdout_path(dir: &Path) -> PathBuf {
    dir.with_extension("stdout")
}

fn stdout_file(dir: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stdout_path(dir))
        .expect("open manager stdout")
}

pub fn log_path(dir: &Path) -> PathBuf {
    dir.with_extension("log")
}

/// A blocking TCP connection to `to` from the loopback address `from`: another machine, as the
/// manager counts sources (a stranger on the network, or one of many agents behind a NAT).
pub fn connect_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let socket = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    rustix::net::bind(&socket, &std::net::SocketAddrV4::new(from, 0))?;
    rustix::net::connect(&socket, &to)?;
    Ok(std::net::TcpStream::from(socket))
}
