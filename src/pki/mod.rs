//! The manager's private CA, its own certificate, the rustls configurations built on them, and
//! the hashing and randomness behind CA pins, API keys and tokens.
//!
//! - `ca`: the PEM files under `DIR/pki` (created once, then only loaded: agents pin the CA).
//! - `tls`: rustls server and client configurations, TLS 1.2 and 1.3 with the ring provider.
//! - `secret`: SHA-256, hex, random secrets and constant-time comparison.
//! - `error`: [`PkiError`].

mod ca;
mod error;
mod secret;
mod tls;

pub use ca::ManagerPki;
pub use error::PkiError;
pub use secret::{hashes_equal, hex, random_secret, sha256};
pub use tls::{client_config_trusting, client_config_trusting_der};
