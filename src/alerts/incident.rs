//! Site-wide incidents, sans-io: when many computers of one policy subtree go offline within a
//! short window (a switch, a site's uplink, a hypervisor), one `site-incident` alert stands for
//! all of them and is what gets notified, instead of one notice per computer. Each computer's
//! own offline alert is still recorded and clears when it returns; only its notice changes.
//!
//! To be able to replace the first computers' notices, and not only the ones after the
//! threshold, an offline notice is *held* for one window before it is sent ([`Notify::Hold`]);
//! when it is due, the incident is judged with the whole window's raises counted, and if one
//! opens, it takes the place of every held notice in its subtree. Sites too small to ever reach
//! the threshold hold nothing. The verdicts task feeds this the statuses and the offline raises
//! and clears it writes, and carries out its [`Action`]s.

use crate::clock::Instant;
use crate::model::{ComputerId, PolicyId};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// When computers going offline together are one incident: at least `min_computers` of one
/// policy subtree, and at least `min_percent` of those of its computers that were online,
/// within `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncidentRules {
    /// 0 turns the detector off: every offline notice is sent at once.
    pub min_computers: usize,
    pub min_percent: u8,
    pub window: Duration,
}

impl Default for IncidentRules {
    fn default() -> Self {
        IncidentRules {
            min_computers: 20,
            min_percent: 30,
            window: Duration::from_secs(120),
        }
    }
}

/// An incident closes once this share (percent) of its computers are back and none has come
/// back for a window: the returns of a restored uplink come in a burst, and closing in the
/// middle of it would send every straggler's clear on its own.
pub const CLOSE_PERCENT_BACK: usize = 80;

/// What becomes of the notice of an alert's change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    /// Queued with the change.
    Now,
    /// Kept aside until the detector releases it or an incident takes its place.
    Hold,
    /// None: an incident's notice stands for it.
    Quiet,
}

/// What the detector asks the verdicts task to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// No incident took this computer's held offline notice: send it.
    Release(ComputerId),
    /// Raise (`opened`) or update the incident of `policy`, which lists `computers`; the held
    /// notices of `absorbed` are dropped, the incident's notice stands for them.
    Incident {
        policy: PolicyId,
        computers: Vec<ComputerId>,
        absorbed: Vec<ComputerId>,
        opened: bool,
    },
    /// Most of the incident's computers are back: clear it. The ones `still_offline` are on
    /// their own from now on (their clear is notified).
    Close {
        policy: PolicyId,
        computers: Vec<ComputerId>,
        still_offline: Vec<ComputerId>,
    },
}

/// An incident closes, whatever the share back, once nothing has happened to it (no computer
/// joined, none came back) for this many windows: its computers still offline are then on
/// their own, and a later outage in its subtree is news, not a quiet addition to an old one.
pub const STALE_WINDOWS: u32 = 10;

#[derive(Debug)]
struct Seen {
    policy: PolicyId,
    online: bool,
    /// When its offline alert was raised, while that raise counts towards an incident.
    counted: Option<Instant>,
    /// The open incident (by policy) it belongs to.
    member_of: Option<PolicyId>,
}

#[derive(Debug)]
struct Open {
    members: BTreeSet<ComputerId>,
    offline: BTreeSet<ComputerId>,
    /// When a computer last joined or came back: a raise within a window of it joins quietly,
    /// and [`STALE_WINDOWS`] without one close the incident.
    last_change: Instant,
    last_return: Option<Instant>,
    /// Changed since its last action: one update per round, however many joined.
    dirty: bool,
    /// Not yet announced: the first action raises it.
    new: bool,
    /// Held notices it takes the place of, since its last action.
    absorbed: Vec<ComputerId>,
}

impl Open {
    fn new(now: Instant) -> Open {
        Open {
            members: BTreeSet::new(),
            offline: BTreeSet::new(),
            last_change: now,
            last_return: None,
            dirty: true,
            new: true,
            absorbed: Vec::new(),
        }
    }
}

/// The detector. One per manager, owned by the verdicts task.
#[derive(Debug)]
pub struct Incidents {
    rules: IncidentRules,
    /// Each policy's chain: itself, then its parents up to the Base Policy.
    chains: HashMap<PolicyId, Vec<PolicyId>>,
    computers: HashMap<ComputerId, Seen>,
    /// By subtree (a computer counts in its policy and every one above): computers, online
    /// ones, counted raises. Kept as computers change, so a raise costs the tree's depth.
    tracked: HashMap<PolicyId, usize>,
    online: HashMap<PolicyId, usize>,
    counted: HashMap<PolicyId, usize>,
    /// Counted raises, oldest first; an entry whose computer no longer counts from that
    /// instant is stale and skipped.
    recent: VecDeque<(Instant, ComputerId)>,
    /// Held notices by release time, oldest first; `held` says which are still held.
    releases: VecDeque<(Instant, ComputerId)>,
    /// With the release time of its hold: an earlier hold's entry in `releases` (the computer
    /// came back, and went offline again) must not release the new one early.
    held: HashMap<ComputerId, Instant>,
    open: HashMap<PolicyId, Open>,
    actions: VecDeque<Action>,
}

impl Incidents {
    pub fn new(rules: IncidentRules) -> Incidents {
        Incidents {
            rules,
            chains: HashMap::new(),
            computers: HashMap::new(),
            tracked: HashMap::new(),
            online: HashMap::new(),
            counted: HashMap::new(),
            recent: VecDeque::new(),
            releases: VecDeque::new(),
            held: HashMap::new(),
            open: HashMap::new(),
            actions: VecDeque::new(),
        }
    }

    pub fn rules(&self) -> IncidentRules {
        self.rules
    }

    /// The policy tree: each policy's parent (`None` for the Base Policy). The subtree counts
    /// are rebuilt.
    pub fn set_tree(&mut self, parents: HashMap<PolicyId, Option<PolicyId>>) {
        self.chains = parents
            .keys()
            .map(|p| {
                let mut chain = vec![*p];
                // Bounded, so a cycle in a corrupt tree cannot hang the task.
                while let Some(Some(parent)) = parents.get(&chain[chain.len() - 1])
                    && chain.len() < 64
                    && !chain.contains(parent)
                {
                    chain.push(*parent);
                }
                (*p, chain)
            })
            .collect();
        self.tracked.clear();
        self.online.clear();
        self.counted.clear();
        let seen: Vec<(PolicyId, bool, bool)> = self
            .computers
            .values()
            .map(|s| (s.policy, s.online, s.counted.is_some()))
            .collect();
        for (policy, online, counted) in seen {
            self.count(policy, online, counted, true);
        }
    }

    /// `policy` itself, then its parents up to the Base Policy.
    fn chain(&self, policy: PolicyId) -> Vec<PolicyId> {
        self.chains
            .get(&policy)
            .cloned()
            .unwrap_or_else(|| vec![policy])
    }

    fn bump(&mut self, which: Which, policy: PolicyId, up: bool) {
        let chain = self.chain(policy);
        let map = match which {
            Which::Tracked => &mut self.tracked,
            Which::Online => &mut self.online,
            Which::Counted => &mut self.counted,
        };
        for p in chain {
            let n = map.entry(p).or_default();
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    /// Adds (or takes away) one computer's share of the counts.
    fn count(&mut self, policy: PolicyId, online: bool, counted: bool, up: bool) {
        self.bump(Which::Tracked, policy, up);
        if online {
            self.bump(Which::Online, policy, up);
        }
        if counted {
            self.bump(Which::Counted, policy, up);
        }
    }

    fn get(map: &HashMap<PolicyId, usize>, policy: PolicyId) -> usize {
        map.get(&policy).copied().unwrap_or(0)
    }

    /// A computer to watch (again), in `policy`.
    pub fn track(&mut self, computer: ComputerId, policy: PolicyId) {
        let (online, counted) = match self.computers.get(&computer) {
            Some(seen) if seen.policy == policy => return,
            Some(seen) => {
                let (old, online, counted) = (seen.policy, seen.online, seen.counted.is_some());
                self.count(old, online, counted, false);
                (online, counted)
            }
            None => (false, false),
        };
        let seen = self.computers.entry(computer).or_insert(Seen {
            policy,
            online: false,
            counted: None,
            member_of: None,
        });
        seen.policy = policy;
        self.count(policy, online, counted, true);
    }

    /// The computer was deleted.
    pub fn forget(&mut self, computer: ComputerId) {
        let Some(seen) = self.computers.remove(&computer) else {
            return;
        };
        self.count(seen.policy, seen.online, seen.counted.is_some(), false);
        if let Some(policy) = seen.member_of
            && let Some(open) = self.open.get_mut(&policy)
        {
            open.members.remove(&computer);
            open.offline.remove(&computer);
        }
        self.held.remove(&computer);
    }

    /// Whether the computer is online now.
    pub fn set_online(&mut self, computer: ComputerId, online: bool) {
        let Some(seen) = self.computers.get_mut(&computer) else {
            return;
        };
        if seen.online != online {
            seen.online = online;
            let policy = seen.policy;
            self.bump(Which::Online, policy, online);
        }
    }

    /// The deepest open incident whose subtree holds `policy`.
    fn open_over(&self, policy: PolicyId) -> Option<PolicyId> {
        self.chain(policy)
            .into_iter()
            .find(|p| self.open.contains_key(p))
    }

    /// The computer's offline alert is raised now: what becomes of its notice.
    pub fn offline_raised(&mut self, now: Instant, computer: ComputerId) -> Notify {
        if self.rules.min_computers == 0 {
            return Notify::Now;
        }
        self.set_online(computer, false);
        let Some(seen) = self.computers.get(&computer) else {
            return Notify::Now;
        };
        let policy = seen.policy;
        if seen.member_of.is_some() {
            return Notify::Quiet;
        }
        let window = self.rules.window;
        // A raise soon after the incident's last change is part of the same outage.
        if let Some(incident) = self.open_over(policy)
            && self
                .open
                .get(&incident)
                .is_some_and(|o| now <= o.last_change.saturating_add(window))
        {
            self.join(now, incident, vec![computer], Vec::new());
            return Notify::Quiet;
        }
        // Too few computers in the whole tree for an incident: nothing to wait for.
        let top = *self.chain(policy).last().unwrap_or(&policy);
        if Self::get(&self.tracked, top) < self.rules.min_computers {
            return Notify::Now;
        }
        self.uncount(computer);
        if let Some(seen) = self.computers.get_mut(&computer) {
            seen.counted = Some(now);
        }
        self.bump(Which::Counted, policy, true);
        self.recent.push_back((now, computer));
        self.releases
            .push_back((now.saturating_add(window), computer));
        self.held.insert(computer, now.saturating_add(window));
        Notify::Hold
    }

    /// A held notice found at the manager's start: held for a window from now, and counted.
    pub fn restore_held(&mut self, now: Instant, computer: ComputerId) {
        match self.offline_raised(now, computer) {
            Notify::Hold => {}
            // Nothing to wait for after all: send it.
            Notify::Now => self.actions.push_back(Action::Release(computer)),
            // Taken by an incident: the incident's write drops it.
            Notify::Quiet => {}
        }
    }

    /// An incident found active at the manager's start: `members` are the computers it lists,
    /// `offline` says which of them are still offline.
    pub fn restore_incident(
        &mut self,
        now: Instant,
        policy: PolicyId,
        members: &[ComputerId],
        offline: impl Fn(ComputerId) -> bool,
    ) {
        let mut open = Open::new(now);
        // Known already: announced before the restart.
        (open.dirty, open.new) = (false, false);
        for computer in members {
            if let Some(seen) = self.computers.get_mut(computer) {
                seen.member_of = Some(policy);
                open.members.insert(*computer);
                if offline(*computer) {
                    open.offline.insert(*computer);
                }
            }
        }
        self.open.insert(policy, open);
    }

    /// Stops counting the computer's raise, if it counted.
    fn uncount(&mut self, computer: ComputerId) {
        if let Some(seen) = self.computers.get_mut(&computer)
            && seen.counted.take().is_some()
        {
            let policy = seen.policy;
            self.bump(Which::Counted, policy, false);
        }
    }

    /// Opens an incident at the widest subtree of `policy`'s chain that qualifies, if any: one
    /// incident for a site-wide outage rather than one per branch. It is named after the
    /// narrowest policy that still holds all of its computers, the most precise description.
    /// A stale incident already open there takes the new outage in.
    fn evaluate(&mut self, now: Instant, policy: PolicyId) {
        let rules = self.rules;
        let widest_first: Vec<PolicyId> = self.chain(policy).into_iter().rev().collect();
        for (i, top) in widest_first.iter().copied().enumerate() {
            let counted = Self::get(&self.counted, top);
            let online = Self::get(&self.online, top);
            if counted < rules.min_computers
                || counted * 100 < usize::from(rules.min_percent) * (online + counted)
            {
                continue;
            }
            let top = widest_first[i..]
                .iter()
                .copied()
                .take_while(|p| Self::get(&self.counted, *p) == counted)
                .last()
                .unwrap_or(top);
            let computers: Vec<ComputerId> = self
                .recent
                .iter()
                .filter(|(at, c)| {
                    self.computers.get(c).is_some_and(|s| {
                        s.counted == Some(*at) && self.chain(s.policy).contains(&top)
                    })
                })
                .map(|(_, c)| *c)
                .collect();
            let absorbed = computers
                .iter()
                .copied()
                .filter(|c| self.held.contains_key(c))
                .collect();
            let target = self.open_over(top).unwrap_or(top);
            self.open.entry(target).or_insert_with(|| Open::new(now));
            self.join(now, target, computers, absorbed);
            return;
        }
    }

    fn join(
        &mut self,
        now: Instant,
        policy: PolicyId,
        joining: Vec<ComputerId>,
        absorbed: Vec<ComputerId>,
    ) {
        for computer in &joining {
            self.uncount(*computer);
            self.held.remove(computer);
            if let Some(seen) = self.computers.get_mut(computer) {
                seen.member_of = Some(policy);
            }
        }
        let Some(open) = self.open.get_mut(&policy) else {
            return;
        };
        open.members.extend(joining.iter().copied());
        open.offline.extend(joining);
        open.absorbed.extend(absorbed);
        open.last_change = now;
        open.dirty = true;
    }

    /// The computer's offline alert cleared now (it is back): what becomes of the clear's
    /// notice. A held raise is sent just before it (the store does that in the clear's
    /// transaction), so the two arrive in order.
    pub fn offline_cleared(&mut self, now: Instant, computer: ComputerId) -> Notify {
        self.uncount(computer);
        self.held.remove(&computer);
        let Some(policy) = self.computers.get(&computer).and_then(|s| s.member_of) else {
            return Notify::Now;
        };
        if let Some(open) = self.open.get_mut(&policy) {
            open.offline.remove(&computer);
            open.last_return = Some(now);
            open.last_change = now;
            if open.offline.is_empty() {
                self.close(policy);
            }
        }
        Notify::Quiet
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let window = self.rules.window;
        let stale = window.saturating_mul(STALE_WINDOWS);
        let closing = self.open.values().flat_map(|open| {
            let settled = closable(open)
                .then(|| open.last_return.map(|at| at.saturating_add(window)))
                .flatten();
            [settled, Some(open.last_change.saturating_add(stale))]
        });
        self.recent
            .front()
            .map(|(at, _)| at.saturating_add(window))
            .into_iter()
            .chain(self.releases.front().map(|(at, _)| *at))
            .chain(closing.flatten())
            .min()
    }

    /// Ends the windows, releases the notices, says what changed in the incidents (once per
    /// incident, however many joined) and closes those whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        let window = self.rules.window;
        // A held notice's window is over: now, with the whole window's raises counted, is
        // when an incident is judged, at the widest subtree that qualifies. Judged at the
        // threshold instead, the small subtrees of an outage spread over many reached it first
        // and made an incident each.
        while let Some(&(at, computer)) = self.releases.front() {
            if at > now {
                break;
            }
            self.releases.pop_front();
            if self.held.get(&computer) != Some(&at) {
                continue;
            }
            if let Some(policy) = self.computers.get(&computer).map(|s| s.policy) {
                self.evaluate(now, policy);
            }
            if self.held.remove(&computer).is_some() {
                self.actions.push_back(Action::Release(computer));
            }
        }
        while let Some(&(at, computer)) = self.recent.front() {
            if at.saturating_add(window) > now {
                break;
            }
            self.recent.pop_front();
            if self
                .computers
                .get(&computer)
                .is_some_and(|s| s.counted == Some(at))
            {
                self.uncount(computer);
            }
        }
        let mut changed: Vec<PolicyId> = self
            .open
            .iter()
            .filter(|(_, o)| o.dirty)
            .map(|(p, _)| *p)
            .collect();
        changed.sort();
        for policy in changed {
            if let Some(open) = self.open.get_mut(&policy) {
                open.dirty = false;
                let opened = std::mem::take(&mut open.new);
                self.actions.push_back(Action::Incident {
                    policy,
                    computers: open.members.iter().copied().collect(),
                    absorbed: std::mem::take(&mut open.absorbed),
                    opened,
                });
            }
        }
        let stale = window.saturating_mul(STALE_WINDOWS);
        let mut closing: Vec<PolicyId> = self
            .open
            .iter()
            .filter(|(_, open)| {
                open.offline.is_empty()
                    || open.last_change.saturating_add(stale) <= now
                    || (closable(open)
                        && open
                            .last_return
                            .is_some_and(|at| at.saturating_add(window) <= now))
            })
            .map(|(policy, _)| *policy)
            .collect();
        closing.sort();
        for policy in closing {
            self.close(policy);
        }
    }

    /// An administrator dismissed the incident's alert: it is over, with nothing to write
    /// (the dismissal ended the alert). Its computers still offline are on their own.
    pub fn dismissed(&mut self, policy: PolicyId) {
        if let Some(open) = self.open.remove(&policy) {
            for computer in &open.members {
                if let Some(seen) = self.computers.get_mut(computer) {
                    seen.member_of = None;
                }
            }
        }
    }

    /// Closes the incident: its computers still offline are on their own from now on.
    fn close(&mut self, policy: PolicyId) {
        let Some(open) = self.open.remove(&policy) else {
            return;
        };
        for computer in &open.members {
            if let Some(seen) = self.computers.get_mut(computer) {
                seen.member_of = None;
            }
        }
        // Never announced (opened and over within one round): nothing to close.
        if open.new {
            return;
        }
        self.actions.push_back(Action::Close {
            policy,
            computers: open.members.into_iter().collect(),
            still_offline: open.offline.into_iter().collect(),
        });
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[derive(Clone, Copy)]
enum Which {
    Tracked,
    Online,
    Counted,
}

/// Whether enough of the incident's computers are back for it to close once returns settle.
fn closable(open: &Open) -> bool {
    let back = open.members.len() - open.offline.len().min(open.members.len());
    back * 100 >= CLOSE_PERCENT_BACK * open.members.len()
}

#[cfg(test)]
mod tests;
