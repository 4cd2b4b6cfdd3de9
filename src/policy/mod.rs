//! Policies: the tree, inheritance resolution, validation of every change, the fingerprint
//! of the configuration an agent is sent (and protocol 1's form of it, frozen), and who that
//! configuration lets in to its agent's port, and the rules a computer runs in the order its
//! agent evaluates them.
//!
//! Everything here is pure: callers load the tree from the store, ask this module whether a
//! change is allowed and what it yields, and write the result in the same transaction.

mod config_v1;
mod edit;
mod error;
pub mod evaluated;
mod expected;
mod fingerprint;
pub mod manager_path;
pub mod port_rule;
mod resolve;
mod rules;
mod tree;

pub use config_v1::{AgentConfigV1, firewall_withheld_reason, reads_v1};
pub use edit::{
    ComputerChange, PolicyChange, SettingsPatch, apply_computer_change, check_policy_delete,
    create_computer, create_policy, update_policy,
};
pub use error::PolicyError;
pub use expected::{base_config, expected_config, expected_with_settings, runs};
pub use fingerprint::{AgentConfig, Fingerprint};
pub use resolve::{Effective, EffectiveSettings, Source, resolve_computer, resolve_policy};
pub use rules::{
    MAX_LIST_LEN, MAX_RULES_PER_POLICY, add_rule, changed_fields, effective_rules, remove_rule,
    replace_rule,
};
pub use tree::PolicyTree;
