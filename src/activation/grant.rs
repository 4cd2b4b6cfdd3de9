//! The activation transaction: the token holds, the host name is free (or names a computer the
//! administrator added and no agent holds), the computer is created or taken, its certificate
//! issued, and the computer, its agent state, the spent token and a history line written in the
//! caller's transaction. The caller commits, then tells the rest of the manager.

use super::token::{self, ActivationError};
use crate::clock::WallMs;
use crate::model::{AgentState, Computer, ComputerId, HistoryEntry, PolicyId, Status};
use crate::pki::{ManagerPki, PkiError};
use crate::policy::{self, AgentConfig, ComputerChange, PolicyError, PolicyTree};
use crate::proto::{Activated, ActivationRequest};
use crate::store::{Reads, StoreError, WriteTxn};
use std::fmt;

/// What a granted activation wrote and gives the agent.
#[derive(Debug)]
pub struct Granted {
    pub computer: Computer,
    pub serial: [u8; 16],
    pub certificate: Vec<u8>,
    pub config: AgentConfig,
}

impl Granted {
    /// The answer the agent gets.
    pub fn into_message(self) -> Activated {
        Activated {
            computer: self.computer.id.0,
            certificate: self.certificate,
            fingerprint: self.config.fingerprint(),
            config: self.config,
        }
    }
}

/// Why an activation was refused.
#[derive(Debug)]
pub enum Refused {
    /// The token does not work: a guess, which counts against its source's backoff.
    Token(ActivationError),
    /// The host name belongs to a computer whose agent is activated.
    Taken { hostname: String },
    /// The request cannot make a computer (an invalid host name, say).
    Invalid(PolicyError),
    /// The agent's public key cannot be certified.
    Certificate(PkiError),
    /// The manager's store failed; the agent is told only to try later.
    Store(StoreError),
}

impl Refused {
    /// Whether a stranger guessing tokens gets this refusal.
    pub fn is_guess(&self) -> bool {
        matches!(self, Refused::Token(_))
    }

    /// The words the agent gets: everything but the manager's own failures, which stay in the
    /// manager's log.
    pub fn reason_for_agent(&self) -> String {
        match self {
            Refused::Store(_) => {
                "the manager cannot record the activation now; try again later".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Token(e) => e.fmt(f),
            Refused::Taken { hostname } => write!(
                f,
                "computer '{hostname}' is already activated: delete it on the manager first, or \
                 activate with another --hostname"
            ),
            Refused::Invalid(e) => e.fmt(f),
            Refused::Certificate(e) => write!(f, "cannot certify the agent's key: {e}"),
            Refused::Store(e) => write!(f, "the store failed: {}", e.chain()),
        }
    }
}

impl std::error::Error for Refused {}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Store(e)
    }
}

/// Checks the token in `request` and activates its computer, in `txn`. The error never holds
/// the token's secret.
pub fn grant(
    txn: &mut WriteTxn,
    pki: &ManagerPki,
    endpoints: &[String],
    request: &ActivationRequest,
    ip: &str,
    now: WallMs,
) -> Result<Granted, Refused> {
    let hash = token::hash_secret(&request.token);
    let token = txn
        .token(&hash)?
        .ok_or(Refused::Token(ActivationError::UnknownToken))?;
    let token_after = token::redeem(&token, now).map_err(Refused::Token)?;
    let tree = PolicyTree::new(txn.policies()?);
    let computer = match txn.computer_by_hostname(&request.hostname)? {
        // A token must not let its holder take over a computer that already has an agent: the
        // administrator deletes the computer first (which revokes the old certificate).
        Some(computer) if txn.agent_state(computer.id)?.is_some() => {
            return Err(Refused::Taken {
                hostname: computer.hostname,
            });
        }
        Some(computer) => activated_computer(computer),
        None => {
            let id = txn.next_computer_id()?;
            enrolled_computer(&tree, id, &request.hostname, token.policy, now)
                .map_err(Refused::Invalid)?
        }
    };
    let issued = pki
        .issue_agent_cert(computer.id.0, &request.public_key, now.to_system_time())
        .map_err(Refused::Certificate)?;
    let state = agent_state(
        computer.id,
        issued.serial,
        now,
        (&request.agent_version, request.protocol),
        Some(ip.to_string()),
    );
    let config = policy::expected_config(&tree, &computer, endpoints);
    txn.put_computer(&computer)?;
    txn.put_agent_state(&state)?;
    txn.put_token(&token_after)?;
    txn.add_history(&HistoryEntry {
        computer: computer.id,
        at: now,
        what: "activated".into(),
        detail: format!(
            "agent {} activated from {ip} with token {}",
            request.agent_version,
            token::token_id(&hash)
        ),
    })?;
    Ok(Granted {
        computer,
        serial: issued.serial,
        certificate: issued.der.to_vec(),
        config,
    })
}

/// The computer as activation leaves it: online (its agent just spoke).
pub fn activated_computer(computer: Computer) -> Computer {
    Computer {
        status: Status::Online,
        ..computer
    }
}

/// The agent state activation writes: the certificate the computer is known by from now on, and
/// the agent's version and protocol (which form of the configuration it was just sent).
pub fn agent_state(
    computer: ComputerId,
    serial: [u8; 16],
    now: WallMs,
    (agent_version, protocol): (&str, u16),
    address: Option<String>,
) -> AgentState {
    AgentState {
        computer,
        cert_serial: serial,
        activated: now,
        agent_version: agent_version.to_string(),
        address,
        protocol,
        ..AgentState::default()
    }
}

/// A computer that activation creates: named by the agent, in the token's policy, nothing of its
/// own, online. What the bench's bulk enrolment writes for each simulated agent too.
pub fn enrolled_computer(
    tree: &PolicyTree,
    id: ComputerId,
    hostname: &str,
    policy: PolicyId,
    now: WallMs,
) -> Result<Computer, PolicyError> {
    let change = ComputerChange {
        hostname: Some(hostname.to_string()),
        policy: Some(policy.0.to_string()),
        ..ComputerChange::default()
    };
    policy::create_computer(tree, |_| false, id, now, &change).map(activated_computer)
}
