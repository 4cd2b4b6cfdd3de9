//! The host firewall for real: a manager and an agent in a network namespace the test makes,
//! a "client" namespace joined to it by a veth pair, and nftables in the kernel. Enables the
//! firewall with a deny rule and checks the table, the traffic it drops and lets through, the
//! `firewall` component, and that a flushed table is restored and reported.
//!
//! The contract: the firewall is only ever enabled inside namespaces this test creates, never
//! in the machine's own, and they are deleted at the end (the table goes with them). Needs root,
//! `ip` (iproute2), `nft` (nftables) and bash; without them it says why and passes.

mod log;
mod refused;

use crate::support::BIN;
use crate::support::agent::wait_for;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);
const AGENT_IP: &str = "10.231.0.1";
const CLIENT_IP: &str = "10.231.0.2";

/// Why the test cannot run here, if it cannot.
fn missing_tools() -> Option<&'static str> {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !root {
        return Some("it needs root to make network namespaces");
    }
    let runs = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs("ip", "-V") {
        return Some("`ip` (iproute2) is not installed");
    }
    if !runs("nft", "--version") {
        return Some("`nft` (nftables) is not installed");
    }
    if !runs("bash", "--version") {
        return Some("bash is not installed");
    }
    None
}

/// Two namespaces joined by a veth pair, and the processes started in them; all removed when
/// dropped, even by a failed assertion.
struct Namespaces {
    agent: String,
    client: String,
    children: Vec<Child>,
}

impl Namespaces {
    /// `tag` tells apart the namespaces of the tests running at once in this process.
    fn create(tag: &str) -> Namespaces {
        let id = std::process::id();
        let ns = Namespaces {
            agent: format!("picket-fw{tag}-a-{id}"),
            client: format!("picket-fw{tag}-c-{id}"),
            children: Vec::new(),
        };
        let (a, c) = (ns.agent.as_str(), ns.client.as_str());
        let a_addr = format!("{AGENT_IP}/24");
        let c_addr = format!("{CLIENT_IP}/24");
        for args in [
            vec!["netns", "add", a],
            vec!["netns", "add", c],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", c, "link", "set", "lo", "up"],
            vec![
                "-n", a, "link", "add", "fw-a", "type", "veth", "peer", "name", "fw-c", "netns", c,
            ],
            vec!["-n", a, "addr", "add", &a_addr, "dev", "fw-a"],
            vec!["-n", c, "addr", "add", &c_addr, "dev", "fw-c"],
            vec!["-n", a, "link", "set", "fw-a", "up"],
            vec!["-n", c, "link", "set", "fw-c", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }

    /// `program args` inside namespace `ns`.
    fn command(ns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, program]);
        command
    }

    fn spawn(&mut self, args: &[&str], log: &Path, env: &[(&str, &str)]) -> usize {
        let log = std::fs::File::create(log).unwrap();
        // Through env(1), so that a PATH given here is the process's and not ip's own.
        let child = Namespaces::command(&self.agent, "env")
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(BIN)
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    /// A TCP connection from the client namespace to the agent's address: whether it opened
    /// within 2 s (a dropped SYN times out).
    fn client_connects(&self, port: u16) -> bool {
        let script = format!("exec 3<>/dev/tcp/{AGENT_IP}/{port}");
        Namespaces::command(&self.client, "timeout")
            .args(["2", "bash", "-c", &script])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// The table as nft lists it in the agent's namespace, if it exists.
    fn table(&self) -> Option<Value> {
        let out = Namespaces::command(&self.agent, "nft")
            .args(["-j", "list", "table", "inet", "picket"])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    fn nft(&self, args: &[&str]) {
        let status = Namespaces::command(&self.agent, "nft")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "nft {args:?}");
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.agent, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The admin CLI, run in the agent's namespace (the manager's console listens there).
fn cli(ns: &Namespaces, dir: &Path, args: &[&str]) -> Value {
    let out = Namespaces::command(&ns.agent, BIN)
        .args(args)
        .args(["--json", "--data-dir"])
        .arg(dir)
        .env_remove("PICKET_API_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "picket {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Adds a rule to the Base Policy; its name for the log prefix (`rule-ID`).
fn add_rule(ns: &Namespaces, manager: &Path, args: &[&str]) -> String {
    let mut all = vec!["policies", "rules", "add", "Base Policy"];
    all.extend_from_slice(args);
    let answer = cli(ns, manager, &all);
    let rule = answer["effective"].get(0).unwrap_or(&answer);
    format!("rule-{}", rule["id"].as_u64().expect("the new rule's id"))
}

/// A rule `no console` denying TCP to the console's port (with `--log` when `log`), and the
/// firewall turned on; the rule's name for the log prefix.
fn deny_console_port(ns: &Namespaces, manager: &Path, console: u16, log: bool) -> String {
    let port = console.to_string();
    let mut args = vec![
        "--name",
        "no console",
        "--action",
        "deny",
        "--protocol",
        "tcp",
        "--port",
        &port,
    ];
    if log {
        args.push("--log");
    }
    let rule = add_rule(ns, manager, &args);
    cli(
        ns,
        manager,
        &["policies", "set", "Base Policy", "firewall.enabled=true"],
    );
    rule
}

fn ports(dir: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("ports.json")).ok()?).ok()
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

fn firewall_component(ns: &Namespaces, manager: &Path, computer: &str) -> Option<Value> {
    let computer = cli(ns, manager, &["computers", "show", computer]);
    let components = computer["agent"]["components"].as_array()?.clone();
    components.into_iter().find(|c| c["name"] == "firewall")
}

fn driver_offline(ns: &Namespaces, manager: &Path) -> Option<Value> {
    let alerts = cli(ns, manager, &["alerts", "list"]);
    alerts["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["kind"] == "driver-offline")
        .cloned()
}

fn host_has_table() -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", "picket"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A manager and an activated agent in the agent's namespace, with 1 s heartbeats.
struct Site {
    manager: PathBuf,
    console: u16,
    /// The agent's listening port.
    listen: u16,
    manager_addr: String,
    pin: String,
}

impl Site {
    /// Starts both; the agent with `agent_env` besides the namespace's environment.
    fn start(ns: &mut Namespaces, tmp: &Path, agent_env: &[(&str, &str)]) -> Site {
        let manager = tmp.join("manager");
        let manager_args = [
            "manager",
            "--data-dir",
            manager.to_str().unwrap(),
            "--agent-listen",
            "127.0.0.1:0",
            "--console-listen",
            "0.0.0.0:0",
            "--hostname",
            "localhost",
        ];
        ns.spawn(&manager_args, &tmp.join("manager.log"), &[]);
        let console = wait_for(LIMIT, || ports(&manager)?["console"].as_str().map(port_of));
        let agent_port = port_of(ports(&manager).unwrap()["agent"].as_str().unwrap());
        cli(
            ns,
            &manager,
            &["policies", "set", "Base Policy", "heartbeat.interval=1s"],
        );
        let token = cli(ns, &manager, &["token", "create"]);
        let command = token["agent_command"].as_str().unwrap().to_string();
        let words: Vec<&str> = command.split_whitespace().collect();
        let pin = words[words.iter().position(|w| *w == "--ca-sha256").unwrap() + 1];
        let secret = words
            .iter()
            .find_map(|w| w.strip_prefix("PICKET_TOKEN="))
            .unwrap();
        let mut site = Site {
            manager: manager.clone(),
            console,
            listen: 0,
            manager_addr: format!("127.0.0.1:{agent_port}"),
            pin: pin.to_string(),
        };
        let agent = tmp.join("agent");
        let agent_args = site.agent_args(&agent, secret, "fw-agent");
        let agent_args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
        ns.spawn(&agent_args, &tmp.join("agent.log"), agent_env);
        site.listen = wait_for(LIMIT, || ports(&agent)?["listen"].as_str().map(port_of));
        wait_for(LIMIT, || firewall_component(ns, &manager, "1"));
        site
    }

    /// `picket agent ...` for an agent in `dir` activating with `secret`.
    fn agent_args(&self, dir: &Path, secret: &str, hostname: &str) -> Vec<String> {
        [
            "agent",
            "--data-dir",
            dir.to_str().unwrap(),
            "--manager",
            &self.manager_addr,
            "--token",
            secret,
            "--ca-sha256",
            &self.pin,
            "--listen",
            "0.0.0.0:0",
            "--hostname",
            hostname,
        ]
        .map(String::from)
        .to_vec()
    }
}

#[test]
fn the_firewall_enforces_a_deny_rule_in_a_namespace_and_restores_a_flushed_table() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}; CI runs this test as root with iproute2 and nftables");
        return;
    }
    let host_table_before = host_has_table();
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Namespaces::create("");
    let site = Site::start(&mut ns, tmp.path(), &[]);
    let (manager, console, listen) = (site.manager.clone(), site.console, site.listen);
    // A second agent that cannot find nft: its firewall is in error once the policy enables it.
    let token = cli(&ns, &manager, &["token", "create"]);
    let command = token["agent_command"].as_str().unwrap().to_string();
    let secret2 = command
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PICKET_TOKEN="))
        .unwrap()
        .to_string();
    let blind = tmp.path().join("blind");
    let blind_args = site.agent_args(&blind, &secret2, "no-nft");
    let blind_args: Vec<&str> = blind_args.iter().map(String::as_str).collect();
    let nowhere = [("PATH", "/nonexistent")];
    ns.spawn(&blind_args, &tmp.path().join("blind.log"), &nowhere);

    // Before the firewall: the component says off, and the console port is reachable from
    // the client (so what blocks it later is the rule).
    let off = wait_for(LIMIT, || firewall_component(&ns, &manager, "1"));
    assert_eq!(off["state"], "off", "{off}");
    assert!(
        ns.client_connects(console),
        "the console is reachable before the firewall"
    );
    assert!(
        ns.table().is_none(),
        "no table before the firewall is enabled"
    );

    deny_console_port(&ns, &manager, console, false);
    let on = wait_for(LIMIT, || {
        firewall_component(&ns, &manager, "1").filter(|c| c["state"] == "on")
    });
    assert_eq!(on["state"], "on", "{on}");
    let table = ns
        .table()
        .expect("the table inet picket exists in the agent's namespace");
    assert!(table.to_string().contains("no console"), "{table}");

    // Denied traffic is dropped; the agent's port (its hidden rule) still lets the client in.
    assert!(
        !ns.client_connects(console),
        "the deny rule drops the console port"
    );
    assert!(ns.client_connects(listen), "the agent port is allowed");
    // The deny rule's counter reaches the manager with a heartbeat.
    wait_for(LIMIT, || {
        let computer = cli(&ns, &manager, &["computers", "show", "1"]);
        let counters = computer["agent"]["counters"].as_object()?.clone();
        counters
            .iter()
            .any(|(name, value)| {
                name.starts_with("firewall:rule-")
                    && name.ends_with(":packets")
                    && value.as_u64() > Some(0)
            })
            .then_some(())
    });

    // Flushed by someone: restored at the next heartbeat and reported.
    ns.nft(&["flush", "table", "inet", "picket"]);
    assert!(ns.client_connects(console), "flushed, nothing is enforced");
    let restored = wait_for(LIMIT, || {
        let events = cli(&ns, &manager, &["events", "list", "--computer", "1"]);
        let text = events.to_string();
        text.contains("firewall-restored").then_some(text)
    });
    assert!(restored.contains("restored"), "{restored}");
    let component = firewall_component(&ns, &manager, "1").unwrap();
    assert_eq!(component["state"], "on", "{component}");
    assert!(
        component["reason"].as_str().unwrap().contains("restored"),
        "{component}"
    );
    assert!(
        !ns.client_connects(console),
        "restored, the deny rule drops again"
    );

    // The agent without nft: error, and a driver-offline alert while the policy enables it.
    let error = wait_for(LIMIT, || {
        firewall_component(&ns, &manager, "2").filter(|c| c["state"] == "error")
    });
    assert!(error["reason"].as_str().unwrap().contains("nft"), "{error}");
    let alert = wait_for(LIMIT, || driver_offline(&ns, &manager));
    assert_eq!(alert["computer"], 2, "{alert}");
    assert!(
        alert["message"].as_str().unwrap().contains("nft"),
        "{alert}"
    );

    // Off again: the table is removed, the alert clears itself, the console is reachable.
    cli(
        &ns,
        &manager,
        &["policies", "set", "Base Policy", "firewall.enabled=false"],
    );
    wait_for(LIMIT, || ns.table().is_none().then_some(()));
    wait_for(LIMIT, || {
        driver_offline(&ns, &manager).is_none().then_some(())
    });
    assert!(
        ns.client_connects(console),
        "off, the console is reachable again"
    );

    drop(ns);
    assert_eq!(
        host_has_table(),
        host_table_before,
        "the machine's own namespace was not touched"
    );
}
