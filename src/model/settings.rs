//! The heartbeat, communication, firewall and agent settings, each either set or inherited.
//!
//! Keys and ranges are those of DESIGN.md's settings table. A [`SettingValue`] can only be built
//! by [`SettingValue::parse`] (or from a value already checked), so every stored value is in range.

use super::duration::{format_duration, parse_duration};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A setting on a policy or a computer: its own value, or whatever its parent resolves to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Setting<T> {
    #[default]
    Inherited,
    Set(T),
}

impl<T: Copy> Setting<T> {
    pub fn value(&self) -> Option<T> {
        match self {
            Setting::Inherited => None,
            Setting::Set(v) => Some(*v),
        }
    }
}

/// How many consecutive missed heartbeats are tolerated before the offline alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissedLimit {
    /// The alert is raised on the N+1th consecutive miss.
    Count(u16),
    /// Never raise the alert (laptops and other often-disconnected computers).
    Unlimited,
}

/// The largest change of a computer's clock between heartbeats before the clock alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockChangeLimit {
    Max(Duration),
    Unlimited,
}

/// Who opens the connection for a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    Bidirectional,
    ManagerInitiated,
    AgentInitiated,
}

impl Direction {
    /// The agent listens for the manager (bidirectional and manager-initiated).
    pub fn agent_listens(self) -> bool {
        self != Direction::AgentInitiated
    }

    /// The agent dials the manager at each interval (bidirectional and agent-initiated).
    pub fn agent_dials(self) -> bool {
        self != Direction::ManagerInitiated
    }

    pub const ALL: [Direction; 3] = [
        Direction::Bidirectional,
        Direction::ManagerInitiated,
        Direction::AgentInitiated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Direction::Bidirectional => "bidirectional",
            Direction::ManagerInitiated => "manager-initiated",
            Direction::AgentInitiated => "agent-initiated",
        }
    }
}

/// The overrides held by one policy or computer. Stored as is (see `schema/store.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub interval: Setting<Duration>,
    pub missed_before_alert: Setting<MissedLimit>,
    pub max_clock_change: Setting<ClockChangeLimit>,
    pub offline_errors_for_inactive_vms: Setting<bool>,
    pub direction: Setting<Direction>,
    /// The agent enforces the policy's firewall rules (nftables).
    pub firewall_enabled: Setting<bool>,
    /// The manager offers its own newer agent binary, and the agent upgrades itself.
    pub agent_auto_upgrade: Setting<bool>,
}

/// The name of one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SettingKey {
    Interval,
    MissedBeforeAlert,
    MaxClockChange,
    OfflineErrorsForInactiveVms,
    Direction,
    FirewallEnabled,
    AgentAutoUpgrade,
}

/// A value of one setting, in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingValue {
    Interval(Duration),
    MissedBeforeAlert(MissedLimit),
    MaxClockChange(ClockChangeLimit),
    OfflineErrorsForInactiveVms(bool),
    Direction(Direction),
    FirewallEnabled(bool),
    AgentAutoUpgrade(bool),
}

/// Why a setting was refused; `key` is the field to point the administrator at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingError {
    UnknownKey(String),
    InvalidValue {
        key: SettingKey,
        value: String,
        expected: &'static str,
    },
}

impl SettingError {
    /// The field the error is about, as the API and CLI name it.
    pub fn field(&self) -> String {
        match self {
            SettingError::UnknownKey(key) => format!("settings.{key}"),
            SettingError::InvalidValue { key, .. } => format!("settings.{}", key.name()),
        }
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingError::UnknownKey(key) => {
                let known: Vec<&str> = SettingKey::ALL.iter().map(|k| k.name()).collect();
                write!(
                    f,
                    "unknown setting '{key}'; known settings: {}",
                    known.join(", ")
                )
            }
            SettingError::InvalidValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "invalid value '{value}' for {}: expected {expected}",
                key.name()
            ),
        }
    }
}

impl std::error::Error for SettingError {}

const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));
const CLOCK_CHANGE_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(7 * 86_400));
const MAX_MISSED: u16 = 1000;

/// The built-in values of DESIGN.md's settings table, used when no policy sets a key.
pub mod defaults {
    use super::{ClockChangeLimit, Direction, MissedLimit};
    use std::time::Duration;

    pub const INTERVAL: Duration = Duration::from_secs(600);
    pub const MISSED_BEFORE_ALERT: MissedLimit = MissedLimit::Count(2);
    pub const MAX_CLOCK_CHANGE: ClockChangeLimit = ClockChangeLimit::Max(Duration::from_secs(900));
    pub const OFFLINE_ERRORS_FOR_INACTIVE_VMS: bool = false;
    pub const DIRECTION: Direction = Direction::Bidirectional;
    /// Off, so a site that upgrades changes nothing on its computers until it opts in.
    pub const FIREWALL_ENABLED: bool = false;
    /// Off for the same reason: no agent replaces its binary until the site says so.
    pub const AGENT_AUTO_UPGRADE: bool = false;
}

impl SettingKey {
    pub const ALL: [SettingKey; 7] = [
        SettingKey::Interval,
        SettingKey::MissedBeforeAlert,
        SettingKey::MaxClockChange,
        SettingKey::OfflineErrorsForInactiveVms,
        SettingKey::Direction,
        SettingKey::FirewallEnabled,
        SettingKey::AgentAutoUpgrade,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SettingKey::Interval => "heartbeat.interval",
            SettingKey::MissedBeforeAlert => "heartbeat.missed-before-alert",
            SettingKey::MaxClockChange => "heartbeat.max-clock-change",
            SettingKey::OfflineErrorsForInactiveVms => "heartbeat.offline-errors-for-inactive-vms",
            SettingKey::Direction => "communication.direction",
            SettingKey::FirewallEnabled => "firewall.enabled",
            SettingKey::AgentAutoUpgrade => "agent.auto-upgrade",
        }
    }

    pub fn from_name(name: &str) -> Result<SettingKey, SettingError> {
        SettingKey::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| SettingError::UnknownKey(name.to_string()))
    }

    /// The built-in value used when no policy in the chain sets the key.
    pub fn default_value(self) -> SettingValue {
        match self {
            SettingKey::Interval => SettingValue::Interval(defaults::INTERVAL),
            SettingKey::MissedBeforeAlert => {
                SettingValue::MissedBeforeAlert(defaults::MISSED_BEFORE_ALERT)
            }
            SettingKey::MaxClockChange => SettingValue::MaxClockChange(defaults::MAX_CLOCK_CHANGE),
            SettingKey::OfflineErrorsForInactiveVms => {
                SettingValue::OfflineErrorsForInactiveVms(defaults::OFFLINE_ERRORS_FOR_INACTIVE_VMS)
            }
            SettingKey::Direction => SettingValue::Direction(defaults::DIRECTION),
            SettingKey::FirewallEnabled => {
                SettingValue::FirewallEnabled(defaults::FIREWALL_ENABLED)
            }
            SettingKey::AgentAutoUpgrade => {
                SettingValue::AgentAutoUpgrade(defaults::AGENT_AUTO_UPGRADE)
            }
        }
    }

    fn expected(self) -> &'static str {
        match self {
            SettingKey::Interval => "a duration from 1s to 24h, such as 30s, 10m or 2h",
            SettingKey::MissedBeforeAlert => "a whole number from 0 to 1000, or unlimited",
            SettingKey::MaxClockChange => "a duration from 1s to 7d, or unlimited",
            SettingKey::OfflineErrorsForInactiveVms
            | SettingKey::FirewallEnabled
            | SettingKey::AgentAutoUpgrade => "true or false",
            SettingKey::Direction => "bidirectional, manager-initiated or agent-initiated",
        }
    }
}

impl SettingValue {
    /// Reads the text form of a value for `key`, checking its range.
    pub fn parse(key: SettingKey, text: &str) -> Result<SettingValue, SettingError> {
        let invalid = || SettingError::InvalidValue {
            key,
            value: text.to_string(),
            expected: key.expected(),
        };
        let in_range = |d: Duration, (lo, hi): (Duration, Duration)| d >= lo && d <= hi;
        let value = match key {
            SettingKey::Interval => {
                let d = parse_duration(text).map_err(|_| invalid())?;
                if !in_range(d, INTERVAL_RANGE) {
                    return Err(invalid());
                }
                SettingValue::Interval(d)
            }
            SettingKey::MissedBeforeAlert => SettingValue::MissedBeforeAlert(match text {
                "unlimited" => MissedLimit::Unlimited,
                _ => match text.parse::<u16>() {
                    Ok(n) if n <= MAX_MISSED => MissedLimit::Count(n),
                    _ => return Err(invalid()),
                },
            }),
            SettingKey::MaxClockChange => SettingValue::MaxClockChange(match text {
                "unlimited" => ClockChangeLimit::Unlimited,
                _ => {
                    let d = parse_duration(text).map_err(|_| invalid())?;
                    if !in_range(d, CLOCK_CHANGE_RANGE) {
                        return Err(invalid());
                    }
                    ClockChangeLimit::Max(d)
                }
            }),
            SettingKey::OfflineErrorsForInactiveVms => {
                SettingValue::OfflineErrorsForInactiveVms(parse_bool(text).ok_or_else(invalid)?)
            }
            SettingKey::FirewallEnabled => {
                SettingValue::FirewallEnabled(parse_bool(text).ok_or_else(invalid)?)
            }
            SettingKey::AgentAutoUpgrade => {
                SettingValue::AgentAutoUpgrade(parse_bool(text).ok_or_else(invalid)?)
            }
            SettingKey::Direction => SettingValue::Direction(
                Direction::ALL
                    .into_iter()
                    .find(|d| d.name() == text)
                    .ok_or_else(invalid)?,
            ),
        };
        Ok(value)
    }

    pub fn key(&self) -> SettingKey {
        match self {
            SettingValue::Interval(_) => SettingKey::Interval,
            SettingValue::MissedBeforeAlert(_) => SettingKey::MissedBeforeAlert,
            SettingValue::MaxClockChange(_) => SettingKey::MaxClockChange,
            SettingValue::OfflineErrorsForInactiveVms(_) => SettingKey::OfflineErrorsForInactiveVms,
            SettingValue::Direction(_) => SettingKey::Direction,
            SettingValue::FirewallEnabled(_) => SettingKey::FirewallEnabled,
            SettingValue::AgentAutoUpgrade(_) => SettingKey::AgentAutoUpgrade,
        }
    }
}

/// `true` or `false`, the only words a boolean setting takes.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The text form that [`SettingValue::parse`] reads back.
impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingValue::Interval(d) => f.write_str(&format_duration(*d)),
            SettingValue::MissedBeforeAlert(MissedLimit::Count(n)) => write!(f, "{n}"),
            SettingValue::MissedBeforeAlert(MissedLimit::Unlimited)
            | SettingValue::MaxClockChange(ClockChangeLimit::Unlimited) => f.write_str("unlimited"),
            SettingValue::MaxClockChange(ClockChangeLimit::Max(d)) => {
                f.write_str(&format_duration(*d))
            }
            SettingValue::OfflineErrorsForInactiveVms(b)
            | SettingValue::FirewallEnabled(b)
            | SettingValue::AgentAutoUpgrade(b) => write!(f, "{b}"),
            SettingValue::Direction(d) => f.write_str(d.name()),
        }
    }
}

impl Settings {
    /// The override for `key`, if this policy or computer sets one.
    pub fn get(&self, key: SettingKey) -> Option<SettingValue> {
        match key {
            SettingKey::Interval => self.interval.value().map(SettingValue::Interval),
            SettingKey::MissedBeforeAlert => self
                .missed_before_alert
                .value()
                .map(SettingValue::MissedBeforeAlert),
            SettingKey::MaxClockChange => self
                .max_clock_change
                .value()
                .map(SettingValue::MaxClockChange),
            SettingKey::OfflineErrorsForInactiveVms => self
                .offline_errors_for_inactive_vms
                .value()
                .map(SettingValue::OfflineErrorsForInactiveVms),
            SettingKey::Direction => self.direction.value().map(SettingValue::Direction),
            SettingKey::FirewallEnabled => self
                .firewall_enabled
                .value()
                .map(SettingValue::FirewallEnabled),
            SettingKey::AgentAutoUpgrade => self
                .agent_auto_upgrade
                .value()
                .map(SettingValue::AgentAutoUpgrade),
        }
    }

    /// Sets an override.
    pub fn set(&mut self, value: SettingValue) {
        match value {
            SettingValue::Interval(v) => self.interval = Setting::Set(v),
            SettingValue::MissedBeforeAlert(v) => self.missed_before_alert = Setting::Set(v),
            SettingValue::MaxClockChange(v) => self.max_clock_change = Setting::Set(v),
            SettingValue::OfflineErrorsForInactiveVms(v) => {
                self.offline_errors_for_inactive_vms = Setting::Set(v)
            }
            SettingValue::Direction(v) => self.direction = Setting::Set(v),
            SettingValue::FirewallEnabled(v) => self.firewall_enabled = Setting::Set(v),
            SettingValue::AgentAutoUpgrade(v) => self.agent_auto_upgrade = Setting::Set(v),
        }
    }

    /// Removes the override, so the value is inherited again.
    pub fn inherit(&mut self, key: SettingKey) {
        match key {
            SettingKey::Interval => self.interval = Setting::Inherited,
            SettingKey::MissedBeforeAlert => self.missed_before_alert = Setting::Inherited,
            SettingKey::MaxClockChange => self.max_clock_change = Setting::Inherited,
            SettingKey::OfflineErrorsForInactiveVms => {
                self.offline_errors_for_inactive_vms = Setting::Inherited
            }
            SettingKey::Direction => self.direction = Setting::Inherited,
            SettingKey::FirewallEnabled => self.firewall_enabled = Setting::Inherited,
            SettingKey::AgentAutoUpgrade => self.agent_auto_upgrade = Setting::Inherited,
        }
    }

    /// The overrides that are set, in key order.
    pub fn overrides(&self) -> impl Iterator<Item = SettingValue> + '_ {
        SettingKey::ALL.into_iter().filter_map(|k| self.get(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(key: &str, text: &str) -> Result<SettingValue, SettingError> {
        SettingValue::parse(SettingKey::from_name(key)?, text)
    }

    #[test]
    fn interval_range_is_one_second_to_a_day() {
        assert!(parse("heartbeat.interval", "1s").is_ok());
        assert!(parse("heartbeat.interval", "24h").is_ok());
        for bad in ["0s", "25h", "abc", "", "10"] {
            let err = parse("heartbeat.interval", bad).unwrap_err();
            assert_eq!(err.field(), "settings.heartbeat.interval", "{bad}");
        }
    }

    #[test]
    fn missed_count_is_zero_to_a_thousand_or_unlimited() {
        assert_eq!(
            parse("heartbeat.missed-before-alert", "unlimited"),
            Ok(SettingValue::MissedBeforeAlert(MissedLimit::Unlimited))
        );
        assert_eq!(
            parse("heartbeat.missed-before-alert", "1000"),
            Ok(SettingValue::MissedBeforeAlert(MissedLimit::Count(1000)))
        );
        for bad in ["-1", "1001", "2.5", "lots", "70000"] {
            assert!(
                parse("heartbeat.missed-before-alert", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = parse("heartbeat.intervall", "5m").unwrap_err();
        assert_eq!(err.field(), "settings.heartbeat.intervall");
        assert!(err.to_string().contains("heartbeat.interval"));
    }

    #[test]
    fn every_default_reads_back_from_its_text() {
        for key in SettingKey::ALL {
            let value = key.default_value();
            assert_eq!(SettingValue::parse(key, &value.to_string()), Ok(value));
        }
    }

    #[test]
    fn set_and_inherit_round_trip_every_key() {
        let mut s = Settings::default();
        for key in SettingKey::ALL {
            s.set(key.default_value());
            assert_eq!(s.get(key), Some(key.default_value()));
            s.inherit(key);
            assert_eq!(s.get(key), None);
        }
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn directions_and_booleans_parse_by_name_only() {
        assert_eq!(
            parse("communication.direction", "agent-initiated"),
            Ok(SettingValue::Direction(Direction::AgentInitiated))
        );
        assert!(parse("communication.direction", "both").is_err());
        assert!(parse("heartbeat.offline-errors-for-inactive-vms", "yes").is_err());
        assert_eq!(
            parse("firewall.enabled", "true"),
            Ok(SettingValue::FirewallEnabled(true))
        );
        assert_eq!(
            parse("firewall.enabled", "on").unwrap_err().field(),
            "settings.firewall.enabled"
        );
    }

    #[test]
    fn agent_auto_upgrade_is_a_boolean_off_by_default() {
        assert_eq!(
            parse("agent.auto-upgrade", "true"),
            Ok(SettingValue::AgentAutoUpgrade(true))
        );
        assert_eq!(
            parse("agent.auto-upgrade", "false"),
            Ok(SettingValue::AgentAutoUpgrade(false))
        );
        let err = parse("agent.auto-upgrade", "on").unwrap_err();
        assert_eq!(err.field(), "settings.agent.auto-upgrade");
        assert!(err.to_string().contains("true or false"), "{err}");
        assert_eq!(
            SettingKey::AgentAutoUpgrade.default_value(),
            SettingValue::AgentAutoUpgrade(false)
        );
        let mut s = Settings::default();
        s.set(SettingValue::AgentAutoUpgrade(true));
        assert_eq!(s.agent_auto_upgrade, Setting::Set(true));
        assert_eq!(s.firewall_enabled, Setting::Inherited);
    }
}
