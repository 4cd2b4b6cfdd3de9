//! Test helpers: a fresh manager PKI, in-memory TLS handshakes and a set-backed registry.

use super::{CertRegistry, ManagerPki};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub(crate) fn manager() -> (tempfile::TempDir, ManagerPki) {
    let tmp = tempfile::tempdir().unwrap();
    let (pki, _) = ManagerPki::load_or_create(
        &tmp.path().join("pki"),
        "mgr.example",
        crate::clock::real_wall().to_system_time(),
    )
    .unwrap();
    (tmp, pki)
}

/// Moves every pending TLS record from `from` to `to`; returns whether there were any.
pub(super) fn transfer(from: &mut Connection, to: &mut Connection) -> Result<bool, rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(!buf.is_empty())
}

/// A full handshake over in-memory buffers, then whatever either side still has to send (TLS
/// 1.3 session tickets), so a later handshake with the same client config could resume.
pub(super) fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<(Connection, Connection), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut client = Connection::from(ClientConnection::new(client, name)?);
    let mut server = Connection::from(ServerConnection::new(server)?);
    while client.is_handshaking() || server.is_handshaking() {
        let sent = transfer(&mut client, &mut server)? | transfer(&mut server, &mut client)?;
        assert!(sent, "handshake stalled");
    }
    while transfer(&mut server, &mut client)? | transfer(&mut client, &mut server)? {}
    Ok((client, server))
}

/// A registry backed by a set of serials, changed by the test between handshakes.
#[derive(Debug, Default)]
pub(super) struct SetRegistry(Mutex<HashSet<Vec<u8>>>);

impl SetRegistry {
    pub(super) fn with(serials: &[&[u8]]) -> Arc<SetRegistry> {
        let set = serials.iter().map(|s| s.to_vec()).collect();
        Arc::new(SetRegistry(Mutex::new(set)))
    }

    pub(super) fn remove(&self, serial: &[u8]) {
        assert!(self.0.lock().unwrap().remove(serial));
    }
}

impl CertRegistry for SetRegistry {
    fn is_current(&self, serial: &[u8]) -> bool {
        self.0.lock().unwrap().contains(serial)
    }
}
