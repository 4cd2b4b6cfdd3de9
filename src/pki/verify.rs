//! The two certificate checks of the agent channel: the manager's port 4120, which takes agent
//! certificates only while their computer exists, and the activating agent, which trusts the
//! manager only if it presents the CA the agent was told to pin.

use super::agent::AGENT_ALPN;
use super::{ManagerPki, PkiError, cert_serial, hex, sha256, tls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// Which agent certificate serials are current. The manager backs it with its computers table
/// (tests with a set); deleting a computer removes its serial, and its next handshake fails.
pub trait CertRegistry: Send + Sync + fmt::Debug {
    /// Whether `serial` (as [`cert_serial`] reads it) belongs to a computer that still exists.
    fn is_current(&self, serial: &[u8]) -> bool;
}

impl ManagerPki {
    /// Server config for the agent port 4120. It presents the manager certificate and the CA
    /// (so a new agent can check its pin), asks for a client certificate but lets a connection
    /// without one through (activation), and accepts a certificate only if it chains to this CA
    /// and `registry` says its serial is current; otherwise the handshake fails, a deleted
    /// computer's with `CertificateError::Revoked`. TLS 1.2 and 1.3, ring, ALPN "picket/1".
    ///
    /// TLS 1.3 resumption is on, through tickets only (the manager keeps no session cache): an
    /// agent's next heartbeat skips the certificate signatures and checks, the bulk of a full
    /// handshake's CPU. A resumed session skips this verifier, so the agent port checks every
    /// connection's certificate serial against the registry once the handshake is done
    /// (`manager::agent_port::identify`): a deleted computer is refused there, whatever ticket
    /// it holds.
    pub fn agent_port_config(
        &self,
        registry: Arc<dyn CertRegistry>,
    ) -> Result<Arc<ServerConfig>, PkiError> {
        let what = "the agent port's TLS configuration";
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_cert_der().clone())
            .map_err(|source| PkiError::BadCertificate { path: None, source })?;
        let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
            .allow_unauthenticated()
            .build()
            // Only an empty root store or a bad CRL fail here; there is one root and no CRL.
            .map_err(|e| PkiError::Tls {
                what,
                source: rustls::Error::General(e.to_string()),
            })?;
        let verifier = Arc::new(CurrentAgentVerifier { webpki, registry });
        let config = tls::server_config(
            what,
            self.served_chain(),
            self.manager_key_der(),
            &[AGENT_ALPN],
            verifier,
        )?;
        let mut config = Arc::unwrap_or_clone(config);
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|source| PkiError::Tls { what, source })?;
        // One ticket per handshake: an agent only ever needs the next one.
        config.send_tls13_tickets = 1;
        Ok(Arc::new(config))
    }
}

/// Checks a client certificate with webpki against the CA, then with the registry.
#[derive(Debug)]
struct CurrentAgentVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    registry: Arc<dyn CertRegistry>,
}

impl ClientCertVerifier for CurrentAgentVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    /// The registry is asked only about certificates this CA issued, so a refusal of a stranger
    /// says "unknown issuer" and a refusal of a deleted computer says "revoked".
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        let serial = cert_serial(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if self.registry.is_current(&serial) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
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

/// The CA certificate an activation handshake matched to the pin, to be stored as `A/ca.crt`.
/// Empty until a handshake with the configuration from [`activation_client_config`] succeeds.
#[derive(Clone, Debug, Default)]
pub struct PinnedCa(Arc<Mutex<Option<CertificateDer<'static>>>>);

impl PinnedCa {
    /// The matched CA certificate (DER), if a handshake has verified the server.
    pub fn cert(&self) -> Option<CertificateDer<'static>> {
        // A panic while holding the lock can only have left a whole value behind.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, cert: CertificateDer<'static>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(cert);
    }
}

/// The manager's chain holds no certificate with the pinned SHA-256: the agent was given the pin
/// of another manager, or is talking to something that is not its manager. The handshake fails
/// with this as `rustls::Error::Other`, whose text tells the administrator.
#[derive(Debug)]
pub struct PinMismatch {
    pub pin: [u8; 32],
    /// SHA-256 of each CA certificate the server presented (its chain after the leaf).
    pub presented: Vec<[u8; 32]>,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the manager's CA does not match the pin --ca-sha256 {}: ",
            hex(&self.pin)
        )?;
        if self.presented.is_empty() {
            return f.write_str("the manager presented no CA certificate");
        }
        f.write_str("the manager presented a CA with SHA-256 ")?;
        for (i, hash) in self.presented.iter().enumerate() {
            let sep = if i == 0 { "" } else { " or " };
            write!(f, "{sep}{}", hex(hash))?;
        }
        f.write_str(" (check the pin the manager prints)")
    }
}

impl std::error::Error for PinMismatch {}

/// Client config for activation: no client certificate, and the server is trusted only if its
/// chain holds a certificate whose SHA-256 is `ca_pin` and its leaf verifies against that
/// certificate as the only root, for the name the agent dialled. ALPN "picket/1", TLS 1.2 and
/// 1.3 with ring. A mismatch fails the handshake with [`PinMismatch`]. The returned
/// [`PinnedCa`] holds the matched CA after a successful handshake.
///
/// Resumption is off so that every handshake runs the check and fills in the `PinnedCa`.
pub fn activation_client_config(
    ca_pin: [u8; 32],
) -> Result<(Arc<ClientConfig>, PinnedCa), PkiError> {
    let pinned = PinnedCa::default();
    let verifier = Arc::new(PinVerifier {
        pin: ca_pin,
        provider: tls::provider(),
        matched: pinned.clone(),
    });
    let mut config = tls::client_builder("the activation TLS configuration")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![AGENT_ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    Ok((Arc::new(config), pinned))
}

/// Trusts the pinned CA found in the server's own chain, and nothing else.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    matched: PinnedCa,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| sha256(c) == self.pin) else {
            let presented = intermediates.iter().map(|c| sha256(c)).collect();
            let mismatch = PinMismatch {
                pin: self.pin,
                presented,
            };
            return Err(rustls::Error::Other(OtherError(Arc::new(mismatch))));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let others: Vec<_> = intermediates.iter().filter(|c| *c != ca).cloned().collect();
        let leaf = ParsedCertificate::try_from(end_entity)?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(&leaf, &roots, &others, now, algorithms)?;
        verify_server_name(&leaf, server_name)?;
        self.matched.set(ca.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::testing::{SetRegistry, handshake, manager};
    use crate::pki::{AgentKey, IssuedCert, agent_client_config, parse_pin};
    use rustls::server::NoClientAuth;
    use rustls::{HandshakeKind, ProtocolVersion};

    const HOST: &str = "mgr.example";

    fn pin_of(pki: &ManagerPki) -> [u8; 32] {
        parse_pin(&pki.ca_sha256_hex()).unwrap()
    }

    fn agent(pki: &ManagerPki, computer: u64) -> (AgentKey, IssuedCert) {
        let key = AgentKey::generate().unwrap();
        let issued = pki
            .issue_agent_cert(
                computer,
                &key.public_key_der(),
                crate::clock::real_wall().to_system_time(),
            )
            .unwrap();
        (key, issued)
    }

    fn pin_mismatch(err: &rustls::Error) -> &PinMismatch {
        match err {
            rustls::Error::Other(OtherError(e)) => e.downcast_ref().unwrap(),
            _ => panic!("not a pin mismatch: {err:?}"),
        }
    }

    #[test]
    fn activation_with_the_right_pin_trusts_the_manager_and_yields_the_ca() {
        let (_tmp, pki) = manager();
        let server = pki.agent_port_config(SetRegistry::with(&[])).unwrap();
        let (client, pinned) = activation_client_config(pin_of(&pki)).unwrap();
        assert_eq!(pinned.cert(), None);
        let (client, server) = handshake(server, client, HOST).unwrap();
        assert!(server.peer_certificates().is_none());
        assert_eq!(server.alpn_protocol(), Some(AGENT_ALPN));
        assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        assert_eq!(pinned.cert().as_ref(), Some(pki.ca_cert_der()));
    }

    #[test]
    fn activation_with_another_managers_pin_fails_saying_so() {
        let (_tmp, pki) = manager();
        let (_tmp2, other) = manager();
        let server = pki.agent_port_config(SetRegistry::with(&[])).unwrap();
        let (client, pinned) = activation_client_config(pin_of(&other)).unwrap();
        let err = handshake(server, client, HOST).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("does not match the pin"), "{text}");
        assert!(text.contains(&other.ca_sha256_hex()), "{text}");
        assert!(text.contains(&pki.ca_sha256_hex()), "{text}");
        let mismatch = pin_mismatch(&err);
        assert_eq!(mismatch.presented, vec![sha256(pki.ca_cert_der())]);
        assert_eq!(pinned.cert(), None);
    }

    #[test]
    fn activation_fails_against_a_server_that_does_not_present_the_ca() {
        let (_tmp, pki) = manager();
        let server = tls::server_config(
            "test",
            vec![pki.manager_cert_der().clone()],
            pki.manager_key_der(),
            &[AGENT_ALPN],
            Arc::new(NoClientAuth),
        )
        .unwrap();
        let (client, pinned) = activation_client_config(pin_of(&pki)).unwrap();
        let err = handshake(server, client, HOST).unwrap_err();
        assert!(pin_mismatch(&err).presented.is_empty());
        let text = err.to_string();
        assert!(text.contains("does not match the pin"), "{text}");
        assert!(text.contains("presented no CA certificate"), "{text}");
        assert_eq!(pinned.cert(), None);
    }

    #[test]
    fn activation_refuses_an_impostor_that_sends_the_real_ca_along() {
        // The CA certificate is public: another server can put it in its chain. Its own leaf
        // still has to be signed by that CA.
        let (_tmp, pki) = manager();
        let (_tmp2, impostor) = manager();
        let server = tls::server_config(
            "test",
            vec![
                impostor.manager_cert_der().clone(),
                pki.ca_cert_der().clone(),
            ],
            impostor.manager_key_der(),
            &[AGENT_ALPN],
            Arc::new(NoClientAuth),
        )
        .unwrap();
        let (client, pinned) = activation_client_config(pin_of(&pki)).unwrap();
        let err = handshake(server, client, HOST).unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        assert_eq!(pinned.cert(), None);
    }

    #[test]
    fn activation_checks_the_name_the_agent_dialled() {
        let (_tmp, pki) = manager();
        let server = pki.agent_port_config(SetRegistry::with(&[])).unwrap();
        let (client, pinned) = activation_client_config(pin_of(&pki)).unwrap();
        let err = handshake(server, client, "other.example").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{err:?}"
        );
        assert_eq!(pinned.cert(), None);
    }

    #[test]
    fn a_current_agent_certificate_is_accepted_and_its_serial_seen_by_the_server() {
        let (_tmp, pki) = manager();
        let (key, issued) = agent(&pki, 42);
        let server = pki
            .agent_port_config(SetRegistry::with(&[&issued.serial]))
            .unwrap();
        let client = agent_client_config(pki.ca_cert_der(), issued.der.clone(), &key).unwrap();
        let (client, server) = handshake(server, client, HOST).unwrap();
        assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        assert_eq!(client.alpn_protocol(), Some(AGENT_ALPN));
        let peer = server.peer_certificates().unwrap();
        assert_eq!(peer, std::slice::from_ref(&issued.der));
        assert_eq!(cert_serial(&peer[0]).as_deref(), Some(&issued.serial[..]));
    }

    #[test]
    fn an_agent_resumes_and_a_deleted_one_is_refused_at_its_next_full_handshake() {
        let (_tmp, pki) = manager();
        let (key, issued) = agent(&pki, 7);
        let (_, other) = agent(&pki, 8);
        let registry = SetRegistry::with(&[&issued.serial, &other.serial]);
        let server = pki.agent_port_config(registry.clone()).unwrap();
        // One client config across connections, as an agent keeps it: it resumes with the
        // ticket of its previous session, which carries its certificate for the agent port.
        let client = agent_client_config(pki.ca_cert_der(), issued.der.clone(), &key).unwrap();
        handshake(server.clone(), client.clone(), HOST).unwrap();
        let (again, at_server) = handshake(server.clone(), client.clone(), HOST).unwrap();
        assert_eq!(again.handshake_kind(), Some(HandshakeKind::Resumed));
        assert_eq!(
            at_server
                .peer_certificates()
                .and_then(|c| c.first())
                .cloned(),
            Some(issued.der.clone()),
            "a resumed session still names its certificate, for the registry check after it"
        );

        // Deleted: a resumed handshake checks no certificate (the agent port refuses it by
        // serial right after, see manager::agent_port::identify); a full one is revoked.
        registry.remove(&issued.serial);
        let fresh = agent_client_config(pki.ca_cert_der(), issued.der.clone(), &key).unwrap();
        let err = handshake(server, fresh, HOST).unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        );
    }

    #[test]
    fn an_agent_certificate_from_another_managers_ca_is_refused() {
        let (_tmp, pki) = manager();
        let (_tmp2, other) = manager();
        let (key, foreign) = agent(&other, 1);
        // Even a registry that lists its serial does not let it in: the CA check comes first.
        let server = pki
            .agent_port_config(SetRegistry::with(&[&foreign.serial]))
            .unwrap();
        let client = agent_client_config(pki.ca_cert_der(), foreign.der, &key).unwrap();
        let err = handshake(server, client, HOST).unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn a_tls12_only_agent_activates_and_connects() {
        let (_tmp, pki) = manager();
        let (key, issued) = agent(&pki, 5);
        let server = pki
            .agent_port_config(SetRegistry::with(&[&issued.serial]))
            .unwrap();
        let tls12 = || {
            ClientConfig::builder_with_provider(tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
        };

        let pinned = PinnedCa::default();
        let verifier = Arc::new(PinVerifier {
            pin: pin_of(&pki),
            provider: tls::provider(),
            matched: pinned.clone(),
        });
        let activation = tls12()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let (client, _) = handshake(server.clone(), Arc::new(activation), HOST).unwrap();
        assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_2));
        assert_eq!(pinned.cert().as_ref(), Some(pki.ca_cert_der()));

        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_cert_der().clone()).unwrap();
        let mtls = tls12()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![issued.der.clone()], key.private_key_der())
            .unwrap();
        let (client, server) = handshake(server, Arc::new(mtls), HOST).unwrap();
        assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_2));
        let peer = server.peer_certificates().unwrap();
        assert_eq!(cert_serial(&peer[0]).as_deref(), Some(&issued.serial[..]));
    }

    #[test]
    fn the_api_server_presents_the_ca_too() {
        let (_tmp, pki) = manager();
        let (client, pinned) = activation_client_config(pin_of(&pki)).unwrap();
        let mut client = Arc::unwrap_or_clone(client);
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        handshake(pki.api_server_config().unwrap(), Arc::new(client), HOST).unwrap();
        assert_eq!(pinned.cert().as_ref(), Some(pki.ca_cert_der()));
    }
}
