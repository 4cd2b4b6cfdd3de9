//! End-to-end in a real browser: `tests/browser/console.mjs` drives the console in Debian's
//! headless chromium (through playwright-core from npm; no downloaded browser) against a real
//! manager with one real agent. `make test` installs the npm package; `.ci/run` installs
//! chromium and Node.js on a fresh machine. Screenshots of every page land in
//! `target/tmp/console-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests may panic

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::Manager;
use support::agent::{Agent, activation, set_base, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";

/// What the browser test needs besides cargo; missing ones fail the test with how to get them
/// (a skipped browser test would let a broken console pass).
fn check_tools(browser_dir: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is not installed: apt-get install nodejs npm (.ci/run does it)"
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `make test` (it runs `npm ci` in tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_string());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (.ci/run does it)"
    );
}

#[test]
fn an_administrator_uses_the_console_in_a_browser() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    check_tools(&browser_dir);
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::start(&tmp.path().join("data"));
    set_base(&m, "heartbeat.interval=2s");
    set_base(&m, "heartbeat.missed-before-alert=0");
    let agent = Agent::start(&tmp.path().join("agent"), Some(&activation(&m)), "web1");
    wait_for(Duration::from_secs(20), || {
        let list = m.cli_json(&["computers", "list"]);
        (list["computers"][0]["status"] == "online").then_some(())
    });

    let ports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(m.dir.join("ports.json")).unwrap()).unwrap();
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let out = Command::new("node")
        .arg(browser_dir.join("console.mjs"))
        .current_dir(&browser_dir)
        .env(
            "PICKET_URL",
            format!("https://{}", ports["console"].as_str().unwrap()),
        )
        .env("PICKET_PASSWORD", m.admin_password())
        .env(
            "PICKET_AGENT_PID",
            agent.child.as_ref().unwrap().id().to_string(),
        )
        .env("PICKET_HOSTNAME", "web1")
        .env("SCREENSHOTS", &screenshots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}\nmanager log:\n{}",
        screenshots.display(),
        m.log()
    );
    assert!(stdout.contains("console: all steps passed"), "{stdout}");
}
