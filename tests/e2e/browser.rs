//! The console in a real browser: `tests/browser/console.mjs` drives it in Debian's headless
//! chromium (through playwright-core from npm; no downloaded browser) against a real manager, as
//! a new administrator would: log in, create a token, run the agent command copied from the
//! page, watch the computer come online, kill the agent and see its alert, add notification
//! channels (one tested against a syslog listener of the script's own), routes and maintenance
//! windows, acknowledge the alert on the computer's page and dismiss it on the Alerts page.
//! `make test` installs the npm package; `.ci/run` installs chromium and Node.js on a fresh
//! machine. Screenshots of every page land in `target/tmp/console-screenshots/`. Node also checks
//! that every console script parses as a module.

use crate::support::agent::set_base;
use crate::support::{BIN, Manager};
use serde_json::json;
use std::path::Path;
use std::process::Command;

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
    // Short enough that the offline alert shows within seconds of the kill.
    set_base(&m, "heartbeat.interval=2s");
    set_base(&m, "heartbeat.missed-before-alert=0");

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
        .env("PICKET_BIN", BIN)
        .env("AGENT_DIR", tmp.path().join("agent"))
        .env("SCREENSHOTS", &screenshots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}\nmanager log:\n{}\nagent log:\n{}",
        screenshots.display(),
        m.log(),
        std::fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default()
    );
    assert!(stdout.contains("console: all steps passed"), "{stdout}");
    let computers = m.cli_json(&["computers", "list"]);
    let web1 = &computers["computers"][0];
    assert_eq!(
        (&web1["hostname"], &web1["policy"], &web1["status"]),
        (&json!("web1"), &json!("Servers"), &json!("offline")),
        "{computers}"
    );
    // The editor's Agent Upgrade section stored the override on the policy, not elsewhere.
    let servers = m.cli_json(&["policies", "show", "Servers"]);
    assert_eq!(
        servers["settings"]["agent.auto-upgrade"],
        json!(true),
        "{servers}"
    );
    let base = m.cli_json(&["policies", "show", "Base Policy"]);
    assert_eq!(
        base["effective"]["agent.auto-upgrade"],
        json!({"value": false, "source": "default"}),
        "{base}"
    );
}

/// Every script of the console parses as the ES module the browser loads it as (a syntax error
/// in one page would leave the whole console blank): `node --check` on each, copied to `.mjs`
/// so that Node reads it as a module whatever its version's default.
#[test]
fn every_console_script_parses_as_a_module() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is not installed: apt-get install nodejs npm (.ci/run does it)"
    );
    fn scripts(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scripts(&path, found);
            } else if path.extension().is_some_and(|e| e == "js") {
                found.push(path);
            }
        }
    }
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut found = Vec::new();
    scripts(&assets, &mut found);
    assert!(found.len() >= 20, "{found:?}");
    let tmp = tempfile::tempdir().unwrap();
    for script in found {
        let name = script.strip_prefix(&assets).unwrap().display().to_string();
        let copy = tmp
            .path()
            .join(name.replace('/', "_").replace(".js", ".mjs"));
        std::fs::copy(&script, &copy).unwrap();
        let out = Command::new("node")
            .arg("--check")
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "assets/{name} does not parse:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
