//! The simulated manager's notices: the incident detector (the real `Incidents`) fed as the
//! verdicts task feeds it, and what `alerts/record.rs` would queue, hold, release or drop, as a
//! log the oracle reads (`Oracle::check_notices`).

use super::*;
use crate::alerts::incident::{Action, IncidentRules, Incidents, Notify};
use crate::model::PolicyId;

/// Small enough for the simulation's sites (2 to 10 computers) to have incidents: three
/// computers within two minutes, whatever their share.
pub const SIM_INCIDENTS: IncidentRules = IncidentRules {
    min_computers: 3,
    min_percent: 1,
    window: Duration::from_secs(120),
};

/// Every simulated computer is in the Base Policy.
const POLICY: PolicyId = PolicyId(1);

/// A notice the manager queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Told {
    Raised(AlertId),
    Cleared(AlertId),
    /// An incident opened, listing these computers.
    Incident(Vec<ComputerId>),
    /// An incident closed; it listed these computers.
    IncidentOver(Vec<ComputerId>),
}

/// What the store would hold: the held notices, the open incident, and the queued notices
/// (with the virtual time they were queued).
#[derive(Default)]
pub(super) struct Notices {
    held: BTreeMap<ComputerId, AlertId>,
    open: Option<Vec<ComputerId>>,
    pub(super) told: Vec<(u64, Told)>,
}

impl Site {
    /// A fresh detector at the manager's start, told what the store holds.
    pub(super) fn incidents_start(&mut self) -> Incidents {
        let mut incidents = Incidents::new(SIM_INCIDENTS);
        incidents.set_tree(HashMap::from([(POLICY, None)]));
        for id in self.manager.settings.keys() {
            incidents.track(*id, POLICY);
        }
        if let Some(members) = &self.manager.notices.open {
            let offline = |c| self.active(c, AlertKind::ComputerOffline).is_some();
            incidents.restore_incident(at(self.now), POLICY, members, offline);
        }
        for computer in self.manager.notices.held.keys() {
            incidents.restore_held(at(self.now), *computer);
        }
        incidents
    }

    /// What becomes of an offline raise's notice (`fresh`: a new alert, not a repeat).
    pub(super) fn offline_raised(&mut self, computer: ComputerId, fresh: bool, alert: AlertId) {
        let fate = self
            .manager
            .incidents
            .offline_raised(at(self.now), computer);
        if !fresh {
            return;
        }
        match fate {
            Notify::Now => self.tell(Told::Raised(alert)),
            Notify::Hold => {
                self.manager.notices.held.insert(computer, alert);
            }
            Notify::Quiet => {}
        }
    }

    /// What becomes of an offline clear's notice; `alert` is the one it cleared, if any.
    pub(super) fn offline_cleared(&mut self, computer: ComputerId, alert: Option<AlertId>) {
        let fate = self
            .manager
            .incidents
            .offline_cleared(at(self.now), computer);
        let Some(alert) = alert else {
            return;
        };
        if self.manager.notices.held.remove(&computer) == Some(alert) && fate != Notify::Quiet {
            self.tell(Told::Raised(alert));
        }
        if fate == Notify::Now {
            self.tell(Told::Cleared(alert));
        }
    }

    /// The detector's deadlines and actions, after the monitor's decisions.
    pub(super) fn incidents_act(&mut self) {
        self.manager.incidents.handle_timeout(at(self.now));
        while let Some(action) = self.manager.incidents.poll_action() {
            self.trace(None, || format!("incident detector: {action:?}"));
            match action {
                Action::Release(computer) => {
                    if let Some(alert) = self.manager.notices.held.remove(&computer)
                        && self
                            .manager
                            .alerts
                            .iter()
                            .any(|a| a.id == alert && a.is_active())
                    {
                        self.tell(Told::Raised(alert));
                    }
                }
                Action::Incident {
                    computers,
                    absorbed,
                    opened,
                    ..
                } => {
                    for computer in absorbed {
                        self.manager.notices.held.remove(&computer);
                    }
                    if opened {
                        self.tell(Told::Incident(computers.clone()));
                    }
                    self.manager.notices.open = Some(computers);
                }
                Action::Close { computers, .. } => {
                    self.manager.notices.open = None;
                    self.tell(Told::IncidentOver(computers));
                }
            }
        }
    }

    fn tell(&mut self, told: Told) {
        self.manager.notices.told.push((self.now, told));
    }

    /// How many incidents opened over the run.
    pub fn incidents_opened(&self) -> u64 {
        let opened = self.manager.notices.told.iter();
        opened
            .filter(|(_, t)| matches!(t, Told::Incident(_)))
            .count() as u64
    }

    /// Whether an incident is still open (at the end, none should be).
    pub(super) fn incident_open(&self) -> bool {
        self.manager.notices.open.is_some()
    }
}
