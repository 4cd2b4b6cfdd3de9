//! Alerts, all of them: the catalogue (kinds, severities, words), the lifecycle rules (sans-io)
//! and the store transactions that raise, update, clear, dismiss and end them. Liveness, the
//! dialer and the API decide *when*; this module alone decides *what* is written.

pub mod catalogue;
pub mod drivers;
pub mod incident;
pub(crate) mod lifecycle;
pub mod record;

pub use catalogue::{AlertKind, Severity};
pub use lifecycle::{AlertError, clear, dismiss, raise};
