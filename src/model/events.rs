//! The agents' event catalogue: ids and names, as listed in `schema/events.md` (a test compares).
//! Here in the core rather than in the agent program, since the manager and the API name events
//! too.

/// An event id with its name, as the catalogue lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKind {
    pub id: u32,
    pub name: &'static str,
}

pub const AGENT_STARTED: EventKind = EventKind {
    id: 1000,
    name: "agent-started",
};
pub const AGENT_STOPPED: EventKind = EventKind {
    id: 1001,
    name: "agent-stopped",
};
pub const CONFIG_APPLIED: EventKind = EventKind {
    id: 1002,
    name: "configuration-applied",
};
pub const CONFIG_REJECTED: EventKind = EventKind {
    id: 1003,
    name: "configuration-rejected",
};
pub const ACTIVATED: EventKind = EventKind {
    id: 1004,
    name: "agent-activated",
};
pub const FIREWALL_RESTORED: EventKind = EventKind {
    id: 1005,
    name: "firewall-restored",
};

/// Upgrades from the manager (`agent.auto-upgrade`): a new binary staged and about to run, the
/// new binary online, or the upgrade given up (not the binary offered, does not run here, not
/// online in time: the agent went back).
pub const AGENT_UPGRADE_STARTED: EventKind = EventKind {
    id: 1006,
    name: "agent-upgrade-started",
};
pub const AGENT_UPGRADED: EventKind = EventKind {
    id: 1007,
    name: "agent-upgraded",
};
pub const AGENT_UPGRADE_FAILED: EventKind = EventKind {
    id: 1008,
    name: "agent-upgrade-failed",
};
/// A packet a firewall rule logged (`log: true`, log-only, or the implicit deny of an allow rule
/// that logs), as the agent read it from the rules' NFLOG group.
pub const FIREWALL_PACKET_LOGGED: EventKind = EventKind {
    id: 2000,
    name: "firewall-packet-logged",
};
/// How many packet or refusal events one rule's window held back (the agent's rate limit).
pub const FIREWALL_LOG_SUPPRESSED: EventKind = EventKind {
    id: 2001,
    name: "firewall-log-suppressed",
};
/// The agent-port rule refused a connection to the agent's listening port.
pub const AGENT_PORT_REFUSED: EventKind = EventKind {
    id: 2002,
    name: "agent-port-refused",
};

/// The reference's agent event 5004: the agent saw its own clock change.
pub const CLOCK_CHANGED: EventKind = EventKind {
    id: 5004,
    name: "clock-changed",
};

pub const CATALOGUE: [EventKind; 13] = [
    AGENT_STARTED,
    AGENT_STOPPED,
    CONFIG_APPLIED,
    CONFIG_REJECTED,
    ACTIVATED,
    FIREWALL_RESTORED,
    AGENT_UPGRADE_STARTED,
    AGENT_UPGRADED,
    AGENT_UPGRADE_FAILED,
    FIREWALL_PACKET_LOGGED,
    FIREWALL_LOG_SUPPRESSED,
    AGENT_PORT_REFUSED,
    CLOCK_CHANGED,
];

/// The name of an event id, for views; unknown ids (from a newer agent) stay numbers.
pub fn name(id: u32) -> Option<&'static str> {
    CATALOGUE.iter().find(|k| k.id == id).map(|k| k.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_matches_schema_events_md() {
        let doc = include_str!("../../schema/events.md");
        let rows: Vec<(u32, String)> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let id = cells.get(1)?.parse().ok()?;
                Some((id, cells.get(2)?.trim_matches('`').to_string()))
            })
            .collect();
        let code: Vec<(u32, String)> = CATALOGUE
            .iter()
            .map(|k| (k.id, k.name.to_string()))
            .collect();
        assert_eq!(
            rows, code,
            "schema/events.md and model::events::CATALOGUE differ"
        );
    }

    #[test]
    fn ids_are_unique() {
        for (i, a) in CATALOGUE.iter().enumerate() {
            for b in &CATALOGUE[i + 1..] {
                assert_ne!(a.id, b.id);
            }
        }
    }
}
