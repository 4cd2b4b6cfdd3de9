//! A minimal DER reader for the two things Picket reads from peers' bytes: a certificate's serial
//! number and an agent's P-256 public key. It walks elements with checked slicing only, so any
//! input, however malformed, gives `None` rather than a panic.

use rcgen::{PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm};

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version` at the start of a v2 or v3 tbsCertificate.
const VERSION: u8 = 0xa0;

/// The contents of an AlgorithmIdentifier for an ECDSA P-256 public key: OID id-ecPublicKey
/// (1.2.840.10045.2.1) and the named curve prime256v1 (1.2.840.10045.3.1.7).
const EC_P256_ALGORITHM: &[u8] = &[
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
    0x03, 0x01, 0x07,
];

/// An uncompressed P-256 point is 0x04 followed by the two 32-byte coordinates.
const P256_POINT_LEN: usize = 65;

/// Lengths beyond four bytes (4 GiB) cannot belong to anything Picket reads.
const MAX_LENGTH_BYTES: usize = 4;

/// One DER element: its tag byte and its contents.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
}

/// Splits the first element off `input`. Multi-byte tags and the indefinite length (BER, not
/// DER) are refused, as is a length that runs past the end of `input`.
fn next_element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > MAX_LENGTH_BYTES {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        // At most four bytes, so the shifts stay within a usize on 32- and 64-bit targets.
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((Element { tag, contents }, rest))
}

/// The contents of the element at the start of `input` if it has tag `tag`, and what follows.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (element, rest) = next_element(input)?;
    (element.tag == tag).then_some((element.contents, rest))
}

/// The contents of `input` if it is exactly one element with tag `tag`, nothing after it.
fn expect_only(input: &[u8], tag: u8) -> Option<&[u8]> {
    match expect(input, tag)? {
        (contents, []) => Some(contents),
        _ => None,
    }
}

/// The serial number of the DER certificate `der`, as the big-endian bytes of the positive
/// INTEGER without its sign byte: the form [`ManagerPki::issue_agent_cert`] returns, so the
/// manager can look a presented certificate up in its computers table.
///
/// Only the path to the serial is read (Certificate SEQUENCE, tbsCertificate SEQUENCE, optional
/// `[0]` version, INTEGER); the certificate is not otherwise checked, which is the TLS
/// verifier's job. Returns `None` for anything malformed, including bytes after the certificate.
///
/// [`ManagerPki::issue_agent_cert`]: super::ManagerPki::issue_agent_cert
pub fn cert_serial(der: &[u8]) -> Option<Vec<u8>> {
    let certificate = expect_only(der, SEQUENCE)?;
    let (tbs, _signature) = expect(certificate, SEQUENCE)?;
    let (first, rest) = next_element(tbs)?;
    let serial = match first.tag {
        VERSION => next_element(rest)?.0,
        _ => first,
    };
    if serial.tag != INTEGER {
        return None;
    }
    let serial = match serial.contents {
        [] => return None,
        // The sign byte DER puts before a first byte with its top bit set.
        [0, value @ ..] if !value.is_empty() => value,
        value => value,
    };
    Some(serial.to_vec())
}

/// An agent's ECDSA P-256 public key, taken from the SubjectPublicKeyInfo it sent, in the form
/// rcgen needs to put it in a certificate.
#[derive(Debug)]
pub(super) struct P256PublicKey {
    /// The uncompressed point: 0x04, x, y.
    point: Vec<u8>,
}

impl P256PublicKey {
    /// Reads a SubjectPublicKeyInfo that holds an uncompressed ECDSA P-256 point. The error says
    /// what the bytes are not, to follow "the agent's public key". The point is not checked to
    /// lie on the curve here; see `agent::check_on_curve`.
    pub(super) fn from_spki(der: &[u8]) -> Result<P256PublicKey, &'static str> {
        let not_spki = "is not a DER SubjectPublicKeyInfo";
        let spki = expect_only(der, SEQUENCE).ok_or(not_spki)?;
        let (algorithm, rest) = expect(spki, SEQUENCE).ok_or(not_spki)?;
        let bits = expect_only(rest, BIT_STRING).ok_or(not_spki)?;
        if algorithm != EC_P256_ALGORITHM {
            return Err("is not an ECDSA P-256 key");
        }
        match bits {
            // No unused bits, then the uncompressed point.
            [0, point @ ..] if point.len() == P256_POINT_LEN && point.first() == Some(&0x04) => {
                Ok(P256PublicKey {
                    point: point.to_vec(),
                })
            }
            _ => Err("is not an uncompressed P-256 point"),
        }
    }

    pub(super) fn point(&self) -> &[u8] {
        &self.point
    }
}

impl PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use rcgen::{CertificateParams, KeyPair, SerialNumber};
    use std::sync::LazyLock;

    fn cert_with_serial(serial: &[u8]) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["serial.example".to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.self_signed(&key).unwrap().der().to_vec()
    }

    static CERT: LazyLock<Vec<u8>> =
        LazyLock::new(|| cert_with_serial(&[0x12, 0x34, 0x56, 0x78, 0x9a]));

    #[test]
    fn serials_of_every_length_come_back_as_issued() {
        for serial in [
            &[0x01][..],
            &[0x7f, 0x01],
            &[0x40; 8],
            &[0x41; 16],
            &[0x7e; 20],
            // Top bit set: DER adds a 0x00 sign byte, which cert_serial strips.
            &[0x80],
            &[0xff; 16],
        ] {
            assert_eq!(
                cert_serial(&cert_with_serial(serial)).as_deref(),
                Some(serial)
            );
        }
    }

    #[test]
    fn leading_zero_bytes_are_not_part_of_a_der_serial() {
        // DER INTEGERs are minimal, so rcgen drops the zero; a caller comparing serials must
        // issue ones whose first byte is not zero.
        let der = cert_with_serial(&[0x00, 0x00, 0x05]);
        assert_eq!(cert_serial(&der), Some(vec![0x05]));
    }

    #[test]
    fn a_certificate_without_a_version_field_still_has_its_serial_read() {
        // Certificate { tbsCertificate { serial 7 } }: a v1 certificate has no [0] version.
        assert_eq!(
            cert_serial(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x07]),
            Some(vec![0x07])
        );
        // Serial zero keeps its single byte.
        assert_eq!(
            cert_serial(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00]),
            Some(vec![0x00])
        );
    }

    #[test]
    fn malformed_certificates_give_none() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x80, 0x00, 0x00],             // indefinite length
            &[0x30, 0x85, 0, 0, 0, 0, 1, 0],       // five length bytes
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], // length past the end
            &[0x30, 0x03, 0x30, 0x01, 0x02],       // serial cut off
            &[0x30, 0x04, 0x30, 0x02, 0x02, 0x00], // empty INTEGER
            &[0x30, 0x05, 0x30, 0x03, 0x04, 0x01, 0x07], // OCTET STRING, not INTEGER
            &[0x30, 0x05, 0x31, 0x03, 0x02, 0x01, 0x07], // SET, not SEQUENCE
            &[0x30, 0x05, 0x30, 0x03, 0xa0, 0x01, 0x00], // version, then nothing
            &[0x1f, 0x05, 0x30, 0x03, 0x02, 0x01, 0x07], // multi-byte tag
            &[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x07, 0x00], // trailing byte
        ] {
            assert_eq!(cert_serial(bad), None, "{bad:02x?}");
        }
    }

    #[test]
    fn every_truncation_of_a_real_certificate_gives_none() {
        assert!(cert_serial(&CERT).is_some());
        for len in 0..CERT.len() {
            assert_eq!(cert_serial(&CERT[..len]), None, "first {len} bytes");
        }
    }

    #[test]
    fn an_rcgen_public_key_is_read_back() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let parsed = P256PublicKey::from_spki(&key.subject_public_key_info()).unwrap();
        assert_eq!(parsed.point(), key.public_key_raw());
        assert_eq!(
            parsed.subject_public_key_info(),
            key.subject_public_key_info()
        );
    }

    #[test]
    fn other_public_keys_are_refused_with_what_is_wrong() {
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(
            P256PublicKey::from_spki(&ed.subject_public_key_info()).unwrap_err(),
            "is not an ECDSA P-256 key"
        );
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_eq!(
            P256PublicKey::from_spki(&p384.subject_public_key_info()).unwrap_err(),
            "is not an ECDSA P-256 key"
        );
        let mut spki = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .subject_public_key_info();
        // 0x04 (uncompressed) becomes 0x02 (compressed) at the same length.
        let at = spki.len() - P256_POINT_LEN;
        spki[at] = 0x02;
        assert_eq!(
            P256PublicKey::from_spki(&spki).unwrap_err(),
            "is not an uncompressed P-256 point"
        );
        assert_eq!(
            P256PublicKey::from_spki(b"hello").unwrap_err(),
            "is not a DER SubjectPublicKeyInfo"
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
            let _ = cert_serial(&bytes);
            let _ = P256PublicKey::from_spki(&bytes);
        }

        #[test]
        fn damaged_certificates_never_panic_and_are_never_longer(
            edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut der = CERT.clone();
            for (at, byte) in edits {
                let at = at.index(der.len());
                der[at] = byte;
            }
            der.truncate(cut.index(der.len() + 1));
            if let Some(serial) = cert_serial(&der) {
                prop_assert!(serial.len() < der.len());
            }
        }
    }
}
