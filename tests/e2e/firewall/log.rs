//! Logged packets and agent-port refusals as events, for real: rules with `--log` in the
//! agent's namespace, packets sent from the client's across the veth pair, and the events they
//! become at the manager (`schema/events.md` 2000-2002), a flood held to the agent's limit with
//! a count of the rest. The agent's limiter window is cut to a few seconds through the debug
//! build's `PICKET_TEST_LOG_WINDOW_MS`, so that a window ends within the test. And when another
//! program holds the group, the firewall enforces all the same and its component says why its
//! packets are not reported.

use super::{
    AGENT_IP, CLIENT_IP, LIMIT, Namespaces, Site, add_rule, cli, deny_console_port,
    firewall_component, host_has_table, missing_tools,
};
use crate::support::agent::wait_for;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;

/// The agent's limiter window in this test, in ms.
const WINDOW_MS: &str = "4000";
/// Events reported per rule and window (`firewall::log_limit::PER_WINDOW`).
const PER_WINDOW: u64 = 10;
/// Packets in the flood, and connections the agent-port rule refuses.
const FLOOD: u64 = 300;
const REFUSALS: u64 = 15;
const FLOOD_PORT: u16 = 9999;

/// The agent's events at the manager, oldest first.
fn events(ns: &Namespaces, manager: &Path) -> Vec<Value> {
    let list = cli(
        ns,
        manager,
        &["events", "list", "--computer", "1", "--limit", "5000"],
    );
    let mut events = list["events"].as_array().cloned().unwrap_or_default();
    events.reverse();
    events
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["name"] == name).collect()
}

fn field(event: &Value, key: &str) -> String {
    event["fields"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Events of `event` reported for `rule`, and the sum of the counts suppressed.
fn tally(events: &[Value], event: &str, rule: &str, count_rule: &str) -> (u64, u64, usize) {
    let reported = named(events, event)
        .iter()
        .filter(|e| rule.is_empty() || field(e, "rule") == rule)
        .count() as u64;
    let counts: Vec<&Value> = named(events, "firewall-log-suppressed")
        .into_iter()
        .filter(|e| field(e, "event") == event && field(e, "rule") == count_rule)
        .collect();
    let suppressed = counts
        .iter()
        .map(|e| field(e, "suppressed").parse::<u64>().unwrap())
        .sum();
    (reported, suppressed, counts.len())
}

/// Runs a bash script in the client's namespace, within 10 s.
fn client_script(ns: &Namespaces, script: &str) {
    let status = Namespaces::command(&ns.client, "timeout")
        .args(["10", "bash", "-c", script])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

#[test]
fn the_firewall_logs_denied_packets_and_agent_port_refusals_as_events_within_a_limit() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}; CI runs this test as root with iproute2 and nftables");
        return;
    }
    let host_table_before = host_has_table();
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Namespaces::create("log");
    let window = [("PICKET_TEST_LOG_WINDOW_MS", WINDOW_MS)];
    let site = Site::start(&mut ns, tmp.path(), &window);
    let manager = site.manager.clone();
    let (console, listen) = (site.console.to_string(), site.listen.to_string());

    let console_rule = add_rule(
        &ns,
        &manager,
        &[
            "--name",
            "no console",
            "--action",
            "deny",
            "--protocol",
            "tcp",
            "--port",
            &console,
            "--log",
        ],
    );
    let flood_port = FLOOD_PORT.to_string();
    let flood_rule = add_rule(
        &ns,
        &manager,
        &[
            "--name",
            "no udp",
            "--action",
            "deny",
            "--protocol",
            "udp",
            "--port",
            &flood_port,
            "--log",
        ],
    );
    // The agent-port rule: only the manager's address may connect; the client is refused by
    // the agent's accept loop (nft lets it through: no rule below drops it).
    add_rule(
        &ns,
        &manager,
        &[
            "--name",
            "agent port: manager only",
            "--action",
            "bypass",
            "--priority",
            "4",
            "--frame-type",
            "ip",
            "--protocol",
            "tcp",
            "--port",
            &listen,
            "--source-ip",
            "127.0.0.1",
        ],
    );
    cli(
        &ns,
        &manager,
        &["policies", "set", "Base Policy", "firewall.enabled=true"],
    );
    let on = wait_for(LIMIT, || {
        firewall_component(&ns, &manager, "1").filter(|c| c["state"] == "on")
    });
    assert!(
        !on["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not reported"),
        "the agent reads the packet log: {on}"
    );

    // One denied connection: its SYN (and a retransmission) become events with its details.
    assert!(!ns.client_connects(site.console), "the deny rule drops");
    let logged = wait_for(LIMIT, || {
        let events = events(&ns, &manager);
        named(&events, "firewall-packet-logged")
            .into_iter()
            .find(|e| field(e, "rule") == console_rule)
            .cloned()
    });
    let fields = &logged["fields"];
    assert_eq!(logged["id"], 2000, "{logged}");
    assert_eq!(fields["source"], CLIENT_IP, "{logged}");
    assert_eq!(fields["destination"], AGENT_IP, "{logged}");
    assert_eq!(fields["destination_port"], console.as_str(), "{logged}");
    assert!(
        field(&logged, "source_port").parse::<u16>().is_ok(),
        "{logged}"
    );
    assert_eq!(fields["protocol"], "tcp", "{logged}");
    assert_eq!(fields["action"], "deny", "{logged}");
    assert_eq!(fields["name"], "no console", "{logged}");
    assert_eq!(fields["direction"], "incoming", "{logged}");

    // A flood of UDP datagrams: at most PER_WINDOW events a window, the rest counted.
    let started = std::time::Instant::now();
    client_script(
        &ns,
        &format!("for i in $(seq {FLOOD}); do echo x >/dev/udp/{AGENT_IP}/{FLOOD_PORT}; done"),
    );
    let sent_in = started.elapsed();
    let (reported, suppressed, windows) = wait_for(LIMIT, || {
        let events = events(&ns, &manager);
        let tally = tally(&events, "firewall-packet-logged", &flood_rule, &flood_rule);
        (tally.0 + tally.1 == FLOOD).then_some(tally)
    });
    eprintln!(
        "flood: {FLOOD} datagrams sent in {sent_in:?}: {reported} events, {suppressed} \
         suppressed in {windows} count event(s), window {WINDOW_MS} ms"
    );
    assert!(reported >= PER_WINDOW, "{reported} events");
    assert!(
        reported <= PER_WINDOW * (windows as u64 + 1),
        "{reported} events for {windows} windows"
    );
    assert!(suppressed >= FLOOD - PER_WINDOW * (windows as u64 + 1));
    // Every packet was read: the heartbeat's counters say so, and that none was lost.
    let counters = wait_for(LIMIT, || {
        let computer = cli(&ns, &manager, &["computers", "show", "1"]);
        let counters = computer["agent"]["counters"].clone();
        (counters["firewall-log-packets"].as_u64()? >= FLOOD).then_some(counters)
    });
    assert_eq!(counters["firewall-log-lost"], 0, "{counters}");

    // Connections the agent-port rule refuses: events too, under the same limit.
    client_script(
        &ns,
        &format!(
            "for i in $(seq {REFUSALS}); do exec 3<>/dev/tcp/{AGENT_IP}/{listen}; exec 3>&-; done"
        ),
    );
    let (refused, held, _) = wait_for(LIMIT, || {
        let events = events(&ns, &manager);
        let tally = tally(&events, "agent-port-refused", "", "agent-port");
        (tally.0 + tally.1 == REFUSALS).then_some(tally)
    });
    eprintln!("refusals: {REFUSALS} connections: {refused} events, {held} suppressed");
    assert!((1..=PER_WINDOW * 2).contains(&refused), "{refused} events");
    let events = events(&ns, &manager);
    let refusal = named(&events, "agent-port-refused")[0];
    assert_eq!(refusal["id"], 2002, "{refusal}");
    assert_eq!(refusal["fields"]["source"], CLIENT_IP, "{refusal}");
    assert_eq!(refusal["fields"]["port"], listen.as_str(), "{refusal}");
    assert_eq!(
        refusal["fields"]["rules"], "agent port: manager only",
        "{refusal}"
    );

    // The log statements' group is part of the table the agent checks: no false drift.
    assert!(
        named(&events, "firewall-restored").is_empty(),
        "no restore: {events:?}"
    );

    drop(ns);
    assert_eq!(
        host_has_table(),
        host_table_before,
        "the machine's own namespace was not touched"
    );
}

/// Holds NFLOG group 4118 as ulogd would: binds it, prints the kernel's answer, sleeps.
const HOLDER: &str = r#"
import socket, struct, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
s.bind((0, 0))
body = struct.pack("=BBH", 0, 0, socket.htons(4118)) + struct.pack("=HH", 5, 1) + bytes([1, 0, 0, 0])
s.send(struct.pack("=IHHII", 16 + len(body), 0x0401, 5, 1, 0) + body)
answer = s.recv(100)
print("bound" if struct.unpack_from("=i", answer, 16)[0] == 0 else "refused", flush=True)
time.sleep(60)
"#;

#[test]
fn the_firewall_enforces_and_says_so_when_another_program_holds_its_log_group() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}; CI runs this test as root with iproute2 and nftables");
        return;
    }
    let python = std::process::Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python {
        eprintln!("skipped: python3 holds the NFLOG group in this test, and it is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Namespaces::create("held");
    let mut holder = Namespaces::command(&ns.agent, "python3")
        .args(["-c", HOLDER])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    ns.children.push(holder);
    assert_eq!(first.trim(), "bound", "the holder binds the group first");
    let site = Site::start(&mut ns, tmp.path(), &[]);
    let manager = site.manager.clone();
    deny_console_port(&ns, &manager, site.console, true);
    let on = wait_for(LIMIT, || {
        firewall_component(&ns, &manager, "1").filter(|c| c["state"] == "on")
    });
    let reason = wait_for(LIMIT, || {
        let component = firewall_component(&ns, &manager, "1")?;
        let reason = component["reason"].as_str()?.to_string();
        reason.contains("not reported").then_some(reason)
    });
    eprintln!("held group: the firewall component says {on} then {reason:?}");
    assert!(reason.contains("NFLOG group 4118"), "{reason}");
    assert!(
        !ns.client_connects(site.console),
        "the deny rule still drops"
    );
    let log = std::fs::read_to_string(tmp.path().join("agent.log")).unwrap();
    let said = log
        .lines()
        .filter(|l| l.contains("will not be reported"))
        .count();
    assert_eq!(said, 1, "logged once: {log}");
}
