//! When `driver-offline` stands for a computer: an enforcing component of its agent (today the
//! host firewall) is off or in error while the policy enables it. Sans-io: the session's
//! findings in, a verdict out; `manager/agent_port/session.rs` writes it with `alerts::record`.

use crate::model::{Component, ComponentState};

/// The components that enforce a setting, and the name they report under.
pub const FIREWALL: &str = "firewall";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Raise (or update) the alert with this message.
    Raise(String),
    /// The condition is over (or never was): clear it.
    Clear,
    /// Nothing to conclude yet: leave the alert as it is.
    Keep,
}

/// `enabled`: the policy enables the firewall for this computer and its agent can be sent it;
/// `runs_expected`: the agent reported running the configuration the manager expects, so an
/// `off` is not just a configuration on its way (pushed in this very session).
pub fn judge(enabled: bool, runs_expected: bool, components: &[Component]) -> Verdict {
    if !enabled {
        return Verdict::Clear;
    }
    let Some(firewall) = components.iter().find(|c| c.name == FIREWALL) else {
        // An agent that reports no firewall (protocol 1) is told apart as withheld instead.
        return Verdict::Clear;
    };
    match firewall.state {
        ComponentState::On => Verdict::Clear,
        ComponentState::Off if !runs_expected => Verdict::Keep,
        state => Verdict::Raise(message(state, &firewall.reason)),
    }
}

/// `error` reads as "in error" in a sentence.
fn words(state: ComponentState) -> &'static str {
    match state {
        ComponentState::Error => "in error",
        other => other.name(),
    }
}

fn message(state: ComponentState, reason: &str) -> String {
    let mut text = format!(
        "the firewall is {} while its policy enables it",
        words(state)
    );
    if !reason.is_empty() {
        text.push_str(": ");
        text.push_str(reason);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firewall(state: ComponentState, reason: &str) -> Vec<Component> {
        vec![Component {
            name: FIREWALL.into(),
            state,
            reason: reason.into(),
        }]
    }

    #[test]
    fn an_error_raises_whenever_the_policy_enables_the_firewall() {
        let error = firewall(ComponentState::Error, "nft is not installed");
        assert_eq!(
            judge(true, false, &error),
            Verdict::Raise(
                "the firewall is in error while its policy enables it: nft is not installed".into()
            )
        );
        assert_eq!(judge(false, true, &error), Verdict::Clear);
    }

    #[test]
    fn off_waits_for_the_configuration_that_enables_it() {
        let off = firewall(ComponentState::Off, "");
        assert_eq!(judge(true, false, &off), Verdict::Keep);
        assert!(matches!(judge(true, true, &off), Verdict::Raise(_)));
        assert_eq!(
            judge(true, true, &firewall(ComponentState::On, "")),
            Verdict::Clear
        );
        assert_eq!(judge(true, true, &[]), Verdict::Clear, "a protocol-1 agent");
    }
}
