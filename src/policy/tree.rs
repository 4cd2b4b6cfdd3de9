//! The policy tree as loaded from the store: lookups by id or name, children, parent chains.

use crate::model::{Policy, PolicyId};
use std::collections::BTreeMap;

/// All policies, indexed by id. Built per request from one store transaction.
#[derive(Debug, Clone, Default)]
pub struct PolicyTree {
    policies: BTreeMap<PolicyId, Policy>,
}

impl PolicyTree {
    pub fn new(policies: impl IntoIterator<Item = Policy>) -> Self {
        PolicyTree {
            policies: policies.into_iter().map(|p| (p.id, p)).collect(),
        }
    }

    pub fn get(&self, id: PolicyId) -> Option<&Policy> {
        self.policies.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.values()
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policy without a parent.
    pub fn base(&self) -> Option<&Policy> {
        self.iter().find(|p| p.parent.is_none())
    }

    /// Finds a policy by exact name, or by id when `reference` is all digits. Names are never all
    /// digits (see `edit::check_name`), so the two cannot be confused.
    pub fn find(&self, reference: &str) -> Option<&Policy> {
        if !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_digit()) {
            return reference.parse().ok().and_then(|id| self.get(PolicyId(id)));
        }
        self.iter().find(|p| p.name == reference)
    }

    /// A policy whose name equals `name` ignoring case, other than `except`.
    pub fn name_clash(&self, name: &str, except: Option<PolicyId>) -> Option<&Policy> {
        self.iter()
            .find(|p| Some(p.id) != except && p.name.eq_ignore_ascii_case(name))
    }

    pub fn children(&self, id: PolicyId) -> impl Iterator<Item = &Policy> {
        self.iter().filter(move |p| p.parent == Some(id))
    }

    /// `id` and then each ancestor up to the root. Stops after visiting every policy once, so a
    /// cycle in a damaged store cannot loop forever.
    pub fn chain(&self, id: PolicyId) -> Vec<&Policy> {
        let mut chain = Vec::new();
        let mut next = self.get(id);
        while let Some(policy) = next {
            if chain.len() == self.policies.len() {
                break;
            }
            chain.push(policy);
            next = policy.parent.and_then(|p| self.get(p));
        }
        chain
    }

    /// Replaces or inserts a policy (used to check a change before it is stored).
    pub fn upsert(&mut self, policy: Policy) {
        self.policies.insert(policy.id, policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Settings;

    fn policy(id: u64, name: &str, parent: Option<u64>) -> Policy {
        Policy {
            rules: Vec::new(),
            id: PolicyId(id),
            name: name.to_string(),
            parent: parent.map(PolicyId),
            settings: Settings::default(),
        }
    }

    #[test]
    fn finds_by_name_or_id() {
        let tree = PolicyTree::new([
            policy(1, "Base Policy", None),
            policy(7, "Servers", Some(1)),
        ]);
        assert_eq!(tree.find("Servers").map(|p| p.id), Some(PolicyId(7)));
        assert_eq!(tree.find("7").map(|p| p.id), Some(PolicyId(7)));
        assert!(tree.find("servers").is_none());
        assert!(tree.find("8").is_none());
        assert!(tree.name_clash("SERVERS", None).is_some());
        assert!(tree.name_clash("SERVERS", Some(PolicyId(7))).is_none());
    }

    #[test]
    fn chain_walks_to_the_root_and_survives_a_cycle() {
        let tree = PolicyTree::new([
            policy(1, "Base Policy", None),
            policy(2, "Servers", Some(1)),
            policy(3, "Laptops", Some(2)),
        ]);
        let ids: Vec<u64> = tree.chain(PolicyId(3)).iter().map(|p| p.id.0).collect();
        assert_eq!(ids, [3, 2, 1]);

        let looped = PolicyTree::new([policy(1, "A", Some(2)), policy(2, "B", Some(1))]);
        assert_eq!(looped.chain(PolicyId(1)).len(), 2);
    }
}
