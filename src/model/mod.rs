//! Plain data shared by every layer: ids, settings and their values, policies, computers, tokens.
//!
//! Nothing here does I/O. Types that hold a value with a range (an interval, a missed-heartbeat
//! count) can only be built through their parsers, so a value out of range cannot reach the store.

mod agent;
mod alert;
mod duration;
pub mod events;
mod firewall;
mod ids;
mod records;
mod settings;
mod text;
mod user;
pub(crate) mod words;

pub use crate::alerts::{AlertKind, Severity};
pub use agent::{AgentState, Component, ComponentState, HistoryEntry, StoredEvent};
pub use alert::{Acknowledgement, Alert, index_name};
pub use duration::{DurationError, format_duration, parse_duration};
pub use firewall::{
    FirewallRule, FrameType, IpMatch, ListenerRule, MAX_PRIORITY, MacAddr, PortRange, Protocol,
    RuleAction, RuleError, RuleId, TrafficDirection, parse_priority,
};
pub use ids::{AlertId, ComputerId, PolicyId};
pub use records::{
    BASE_POLICY_NAME, Computer, ComputerKind, Policy, PowerState, Status, Token, TokenHash,
};
pub use settings::{
    ClockChangeLimit, Direction, MissedLimit, Setting, SettingError, SettingKey, SettingValue,
    Settings, defaults,
};
pub use text::{hidden_character, host_name_problem};
pub use user::{ADMIN_USER, User};
