//! Activation, all of it: the token rules (`token.rs`, sans-io) and the grant (`grant.rs`): the
//! one transaction that checks a token, finds or creates the computer, issues its certificate
//! and writes the records. The agent port runs it for a real agent; the bench's bulk enrolment
//! builds its records with the same functions.

mod grant;
mod token;

pub use grant::{Granted, Refused, activated_computer, agent_state, enrolled_computer, grant};
pub use token::{
    AGENT_DATA_DIR, ActivationError, DEFAULT_TTL, DEFAULT_USES, ID_LEN, MAX_USES, TTL_RANGE,
    agent_command, hash_secret, is_expired, new_token, parse_ttl, parse_uses, redeem, token_id,
};
