//! Agents installed from the manager: the one line `picket token create` prints, run as given
//! into a throwaway root with no systemd, installs the manager's own binary (checked against
//! its SHA-256), activates it, and the agent it leaves comes online; a second run changes
//! nothing, and one where systemd is installs the packages' unit; nobody without a live token
//! gets the script or the binary.

use crate::support::agent::{set_base, wait_for};
use crate::support::{BIN, Manager};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn run_line(line: &str, root: &Path) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(line)
        .env("PICKET_INSTALL_ROOT", root)
        .env("PICKET_NO_SYSTEMD", "1")
        .env("PICKET_AGENT_ARGS", "--listen 127.0.0.1:0 --hostname inst1")
        .output()
        .expect("run the install line")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_of(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line once more where systemd is (a stand-in `systemctl` that records its calls): it
/// installs the packages' agent unit, puts the agent's options where that unit reads them, and
/// enables and restarts the service.
fn with_systemd(line: &str, root: &Path, tmp: &Path) {
    let stubs = tmp.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let systemctl = stubs.join("systemctl");
    std::fs::write(
        &systemctl,
        "#!/bin/sh\necho \"systemctl $*\" >>\"$CALLS\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let calls = tmp.join("calls");
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(line)
        .env("PICKET_INSTALL_ROOT", root)
        .env_remove("PICKET_NO_SYSTEMD")
        .env("PICKET_AGENT_ARGS", "--listen 127.0.0.1:0 --hostname inst1")
        .env("PATH", path)
        .env("CALLS", &calls)
        .output()
        .expect("run the install line");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/picket-agent.service"));
    let packaged = include_str!("../../assets/systemd/picket-agent.service");
    assert_eq!(unit.unwrap().trim_end(), packaged.trim_end());
    let defaults = root.join("etc/default/picket-agent");
    assert_eq!(mode(&defaults), 0o600);
    assert_eq!(
        std::fs::read_to_string(&defaults).unwrap(),
        "PICKET_AGENT_ARGS=\"--listen 127.0.0.1:0 --hostname inst1\"\n"
    );
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "systemctl daemon-reload",
            "systemctl enable picket-agent.service",
            "systemctl restart picket-agent.service"
        ]
    );
}

#[test]
fn the_printed_line_installs_and_activates_an_agent_that_comes_online() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("manager"));
    set_base(&m, "heartbeat.interval=1s");
    let token = m.cli_json(&["token", "create"]);
    let line = token["install_command"].as_str().expect("an install line");
    let root = tmp.path().join("root");
    let first = run_line(line, &root);
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{said}");
    let bin = root.join("usr/bin/picket");
    let data = root.join("var/lib/picket-agent");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(BIN).unwrap());
    assert!(!root.join("etc/systemd").exists(), "a unit without systemd");
    // Activated, not running: the manager knows the computer, which has not heartbeated.
    let computers = m.computers();
    assert_eq!(computers.len(), 1, "{computers:?}");
    assert_eq!(computers[0]["hostname"], "inst1");
    // Again: harmless, nothing downloaded, no second computer.
    let again = run_line(line, &root);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{said}");
    assert!(said.contains("already this version"), "{said}");
    assert_eq!(m.computers().len(), 1);
    with_systemd(line, &root, tmp.path());
    // The agent the script left runs as it says, and comes online.
    let _agent = Killed(
        Command::new(&bin)
            .args(["agent", "--data-dir"])
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(std::fs::File::create(tmp.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for(LIMIT, || {
        m.computers()
            .first()
            .filter(|c| c["agent"]["last_heartbeat_ms"].is_u64())
            .map(|_| ())
    });
    // Nobody without a live token gets the script or the binary.
    let base = line
        .split('\'')
        .nth(3)
        .and_then(|url| url.split("/agent/").next())
        .expect("the line's URL")
        .to_string();
    assert_eq!(status_of(&format!("{base}/agent/install.sh")), "403");
    assert_eq!(
        status_of(&format!("{base}/agent/install.sh?token=00ff")),
        "403"
    );
    let name = format!(
        "picket-{}-{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    assert_eq!(status_of(&format!("{base}/agent/download/{name}")), "403");
    assert_eq!(
        status_of(&format!("{base}/agent/download/picket-0.0.0-vax?token=x")),
        "404"
    );
    // A newer picket in place (a package, an upgrade) is kept, not downgraded.
    let newer = root.join("usr/bin/picket.newer");
    std::fs::write(&newer, "#!/bin/sh\necho 'picket 99.0.0'\n").unwrap();
    std::fs::set_permissions(&newer, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&newer, &bin).unwrap();
    let kept = run_line(line, &root);
    let said = String::from_utf8_lossy(&kept.stderr);
    assert!(kept.status.success(), "{said}");
    assert!(said.contains("keeping"), "{said}");
    assert!(std::fs::read_to_string(&bin).unwrap().contains("99.0.0"));
}
