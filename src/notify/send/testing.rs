//! Test helpers: a throwaway CA and the certificates of the servers the tests run (a syslog
//! collector, a webhook receiver, a mail server), as PEM for Python and as rustls configs.

use crate::clock::{RealClock, within};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a test waits for anything: far more than a loopback exchange takes, so a slow CI
/// machine passes, yet a hang fails the test rather than CI.
pub(super) const PATIENCE: Duration = Duration::from_secs(20);

/// Drives a test's client and servers on this thread, failing the test if they are not all
/// done within twice [`PATIENCE`] (a server waiting for a client that never came, say).
pub(super) fn run<T>(test: impl Future<Output = T>) -> T {
    let clock = RealClock::new();
    smol::block_on(within(&clock, 2 * PATIENCE, test)).expect("the test hung")
}

pub(super) struct TestCa {
    pub pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate signed by a [`TestCa`] for `localhost`, 127.0.0.1 and ::1.
pub(super) struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        // Each CA its own name: a certificate from another CA of the same name would be
        // refused for its signature rather than as unknown.
        static MADE: AtomicU32 = AtomicU32::new(0);
        let number = MADE.fetch_add(1, Ordering::Relaxed);
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("notify test CA {number}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa {
            pem: issuer.pem(),
            issuer,
        }
    }

    pub fn server_cert(&self) -> ServerCert {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl ServerCert {
    /// A rustls server presenting this certificate, with the defaults (TLS 1.3 session tickets
    /// included, which a client must read or lose its last bytes to a reset).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let chain = vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}
