//! The CA and the manager certificate: created, reloaded, reissued, refused when incomplete.

use super::*;

/// Certificates made now, as the running manager makes them (rustls checks them against
/// the system's time).
fn real_now() -> SystemTime {
    crate::clock::real_wall().to_system_time()
}
use rustls::server::WebPkiClientVerifier;
use std::os::unix::fs::PermissionsExt;

const HOST: &str = "mgr.example";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn fresh() -> (tempfile::TempDir, PathBuf, ManagerPki) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let (pki, created) = ManagerPki::load_or_create(&dir, HOST, real_now()).unwrap();
    assert!(created);
    (tmp, dir, pki)
}

#[test]
fn create_then_load_keeps_the_ca_and_the_manager_certificate() {
    let (_tmp, dir, first) = fresh();
    let (second, created) = ManagerPki::load_or_create(&dir, HOST, real_now()).unwrap();
    assert!(!created);
    assert_eq!(first.ca_sha256_hex(), second.ca_sha256_hex());
    assert_eq!(first.ca_sha256_hex().len(), 64);
    assert_eq!(first.ca_cert_der(), second.ca_cert_der());
    assert_eq!(first.manager_cert, second.manager_cert);
    assert_eq!(
        first.ca_cert_pem(),
        fs::read_to_string(dir.join(CA_CERT)).unwrap()
    );
}

#[test]
fn keys_are_0600_and_the_dir_0700() {
    let (tmp, dir, _pki) = fresh();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
    assert_eq!(mode(&dir.join(MANAGER_KEY)), 0o600);
    assert!(!tmp.path().join("pki.new").exists());
}

#[test]
fn missing_manager_key_is_refused_and_nothing_regenerated() {
    let (_tmp, dir, _pki) = fresh();
    let ca_before = fs::read(dir.join(CA_CERT)).unwrap();
    fs::remove_file(dir.join(MANAGER_KEY)).unwrap();
    let err = ManagerPki::load_or_create(&dir, HOST, real_now()).unwrap_err();
    assert!(matches!(err, PkiError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("manager.key"), "{err}");
    assert_eq!(fs::read(dir.join(CA_CERT)).unwrap(), ca_before);
    assert!(!dir.join(MANAGER_KEY).exists());
}

#[test]
fn garbage_ca_crt_is_refused_naming_it() {
    let (_tmp, dir, _pki) = fresh();
    let path = dir.join(CA_CERT);
    fs::write(&path, "garbage\n").unwrap();
    let err = ManagerPki::load_or_create(&dir, HOST, real_now()).unwrap_err();
    assert!(matches!(err, PkiError::NotPem { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // Valid PEM around bytes that are not a certificate.
    fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = ManagerPki::load_or_create(&dir, HOST, real_now()).unwrap_err();
    assert!(matches!(err, PkiError::BadCertificate { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn files_from_another_installation_are_refused() {
    let (_tmp, dir, _pki) = fresh();
    let (_tmp2, other, _other_pki) = fresh();

    let ca_key = fs::read(dir.join(CA_KEY)).unwrap();
    fs::copy(other.join(CA_KEY), dir.join(CA_KEY)).unwrap();
    let err = ManagerPki::load_or_create(&dir, HOST, real_now()).unwrap_err();
    assert!(matches!(err, PkiError::Mismatch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ca.key does not hold the key of"),
        "{err}"
    );
    fs::write(dir.join(CA_KEY), ca_key).unwrap();

    for name in [MANAGER_CERT, MANAGER_KEY] {
        fs::copy(other.join(name), dir.join(name)).unwrap();
    }
    let err = ManagerPki::load_or_create(&dir, HOST, real_now()).unwrap_err();
    assert!(matches!(err, PkiError::Mismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("manager.crt is not a valid certificate"),
        "{err}"
    );
}

#[test]
fn an_expiring_manager_certificate_is_reissued_by_the_same_ca() {
    let (_tmp, dir, first) = fresh();
    let later = real_now() + Duration::from_secs(720 * DAY);
    let (renewed, created) = load_or_create_at(&dir, HOST, later).unwrap();
    assert!(!created);
    assert_eq!(renewed.ca_sha256_hex(), first.ca_sha256_hex());
    assert_ne!(renewed.manager_cert, first.manager_cert);
    let on_disk = read_cert(&dir.join(MANAGER_CERT)).unwrap().0;
    assert_eq!(on_disk, renewed.manager_cert);
    let name = server_name(HOST).unwrap();
    let at = unix_time(later).unwrap();
    tls::verify_server_cert(first.ca_cert_der(), &renewed.manager_cert, &name, at).unwrap();
    // Once renewed, the next start at that time keeps it.
    let (again, _) = load_or_create_at(&dir, HOST, later).unwrap();
    assert_eq!(again.manager_cert, renewed.manager_cert);
}

#[test]
fn a_new_hostname_gets_a_new_manager_certificate() {
    let (_tmp, dir, first) = fresh();
    let (renamed, _) = ManagerPki::load_or_create(&dir, "10.1.2.3", real_now()).unwrap();
    assert_eq!(renamed.ca_sha256_hex(), first.ca_sha256_hex());
    let name = server_name("10.1.2.3").unwrap();
    let now = UnixTime::now();
    tls::verify_server_cert(first.ca_cert_der(), &first.manager_cert, &name, now).unwrap_err();
    tls::verify_server_cert(first.ca_cert_der(), &renamed.manager_cert, &name, now).unwrap();
}

#[test]
fn manager_certificate_serves_both_ends_and_loopback() {
    let (_tmp, _dir, pki) = fresh();
    let now = UnixTime::now();
    for name in [HOST, "localhost", "127.0.0.1", "::1"] {
        let name = server_name(name).unwrap();
        tls::verify_server_cert(pki.ca_cert_der(), &pki.manager_cert, &name, now).unwrap();
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_cert_der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), tls::provider())
        .build()
        .unwrap();
    verifier
        .verify_client_cert(&pki.manager_cert, &[], now)
        .unwrap();
}

#[test]
fn unusable_hostnames_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    for bad in ["", "two words", "bad/name"] {
        let err = ManagerPki::load_or_create(&dir, bad, real_now()).unwrap_err();
        assert!(matches!(err, PkiError::Hostname { .. }), "{bad:?}: {err:?}");
        assert!(!dir.exists());
    }
}

#[test]
fn leftover_staging_dir_and_empty_pki_dir_do_not_block_the_first_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    fs::create_dir(&dir).unwrap();
    fs::create_dir(tmp.path().join("pki.new")).unwrap();
    fs::write(tmp.path().join("pki.new").join(CA_KEY), b"half").unwrap();
    let (_pki, created) = ManagerPki::load_or_create(&dir, HOST, real_now()).unwrap();
    assert!(created);
    assert!(!tmp.path().join("pki.new").exists());
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn debug_output_leaves_the_keys_out() {
    let (_tmp, _dir, pki) = fresh();
    let shown = format!("{pki:?}");
    assert!(shown.contains(&pki.ca_sha256_hex()));
    assert!(!shown.contains("PRIVATE"));
    assert!(!shown.to_lowercase().contains("key"), "{shown}");
}
