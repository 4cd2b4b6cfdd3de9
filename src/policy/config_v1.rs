//! Protocol 1's configuration, frozen: what agents deployed before protocol 2 decode and
//! fingerprint, so a manager can still serve them (`schema/wire.md`, Versions) and judge whether
//! they run what it expects.

use super::fingerprint::{AgentConfig, Fingerprint};
use crate::model::{ClockChangeLimit, Direction, ListenerRule, MissedLimit};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Whether an agent speaking `protocol` reads protocol 1's configuration, [`AgentConfigV1`],
/// which has no firewall. Only protocol 1 does: 2 carries the firewall, and 0 (a protocol not
/// recorded, as in a default `AgentState`) is read as the current one.
pub fn reads_v1(protocol: u16) -> bool {
    protocol == 1
}

/// `AgentConfig` as protocol 1 encodes it: the fields before the firewall, in their order. Never
/// change it: a protocol-1 agent decodes these bytes and hashes them for its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfigV1 {
    pub interval: Duration,
    pub missed_before_alert: MissedLimit,
    pub max_clock_change: ClockChangeLimit,
    pub offline_errors_for_inactive_vms: bool,
    pub direction: Direction,
    pub manager_endpoints: Vec<String>,
    pub listener_rules: Vec<ListenerRule>,
}

impl AgentConfigV1 {
    /// What a protocol-1 agent computes for this configuration (its `applied` fingerprint): the
    /// SHA-256 of the v1 domain tag and the postcard encoding, exactly as protocol 1 defined it.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut bytes = b"picket-agent-config-v1\0".to_vec();
        // Encoding into a Vec only fails on allocation failure, which aborts anyway.
        bytes.extend(postcard::to_allocvec(self).unwrap_or_default());
        Fingerprint(crate::secret::sha256(&bytes))
    }
}

/// A protocol-1 configuration read as the current one: the firewall off, no firewall rules (an
/// upgraded agent's spool holds one until its manager sends the current form).
impl From<AgentConfigV1> for AgentConfig {
    fn from(c: AgentConfigV1) -> AgentConfig {
        AgentConfig {
            interval: c.interval,
            missed_before_alert: c.missed_before_alert,
            max_clock_change: c.max_clock_change,
            offline_errors_for_inactive_vms: c.offline_errors_for_inactive_vms,
            direction: c.direction,
            manager_endpoints: c.manager_endpoints,
            listener_rules: c.listener_rules,
            firewall_enabled: false,
            firewall_rules: Vec::new(),
        }
    }
}

impl AgentConfig {
    /// What a protocol-1 agent is sent of this configuration: everything but the firewall.
    pub fn v1(&self) -> AgentConfigV1 {
        AgentConfigV1 {
            interval: self.interval,
            missed_before_alert: self.missed_before_alert,
            max_clock_change: self.max_clock_change,
            offline_errors_for_inactive_vms: self.offline_errors_for_inactive_vms,
            direction: self.direction,
            manager_endpoints: self.manager_endpoints.clone(),
            listener_rules: self.listener_rules.clone(),
        }
    }

    /// The fingerprint an agent speaking `protocol` reports once it runs this configuration:
    /// protocol 1's for an agent older than the firewall, the current one otherwise. Whoever
    /// judges "up to date" compares with this, or a protocol-1 agent would look stale forever.
    pub fn fingerprint_for(&self, protocol: u16) -> Fingerprint {
        if reads_v1(protocol) {
            self.v1().fingerprint()
        } else {
            self.fingerprint()
        }
    }

    /// Whether the firewall is on but an agent speaking `protocol` cannot be sent it (it is too
    /// old to enforce it): the manager says so in its log, the computer's history and its JSON.
    pub fn firewall_withheld_from(&self, protocol: u16) -> bool {
        self.firewall_enabled && reads_v1(protocol)
    }
}

/// Why an agent of `protocol` is not sent its firewall, in the words of the log, the computer's
/// history and its JSON.
pub fn firewall_withheld_reason(protocol: u16) -> String {
    format!(
        "firewall.enabled is on, but the agent speaks protocol {protocol}, too old to enforce the \
         firewall: it is not sent the firewall rules; upgrade the agent"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IpMatch, PortRange};

    /// The configuration of protocol 1's golden vectors (`schema/wire/v1/`).
    fn sample() -> AgentConfigV1 {
        AgentConfigV1 {
            interval: Duration::from_secs(600),
            missed_before_alert: MissedLimit::Count(2),
            max_clock_change: ClockChangeLimit::Max(Duration::from_secs(900)),
            offline_errors_for_inactive_vms: false,
            direction: Direction::AgentInitiated,
            manager_endpoints: vec!["manager.example:4120".into()],
            listener_rules: vec![ListenerRule {
                name: "admin net".into(),
                destination_ports: vec![PortRange::parse("4118").unwrap()],
                source_ips: vec![IpMatch::parse("10.0.0.0/8").unwrap()],
                source_macs: vec![],
            }],
        }
    }

    #[test]
    fn the_v1_fingerprint_is_what_protocol_1_agents_compute() {
        // The fingerprint inside protocol 1's golden SetConfig, computed by the v1 build.
        let golden = "70d359f7a03126f54f966afe06d38d1c17680f650cef14fb3bd76282cdf8687d";
        assert_eq!(sample().fingerprint().to_string(), golden);
        let current = AgentConfig::from(sample());
        assert_eq!(current.v1(), sample());
        assert_eq!(current.fingerprint_for(1).to_string(), golden);
        assert_eq!(current.fingerprint_for(2), current.fingerprint());
        assert_ne!(current.fingerprint_for(1), current.fingerprint_for(2));
    }

    #[test]
    fn a_v1_agent_is_sent_no_firewall_and_its_fingerprint_ignores_it() {
        let off = AgentConfig::from(sample());
        let on = AgentConfig {
            firewall_enabled: true,
            firewall_rules: Vec::new(),
            ..off.clone()
        };
        assert_eq!(on.v1(), off.v1());
        assert_eq!(on.fingerprint_for(1), off.fingerprint_for(1));
        assert_ne!(on.fingerprint_for(2), off.fingerprint_for(2));
        assert!(on.firewall_withheld_from(1) && !on.firewall_withheld_from(2));
        assert!(!off.firewall_withheld_from(1));
    }
}
