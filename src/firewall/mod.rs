//! The host firewall's decisions, sans-io: the order in which a computer's rules are evaluated
//! (the reference's priorities and actions, the hidden agent-port rule), what that order does to
//! one packet, and its translation into the nftables ruleset the agent applies.
//!
//! - [`order`]: the rules in evaluation order, and [`order::judge`] of one packet (the manager's
//!   safety check asks it whether an agent keeps a path to its manager).
//! - [`nft`]: the rules as one `nft -j -f` transaction for the table `inet picket`
//!   (`schema/firewall.md`).

pub mod nft;
pub mod order;
pub mod shape;

#[cfg(test)]
mod doc_tests;
#[cfg(test)]
pub(crate) mod tests;
