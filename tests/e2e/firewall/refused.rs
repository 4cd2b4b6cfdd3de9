//! A ruleset refused when it is applied: the agent answers `ConfigRejected`, spools
//! `configuration-rejected` with nft's words, and the last good table stays in force; once the
//! refusal is gone, the next heartbeat applies it. A kernel's refusal reaches the agent as nft's
//! failing exit and its message on stderr: the rulesets the agent writes are ones every kernel
//! with nf_tables takes, so the refusal comes from an `nft` on the agent's PATH that passes every
//! call to the real one but fails `nft -j -f` while a file exists.

use super::{CLIENT_IP, LIMIT, Namespaces, Site, add_rule, cli, deny_console_port, missing_tools};
use crate::support::agent::wait_for;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The message the refusing `nft` prints, as the kernel's `ENOBUFS` reads through nft.
const REFUSAL: &str = "Error: Could not process rule: No buffer space available";

fn events(ns: &Namespaces, manager: &Path) -> String {
    cli(ns, manager, &["events", "list", "--computer", "1"]).to_string()
}

#[test]
fn a_refused_ruleset_is_rejected_and_reported_and_the_last_good_one_stays() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}; CI runs this test as root with iproute2 and nftables");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let real = Command::new("sh")
        .args(["-c", "command -v nft"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let marker = tmp.path().join("refuse");
    let script = format!(
        "#!/bin/sh\nif [ -e '{}' ] && [ \"$1\" = -j ] && [ \"$2\" = -f ]; then\n  cat >/dev/null\n  \
         echo '{REFUSAL}' >&2\n  exit 1\nfi\nexec '{real}' \"$@\"\n",
        marker.display()
    );
    std::fs::write(bin.join("nft"), script).unwrap();
    std::fs::set_permissions(bin.join("nft"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());

    let mut ns = Namespaces::create("r");
    let site = Site::start(&mut ns, tmp.path(), &[("PATH", &path)]);
    let (manager, console) = (site.manager.clone(), site.console);
    let port = console.to_string();
    deny_console_port(&ns, &manager, console, false);
    wait_for(LIMIT, || {
        ns.table()
            .filter(|t| t.to_string().contains("no console"))
            .map(|_| ())
    });
    assert!(!ns.client_connects(console), "the deny rule drops");

    // Refused: a force-allow from the client would open the console; it must not.
    std::fs::write(&marker, b"").unwrap();
    let source = format!("{CLIENT_IP}/32");
    add_rule(
        &ns,
        &manager,
        &[
            "--name",
            "console for the client",
            "--action",
            "force-allow",
            "--protocol",
            "tcp",
            "--port",
            &port,
            "--source-ip",
            &source,
        ],
    );
    let said = wait_for(LIMIT, || {
        let events = events(&ns, &manager);
        events
            .contains("No buffer space available")
            .then_some(events)
    });
    assert!(said.contains("configuration-rejected"), "{said}");
    let table = ns.table().expect("the last good table");
    assert!(table.to_string().contains("no console"), "{table}");
    assert!(
        !table.to_string().contains("console for the client"),
        "nothing of the refused ruleset: {table}"
    );
    assert!(
        !ns.client_connects(console),
        "the last good table still drops"
    );
    let computer = cli(&ns, &manager, &["computers", "show", "1"]);
    assert_eq!(computer["agent"]["config_up_to_date"], false, "{computer}");

    // No longer refused: the next heartbeat applies it.
    std::fs::remove_file(&marker).unwrap();
    wait_for(LIMIT, || {
        ns.table()
            .filter(|t| t.to_string().contains("console for the client"))
            .map(|_| ())
    });
    assert!(
        ns.client_connects(console),
        "the force-allow rule lets the client in"
    );
    wait_for(LIMIT, || {
        let computer = cli(&ns, &manager, &["computers", "show", "1"]);
        (computer["agent"]["config_up_to_date"] == true).then_some(())
    });
}
