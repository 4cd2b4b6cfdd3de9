//! One simulated agent's TLS session ticket: what a real agent's in-memory session cache holds
//! for its one manager. Each simulated agent has its own, so no agent can resume another's
//! session (which the manager would take for the other computer).

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct AgentTicket {
    ticket: Mutex<Option<Tls13ClientSessionValue>>,
}

impl ClientSessionStore for AgentTicket {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    // The manager's agent port resumes TLS 1.3 sessions only.
    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    /// Keeps the newest ticket only: an agent needs one for its next heartbeat.
    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        *self.ticket.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.ticket.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
