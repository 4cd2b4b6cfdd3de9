//! The manager's private CA, its own certificate, the agents' certificates, the rustls
//! configurations built on them, and the hashing and randomness behind CA pins, API keys and
//! tokens.
//!
//! - `ca`: the PEM files under `DIR/pki` (created once, then only loaded: agents pin the CA).
//! - `agent`: the agent's key, the certificates the CA issues to agents, CA pins, and the
//!   agent's mutual-TLS client configuration.
//! - `verify`: the agent port's check of agent certificates against the computers that still
//!   exist, and the activating agent's check of the manager against its pin.
//! - `listen`: the manager-to-agent direction: the agent's listener, which accepts only the
//!   manager's certificate, and the manager's dial configuration.
//! - `der`: the minimal DER reading behind those (certificate serials, agent public keys).
//! - `tls`: rustls server and client configurations, TLS 1.2 and 1.3 with the ring provider.
//! - `tickets`: the agent port's session-ticket keys, kept in the data dir across restarts.
//! - `error`: [`PkiError`].

mod agent;
mod ca;
mod der;
mod error;
mod listen;
#[cfg(test)]
pub(crate) mod testing;
mod tickets;
mod tls;
mod verify;

pub use crate::secret::{hashes_equal, hex, sha256};
pub use agent::{AgentKey, IssuedCert, agent_client_config, parse_pin};
pub use ca::ManagerPki;
pub use der::cert_serial;
pub use error::PkiError;
pub use listen::{NotTheManager, agent_listener_config, agent_server_config, agent_server_name};

/// A new random secret (API key, token) as lowercase hex; see [`crate::secret::random_secret`].
pub fn random_secret() -> Result<String, PkiError> {
    crate::secret::random_secret().map_err(|_| PkiError::Random)
}
pub use tickets::{TICKET_KEY_FILE, persistent_ticketer};
pub use tls::{client_config_trusting, client_config_trusting_der};
pub use verify::{CertRegistry, PinMismatch, PinnedCa, activation_client_config};
