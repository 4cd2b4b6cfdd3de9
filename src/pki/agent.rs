//! The agent's side of the PKI: its key pair, the certificate the manager issues for it, the CA
//! pin it is given at activation, and its mutual-TLS client configuration.

use super::ca::{DAY, key_der, leaf_params, random_serial_bytes};
use super::der::P256PublicKey;
use super::{ManagerPki, PkiError, tls};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType};
use ring::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
use ring::rand::SystemRandom;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(super) use crate::proto::ALPN as AGENT_ALPN;

/// Agent certificates outlive any agent install; deleting the computer, not expiry, ends one.
const AGENT_LIFETIME: Duration = Duration::from_secs(3650 * DAY);

/// Agent certificates' common names (and DNS names) are this and the computer id.
pub(super) const AGENT_NAME_PREFIX: &str = "picket-agent-";

/// The agent's own key pair (ECDSA P-256), generated on the agent at activation. Only its public
/// half leaves the agent, in the activation request.
pub struct AgentKey {
    key: KeyPair,
}

impl AgentKey {
    pub fn generate() -> Result<AgentKey, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
            PkiError::Generate {
                what: "the agent key",
                source,
            }
        })?;
        Ok(AgentKey { key })
    }

    /// Reads the PKCS#8 PEM that [`AgentKey::to_pem`] wrote. Any other key, even a valid one of
    /// another type, is refused: the certificate the manager issued holds a P-256 key.
    pub fn from_pem(pem: &str) -> Result<AgentKey, PkiError> {
        let bad = |problem| PkiError::BadAgentKey { problem };
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| bad("is not a PEM private key"))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(bad("is not in PKCS#8 form (BEGIN PRIVATE KEY)"));
        };
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_ECDSA_P256_SHA256)
            .map_err(|_| bad("is not an ECDSA P-256 key"))?;
        Ok(AgentKey { key })
    }

    /// PKCS#8 PEM for `A/agent.key`; the caller writes it with mode 0600.
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The SubjectPublicKeyInfo DER sent in the activation request.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }

    pub(super) fn private_key_der(&self) -> PrivateKeyDer<'static> {
        key_der(&self.key)
    }
}

impl fmt::Debug for AgentKey {
    /// Leaves the private key out, so a debug log never holds it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey").finish_non_exhaustive()
    }
}

/// A certificate the manager issued to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    pub der: CertificateDer<'static>,
    /// The serial as [`cert_serial`](super::cert_serial) reads it back from `der`: the manager
    /// stores it with the computer and refuses the certificate once it no longer matches.
    pub serial: [u8; 16],
}

impl ManagerPki {
    /// Signs an agent certificate for `public_key_der` (a SubjectPublicKeyInfo holding an ECDSA
    /// P-256 key, as [`AgentKey::public_key_der`] makes it).
    ///
    /// Common name and DNS name `picket-agent-<computer>`, so the manager can later check by
    /// name that it reached the computer it meant to; client and server authentication (the
    /// agent also listens for the manager); valid for 10 years from `now`, backdated like the
    /// manager certificate; a random 16-byte positive serial, returned for the registry.
    pub fn issue_agent_cert(
        &self,
        computer: u64,
        public_key_der: &[u8],
        now: SystemTime,
    ) -> Result<IssuedCert, PkiError> {
        let public_key = P256PublicKey::from_spki(public_key_der)
            .map_err(|problem| PkiError::BadPublicKey { problem })?;
        check_on_curve(&public_key)?;
        let serial = random_serial_bytes()?;
        let name = format!("{AGENT_NAME_PREFIX}{computer}");
        let dns =
            SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|source| PkiError::Generate {
                        what: "the agent certificate's name",
                        source,
                    })?,
            );
        let params = leaf_params(&name, vec![dns], serial, now, AGENT_LIFETIME)?;
        let cert = self.sign_by_ca(&params, &public_key, now, "the agent certificate")?;
        Ok(IssuedCert {
            der: cert.der().clone(),
            serial,
        })
    }
}

/// Refuses a point that is not on the P-256 curve, which would give the agent a certificate for
/// a key nobody holds. ring validates a peer's point before an ECDH agreement, so agreeing with a
/// throwaway key is the check.
fn check_on_curve(key: &P256PublicKey) -> Result<(), PkiError> {
    let rng = SystemRandom::new();
    let ours = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| PkiError::Random)?;
    agree_ephemeral(
        ours,
        &UnparsedPublicKey::new(&ECDH_P256, key.point()),
        |_| (),
    )
    .map_err(|_| PkiError::BadPublicKey {
        problem: "is not a point on the P-256 curve",
    })
}

/// Parses a CA pin, the 64 hex digits of the CA certificate's SHA-256 (either case; whitespace
/// around it is ignored, as when it is pasted or read from a file).
pub fn parse_pin(hex: &str) -> Result<[u8; 32], PkiError> {
    let bad = || PkiError::BadPin {
        value: hex.to_string(),
    };
    let digits = hex.trim().as_bytes();
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut pin = [0u8; 32];
    for (byte, pair) in pin.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else {
            return Err(bad());
        };
        *byte = (hex_value(*high).ok_or_else(bad)? << 4) | hex_value(*low).ok_or_else(bad)?;
    }
    Ok(pin)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// The mutual-TLS client configuration for heartbeats: trusts only `ca` (stored at activation),
/// presents `cert` with `key`, ALPN "picket/1", TLS 1.2 and 1.3 with the ring provider. Fails if
/// `key` is not the key in `cert`.
pub fn agent_client_config(
    ca: &CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: &AgentKey,
) -> Result<Arc<ClientConfig>, PkiError> {
    let what = "the agent's TLS client configuration";
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|source| PkiError::BadCertificate { path: None, source })?;
    let mut config = tls::client_builder(what)?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key.private_key_der())
        .map_err(|source| PkiError::Tls { what, source })?;
    config.alpn_protocols = vec![AGENT_ALPN.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ca::BACKDATE;
    use crate::pki::testing::manager;
    use crate::pki::{cert_serial, hex, sha256};
    use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
    use rustls::sign::CertifiedKey;
    use rustls::{CertificateError, Error};
    use std::time::UNIX_EPOCH;

    fn at(time: SystemTime) -> UnixTime {
        UnixTime::since_unix_epoch(time.duration_since(UNIX_EPOCH).unwrap())
    }

    /// Verifies `cert` as a server certificate for `name` at `when`, trusting only `ca`.
    fn verify_as_server(
        ca: &CertificateDer<'static>,
        cert: &CertificateDer<'static>,
        name: &str,
        when: SystemTime,
    ) -> Result<(), Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let parsed = ParsedCertificate::try_from(cert)?;
        let algorithms = tls::provider().signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(&parsed, &roots, &[], at(when), algorithms)?;
        verify_server_name(&parsed, &ServerName::try_from(name).unwrap())
    }

    #[test]
    fn an_agent_key_survives_pem_and_its_public_key_is_p256_spki() {
        let key = AgentKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let back = AgentKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
        assert_ne!(
            AgentKey::generate().unwrap().public_key_der(),
            key.public_key_der()
        );
        assert!(P256PublicKey::from_spki(&key.public_key_der()).is_ok());
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn agent_keys_of_other_kinds_are_refused_saying_why() {
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        for (pem, says) in [
            ("garbage", "not a PEM private key"),
            (&ed.serialize_pem(), "not an ECDSA P-256 key"),
        ] {
            let err = AgentKey::from_pem(pem).unwrap_err();
            assert!(matches!(err, PkiError::BadAgentKey { .. }), "{err:?}");
            assert!(err.to_string().contains(says), "{err}");
            assert!(err.to_string().contains("agent's private key"), "{err}");
        }
    }

    #[test]
    fn an_agent_certificate_holds_the_agent_key_and_serves_both_ends() {
        let (_tmp, pki) = manager();
        let key = AgentKey::generate().unwrap();
        let now = crate::clock::real_wall().to_system_time();
        let issued = pki
            .issue_agent_cert(42, &key.public_key_der(), now)
            .unwrap();

        // The certificate is for the agent's key: rustls refuses a key that does not match.
        CertifiedKey::from_der(
            vec![issued.der.clone()],
            key_der(&key.key),
            &tls::provider(),
        )
        .unwrap();
        let other = AgentKey::generate().unwrap();
        CertifiedKey::from_der(
            vec![issued.der.clone()],
            key_der(&other.key),
            &tls::provider(),
        )
        .unwrap_err();

        let name = b"picket-agent-42";
        assert!(issued.der.windows(name.len()).any(|w| w == name));
        // Server authentication, with its name as a DNS name.
        verify_as_server(pki.ca_cert_der(), &issued.der, "picket-agent-42", now).unwrap();
        let err = verify_as_server(pki.ca_cert_der(), &issued.der, "picket-agent-4", now);
        assert!(err.is_err());
        // Client authentication.
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_cert_der().clone()).unwrap();
        WebPkiClientVerifier::builder_with_provider(roots.into(), tls::provider())
            .build()
            .unwrap()
            .verify_client_cert(&issued.der, &[], at(now))
            .unwrap();
    }

    #[test]
    fn an_agent_certificate_is_backdated_and_lasts_ten_years() {
        let (_tmp, pki) = manager();
        let key = AgentKey::generate().unwrap();
        let now = crate::clock::real_wall().to_system_time();
        let issued = pki.issue_agent_cert(7, &key.public_key_der(), now).unwrap();
        let check = |when| verify_as_server(pki.ca_cert_der(), &issued.der, "picket-agent-7", when);
        let minute = Duration::from_secs(60);
        check(now - BACKDATE + minute).unwrap();
        check(now + AGENT_LIFETIME - minute).unwrap();
        assert!(matches!(
            check(now - BACKDATE - minute),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            ))
        ));
        assert!(matches!(
            check(now + AGENT_LIFETIME + minute),
            Err(Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ));
    }

    #[test]
    fn serials_are_random_positive_and_read_back_from_the_certificate() {
        let (_tmp, pki) = manager();
        let key = AgentKey::generate().unwrap();
        let now = crate::clock::real_wall().to_system_time();
        let a = pki.issue_agent_cert(1, &key.public_key_der(), now).unwrap();
        let b = pki.issue_agent_cert(1, &key.public_key_der(), now).unwrap();
        assert_ne!(a.serial, b.serial);
        for issued in [&a, &b] {
            assert_eq!(issued.serial[0] & 0x80, 0);
            assert_eq!(
                cert_serial(&issued.der).as_deref(),
                Some(&issued.serial[..])
            );
        }
    }

    #[test]
    fn malformed_public_keys_are_refused_naming_the_agents_public_key() {
        let (_tmp, pki) = manager();
        let mut off_curve = AgentKey::generate().unwrap().public_key_der();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 0x01;
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        for (spki, says) in [
            (&b"not a key"[..], "is not a DER SubjectPublicKeyInfo"),
            (&ed.subject_public_key_info(), "is not an ECDSA P-256 key"),
            (&off_curve, "is not a point on the P-256 curve"),
        ] {
            let err = pki
                .issue_agent_cert(1, spki, crate::clock::real_wall().to_system_time())
                .unwrap_err();
            assert!(matches!(err, PkiError::BadPublicKey { .. }), "{err:?}");
            assert_eq!(err.to_string(), format!("the agent's public key {says}"));
        }
    }

    #[test]
    fn pins_parse_in_either_case_and_bad_ones_are_named() {
        let (_tmp, pki) = manager();
        let pin = pki.ca_sha256_hex();
        let want = sha256(pki.ca_cert_der());
        assert_eq!(parse_pin(&pin).unwrap(), want);
        assert_eq!(parse_pin(&pin.to_uppercase()).unwrap(), want);
        assert_eq!(parse_pin(&format!(" {pin}\n")).unwrap(), want);
        assert_eq!(hex(&parse_pin(&pin).unwrap()), pin);
        let short = &pin[..62];
        let non_hex = format!("{}zz", &pin[..62]);
        let plus = format!("+{}", &pin[..63]);
        for bad in [short, &non_hex, &plus, "", "é"] {
            let err = parse_pin(bad).unwrap_err();
            assert!(matches!(err, PkiError::BadPin { .. }), "{err:?}");
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn a_client_config_with_a_key_that_is_not_the_certificates_is_refused() {
        let (_tmp, pki) = manager();
        let key = AgentKey::generate().unwrap();
        let issued = pki
            .issue_agent_cert(
                3,
                &key.public_key_der(),
                crate::clock::real_wall().to_system_time(),
            )
            .unwrap();
        agent_client_config(pki.ca_cert_der(), issued.der.clone(), &key).unwrap();
        let other = AgentKey::generate().unwrap();
        let err = agent_client_config(pki.ca_cert_der(), issued.der, &other).unwrap_err();
        assert!(matches!(err, PkiError::Tls { .. }), "{err:?}");
    }
}
