//! The agent's host firewall: applies the configuration's rules as the table `inet picket`
//! with `nft -j -f -` (the translation is `firewall::nft`, the comparison of what is on the host
//! with what was applied `firewall::shape`), removes the table when the firewall is off, and
//! says how it stands (`on`, `off` or `error` with a reason) for the heartbeat's components.
//!
//! `nft` is run with `std::process::Command`: one short blocking call per change or heartbeat
//! (milliseconds; one that hangs is killed after [`NFT_LIMIT`]), which is all the agent needs; the `nftables` crate would add a dependency to
//! run the same program with the same JSON. nft's transaction is atomic: a ruleset the kernel
//! refuses changes nothing, so after a failure the last good table stays in force.

use crate::firewall::nft::{self, render, translate};
use crate::firewall::shape::{Shape, counters, drift};
use crate::model::FirewallRule;
use crate::policy::AgentConfig;
use serde_json::Value;
use std::cell::RefCell;
use std::fmt;

/// What went wrong running `nft`, naming the command.
#[derive(Debug)]
#[non_exhaustive]
pub enum FirewallError {
    /// `nft` is not installed (or not on `PATH`).
    Missing,
    /// `nft` could not be started or talked to.
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// `nft` ran and refused: its own words.
    Refused { command: String, stderr: String },
    /// `nft` printed something that is not the JSON asked for.
    Listing { detail: String },
    /// `nft` did not end within [`NFT_LIMIT`] (a kernel or netlink stuck): it was killed.
    TimedOut { command: String },
}

/// The longest an `nft` call may take. It takes milliseconds; the agent's heartbeats wait
/// behind it, so one that hangs must not hold them for ever.
pub const NFT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl fmt::Display for FirewallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirewallError::Missing => {
                write!(f, "nft is not installed (the nftables package provides it)")
            }
            FirewallError::Spawn { command, source } => write!(f, "cannot run {command}: {source}"),
            FirewallError::Refused { command, stderr } => {
                write!(f, "{command} refused: {}", stderr.trim())
            }
            FirewallError::Listing { detail } => {
                write!(f, "nft -j list table inet picket printed no JSON: {detail}")
            }
            FirewallError::TimedOut { command } => write!(
                f,
                "{command} did not end within {} s and was killed",
                NFT_LIMIT.as_secs()
            ),
        }
    }
}

impl std::error::Error for FirewallError {}

/// The component's state, as the heartbeat reports it.
pub use crate::model::ComponentState as State;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub reason: String,
}

/// What the agent last put on the host.
#[derive(Clone, Debug, PartialEq)]
enum Applied {
    /// Nothing yet in this process: whether a table is there is not known.
    Unknown,
    Off,
    On {
        rules: Vec<FirewallRule>,
        port: Option<u16>,
        shape: Shape,
    },
}

/// What to do to bring the host to the configuration: the sans-io decision of [`Firewall`].
#[derive(Debug, PartialEq)]
enum Step {
    Nothing,
    Apply(Value),
    /// Take the table away if it is there.
    Remove,
}

fn plan(applied: &Applied, config: &AgentConfig, port: Option<u16>) -> Step {
    match (applied, config.firewall_enabled) {
        (Applied::Off, false) => Step::Nothing,
        (Applied::Unknown | Applied::On { .. }, false) => Step::Remove,
        (Applied::On { rules, port: p, .. }, true)
            if *rules == config.firewall_rules && *p == port =>
        {
            Step::Nothing
        }
        (_, true) => Step::Apply(translate(&config.firewall_rules, port).json),
    }
}

pub struct Firewall {
    applied: RefCell<Applied>,
    status: RefCell<Status>,
    /// The last check could not list the table: the error it set ends with the next listing.
    unlisted: std::cell::Cell<bool>,
    /// The table's named counters at the last check: `(name, packets, bytes)`.
    counters: RefCell<Vec<(String, u64, u64)>>,
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall {
            applied: RefCell::new(Applied::Unknown),
            status: RefCell::new(Status {
                state: State::Off,
                reason: "not applied yet".into(),
            }),
            unlisted: std::cell::Cell::new(false),
            counters: RefCell::new(Vec::new()),
        }
    }
}

impl Firewall {
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Whether a table of the agent's is in force (its last application succeeded).
    pub fn is_on(&self) -> bool {
        matches!(*self.applied.borrow(), Applied::On { .. })
    }

    /// The heartbeat's `firewall` component.
    pub fn component(&self) -> crate::model::Component {
        let status = self.status();
        crate::model::Component {
            name: "firewall".into(),
            state: status.state,
            reason: status.reason,
        }
    }

    /// Brings the host to `config` with the agent listening on `port`. On failure the table
    /// stays as it was (nft's transaction is atomic) and the status says why.
    pub fn enforce(&self, config: &AgentConfig, port: Option<u16>) -> Result<(), FirewallError> {
        let step = plan(&self.applied.borrow(), config, port);
        let result = match step {
            Step::Nothing => return Ok(()),
            Step::Remove => remove(),
            Step::Apply(ruleset) => apply(&ruleset).map(|()| Applied::On {
                rules: config.firewall_rules.clone(),
                port,
                shape: Shape::of(&ruleset),
            }),
        };
        self.settle(result)
    }

    /// The per-rule counters read at the last check, for the heartbeat; none while the firewall
    /// is not on.
    pub fn counters(&self) -> Vec<(String, u64, u64)> {
        self.counters.borrow().clone()
    }

    /// Compares the table on the host with what was applied; a drift is restored at once.
    /// Reads the rules' counters on the way.
    /// Returns the drift, in words, when there was one (restored or not: see the status).
    pub fn watch(&self) -> Option<String> {
        let Applied::On { rules, port, shape } = self.applied.borrow().clone() else {
            self.counters.borrow_mut().clear();
            return None;
        };
        let found = match list() {
            Ok(found) => {
                *self.counters.borrow_mut() = counters(&found);
                Shape::of(&found)
            }
            Err(e) => {
                self.unlisted.set(true);
                self.set(State::Error, format!("cannot check the table: {e}"));
                return None;
            }
        };
        if self.unlisted.replace(false) {
            self.set(State::On, String::new());
        }
        let change = drift(&shape, &found)?;
        log::warn!("{change}; restoring it");
        let ruleset = translate(&rules, port).json;
        match apply(&ruleset) {
            Ok(()) => self.set(State::On, format!("{change}; restored")),
            Err(e) => self.set(State::Error, format!("{change}; cannot restore it: {e}")),
        }
        Some(change)
    }

    fn settle(&self, result: Result<Applied, FirewallError>) -> Result<(), FirewallError> {
        match result {
            Ok(applied) => {
                match applied {
                    Applied::On { .. } => self.set(State::On, String::new()),
                    _ => self.set(State::Off, "the policy does not enable the firewall".into()),
                }
                *self.applied.borrow_mut() = applied;
                Ok(())
            }
            Err(e) => {
                self.set(State::Error, e.to_string());
                Err(e)
            }
        }
    }

    fn set(&self, state: State, reason: String) {
        *self.status.borrow_mut() = Status { state, reason };
    }
}

/// Removes the table if it is there. Without `nft` there is no table to remove: off.
fn remove() -> Result<Applied, FirewallError> {
    match list() {
        Ok(found) if Shape::of(&found).is_empty() => Ok(Applied::Off),
        Ok(_) => apply(&nft::removal()).map(|()| Applied::Off),
        Err(FirewallError::Missing) => Ok(Applied::Off),
        Err(e) => Err(e),
    }
}

fn apply(ruleset: &Value) -> Result<(), FirewallError> {
    run(&["-j", "-f", "-"], Some(&render(ruleset))).map(|_| ())
}

/// The table as nft lists it; an empty ruleset when there is no such table.
fn list() -> Result<Value, FirewallError> {
    match run(&["-j", "list", "table", nft::FAMILY, nft::TABLE], None) {
        Ok(out) => serde_json::from_str(&out).map_err(|e| FirewallError::Listing {
            detail: e.to_string(),
        }),
        // nft's words for a table that does not exist.
        Err(FirewallError::Refused { stderr, .. }) if stderr.contains("No such file") => {
            Ok(serde_json::json!({"nftables": []}))
        }
        Err(e) => Err(e),
    }
}

fn run(args: &[&str], input: Option<&str>) -> Result<String, FirewallError> {
    run_within("nft", args, input, NFT_LIMIT)
}

/// Runs `program` (always `nft` but in tests), killing it if it has not ended within `limit`.
fn run_within(
    program: &str,
    args: &[&str],
    input: Option<&str>,
    limit: std::time::Duration,
) -> Result<String, FirewallError> {
    use crate::command::CommandError;
    crate::command::run_within(program.as_ref(), args, input, limit).map_err(|e| match e {
        CommandError::NotFound => FirewallError::Missing,
        CommandError::Spawn { command, source } => FirewallError::Spawn { command, source },
        CommandError::Failed { command, stderr } => FirewallError::Refused { command, stderr },
        CommandError::TimedOut { command, .. } => FirewallError::TimedOut { command },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::tests::rule;

    #[test]
    fn a_call_that_hangs_is_killed_and_said() {
        let limit = std::time::Duration::from_millis(200);
        match run_within("sleep", &["30"], None, limit) {
            Err(FirewallError::TimedOut { command }) => assert_eq!(command, "sleep 30"),
            other => panic!("{other:?}"),
        }
        // One that ends in time is read as before.
        let out = run_within("echo", &["ok"], None, NFT_LIMIT).unwrap();
        assert_eq!(out.trim(), "ok");
    }

    fn config(enabled: bool) -> AgentConfig {
        let mut config = crate::proto::samples::config();
        config.firewall_enabled = enabled;
        config.firewall_rules = if enabled {
            vec![rule(1, "deny", 2, "incoming")]
        } else {
            vec![]
        };
        config
    }

    #[test]
    fn the_plan_applies_on_change_and_removes_when_off() {
        let on = config(true);
        assert!(matches!(
            plan(&Applied::Unknown, &on, Some(1)),
            Step::Apply(_)
        ));
        assert_eq!(plan(&Applied::Unknown, &config(false), None), Step::Remove);
        assert_eq!(plan(&Applied::Off, &config(false), None), Step::Nothing);
        let applied = Applied::On {
            rules: on.firewall_rules.clone(),
            port: Some(1),
            shape: Shape::default(),
        };
        assert_eq!(plan(&applied, &on, Some(1)), Step::Nothing);
        assert!(
            matches!(plan(&applied, &on, Some(2)), Step::Apply(_)),
            "a new port"
        );
        assert_eq!(plan(&applied, &config(false), Some(1)), Step::Remove);
    }
}
