//! `picket manager`: its options and the parsers of their values.

use crate::alerts::incident::IncidentRules;
use crate::service::logging::{LogFormat, parse_log_format};
use crate::store::Reserve;
use argh::FromArgs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Run the manager on a data dir (created and initialised on first start).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "manager")]
pub struct ManagerArgs {
    /// directory that holds the store, certificates and admin API key; default:
    /// $PICKET_DATA_DIR
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// address for agents (activation and heartbeats); default 0.0.0.0:4120
    #[argh(option, default = "SocketAddr::from(([0, 0, 0, 0], 4120))")]
    pub agent_listen: SocketAddr,
    /// address for the console and REST API (HTTPS); default 0.0.0.0:4119
    #[argh(option, default = "SocketAddr::from(([0, 0, 0, 0], 4119))")]
    pub console_listen: SocketAddr,
    /// name of this manager in its certificate and agent command lines; default: the host name
    #[argh(option)]
    pub hostname: Option<String>,
    /// how long agent events are kept after the manager stored them, e.g. 7d, 90d (at least
    /// 1h), or unlimited; older ones are deleted, oldest first (default 7d)
    #[argh(
        option,
        from_str_fn(event_retention),
        default = "EventRetention(Some(crate::manager::DEFAULT_RETENTION))"
    )]
    pub event_retention: EventRetention,
    /// free space kept on the store's filesystem for alerts and changes: below it agent events
    /// are refused (agents keep them) until space is freed, e.g. 64MiB, 1GiB, or 0 for none
    /// (default: 5% of the filesystem, at most 64MiB)
    #[argh(option, from_str_fn(store_reserve), default = "Reserve::Auto")]
    pub store_reserve: Reserve,
    /// how many computers of one policy subtree going offline within --incident-window make a
    /// site incident (one alert and one notice for all of them); 0 turns it off (default 20)
    #[argh(option, default = "IncidentRules::default().min_computers")]
    pub incident_min_computers: usize,
    /// the least share of a policy subtree's online computers that make a site incident, e.g.
    /// 30% (default 30%)
    #[argh(
        option,
        from_str_fn(percent),
        default = "IncidentRules::default().min_percent"
    )]
    pub incident_min_share: u8,
    /// how close together computers go offline to be one site incident, e.g. 2m, 5m (1m to 1h;
    /// default 2m); offline notices wait this long to see whether they are part of one, on
    /// sites large enough to have one
    #[argh(
        option,
        from_str_fn(incident_window),
        default = "IncidentRules::default().window"
    )]
    pub incident_window: Duration,
    /// take a backup of the running manager this often, e.g. 24h (at least 1h; with
    /// --backup-dir), for sites without a backup system
    #[argh(option, from_str_fn(backup_every))]
    pub backup_every: Option<Duration>,
    /// where scheduled backups go (picket-MS.backup, mode 0600; not inside the data dir)
    #[argh(option)]
    pub backup_dir: Option<PathBuf>,
    /// how many scheduled backups to keep, the newest (default 7)
    #[argh(option, default = "7")]
    pub backup_keep: usize,
    /// how log lines look on stderr: auto (journal under journald, else text), text, journal
    /// (syslog priority prefixes, no timestamp) or json (one object a line)
    #[argh(option, from_str_fn(parse_log_format), default = "LogFormat::Auto")]
    pub log_format: LogFormat,
    /// give the console user admin a new one-time password, print it and exit (stop the
    /// manager first)
    #[argh(switch)]
    pub reset_admin_password: bool,
}

/// `--backup-every`: backups more often than hourly would mostly measure the disk.
fn backup_every(text: &str) -> Result<Duration, String> {
    let every = crate::model::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration such as 24h"))?;
    if every < Duration::from_secs(3600) {
        return Err(format!(
            "{} is shorter than 1h; write a duration such as 24h",
            crate::model::format_duration(every)
        ));
    }
    Ok(every)
}

impl ManagerArgs {
    /// The scheduled backups asked for, or why the options do not go together; `data_dir` is
    /// the resolved one (`--data-dir` or `$PICKET_DATA_DIR`).
    pub fn backups(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<Option<crate::manager::backups::Schedule>, String> {
        match (self.backup_every, &self.backup_dir) {
            (None, None) => Ok(None),
            (Some(_), None) | (None, Some(_)) => {
                Err("--backup-every and --backup-dir go together: how often, and where".to_string())
            }
            (Some(_), Some(_)) if self.backup_keep == 0 => {
                Err("--backup-keep must keep at least 1".to_string())
            }
            (Some(_), Some(dir)) if dir.starts_with(data_dir) => Err(format!(
                "--backup-dir {} is inside the data dir: a backup must survive its loss",
                dir.display()
            )),
            (Some(every), Some(dir)) => Ok(Some(crate::manager::backups::Schedule {
                every,
                dir: dir.clone(),
                keep: self.backup_keep,
            })),
        }
    }

    pub fn incidents(&self) -> IncidentRules {
        IncidentRules {
            min_computers: self.incident_min_computers,
            min_percent: self.incident_min_share,
            window: self.incident_window,
        }
    }
}

/// `--incident-min-share`: a percentage, 1% to 100% (the sign is optional).
fn percent(text: &str) -> Result<u8, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<u8>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is not a share from 1% to 100%; write one such as 30%"
        )),
    }
}

/// `--incident-window`: long enough for a storm's offline verdicts to gather (they follow each
/// computer's own heartbeat schedule), short enough that an offline notice is not held for long.
fn incident_window(text: &str) -> Result<Duration, String> {
    let window = crate::model::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration such as 2m"))?;
    let (least, most) = (Duration::from_secs(60), Duration::from_secs(3600));
    if window < least || window > most {
        return Err(format!(
            "{} is not from 1m to 1h; write a duration such as 2m",
            crate::model::format_duration(window)
        ));
    }
    Ok(window)
}

/// `--store-reserve`: a size in bytes with an optional KiB, MiB or GiB (powers of 1024).
fn store_reserve(text: &str) -> Result<Reserve, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "'{text}' is not a size; write one such as 64MiB, 1GiB or 0"
        ));
    }
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}'; write a size such as 64MiB, 1GiB or 0"
            ));
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size; write one such as 64MiB, 1GiB or 0"))?;
    number
        .checked_mul(scale)
        .map(Reserve::Bytes)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// `--event-retention`: how long events are kept, `None` for `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention(pub Option<Duration>);

fn event_retention(text: &str) -> Result<EventRetention, String> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(EventRetention(None));
    }
    let keep = crate::model::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration such as 7d or 90d, or unlimited"))?;
    let least = crate::manager::MIN_RETENTION;
    if keep < least {
        return Err(format!(
            "{} is shorter than the least retention, {}; write days such as 7d, or unlimited",
            crate::model::format_duration(keep),
            crate::model::format_duration(least)
        ));
    }
    Ok(EventRetention(Some(keep)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, Picket};

    fn manager(extra: &[&str]) -> Result<ManagerArgs, String> {
        let mut args = vec!["manager", "--data-dir", "d"];
        args.extend_from_slice(extra);
        match Picket::from_args(&["picket"], &args) {
            Ok(Picket {
                command: Command::Manager(m),
            }) => Ok(m),
            Ok(other) => Err(format!("not the manager: {other:?}")),
            Err(early) => Err(early.output),
        }
    }

    #[test]
    fn event_retention_is_a_week_unless_set_in_days_or_unlimited() {
        let week = Some(Duration::from_secs(7 * 86_400));
        assert_eq!(manager(&[]).unwrap().event_retention, EventRetention(week));
        let keep = |value: &str| manager(&["--event-retention", value]).map(|m| m.event_retention);
        assert_eq!(
            keep("90d"),
            Ok(EventRetention(Some(Duration::from_secs(90 * 86_400))))
        );
        assert_eq!(
            keep("36h"),
            Ok(EventRetention(Some(Duration::from_secs(36 * 3_600))))
        );
        assert_eq!(keep("unlimited"), Ok(EventRetention(None)));
        assert_eq!(keep("Unlimited"), Ok(EventRetention(None)));
    }

    #[test]
    fn a_bad_or_tiny_event_retention_is_refused_naming_the_option() {
        for (value, says) in [
            ("7", "a number needs a unit"),
            ("7w", "unknown unit 'w'"),
            ("days", "expected a number"),
            ("", "empty duration"),
            ("30m", "30m is shorter than the least retention, 1h"),
            ("0s", "0s is shorter"),
        ] {
            let error = manager(&["--event-retention", value]).unwrap_err();
            assert!(
                error.contains("--event-retention") && error.contains(says),
                "{value:?}: {error}"
            );
        }
    }

    #[test]
    fn the_store_reserve_is_a_size_in_powers_of_1024_or_automatic() {
        let reserve = |value: &str| manager(&["--store-reserve", value]).map(|m| m.store_reserve);
        assert_eq!(manager(&[]).unwrap().store_reserve, Reserve::Auto);
        assert_eq!(reserve("0"), Ok(Reserve::Bytes(0)));
        assert_eq!(reserve("64MiB"), Ok(Reserve::Bytes(64 << 20)));
        assert_eq!(reserve("2 GiB"), Ok(Reserve::Bytes(2 << 30)));
        assert_eq!(reserve("512k"), Ok(Reserve::Bytes(512 << 10)));
        for (value, says) in [
            ("64MB", "unknown unit 'mb'"),
            ("lots", "not a size"),
            ("99999999999999GiB", "too large"),
        ] {
            let error = reserve(value).unwrap_err();
            assert!(
                error.contains("--store-reserve") && error.contains(says),
                "{value:?}: {error}"
            );
        }
    }

    #[test]
    fn site_incidents_take_20_computers_and_30_percent_in_2_minutes_unless_set() {
        assert_eq!(manager(&[]).unwrap().incidents(), IncidentRules::default());
        let set = manager(&[
            "--incident-min-computers",
            "0",
            "--incident-min-share",
            "50%",
            "--incident-window",
            "5m",
        ])
        .unwrap()
        .incidents();
        assert_eq!(
            set,
            IncidentRules {
                min_computers: 0,
                min_percent: 50,
                window: Duration::from_secs(300),
            }
        );
        for (option, value, says) in [
            ("--incident-min-share", "0%", "not a share from 1% to 100%"),
            ("--incident-min-share", "150", "not a share"),
            ("--incident-window", "10s", "10s is not from 1m to 1h"),
            ("--incident-window", "2", "a number needs a unit"),
            ("--incident-min-computers", "-1", "--incident-min-computers"),
        ] {
            let error = manager(&[option, value]).unwrap_err();
            assert!(
                error.contains(option) && error.contains(says),
                "{value:?}: {error}"
            );
        }
    }

    #[test]
    fn scheduled_backups_need_a_period_and_a_place_outside_the_data_dir() {
        use std::path::Path;
        assert_eq!(manager(&[]).unwrap().backups(Path::new("d")), Ok(None));
        let set = manager(&["--backup-every", "24h", "--backup-dir", "/srv/backups"])
            .unwrap()
            .backups(Path::new("d"))
            .unwrap()
            .unwrap();
        assert_eq!((set.every, set.keep), (Duration::from_secs(86_400), 7));
        for (args, says) in [
            (&["--backup-every", "24h"][..], "go together"),
            (&["--backup-dir", "/srv/b"][..], "go together"),
            (
                &["--backup-every", "24h", "--backup-dir", "d/b"][..],
                "inside the data dir",
            ),
            (
                &[
                    "--backup-every",
                    "24h",
                    "--backup-dir",
                    "/b",
                    "--backup-keep",
                    "0",
                ][..],
                "at least 1",
            ),
        ] {
            let error = manager(args).unwrap().backups(Path::new("d")).unwrap_err();
            assert!(error.contains(says), "{args:?}: {error}");
        }
        let error = manager(&["--backup-every", "10m"]).unwrap_err();
        assert!(error.contains("shorter than 1h"), "{error}");
    }
}
