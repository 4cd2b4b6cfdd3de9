//! The budget of connections that have not authenticated yet (sans-io): at most so many at
//! once in all and from one source, and when a cap is reached the oldest such connection makes
//! room for the new one.
//!
//! Why the oldest goes rather than the newcomer: a real peer authenticates within a few round
//! trips, so the connections that have waited longest are the ones that are not going to
//! (idle sockets, stalled handshakes). Refusing newcomers instead would let whoever holds the
//! budget keep real agents out for as long as it likes; with eviction, a stranger has to open
//! connections faster than a real peer completes a handshake to keep one out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// How many unauthenticated connections a listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// In all.
    pub total: usize,
    /// From one [`Source`].
    pub per_source: usize,
}

/// What one party is taken to control: an IPv4 address, or an IPv6 /64 (a host on an IPv6
/// network usually has a whole /64 to pick addresses from).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source(u128);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                // Bit 32 tells the families apart: an IPv4 address never has it, and the
                // low 64 bits of a /64 are otherwise zero.
                None => Source((u128::from(v6) & !u128::from(u64::MAX)) | 1 << 32),
            },
        }
    }
}

/// One admitted connection, in order of admission.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What [`Admission::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub id: ConnId,
    /// An older unauthenticated connection that must now be closed to stay within budget.
    pub evicted: Option<ConnId>,
}

/// The unauthenticated connections of one listener.
#[derive(Debug)]
pub struct Admission {
    budget: Budget,
    next: u64,
    open: BTreeMap<ConnId, Source>,
    by_source: HashMap<Source, BTreeSet<ConnId>>,
}

impl Admission {
    pub fn new(budget: Budget) -> Admission {
        Admission {
            budget: Budget {
                total: budget.total.max(1),
                per_source: budget.per_source.max(1),
            },
            next: 0,
            open: BTreeMap::new(),
            by_source: HashMap::new(),
        }
    }

    /// Admits a connection from `source`; if that breaks a cap, the oldest connection from
    /// the same source (per-source cap) or from anywhere (total cap) is to be closed.
    pub fn admit(&mut self, source: Source) -> Admitted {
        let id = ConnId(self.next);
        self.next += 1;
        let from_source = self.by_source.get(&source).map_or(0, BTreeSet::len);
        let evicted = if from_source >= self.budget.per_source {
            self.by_source
                .get(&source)
                .and_then(|ids| ids.first().copied())
        } else if self.open.len() >= self.budget.total {
            self.open.keys().next().copied()
        } else {
            None
        };
        if let Some(old) = evicted {
            self.release(old);
        }
        self.open.insert(id, source);
        self.by_source.entry(source).or_default().insert(id);
        Admitted { id, evicted }
    }

    /// The connection authenticated or closed: it no longer counts. Releasing twice is fine.
    pub fn release(&mut self, id: ConnId) {
        let Some(source) = self.open.remove(&id) else {
            return;
        };
        if let Some(ids) = self.by_source.get_mut(&source) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_source.remove(&source);
            }
        }
    }

    /// Unauthenticated connections open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Sources with at least one unauthenticated connection.
    pub fn sources(&self) -> usize {
        self.by_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    #[test]
    fn a_source_at_its_cap_loses_its_oldest_connection_not_others() {
        let mut a = Admission::new(Budget {
            total: 100,
            per_source: 3,
        });
        let first = a.admit(ip("192.0.2.1"));
        let other = a.admit(ip("192.0.2.2"));
        a.admit(ip("192.0.2.1"));
        a.admit(ip("192.0.2.1"));
        assert_eq!(a.len(), 4);
        let fourth = a.admit(ip("192.0.2.1"));
        assert_eq!(fourth.evicted, Some(first.id));
        assert_eq!(a.len(), 4);
        // The other source's connection, older still, is untouched.
        let fifth = a.admit(ip("192.0.2.1"));
        assert_ne!(fifth.evicted, Some(other.id));
        assert_eq!(a.sources(), 2);
    }

    #[test]
    fn at_the_total_cap_the_oldest_anywhere_goes_and_released_ones_free_room() {
        let mut a = Admission::new(Budget {
            total: 3,
            per_source: 3,
        });
        let ids: Vec<ConnId> = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
            .iter()
            .map(|s| a.admit(ip(s)).id)
            .collect();
        let next = a.admit(ip("192.0.2.4"));
        assert_eq!(next.evicted, Some(ids[0]));
        a.release(ids[1]);
        a.release(ids[1]);
        assert_eq!(a.admit(ip("192.0.2.5")).evicted, None);
        assert_eq!(a.len(), 3);
        assert_eq!(a.admit(ip("192.0.2.6")).evicted, Some(ids[2]));
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64_and_a_mapped_ipv4_is_the_ipv4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        // An IPv6 /64 never collides with an IPv4 address.
        assert_ne!(ip("::"), ip("0.0.0.0"));
    }

    #[test]
    fn a_flood_from_one_source_keeps_the_budget_and_never_evicts_another_source() {
        let mut a = Admission::new(Budget {
            total: 50,
            per_source: 8,
        });
        let agent = a.admit(ip("10.0.0.1"));
        for _ in 0..10_000 {
            let admitted = a.admit(ip("203.0.113.7"));
            assert_ne!(admitted.evicted, Some(agent.id));
        }
        assert_eq!(a.len(), 9);
    }
}
