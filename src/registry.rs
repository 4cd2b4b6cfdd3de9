//! Which agent certificate belongs to which computer: consulted at every handshake on the agent
//! port, so a deleted computer's certificate is refused before a byte of protocol is read.

use crate::model::{AgentState, ComputerId};
use crate::pki::CertRegistry;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct Registry {
    serials: RwLock<HashMap<[u8; 16], ComputerId>>,
}

impl Registry {
    /// Built at start from the `agents` table.
    pub fn load(states: &[AgentState]) -> Registry {
        let serials = states.iter().map(|s| (s.cert_serial, s.computer)).collect();
        Registry {
            serials: RwLock::new(serials),
        }
    }

    /// A new certificate for `computer`; any older one of the same computer stops working.
    pub fn insert(&self, serial: [u8; 16], computer: ComputerId) {
        let mut map = self.serials.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| *c != computer);
        map.insert(serial, computer);
    }

    /// The computer was deleted: its certificate is refused from now on.
    pub fn remove_computer(&self, computer: ComputerId) {
        let mut map = self.serials.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| *c != computer);
    }

    pub fn computer(&self, serial: &[u8]) -> Option<ComputerId> {
        let key: [u8; 16] = serial.try_into().ok()?;
        let map = self.serials.read().unwrap_or_else(|e| e.into_inner());
        map.get(&key).copied()
    }
}

impl CertRegistry for Registry {
    fn is_current(&self, serial: &[u8]) -> bool {
        self.computer(serial).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_certificate_replaces_the_old_and_delete_revokes() {
        let registry = Registry::default();
        registry.insert([1; 16], ComputerId(7));
        assert!(registry.is_current(&[1; 16]));
        registry.insert([2; 16], ComputerId(7));
        assert!(
            !registry.is_current(&[1; 16]),
            "reactivation revokes the old certificate"
        );
        assert_eq!(registry.computer(&[2; 16]), Some(ComputerId(7)));
        registry.remove_computer(ComputerId(7));
        assert!(!registry.is_current(&[2; 16]));
        assert!(
            !registry.is_current(&[2; 3]),
            "a serial of another length is never current"
        );
    }
}
