//! The host firewall's decisions, sans-io: the order in which a computer's rules are evaluated
//! (the reference's priorities and actions, the hidden agent-port rule), what that order does to
//! one packet, and its translation into the nftables ruleset the agent applies.
//!
//! - [`order`]: the rules in evaluation order, and [`order::judge`] of one packet (the manager's
//!   safety check asks it whether an agent keeps a path to its manager).
//! - [`nft`]: the rules as one `nft -j -f` transaction for the table `inet picket`
//!   (`schema/firewall.md`).
//! - [`nflog`]: the netlink bytes of the packets those rules log, and the request that binds the
//!   agent to their group.
//! - [`log_limit`]: how many logged packets per rule become events, and the count of the rest.

pub mod log_limit;
pub mod nflog;
pub mod nft;
pub mod order;
pub mod shape;

#[cfg(test)]
mod doc_tests;
#[cfg(test)]
pub(crate) mod tests;
