//! The alert catalogue: the kinds, their severities, whether each clears itself, and the words
//! each is raised with, as `schema/alerts.md` lists them (a test compares).

use crate::clock::{WallMs, format_utc};
use crate::model::format_duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The kinds of alert. Their order is part of the store format (postcard numbers the variants):
/// add new ones at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertKind {
    /// The N+1th consecutive heartbeat was missed. Clears itself at the next heartbeat.
    ComputerOffline,
    /// The computer's clock moved more than allowed between heartbeats. Only a dismissal ends it.
    ClockChanged,
    /// A bidirectional computer heartbeats, but the manager cannot dial it. Clears itself when a
    /// dial succeeds.
    ManagerCannotReachAgent,
    /// A notification channel gave up a notice it could not deliver in time. About a channel,
    /// not a computer. Clears itself when the channel delivers again.
    NotificationFailed,
    /// Many computers of a policy subtree went offline at once: one alert (and one
    /// notification) for all of them. About a policy. Clears itself when most are back.
    SiteIncident,
    /// An enforcing component of the agent (the host firewall) is off or in error while the
    /// policy enables it. Clears itself when the component reports on, or the policy no longer
    /// enables it.
    DriverOffline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    Critical,
    Warning,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::ComputerOffline,
        AlertKind::ClockChanged,
        AlertKind::ManagerCannotReachAgent,
        AlertKind::NotificationFailed,
        AlertKind::SiteIncident,
        AlertKind::DriverOffline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AlertKind::ComputerOffline => "computer-offline",
            AlertKind::ClockChanged => "clock-changed",
            AlertKind::ManagerCannotReachAgent => "manager-cannot-reach-agent",
            AlertKind::NotificationFailed => "notification-failed",
            AlertKind::SiteIncident => "site-incident",
            AlertKind::DriverOffline => "driver-offline",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            AlertKind::ComputerOffline | AlertKind::SiteIncident => Severity::Critical,
            AlertKind::ClockChanged
            | AlertKind::ManagerCannotReachAgent
            | AlertKind::NotificationFailed
            | AlertKind::DriverOffline => Severity::Warning,
        }
    }

    /// Whether the alert ends by itself when its condition does.
    pub fn clears_itself(self) -> bool {
        !matches!(self, AlertKind::ClockChanged)
    }
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// `computer-offline`: how many heartbeats were missed and since when; `last` is the computer's
/// last heartbeat, if it ever had one.
pub fn offline_message(missed: u64, reason: &str, last: Option<WallMs>) -> String {
    let since = last.map_or("it was never heard from".to_string(), |t| {
        format!("last heartbeat {}", format_utc(t))
    });
    format!("offline: {missed} heartbeat(s) missed, {since}; {reason}")
}

/// `manager-cannot-reach-agent`: the dial's error, and what to check.
pub fn unreachable_message(reason: &str) -> String {
    format!(
        "heartbeats arrive, but the manager cannot reach the agent: {reason}. Check the agent's \
         address and port and the agent-port firewall rule, or set communication.direction to \
         agent-initiated if the manager cannot reach the agent's network"
    )
}

/// `clock-changed`: how far and which way the computer's clock moved, against the limit, and
/// who saw it (`seen_by`: "the agent", "the manager", "the agent and the manager").
pub fn clock_changed_message(change_ms: i64, limit: Duration, seen_by: &str) -> String {
    format!(
        "the computer's clock moved {} {} since the last heartbeat, more than the maximum of {} \
         (seen by {seen_by})",
        format_duration(Duration::from_millis(change_ms.unsigned_abs())),
        if change_ms < 0 {
            "backwards"
        } else {
            "forwards"
        },
        format_duration(limit)
    )
}

/// `site-incident`: how many computers of which policy went offline, naming the first few
/// (`names`, at most [`INCIDENT_NAMES`] of them).
pub fn incident_message(policy: &str, count: usize, window: Duration, names: &[String]) -> String {
    let more = count.saturating_sub(names.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "{count} computers of policy {policy} went offline within {}: {}{more}; each one's \
         offline alert clears when it returns",
        format_duration(window),
        names.join(", ")
    )
}

/// How many computers an incident's message names.
pub const INCIDENT_NAMES: usize = 10;

/// Why a site incident cleared, for the site's history: how many are back, which are not.
pub fn incident_cleared(count: usize, still: &[String]) -> String {
    if still.is_empty() {
        return format!("all {count} computers are back");
    }
    format!(
        "{} of {count} computers are back; still offline: {}",
        count - still.len().min(count),
        still.join(", ")
    )
}

/// Why an offline alert cleared, for the computer's history.
pub const CLEARED_BY_HEARTBEAT: &str = "a heartbeat arrived";
/// Why a manager-cannot-reach-agent alert cleared.
pub const CLEARED_BY_DIAL: &str = "the manager reached the agent, or it is no longer bidirectional";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_matches_schema_alerts_md() {
        let doc = include_str!("../../schema/alerts.md");
        let rows: Vec<(String, String, String)> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let kind = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((
                    kind.to_string(),
                    cells.get(2)?.to_string(),
                    cells.get(3)?.to_string(),
                ))
            })
            .collect();
        let code: Vec<(String, String, String)> = AlertKind::ALL
            .iter()
            .map(|k| {
                let clears = if k.clears_itself() { "yes" } else { "no" };
                (
                    k.name().to_string(),
                    k.severity().name().to_string(),
                    clears.to_string(),
                )
            })
            .collect();
        assert_eq!(rows, code, "schema/alerts.md and AlertKind differ");
    }

    #[test]
    fn the_words_say_how_far_which_way_and_since_when() {
        assert_eq!(
            clock_changed_message(
                -3_600_000,
                Duration::from_secs(900),
                "the agent and the manager"
            ),
            "the computer's clock moved 1h backwards since the last heartbeat, more than the \
             maximum of 15m (seen by the agent and the manager)"
        );
        let offline = offline_message(3, "no heartbeat since the last one", None);
        assert_eq!(
            offline,
            "offline: 3 heartbeat(s) missed, it was never heard from; no heartbeat since the last \
             one"
        );
        assert_eq!(offline.matches("missed").count(), 1, "said once: {offline}");
    }
}
