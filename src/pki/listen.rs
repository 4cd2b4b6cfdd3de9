//! The manager-to-agent direction: the agent's listener accepts only its manager's
//! certificate, and the manager dials an agent by the name in that agent's certificate, so it
//! knows it reached the computer it meant to.

use super::agent::{AGENT_ALPN, AGENT_NAME_PREFIX};
use super::{AgentKey, ManagerPki, PkiError, tls};
use rustls::client::Resumption;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    NoServerSessionStorage, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    ServerConfig, SignatureScheme,
};
use std::fmt;
use std::sync::Arc;

/// Every manager certificate names `localhost` (see `ca::manager_names`); an agent certificate
/// names only `picket-agent-ID`. Both chain to the same CA, so this name is what tells the
/// manager from another agent at an agent's port.
const MANAGER_ONLY_NAME: &str = "localhost";

/// The name the manager dials computer `id` by: its agent certificate's DNS name.
pub fn agent_server_name(id: u64) -> Result<ServerName<'static>, PkiError> {
    let name = format!("{AGENT_NAME_PREFIX}{id}");
    ServerName::try_from(name.clone()).map_err(|_| PkiError::Hostname { hostname: name })
}

impl ManagerPki {
    /// Client config for the manager's dials to agents: trusts only this CA, presents the
    /// manager certificate, ALPN "picket/1". Resumption is off so every dial checks the agent's
    /// certificate afresh.
    pub fn dial_client_config(&self) -> Result<Arc<ClientConfig>, PkiError> {
        let what = "the manager's TLS configuration for dialing agents";
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_cert_der().clone())
            .map_err(|source| PkiError::BadCertificate { path: None, source })?;
        let mut config = tls::client_builder(what)?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.served_chain(), self.manager_key_der())
            .map_err(|source| PkiError::Tls { what, source })?;
        config.alpn_protocols = vec![AGENT_ALPN.to_vec()];
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }
}

/// Server config for the agent's listener: presents the agent certificate and requires a client
/// certificate issued by `ca` that is a manager certificate, not another agent's. No resumption:
/// every connection proves the certificate again.
pub fn agent_server_config(
    ca: &CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: &AgentKey,
) -> Result<Arc<ServerConfig>, PkiError> {
    let certified = CertifiedKey::from_der(vec![cert], key.private_key_der(), &tls::provider())
        .map_err(|source| PkiError::Tls {
            what: LISTENER_CONFIG,
            source,
        })?;
    agent_listener_config(ca, Arc::new(SingleCertAndKey::from(certified)))
}

const LISTENER_CONFIG: &str = "the agent listener's TLS configuration";

/// [`agent_server_config`] with the agent certificate chosen per connection by `certs`: for the
/// benchmark, whose simulated agents share one listener and are told apart by the name dialed.
pub fn agent_listener_config(
    ca: &CertificateDer<'static>,
    certs: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, PkiError> {
    let what = LISTENER_CONFIG;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|source| PkiError::BadCertificate { path: None, source })?;
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
        .build()
        // Only an empty root store or a bad CRL fail here; there is one root and no CRL.
        .map_err(|e| PkiError::Tls {
            what,
            source: rustls::Error::General(e.to_string()),
        })?;
    let verifier = Arc::new(ManagerOnlyVerifier { webpki });
    let config = tls::server_config_resolving(what, certs, &[AGENT_ALPN], verifier)?;
    let mut config = Arc::unwrap_or_clone(config);
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A certificate from the right CA that is not the manager's: another agent's, most likely.
#[derive(Debug)]
pub struct NotTheManager;

impl fmt::Display for NotTheManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the client certificate is not the manager's (another agent's?)")
    }
}

impl std::error::Error for NotTheManager {}

#[derive(Debug)]
struct ManagerOnlyVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ManagerOnlyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        let leaf = ParsedCertificate::try_from(end_entity)?;
        let name = ServerName::try_from(MANAGER_ONLY_NAME)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        match rustls::client::verify_server_name(&leaf, &name) {
            Ok(()) => Ok(verified),
            Err(_) => Err(rustls::Error::Other(OtherError(Arc::new(NotTheManager)))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::agent_client_config;
    use crate::pki::testing::{handshake, manager};

    fn agent(pki: &ManagerPki, id: u64) -> (AgentKey, CertificateDer<'static>) {
        let key = AgentKey::generate().unwrap();
        let issued = pki
            .issue_agent_cert(
                id,
                &key.public_key_der(),
                crate::clock::real_wall().to_system_time(),
            )
            .unwrap();
        (key, issued.der)
    }

    #[test]
    fn the_manager_reaches_the_agent_it_names_and_nobody_else_gets_in() {
        let (_tmp, pki) = manager();
        let ca = pki.ca_cert_der().clone();
        let (key, cert) = agent(&pki, 7);
        let listener = agent_server_config(&ca, cert, &key).unwrap();
        let dial = pki.dial_client_config().unwrap();

        handshake(listener.clone(), dial.clone(), "picket-agent-7").unwrap();
        // Dialing computer 8 but reaching computer 7's agent fails on the name.
        assert!(handshake(listener.clone(), dial, "picket-agent-8").is_err());

        // Another agent of the same CA is refused as not the manager.
        let (other_key, other_cert) = agent(&pki, 9);
        let impostor = agent_client_config(&ca, other_cert, &other_key).unwrap();
        let err = handshake(listener.clone(), impostor, "picket-agent-7").unwrap_err();
        assert!(err.to_string().contains("not the manager"), "{err}");

        // A manager of another installation is refused by the CA check.
        let (_tmp2, stranger) = manager();
        let foreign = stranger.dial_client_config().unwrap();
        assert!(handshake(listener, foreign, "picket-agent-7").is_err());
    }

    #[test]
    fn agent_names_are_valid_server_names() {
        assert_eq!(
            format!("{:?}", agent_server_name(42).unwrap()),
            format!("{:?}", ServerName::try_from("picket-agent-42").unwrap())
        );
    }
}
