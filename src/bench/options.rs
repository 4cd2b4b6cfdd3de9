//! The benchmark's options, checked once: ranges, durations, and the phases they imply.

use super::error::BenchError;
use crate::admin::ClientOptions;
use crate::cli::BenchArgs;
use crate::model::parse_duration;
use std::time::Duration;

/// Most simulated agents: each gets its own certificate and source address in 127.0.0.0/8.
pub const MAX_AGENTS: u64 = 1_000_000;
/// Agents that heartbeat once and stop, to time the offline alert.
pub const STOPPING_AGENTS: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    AgentInitiated,
    ManagerInitiated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    Markdown,
}

/// A run, as validated from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub agents: u64,
    pub interval: Duration,
    pub duration: Duration,
    pub events_per_heartbeat: u32,
    pub direction: Direction,
    pub saturation: u64,
    pub concurrency: u64,
    /// Agents resume their TLS session with the manager's ticket, as real agents do.
    pub resumption: bool,
    /// One unmeasured interval before the measured duration.
    pub warmup: bool,
    /// Every agent one session, then a manager restart, before the interval phase.
    pub prime: bool,
    pub output: Output,
    /// A manager already running, to load instead of one started in-process.
    pub target: Option<TargetOptions>,
}

/// Where a running manager is and how to reach its API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetOptions {
    /// Its agent port; `None`: the address in the agent command its tokens come with.
    pub manager: Option<String>,
    pub client: ClientOptions,
    /// Leave the bench's computers and policies on the manager.
    pub keep: bool,
}

impl Options {
    pub fn from_args(args: &BenchArgs) -> Result<Options, BenchError> {
        let bad = |name, problem: String| BenchError::Option { name, problem };
        if !(1..=MAX_AGENTS).contains(&args.agents) {
            return Err(bad(
                "agents",
                format!("{} is not in 1..={MAX_AGENTS}", args.agents),
            ));
        }
        let duration_of = |name, text: &str| {
            parse_duration(text).map_err(|e| bad(name, format!("'{text}': {e}")))
        };
        let interval = duration_of("interval", &args.interval)?;
        // The manager refuses intervals outside 1s..=24h in a policy; so does the bench.
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&interval) {
            return Err(bad(
                "interval",
                format!("'{}' is not in 1s..=24h", args.interval),
            ));
        }
        let duration = duration_of("duration", &args.duration)?;
        if duration.is_zero() {
            return Err(bad("duration", "must be at least 1s".into()));
        }
        // A batch holds at most 500 events; more per heartbeat would take several rounds,
        // which is allowed, but a million would only measure the generator.
        if args.events_per_heartbeat > 10_000 {
            return Err(bad(
                "events-per-heartbeat",
                format!("{} is more than 10000", args.events_per_heartbeat),
            ));
        }
        let direction = match args.direction.as_str() {
            "agent-initiated" => Direction::AgentInitiated,
            "manager-initiated" => Direction::ManagerInitiated,
            other => {
                return Err(bad(
                    "direction",
                    format!("'{other}': use agent-initiated or manager-initiated"),
                ));
            }
        };
        if !(1..=4096).contains(&args.concurrency) {
            return Err(bad(
                "concurrency",
                format!("{} is not in 1..=4096", args.concurrency),
            ));
        }
        let output = match (args.json, args.markdown) {
            (true, true) => return Err(bad("json", "cannot be combined with --markdown".into())),
            (true, false) => Output::Json,
            (false, true) => Output::Markdown,
            (false, false) => Output::Text,
        };
        let remote = args.manager.is_some()
            || args.url.is_some()
            || args.data_dir.is_some()
            || args.api_key.is_some()
            || args.ca_cert.is_some();
        let target = remote.then(|| TargetOptions {
            manager: args.manager.clone(),
            client: ClientOptions {
                json: true,
                url: args.url.clone(),
                api_key: args.api_key.clone(),
                data_dir: args.data_dir.clone(),
                ca_cert: args.ca_cert.clone(),
            },
            keep: args.keep,
        });
        if target.is_some() {
            // Priming restarts the manager; a running one is not the bench's to restart.
            if args.prime {
                return Err(bad(
                    "prime",
                    "restarts the manager: only with the in-process one (drop --manager, --url, \
                     --data-dir)"
                        .into(),
                ));
            }
            // The manager would dial the simulated agents at their 127.x addresses: only a
            // manager on this machine could, and this mode is for one elsewhere too.
            if direction == Direction::ManagerInitiated {
                return Err(bad(
                    "direction",
                    "manager-initiated runs need the in-process manager (drop --manager, --url, \
                     --data-dir)"
                        .into(),
                ));
            }
        } else if args.keep {
            return Err(bad(
                "keep",
                "only with a running manager (--manager, --url or --data-dir)".into(),
            ));
        }
        Ok(Options {
            agents: args.agents,
            interval,
            duration,
            events_per_heartbeat: args.events_per_heartbeat,
            direction,
            saturation: args.saturation,
            concurrency: args.concurrency,
            resumption: !args.full_handshakes,
            warmup: args.warmup,
            prime: args.prime,
            output,
            target,
        })
    }

    /// The stopping agents' interval: short enough that their alert comes within the run (a
    /// quarter of it), never longer than everyone else's, never under the manager's 1 s, and
    /// in whole seconds as a policy holds it (the API takes `1s`, not 1.5 s).
    pub fn stopping_interval(&self) -> Duration {
        Duration::from_secs((self.duration / 4).as_secs())
            .min(self.interval)
            .max(Duration::from_secs(1))
    }
}

/// A small valid run's arguments, for tests to change what they need.
#[cfg(test)]
pub(super) fn test_args() -> BenchArgs {
    BenchArgs {
        agents: 20,
        interval: "1s".into(),
        duration: "3s".into(),
        events_per_heartbeat: 1,
        direction: "agent-initiated".into(),
        saturation: 100,
        concurrency: 8,
        json: true,
        markdown: false,
        full_handshakes: false,
        warmup: false,
        prime: false,
        manager: None,
        url: None,
        api_key: None,
        data_dir: None,
        ca_cert: None,
        keep: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(change: impl FnOnce(&mut BenchArgs)) -> String {
        let mut a = test_args();
        change(&mut a);
        Options::from_args(&a).unwrap_err().to_string()
    }

    #[test]
    fn good_options_are_read() {
        let o = Options::from_args(&test_args()).unwrap();
        assert_eq!(o.interval, Duration::from_secs(1));
        assert_eq!(o.duration, Duration::from_secs(3));
        assert_eq!(o.direction, Direction::AgentInitiated);
        assert_eq!(o.output, Output::Json);
    }

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        assert!(refused(|a| a.agents = 0).starts_with("--agents:"));
        assert!(refused(|a| a.agents = MAX_AGENTS + 1).starts_with("--agents:"));
        assert!(refused(|a| a.interval = "0s".into()).starts_with("--interval:"));
        assert!(refused(|a| a.interval = "2d".into()).starts_with("--interval:"));
        assert!(refused(|a| a.interval = "ten".into()).contains("'ten'"));
        assert!(refused(|a| a.duration = "0s".into()).starts_with("--duration:"));
        assert!(refused(|a| a.direction = "both".into()).contains("'both'"));
        assert!(refused(|a| a.concurrency = 0).starts_with("--concurrency:"));
        assert!(refused(|a| a.events_per_heartbeat = 10_001).starts_with("--events-per"));
        assert!(refused(|a| a.markdown = true).contains("--markdown"));
    }

    #[test]
    fn a_running_manager_is_targeted_by_any_of_its_options() {
        assert_eq!(Options::from_args(&test_args()).unwrap().target, None);
        let o = Options::from_args(&BenchArgs {
            data_dir: Some("/srv/picket".into()),
            keep: true,
            ..test_args()
        })
        .unwrap();
        let target = o.target.unwrap();
        assert_eq!(target.manager, None);
        assert_eq!(target.client.data_dir, Some("/srv/picket".into()));
        assert!(target.keep);
        let o = Options::from_args(&BenchArgs {
            manager: Some("10.0.0.5:4120".into()),
            url: Some("https://10.0.0.5:4119".into()),
            ..test_args()
        })
        .unwrap();
        assert_eq!(o.target.unwrap().manager.as_deref(), Some("10.0.0.5:4120"));
        // What needs the in-process manager is refused with a running one, and the reverse.
        let remote = |a: &mut BenchArgs| a.url = Some("https://127.0.0.1:4119".into());
        assert!(
            refused(|a| {
                remote(a);
                a.prime = true;
            })
            .starts_with("--prime:")
        );
        assert!(
            refused(|a| {
                remote(a);
                a.direction = "manager-initiated".into();
            })
            .starts_with("--direction:")
        );
        assert!(refused(|a| a.keep = true).starts_with("--keep:"));
    }

    #[test]
    fn stopping_agents_are_alerted_within_the_run() {
        let mut o = Options::from_args(&test_args()).unwrap();
        assert_eq!(o.stopping_interval(), Duration::from_secs(1));
        o.interval = Duration::from_secs(60);
        o.duration = Duration::from_secs(60);
        assert_eq!(o.stopping_interval(), Duration::from_secs(15));
        o.duration = Duration::from_secs(3600);
        assert_eq!(o.stopping_interval(), Duration::from_secs(60));
        o.duration = Duration::from_secs(6);
        assert_eq!(
            o.stopping_interval(),
            Duration::from_secs(1),
            "1.5 s is not a policy's"
        );
    }
}
