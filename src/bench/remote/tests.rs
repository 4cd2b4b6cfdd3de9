//! A run against a running manager, on a real one in this process.

use super::*;

#[test]
fn the_agent_command_names_the_manager_and_the_ca_pin() {
    let command = "picket agent --data-dir /var/lib/picket-agent --manager mgr.example:4120 \
                   --token 00ff --ca-sha256 abcd";
    assert_eq!(
        agent_command_parts(command),
        Some(("mgr.example:4120".into(), "abcd".into()))
    );
    assert_eq!(agent_command_parts("picket agent --manager"), None);
}

#[test]
fn a_manager_address_gives_its_ipv4_address_and_certificate_name() {
    let (addr, name) = resolve("127.0.0.1:4120").unwrap();
    assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 4120)));
    assert_eq!(name.to_str(), "127.0.0.1");
    let (addr, name) = resolve("localhost:4120").unwrap();
    assert!(addr.ip().is_loopback() && addr.port() == 4120, "{addr}");
    assert_eq!(name.to_str(), "localhost");
    assert!(
        resolve("no-port")
            .unwrap_err()
            .to_string()
            .starts_with("--manager:")
    );
}

#[test]
fn metrics_are_read_by_exact_name() {
    let text = "# HELP picket_process_cpu_seconds CPU\n\
                picket_process_cpu_seconds_total 12.5\n\
                picket_store_file_bytes_extra 1\n\
                picket_store_file_bytes 4096\n";
    assert_eq!(metric(text, "picket_process_cpu_seconds_total"), Some(12.5));
    assert_eq!(metric(text, "picket_store_file_bytes"), Some(4096.0));
    assert_eq!(metric(text, "picket_process_resident_memory_bytes"), None);
}

#[test]
fn only_the_runs_own_alerts_count_and_stopping_agents_are_timed() {
    let options = Options::from_args(&crate::cli::BenchArgs {
        agents: 2,
        interval: "1m".into(),
        duration: "40s".into(),
        saturation: 0,
        url: Some("https://127.0.0.1:4119".into()),
        ..super::super::options::test_args()
    })
    .unwrap();
    let alert = |computer, offline, raised| RunAlert {
        computer: ComputerId(computer),
        offline,
        raised: WallMs(raised),
    };
    let alerts = [
        alert(1, true, 5_000),  // ours, its agent never missed: false
        alert(1, true, 9_000),  // the same computer again: still one computer
        alert(6, true, 9_500),  // after the interval phase: the agents had stopped
        alert(2, true, 6_000),  // ours, its agent missed a session: not false
        alert(2, false, 6_000), // a clock alert: raised, not offline
        alert(3, true, 20_000), // the stopping agent: timed, not counted
        alert(4, true, 7_000),  // not the bench's computer
        alert(1, true, 500),    // before the run
        alert(5, true, 2_000),  // in the warm-up: not counted, but told
        alert(5, true, 2_500),  // the same computer again
        alert(2, true, 2_200),  // in the warm-up too, but its agent missed: not false
    ];
    let ours = HashSet::from([1, 2, 3, 5, 6].map(ComputerId));
    let missed = HashSet::from([ComputerId(2)]);
    let counted = count_alerts(
        &alerts,
        &[ComputerId(3)],
        &[Some(1_000)],
        &ours,
        &missed,
        Windows {
            load_start: WallMs(1_000),
            counted_from: WallMs(4_000),
            until: WallMs(9_500),
        },
        &options,
    );
    assert_eq!(counted.warmup_offline, 2);
    assert_eq!(counted.warmup_falsely_offline, 1);
    let counted = counted.counted;
    assert_eq!(counted.raised, 4);
    assert_eq!(counted.went_offline, 2);
    assert_eq!(counted.falsely_offline, 1);
    // Stopping interval 10 s (a quarter of 40 s), grace 1 s: due at 12,000, alerted 20,000.
    assert_eq!(counted.offline_alert_delay_ms, vec![Some(8_000)]);
}
