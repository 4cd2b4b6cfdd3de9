//! A real `picket agent` process for end-to-end tests, and the waits they share.

use super::Manager;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running agent; killed when dropped.
pub struct Agent {
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Agent {
    /// Starts `picket agent` on `dir`, activating with `command`'s token on first start.
    pub fn start(dir: &Path, activation: Option<&Activation>, hostname: &str) -> Agent {
        Agent::start_with_env(dir, activation, hostname, &[])
    }

    pub fn start_with_env(
        dir: &Path,
        activation: Option<&Activation>,
        hostname: &str,
        env: &[(&str, &Path)],
    ) -> Agent {
        Agent::spawn(dir, activation, hostname, env, None)
    }

    /// [`Agent::start_with_env`] running the binary at `bin`.
    pub fn start_from(
        bin: &Path,
        dir: &Path,
        activation: Option<&Activation>,
        hostname: &str,
        env: &[(&str, &Path)],
    ) -> Agent {
        Agent::spawn_from(bin, dir, activation, hostname, env, None)
    }

    /// [`Agent::start`] under `umask` (see `support::command`).
    pub fn start_with_umask(
        dir: &Path,
        activation: Option<&Activation>,
        hostname: &str,
        umask: &str,
    ) -> Agent {
        Agent::spawn(dir, activation, hostname, &[], Some(umask))
    }

    fn spawn(
        dir: &Path,
        activation: Option<&Activation>,
        hostname: &str,
        env: &[(&str, &Path)],
        umask: Option<&str>,
    ) -> Agent {
        Agent::spawn_from(Path::new(super::BIN), dir, activation, hostname, env, umask)
    }

    fn spawn_from(
        bin: &Path,
        dir: &Path,
        activation: Option<&Activation>,
        hostname: &str,
        env: &[(&str, &Path)],
        umask: Option<&str>,
    ) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("log"))
            .unwrap();
        let mut cmd = super::command_of(bin, umask);
        cmd.args(["agent", "--data-dir"]).arg(dir);
        cmd.args(["--hostname", hostname, "--listen", "127.0.0.1:0"]);
        if let Some(a) = activation {
            cmd.args([
                "--manager",
                &a.manager,
                "--token",
                &a.token,
                "--ca-sha256",
                &a.pin,
            ]);
        }
        let child = cmd
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent {
            dir: dir.to_path_buf(),
            child: Some(child),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// Waits until the agent's `runs`th start reached its heartbeat loop (and so handles
    /// SIGTERM; before that the default action would just kill it).
    pub fn wait_until_running(&self, runs: usize) {
        wait_for(Duration::from_secs(30), || {
            (self.log().matches("running as computer").count() >= runs).then_some(())
        });
    }

    /// SIGTERM and wait: the agent spools its stop event and tries to say goodbye.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = wait_for(Duration::from_secs(40), || child.try_wait().unwrap());
        assert!(
            status.success(),
            "agent exited with {status}: {}",
            self.log()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Activation {
    pub manager: String,
    pub token: String,
    pub pin: String,
}

/// A token for the Base Policy, as the agent command line gives it.
pub fn activation(m: &Manager) -> Activation {
    activation_with(m, &[])
}

/// A token for `policy`.
pub fn activation_for(m: &Manager, policy: &str) -> Activation {
    activation_with(m, &["--policy", policy])
}

fn activation_with(m: &Manager, extra: &[&str]) -> Activation {
    let mut args = vec!["token", "create"];
    args.extend_from_slice(extra);
    let token = m.cli_json(&args);
    let command = token["agent_command"].as_str().unwrap().to_string();
    let arg = |flag: &str| {
        let words: Vec<&str> = command.split_whitespace().collect();
        let i = words.iter().position(|w| *w == flag).unwrap();
        words[i + 1].to_string()
    };
    // The printed command carries the token in the environment, not on the command line.
    let token = command
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PICKET_TOKEN="))
        .unwrap()
        .to_string();
    Activation {
        manager: arg("--manager"),
        token,
        pin: arg("--ca-sha256"),
    }
}

/// Polls `check` until it returns `Some`, or fails after `limit`.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets one setting on the Base Policy.
pub fn set_base(m: &Manager, setting: &str) {
    m.cli_json(&["policies", "set", "Base Policy", setting]);
}

impl Agent {
    /// The address the agent listens on for the manager, once it does (`DIR/ports.json`).
    pub fn listen_addr(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join("ports.json")).ok()?;
        let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
        ports["listen"].as_str().map(str::to_string)
    }
}
