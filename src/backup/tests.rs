use super::*;
use crate::model::Computer;

/// A data dir as a manager leaves it: a store with computers, the PKI, the admin key.
fn data_dir(root: &Path) -> (PathBuf, Store) {
    let dir = root.join("data");
    fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join(STORE_FILE)).unwrap();
    let mut txn = store.write().unwrap();
    for id in 1..=5 {
        txn.put_computer(&Computer::test(id, &format!("web{id}")))
            .unwrap();
    }
    txn.commit().unwrap();
    ManagerPki::load_or_create(
        &dir.join(PKI_DIR),
        "localhost",
        crate::clock::real_wall().to_system_time(),
    )
    .unwrap();
    fs::write(dir.join(ADMIN_KEY_FILE), "k".repeat(64)).unwrap();
    (dir, store)
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&fs::metadata(path).unwrap().permissions()) & 0o777
}

#[test]
fn a_backup_of_a_live_store_restores_into_a_new_dir_with_the_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, store) = data_dir(tmp.path());
    let out = tmp.path().join("site.backup");
    let (header, snapshot) = backup_store(&store, &dir, &out, None, WallMs(7)).unwrap();
    assert_eq!(mode(&out), 0o600);
    assert_eq!(snapshot.records("computers"), Some(5));
    let names: Vec<&str> = header.files.iter().map(|f| f.path.as_str()).collect();
    for name in [
        "picket.redb",
        "pki/ca.crt",
        "pki/ca.key",
        "pki/manager.key",
        "admin-api-key",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // The snapshot is gone; the live store is untouched and still writable.
    assert_eq!(fs::read_dir(dir.join(SNAPSHOT_DIR)).unwrap().count(), 0);
    store.write().unwrap().commit().unwrap();

    let new = tmp.path().join("restored");
    let restored = restore(&out, &new, None).unwrap();
    assert_eq!(restored.computers, 5);
    let pin = ManagerPki::check_files(&dir.join(PKI_DIR)).unwrap();
    assert_eq!(restored.ca_sha256, pin);
    assert_eq!(mode(&new), 0o700);
    assert_eq!(mode(&new.join("pki/ca.key")), 0o600);
    assert_eq!(
        fs::read(new.join(ADMIN_KEY_FILE)).unwrap(),
        fs::read(dir.join(ADMIN_KEY_FILE)).unwrap()
    );
    let checked = check(&new);
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert!(
        checked.fine.iter().any(|l| l.contains("5 computers")),
        "{:?}",
        checked.fine
    );
}

#[test]
fn a_restore_never_writes_over_a_data_dir_and_undoes_itself_when_the_backup_is_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, store) = data_dir(tmp.path());
    let out = tmp.path().join("site.backup");
    backup_store(&store, &dir, &out, Some(b"pw"), WallMs(7)).unwrap();
    drop(store);
    // Over the live data dir: refused, nothing touched.
    let before = fs::read(dir.join(STORE_FILE)).unwrap();
    assert!(matches!(
        restore(&out, &dir, Some(b"pw")),
        Err(BackupError::NotEmpty(_))
    ));
    assert_eq!(fs::read(dir.join(STORE_FILE)).unwrap(), before);
    // Without the passphrase, or with a wrong one: refused, nothing left behind.
    let new = tmp.path().join("restored");
    assert!(matches!(
        restore(&out, &new, None),
        Err(BackupError::Format(FormatError::NeedsPassphrase))
    ));
    assert!(matches!(
        restore(&out, &new, Some(b"nope")),
        Err(BackupError::Format(FormatError::WrongPassphraseOrDamaged))
    ));
    assert!(!new.exists());
    // Cut short: the restore is undone.
    let bytes = fs::read(&out).unwrap();
    let cut = tmp.path().join("cut.backup");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(restore(&cut, &new, Some(b"pw")).is_err());
    assert!(!new.exists());
    assert!(restore(&out, &new, Some(b"pw")).is_ok());
}

#[test]
fn a_backup_from_a_newer_schema_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("new.backup");
    let mut sealed = format::writer(File::create(&out).unwrap(), None).unwrap();
    let header = Header {
        created_ms: 1,
        schema: CURRENT_SCHEMA_VERSION + 1,
        picket: "9.9.9".into(),
        files: vec![],
    };
    sealed
        .write_all(&serde_json::to_vec(&header).unwrap())
        .unwrap();
    sealed.write_all(b"\n").unwrap();
    sealed.finish().unwrap();
    let new = tmp.path().join("restored");
    let err = restore(&out, &new, None).unwrap_err();
    assert!(matches!(err, BackupError::SchemaTooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer Picket"), "{err}");
    assert!(!new.exists());
}

#[test]
fn check_says_what_is_wrong_with_a_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, store) = data_dir(tmp.path());
    drop(store);
    assert!(check(&dir).problems.is_empty());
    // Another manager's CA key: it does not fit this CA certificate.
    let other = tmp.path().join("other");
    ManagerPki::load_or_create(
        &other,
        "localhost",
        crate::clock::real_wall().to_system_time(),
    )
    .unwrap();
    fs::copy(other.join("ca.key"), dir.join("pki/ca.key")).unwrap();
    let checked = check(&dir);
    assert!(
        checked
            .problems
            .iter()
            .any(|p| p.starts_with("pki:") && p.contains("ca.key")),
        "{:?}",
        checked.problems
    );
    fs::remove_file(dir.join(STORE_FILE)).unwrap();
    assert!(
        check(&dir)
            .problems
            .iter()
            .any(|p| p.contains("picket.redb"))
    );
}
