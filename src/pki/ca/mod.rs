//! The manager's private CA and its own certificate, kept as PEM files under `DIR/pki`.

use super::{PkiError, hex, sha256, tls};
use crate::files::write_atomic;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{NoClientAuth, ParsedCertificate};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ServerConfig};
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const MANAGER_CERT: &str = "manager.crt";
const MANAGER_KEY: &str = "manager.key";

/// The CA's common name is this prefix and a hash of its public key: derived from the key alone,
/// so the rcgen `Issuer` can be rebuilt without parsing `ca.crt` (this rcgen build cannot), yet
/// different on each installation, so a client trusting another manager's CA fails with "unknown
/// issuer" rather than a signature error from a same-named CA.
const CA_NAME_PREFIX: &str = "Picket CA";

pub(super) const DAY: u64 = 86_400;
const CA_LIFETIME: Duration = Duration::from_secs(3650 * DAY);
const MANAGER_LIFETIME: Duration = Duration::from_secs(730 * DAY);
/// Certificates start this long before they are made, so a peer whose clock is a little behind
/// still accepts them.
pub(super) const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// A manager certificate that stops being valid within this time is reissued at start-up, so a
/// restart is enough to keep the console's certificate current (agents pin the CA, not it).
const RENEW_BEFORE: Duration = Duration::from_secs(30 * DAY);

/// The manager's PKI material under `DIR/pki/`: `ca.crt`, `ca.key`, `manager.crt`,
/// `manager.key`.
pub struct ManagerPki {
    ca_cert: CertificateDer<'static>,
    ca_pem: String,
    /// Kept to reissue the manager certificate and, later, to issue agent certificates.
    ca_key: KeyPair,
    manager_cert: CertificateDer<'static>,
    manager_key: KeyPair,
}

impl ManagerPki {
    /// First start: creates `pki_dir` (mode 0700) with a new ECDSA P-256 CA (self-signed, CN
    /// "Picket CA " and 16 hex digits of its key's hash, 10 years) and a manager certificate signed by it (CN = `hostname`; SANs
    /// `hostname`, `localhost`, 127.0.0.1, ::1; server and client authentication; 2 years). The
    /// four files appear together or not at all; private keys are mode 0600 from the start.
    ///
    /// Later starts load the files. A manager certificate that expires within 30 days or does
    /// not name `hostname` is reissued by the CA with the same key. If some but not all files
    /// exist, this refuses, naming the missing file: a CA is never silently regenerated, because
    /// activated agents pin it.
    ///
    /// Returns whether the files were created. `now` is the manager's wall clock: what new
    /// certificates are stamped with and expiry is judged against.
    pub fn load_or_create(
        pki_dir: &Path,
        hostname: &str,
        now: SystemTime,
    ) -> Result<(ManagerPki, bool), PkiError> {
        load_or_create_at(pki_dir, hostname, now)
    }

    /// Reads the four files of a PKI directory and checks each key fits its certificate,
    /// writing nothing (`picket check`, a restore): what is wrong, or the CA's pin.
    pub fn check_files(pki_dir: &Path) -> Result<String, PkiError> {
        let pki = read_fitting(&PkiFiles::in_dir(pki_dir))?;
        Ok(pki.ca_sha256_hex())
    }

    /// curl's pin of the manager's public key (`--pinnedpubkey sha256//BASE64`): what the one
    /// line that installs an agent trusts before it has the CA. The key outlives certificate
    /// renewals (a renewal reissues for the same key).
    pub fn manager_key_pin(&self) -> String {
        let spki = rcgen::PublicKeyData::subject_public_key_info(&self.manager_key);
        format!("sha256//{}", crate::secret::base64(&sha256(&spki)))
    }

    /// SHA-256 of the CA certificate DER, lowercase hex: what agents pin with `--ca-sha256`.
    pub fn ca_sha256_hex(&self) -> String {
        hex(&sha256(self.ca_cert.as_ref()))
    }

    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_cert
    }

    /// The CA certificate as PEM, as found in `ca.crt`.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_pem
    }

    /// rustls server config for the HTTPS console and API: the manager certificate and the CA
    /// (so a client holding only a pin can find the CA to check it), no client authentication,
    /// TLS 1.2 and 1.3, ring provider, ALPN "http/1.1".
    pub fn api_server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        tls::server_config(
            "the HTTPS server configuration",
            self.served_chain(),
            self.manager_key_der(),
            &[b"http/1.1"],
            Arc::new(NoClientAuth),
        )
    }

    /// The chain the manager's servers present: its certificate, then the CA's.
    pub(super) fn served_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.manager_cert.clone(), self.ca_cert.clone()]
    }

    #[cfg(test)]
    pub(super) fn manager_cert_der(&self) -> &CertificateDer<'static> {
        &self.manager_cert
    }

    pub(super) fn manager_key_der(&self) -> PrivateKeyDer<'static> {
        key_der(&self.manager_key)
    }

    /// Signs `params` for `public_key` with the CA key; `what` names the certificate in errors.
    pub(super) fn sign_by_ca(
        &self,
        params: &CertificateParams,
        public_key: &impl PublicKeyData,
        now: SystemTime,
        what: &'static str,
    ) -> Result<Certificate, PkiError> {
        let issuer = Issuer::new(ca_params(&self.ca_key, now)?, &self.ca_key);
        params
            .signed_by(public_key, &issuer)
            .map_err(|source| PkiError::Generate { what, source })
    }

    /// Reissues the manager certificate if it will soon not be valid for `hostname` at `now`,
    /// or fails if it was not issued by this CA at all.
    fn check_manager_cert(
        &mut self,
        files: &PkiFiles,
        hostname: &str,
        now: SystemTime,
    ) -> Result<(), PkiError> {
        let name = server_name(hostname)?;
        let soon = now.checked_add(RENEW_BEFORE).ok_or(PkiError::Clock)?;
        let verified =
            tls::verify_server_cert(&self.ca_cert, &self.manager_cert, &name, unix_time(soon)?);
        let source = match verified {
            Ok(()) => return Ok(()),
            Err(source) => source,
        };
        let reason = match &source {
            rustls::Error::InvalidCertificate(e) => renewal_reason(e),
            _ => None,
        };
        let Some(reason) = reason else {
            return Err(PkiError::Mismatch {
                path: files.manager_cert.clone(),
                problem: "is not a valid certificate issued by",
                other: files.ca_cert.clone(),
                source: Box::new(source),
            });
        };
        log::warn!(
            "reissuing {} for '{hostname}': {reason}",
            files.manager_cert.display()
        );
        let cert = issue_manager_cert(&self.ca_key, &self.manager_key, hostname, now)?;
        // The CA key matches ca.crt, so a failure here means ca.crt does not carry the name
        // derived from its key (another tool made it) or is itself out of date.
        tls::verify_server_cert(&self.ca_cert, cert.der(), &name, unix_time(now)?).map_err(
            |source| PkiError::Mismatch {
                path: files.ca_cert.clone(),
                problem: "cannot issue certificates with the key in",
                other: files.ca_key.clone(),
                source: Box::new(source),
            },
        )?;
        write_atomic(&files.manager_cert, cert.pem().as_bytes(), 0o600)
            .map_err(|source| io_error(&files.manager_cert, "write", source))?;
        self.manager_cert = cert.der().clone();
        Ok(())
    }
}

impl fmt::Debug for ManagerPki {
    /// Shows the CA pin and leaves the keys out, so a debug log never holds them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerPki")
            .field("ca_sha256", &self.ca_sha256_hex())
            .finish_non_exhaustive()
    }
}

/// Why a manager certificate that fails verification should be reissued rather than refused.
fn renewal_reason(error: &CertificateError) -> Option<&'static str> {
    match error {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            Some("it expires within 30 days")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            Some("it starts in the future (was the clock moved back?)")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Some("it does not carry this host name")
        }
        _ => None,
    }
}

/// The paths of the four files in a PKI directory.
struct PkiFiles {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    manager_cert: PathBuf,
    manager_key: PathBuf,
}

impl PkiFiles {
    fn in_dir(dir: &Path) -> Self {
        PkiFiles {
            ca_cert: dir.join(CA_CERT),
            ca_key: dir.join(CA_KEY),
            manager_cert: dir.join(MANAGER_CERT),
            manager_key: dir.join(MANAGER_KEY),
        }
    }

    fn all(&self) -> [&PathBuf; 4] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.manager_cert,
            &self.manager_key,
        ]
    }
}

fn load_or_create_at(
    dir: &Path,
    hostname: &str,
    now: SystemTime,
) -> Result<(ManagerPki, bool), PkiError> {
    let files = PkiFiles::in_dir(dir);
    let (mut present, mut missing) = (Vec::new(), Vec::new());
    for path in files.all() {
        match path.try_exists() {
            Ok(true) => present.push(path),
            Ok(false) => missing.push(path),
            Err(source) => return Err(io_error(path, "check", source)),
        }
    }
    match (present.first(), missing.first()) {
        (None, _) => Ok((create(dir, hostname, now)?, true)),
        (Some(_), None) => Ok((load(&files, hostname, now)?, false)),
        (Some(found), Some(path)) => Err(PkiError::Missing {
            path: path.to_path_buf(),
            found: found.to_path_buf(),
        }),
    }
}

fn create(dir: &Path, hostname: &str, now: SystemTime) -> Result<ManagerPki, PkiError> {
    server_name(hostname)?;
    let ca_key = new_key("the CA key")?;
    let ca_cert = ca_params(&ca_key, now)?
        .self_signed(&ca_key)
        .map_err(|source| PkiError::Generate {
            what: "the CA certificate",
            source,
        })?;
    let manager_key = new_key("the manager key")?;
    let manager_cert = issue_manager_cert(&ca_key, &manager_key, hostname, now)?;
    let (ca_key_pem, manager_key_pem) = (ca_key.serialize_pem(), manager_key.serialize_pem());
    let manager_pem = manager_cert.pem();
    let pki = ManagerPki {
        ca_cert: ca_cert.der().clone(),
        ca_pem: ca_cert.pem(),
        ca_key,
        manager_cert: manager_cert.der().clone(),
        manager_key,
    };
    write_new_dir(
        dir,
        &[
            (CA_CERT, pki.ca_pem.as_bytes(), 0o600),
            (CA_KEY, ca_key_pem.as_bytes(), 0o600),
            (MANAGER_CERT, manager_pem.as_bytes(), 0o600),
            (MANAGER_KEY, manager_key_pem.as_bytes(), 0o600),
        ],
    )?;
    Ok(pki)
}

fn load(files: &PkiFiles, hostname: &str, now: SystemTime) -> Result<ManagerPki, PkiError> {
    let mut pki = read_fitting(files)?;
    pki.check_manager_cert(files, hostname, now)?;
    Ok(pki)
}

/// The four files, each key checked against its certificate; nothing is written.
fn read_fitting(files: &PkiFiles) -> Result<ManagerPki, PkiError> {
    let (ca_cert, ca_pem) = read_cert(&files.ca_cert)?;
    let ca_key = read_key(&files.ca_key)?;
    let (manager_cert, _) = read_cert(&files.manager_cert)?;
    let manager_key = read_key(&files.manager_key)?;
    check_key_fits(&ca_key, &files.ca_key, &ca_cert, &files.ca_cert)?;
    check_key_fits(
        &manager_key,
        &files.manager_key,
        &manager_cert,
        &files.manager_cert,
    )?;
    Ok(ManagerPki {
        ca_cert,
        ca_pem,
        ca_key,
        manager_cert,
        manager_key,
    })
}

/// The CA's parameters. Rebuilding them (`Issuer::new(ca_params(&ca_key, now)?, &ca_key)`) gives
/// an issuer whose certificates chain to the CA on disk: its name and key identifier are both
/// derived from the key.
fn ca_params(ca_key: &KeyPair, now: SystemTime) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let name = format!(
        "{CA_NAME_PREFIX} {}",
        hex(&sha256(ca_key.public_key_raw())[..8])
    );
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    // Path length 0: the CA signs only end-entity certificates, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial()?);
    set_validity(&mut params, now, CA_LIFETIME)?;
    Ok(params)
}

fn issue_manager_cert(
    ca_key: &KeyPair,
    key: &KeyPair,
    hostname: &str,
    now: SystemTime,
) -> Result<Certificate, PkiError> {
    let issuer = Issuer::new(ca_params(ca_key, now)?, ca_key);
    let serial = random_serial_bytes()?;
    let names = manager_names(hostname)?;
    leaf_params(hostname, names, serial, now, MANAGER_LIFETIME)?
        .signed_by(key, &issuer)
        .map_err(|source| PkiError::Generate {
            what: "the manager certificate",
            source,
        })
}

/// An end-entity certificate as Picket issues them, to the manager and to agents alike: signed
/// by the CA (with its key identifier), usable for TLS server and client authentication (the
/// manager dials agents; agents listen for the manager), backdated by [`BACKDATE`].
pub(super) fn leaf_params(
    common_name: &str,
    names: Vec<SanType>,
    serial: [u8; 16],
    now: SystemTime,
    lifetime: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    set_validity(&mut params, now, lifetime)?;
    Ok(params)
}

/// The manager certificate's names: the host name, then the loopback names so local clients
/// (the admin CLI, tests) connect whatever the host is called.
fn manager_names(hostname: &str) -> Result<Vec<SanType>, PkiError> {
    let dns = |name: &str| {
        name.try_into()
            .map(SanType::DnsName)
            .map_err(|_| PkiError::Hostname {
                hostname: name.to_string(),
            })
    };
    let own = match hostname.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => dns(hostname)?,
    };
    let mut names = vec![own];
    for name in [
        dns("localhost")?,
        SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
        SanType::IpAddress(Ipv6Addr::LOCALHOST.into()),
    ] {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The name TLS clients will check: a DNS name or an IP address, else the host name is refused
/// before a certificate no client could verify is made.
fn server_name(hostname: &str) -> Result<ServerName<'static>, PkiError> {
    ServerName::try_from(hostname.to_string()).map_err(|_| PkiError::Hostname {
        hostname: hostname.to_string(),
    })
}

pub(super) fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    lifetime: Duration,
) -> Result<(), PkiError> {
    let since_epoch = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Clock)?;
    // `checked_add` rather than `+`: the time crate panics on dates past year 9999.
    let at =
        |offset: Duration| rcgen::date_time_ymd(1970, 1, 1).checked_add(offset.try_into().ok()?);
    let end = since_epoch.checked_add(lifetime).ok_or(PkiError::Clock)?;
    params.not_before = at(since_epoch.saturating_sub(BACKDATE)).ok_or(PkiError::Clock)?;
    params.not_after = at(end).ok_or(PkiError::Clock)?;
    Ok(())
}

fn unix_time(time: SystemTime) -> Result<UnixTime, PkiError> {
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Clock)?;
    Ok(UnixTime::since_unix_epoch(since_epoch))
}

/// A random positive 16-byte serial: certificates reissued with the same key (the manager's) must
/// not repeat a serial, which rcgen's default (a hash of the key) would.
fn random_serial() -> Result<SerialNumber, PkiError> {
    Ok(SerialNumber::from_slice(&random_serial_bytes()?))
}

/// 16 random bytes for a serial number. The top bit is clear, so the INTEGER is positive and
/// needs no sign byte; the next bit is set, so DER (which drops leading zero bytes) keeps all 16
/// and the serial read back from the certificate equals these bytes.
pub(super) fn random_serial_bytes() -> Result<[u8; 16], PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(bytes)
}

fn new_key(what: &'static str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| PkiError::Generate { what, source })
}

pub(super) fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivatePkcs8KeyDer::from(key.serialize_der()).into()
}

fn read_cert(path: &Path) -> Result<(CertificateDer<'static>, String), PkiError> {
    let not_pem = |source| PkiError::NotPem {
        path: path.to_path_buf(),
        expected: "certificate",
        source,
    };
    let text = String::from_utf8(read(path)?).map_err(|_| not_pem(None))?;
    let mut certs = CertificateDer::pem_slice_iter(text.as_bytes());
    let cert = match (certs.next(), certs.next()) {
        (Some(Ok(cert)), None) => cert,
        (Some(Err(e)), _) => return Err(not_pem(Some(e))),
        _ => return Err(not_pem(None)),
    };
    ParsedCertificate::try_from(&cert).map_err(|source| PkiError::BadCertificate {
        path: Some(path.to_path_buf()),
        source,
    })?;
    Ok((cert, text))
}

fn read_key(path: &Path) -> Result<KeyPair, PkiError> {
    let der = PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| PkiError::NotPem {
        path: path.to_path_buf(),
        expected: "private key",
        source: Some(e),
    })?;
    KeyPair::try_from(&der).map_err(|source| PkiError::BadKey {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|source| io_error(path, "read", source))
}

/// Refuses a key that is not the one in its certificate, so a mixed-up restore is named at
/// start-up rather than showing up as failed handshakes.
fn check_key_fits(
    key: &KeyPair,
    key_path: &Path,
    cert: &CertificateDer<'static>,
    cert_path: &Path,
) -> Result<(), PkiError> {
    CertifiedKey::from_der(vec![cert.clone()], key_der(key), &tls::provider())
        .map(drop)
        .map_err(|source| PkiError::Mismatch {
            path: key_path.to_path_buf(),
            problem: "does not hold the key of",
            other: cert_path.to_path_buf(),
            source: Box::new(source),
        })
}

/// Writes the files into a fresh sibling directory and renames it onto `dir`, so a crash during
/// the first start leaves no PKI or a complete one, never the partial set later starts refuse.
/// An empty `dir` is replaced; a leftover sibling from an earlier crash is removed first (its CA
/// was never served, so nobody can have pinned it).
fn write_new_dir(dir: &Path, files: &[(&str, &[u8], u32)]) -> Result<(), PkiError> {
    let mut staging_name = dir.file_name().unwrap_or(dir.as_os_str()).to_os_string();
    staging_name.push(".new");
    let staging = dir.with_file_name(staging_name);
    match fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(io_error(&staging, "remove the leftover", e));
        }
        _ => {}
    }
    DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|source| io_error(&staging, "create directory", source))?;
    for (name, bytes, mode) in files {
        let path = staging.join(name);
        write_new_file(&path, bytes, *mode).map_err(|source| io_error(&path, "write", source))?;
    }
    sync_dir(&staging)?;
    fs::rename(&staging, dir)
        .map_err(|source| io_error(dir, "move the new certificates into", source))?;
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

/// Creates `path` with `mode` from the first moment, so a key is never readable by others.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a directory's new entries durable.
fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error(dir, "sync directory", source))
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

#[cfg(test)]
mod tests;
