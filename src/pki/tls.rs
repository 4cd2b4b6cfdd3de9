//! The rustls configurations: the manager's HTTPS server, clients that trust only a Picket CA,
//! and the chain check used to vet certificates read from disk.

use super::PkiError;
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ParsedCertificate, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, ConfigBuilder, RootCertStore, ServerConfig, SupportedProtocolVersion,
    WantsVerifier,
};
use std::fs;
use std::path::Path;
use std::sync::Arc;

/// TLS 1.3 preferred, 1.2 for older clients; rustls offers nothing older.
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ring provider, passed explicitly so that no process-wide default has to be installed,
/// with AES-128-GCM/SHA-256 first: its handshake hashes with SHA-256, which runs on the CPU's
/// SHA extensions, where SHA-384 does not (measured: SHA-512 blocks were 5% of the bench's CPU).
/// Servers pick by this order, whatever the client prefers.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// A server configuration presenting `chain` and checking client certificates with `clients`
/// (`NoClientAuth` asks for none); `what` names it in errors.
pub(super) fn server_config(
    what: &'static str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
    clients: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, PkiError> {
    let certified = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|source| PkiError::Tls { what, source })?;
    server_config_resolving(
        what,
        Arc::new(SingleCertAndKey::from(certified)),
        alpn,
        clients,
    )
}

/// As [`server_config`], with the certificate chosen per connection by `certs`.
pub(super) fn server_config_resolving(
    what: &'static str,
    certs: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
    clients: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, PkiError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|source| PkiError::Tls { what, source })?
        .with_client_cert_verifier(clients)
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// A client config trusting exactly the CA certificate(s) in the PEM file at `ca_pem_path`, for
/// TLS 1.2 and 1.3 with the ring provider. It offers no ALPN protocol; set `alpn_protocols` on a
/// clone if the server needs one. Errors name the file.
pub fn client_config_trusting(ca_pem_path: &Path) -> Result<Arc<ClientConfig>, PkiError> {
    let path = ca_pem_path;
    let bytes = fs::read(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    })?;
    let not_pem = |source| PkiError::NotPem {
        path: path.to_path_buf(),
        expected: "CA certificate",
        source,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(Some(e)))?;
    if certs.is_empty() {
        return Err(not_pem(None));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|source| PkiError::BadCertificate {
            path: Some(path.to_path_buf()),
            source,
        })?;
    }
    client_config(roots)
}

/// A client config trusting exactly `ca`, for TLS 1.2 and 1.3 with the ring provider.
pub fn client_config_trusting_der(
    ca: &CertificateDer<'static>,
) -> Result<Arc<ClientConfig>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|source| PkiError::BadCertificate { path: None, source })?;
    client_config(roots)
}

fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, PkiError> {
    let config = client_builder("the TLS client configuration")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The start of every client configuration: ring provider, TLS 1.3 and 1.2.
pub(super) fn client_builder(
    what: &'static str,
) -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, PkiError> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|source| PkiError::Tls { what, source })
}

/// Checks, as a TLS client trusting only `ca` would at time `now`, that `leaf` was issued by
/// `ca`, is valid for server authentication, and names `server_name`.
pub(crate) fn verify_server_cert(
    ca: &CertificateDer<'_>,
    leaf: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone().into_owned())?;
    let parsed = ParsedCertificate::try_from(leaf)?;
    let algorithms = provider().signature_verification_algorithms.all;
    verify_server_cert_signed_by_trust_anchor(&parsed, &roots, &[], now, algorithms)?;
    verify_server_name(&parsed, server_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::testing::{handshake, manager};
    use rustls::ProtocolVersion;

    #[test]
    fn client_trusting_the_ca_completes_a_handshake_for_localhost() {
        let (_tmp, pki) = manager();
        let client = client_config_trusting_der(pki.ca_cert_der()).unwrap();
        let (client, _server) =
            handshake(pki.api_server_config().unwrap(), client, "localhost").unwrap();
        assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    }

    #[test]
    fn client_trusting_the_ca_file_connects_and_agrees_on_http11() {
        let (tmp, pki) = manager();
        let client = client_config_trusting(&tmp.path().join("pki/ca.crt")).unwrap();
        let mut client = (*client).clone();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let (_client, server) = handshake(
            pki.api_server_config().unwrap(),
            Arc::new(client),
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
    }

    #[test]
    fn a_tls12_only_client_connects() {
        let (_tmp, pki) = manager();
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_cert_der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (client, _) = handshake(
            pki.api_server_config().unwrap(),
            Arc::new(client),
            "localhost",
        )
        .unwrap();
        assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    }

    #[test]
    fn client_trusting_another_ca_refuses_the_server() {
        let (_tmp, pki) = manager();
        let (_tmp2, other) = manager();
        let client = client_config_trusting_der(other.ca_cert_der()).unwrap();
        let err = handshake(pki.api_server_config().unwrap(), client, "localhost").unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn a_name_not_in_the_certificate_is_refused() {
        let (_tmp, pki) = manager();
        let client = client_config_trusting_der(pki.ca_cert_der()).unwrap();
        let err = handshake(pki.api_server_config().unwrap(), client, "other.example").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{err:?}"
        );
    }

    #[test]
    fn trust_file_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.crt");
        let err = client_config_trusting(&missing).unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let garbage = tmp.path().join("garbage.crt");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let err = client_config_trusting(&garbage).unwrap_err();
        assert!(matches!(err, PkiError::NotPem { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&garbage.display().to_string()),
            "{err}"
        );
    }
}
