//! The benchmark's options, checked once: ranges, durations, and the phases they imply.

use super::error::BenchError;
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
        })
    }

    /// The stopping agents' interval: short enough that their alert comes within the run (a
    /// quarter of it), never longer than everyone else's, never under the manager's 1 s.
    pub fn stopping_interval(&self) -> Duration {
        (self.duration / 4)
            .min(self.interval)
            .max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BenchArgs {
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
        }
    }

    fn refused(change: impl FnOnce(&mut BenchArgs)) -> String {
        let mut a = args();
        change(&mut a);
        Options::from_args(&a).unwrap_err().to_string()
    }

    #[test]
    fn good_options_are_read() {
        let o = Options::from_args(&args()).unwrap();
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
    fn stopping_agents_are_alerted_within_the_run() {
        let mut o = Options::from_args(&args()).unwrap();
        assert_eq!(o.stopping_interval(), Duration::from_secs(1));
        o.interval = Duration::from_secs(60);
        o.duration = Duration::from_secs(60);
        assert_eq!(o.stopping_interval(), Duration::from_secs(15));
        o.duration = Duration::from_secs(3600);
        assert_eq!(o.stopping_interval(), Duration::from_secs(60));
    }
}
