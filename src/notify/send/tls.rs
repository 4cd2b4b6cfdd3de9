//! The TLS client side syslog and webhooks share: whom to trust (the channel's own CA, or the
//! system's roots when it gives none) and the handshake.

use super::SendError;
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use smol::net::TcpStream;
use std::sync::Arc;

/// A client configuration trusting exactly the certificates in `ca_pem`, or, without one, the
/// system's roots; TLS 1.3 and 1.2 with the ring provider, as everywhere in Picket.
///
/// Reading the system's roots reads files: call it through [`client_config_off_thread`] from
/// async code. `pki::client_config_trusting_der` is not reused because it trusts one
/// certificate, where a channel's PEM may hold a bundle and the system has hundreds; a client's
/// cipher-suite order (what `pki`'s provider tunes) does not matter, the server picks.
pub fn client_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, SendError> {
    let roots = match ca_pem {
        Some(pem) => pem_roots(pem)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| SendError::config("ca_cert", format!("no TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// [`client_config`], reading the system's roots on the blocking pool once per process: a
/// channel clearing a backlog must not read and parse hundreds of certificates per notice. (A
/// change to the system's roots is seen at the next start.)
pub(super) async fn client_config_off_thread(
    ca_pem: Option<&str>,
) -> Result<Arc<ClientConfig>, SendError> {
    static SYSTEM: std::sync::OnceLock<Arc<ClientConfig>> = std::sync::OnceLock::new();
    match ca_pem {
        Some(pem) => client_config(Some(pem)),
        None => {
            if let Some(config) = SYSTEM.get() {
                return Ok(config.clone());
            }
            let config = blocking::unblock(|| client_config(None)).await?;
            Ok(SYSTEM.get_or_init(|| config).clone())
        }
    }
}

fn pem_roots(pem: &str) -> Result<RootCertStore, SendError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SendError::config("ca_cert", format!("is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(SendError::config("ca_cert", "holds no PEM certificate"));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| SendError::config("ca_cert", format!("cannot be trusted: {e}")))?;
    }
    Ok(roots)
}

/// The roots the operating system trusts. Certificates it cannot parse are skipped, as every
/// TLS client does; having none at all is said plainly, since every handshake would then fail
/// with an unhelpful "unknown issuer".
fn system_roots() -> Result<RootCertStore, SendError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = match found.errors.first() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        return Err(SendError::config(
            "ca_cert",
            format!("none given, and this system has no CA certificates to trust{why}"),
        ));
    }
    Ok(roots)
}

/// The TLS handshake over `tcp` with the server named `host` (a DNS name or an IP address, as
/// its certificate must name it).
pub(super) async fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
    target: &str,
) -> Result<TlsStream<TcpStream>, SendError> {
    let tls_error = |source| SendError::Tls {
        target: target.to_string(),
        source,
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| tls_error(Box::new(e)))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::send::testing::TestCa;

    #[test]
    fn a_bundle_is_trusted_whole_and_junk_is_refused() {
        let bundle = format!("{}{}", TestCa::new().pem, TestCa::new().pem);
        client_config(Some(&bundle)).unwrap();
        for junk in ["", "not a certificate"] {
            let err = client_config(Some(junk)).unwrap_err();
            assert!(
                matches!(
                    err,
                    SendError::Config {
                        field: "ca_cert",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }
}
