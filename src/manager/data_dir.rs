//! The manager's data dir: checked at start, initialised on first start (Base Policy, admin API
//! key, the console's admin user), and the `ports.json` that tells scripts and tests where the manager listens.

use super::error::ManagerError;
use crate::clock::WallMs;
use crate::files::write_atomic;
use crate::model::{ADMIN_USER, BASE_POLICY_NAME, Policy, Settings, User};
use crate::password;
use crate::pki;
use crate::site::{ADMIN_KEY_FILE, PORTS_FILE, STORE_FILE};
use crate::store::{Reads, Store};
use std::fs;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;

/// Creates the data dir if it is missing (mode 0700: it holds keys) and checks that it is a
/// writable directory, so a wrong path is reported before anything else is attempted.
pub fn prepare(dir: &Path) -> Result<(), ManagerError> {
    let problem = |problem, source| ManagerError::DataDir {
        path: dir.to_path_buf(),
        problem,
        source,
    };
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(problem("exists but is not a directory", None)),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => crate::files::create_private_dir(dir)
            .map_err(|e| problem("cannot be created", Some(e)))?,
        Err(e) => return Err(problem("cannot be read", Some(e))),
    }
    let probe = dir.join(".picket-write-test");
    fs::write(&probe, b"")
        .and_then(|()| fs::remove_file(&probe))
        .map_err(|e| problem("is not writable by this user", Some(e)))
}

/// The files a started site leaves in its data dir besides the store: a store missing beside
/// them is a lost or damaged store, not a new site.
const SITE_FILES: [&str; 3] = [ADMIN_KEY_FILE, "pki/ca.key", "pki/ca.crt"];

/// Which of [`SITE_FILES`] exist in `dir`.
fn site_files(dir: &Path) -> Vec<&'static str> {
    SITE_FILES
        .into_iter()
        .filter(|name| dir.join(name).exists())
        .collect()
}

/// Before the store is opened (which would create it): a store file that is missing or empty
/// next to a CA or an admin key is refused. Starting anyway would make a new site: a new admin
/// key written over the old one, no computers, every deployed agent refused.
pub fn check_store_present(dir: &Path) -> Result<(), ManagerError> {
    let store = dir.join(STORE_FILE);
    let state = match fs::metadata(&store) {
        Ok(meta) if meta.len() == 0 => "is empty",
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => "is missing",
        Err(_) => return Ok(()), // Store::open reports what is wrong with it.
    };
    refuse_if_site(dir, state)
}

/// After the store is opened: a store without the Base Policy is a new one, which an
/// initialised data dir must not get either (a valid but fresh file restored by mistake).
pub fn check_store_matches_site(dir: &Path, store: &Store) -> Result<(), ManagerError> {
    if store.read()?.policies()?.is_empty() {
        return refuse_if_site(dir, "holds no policies (it is new)");
    }
    Ok(())
}

fn refuse_if_site(dir: &Path, state: &'static str) -> Result<(), ManagerError> {
    let found = site_files(dir);
    if found.is_empty() {
        return Ok(());
    }
    Err(ManagerError::StoreLost {
        dir: dir.to_path_buf(),
        state,
        found,
    })
}

/// Creates the Base Policy if the store has none. Returns whether it did (the first start).
pub fn ensure_base_policy(store: &Store) -> Result<bool, ManagerError> {
    let mut txn = store.write()?;
    if !txn.policies()?.is_empty() {
        return Ok(false);
    }
    let base = Policy {
        rules: Vec::new(),
        id: txn.next_policy_id()?,
        name: BASE_POLICY_NAME.to_string(),
        parent: None,
        settings: Settings::default(),
    };
    txn.put_policy(&base)?;
    txn.commit()?;
    Ok(true)
}

/// The admin API key: kept in `DIR/admin-api-key` (mode 0600) for the CLI, stored only as a
/// hash. If the file was removed, a new key replaces the old one (which stops working), since
/// the old key cannot be recovered from its hash. Returns the key's hash.
pub fn ensure_admin_key(store: &Store, dir: &Path) -> Result<[u8; 32], ManagerError> {
    let path = dir.join(ADMIN_KEY_FILE);
    let stored = store.read()?.admin_key_hash()?;
    match (stored, fs::read_to_string(&path)) {
        (Some(hash), Ok(key)) => {
            if !crate::secret::hashes_equal(&crate::secret::sha256(key.trim().as_bytes()), &hash) {
                log::warn!(
                    "{} does not hold the current admin API key; the CLI will be refused",
                    path.display()
                );
            }
            Ok(hash)
        }
        (stored, _) => {
            if stored.is_some() {
                log::warn!(
                    "{} is missing: writing a new admin API key; the old one stops working",
                    path.display()
                );
            }
            let key = pki::random_secret()?;
            let hash = crate::secret::sha256(key.as_bytes());
            write_atomic(&path, format!("{key}\n").as_bytes(), 0o600).map_err(|source| {
                ManagerError::File {
                    path: path.clone(),
                    source,
                }
            })?;
            let mut txn = store.write()?;
            txn.set_admin_key_hash(&hash)?;
            txn.commit()?;
            Ok(hash)
        }
    }
}

/// Creates the console's `admin` user with a generated one-time password if there is none.
/// Returns that password, to be shown once; the store keeps only its Argon2id hash.
pub fn ensure_admin_user(store: &Store, now: WallMs) -> Result<Option<String>, ManagerError> {
    if store.read()?.user(ADMIN_USER)?.is_some() {
        return Ok(None);
    }
    set_admin_password(store, now).map(Some)
}

/// Gives `admin` a new generated one-time password (created if missing) and returns it. The
/// console asks for a password of the administrator's own at the next login.
pub fn set_admin_password(store: &Store, now: WallMs) -> Result<String, ManagerError> {
    let password = password::generate()?;
    let user = User {
        name: ADMIN_USER.to_string(),
        password_hash: password::hash(&password)?,
        must_change_password: true,
        password_changed: now,
    };
    let mut txn = store.write()?;
    txn.put_user(&user)?;
    txn.commit()?;
    Ok(password)
}

/// Writes `{"agent": ADDR, "console": ADDR}` once both listeners are bound.
pub fn write_ports(dir: &Path, agent: SocketAddr, console: SocketAddr) -> Result<(), ManagerError> {
    let path = dir.join(PORTS_FILE);
    let json = serde_json::json!({"agent": agent.to_string(), "console": console.to_string()});
    write_atomic(&path, format!("{json}\n").as_bytes(), 0o600)
        .map_err(|source| ManagerError::File { path, source })
}

/// Removes `ports.json` on a clean stop, so nobody reads the ports of a manager that is gone.
pub fn remove_ports(dir: &Path) {
    let _ = fs::remove_file(dir.join(PORTS_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_admin_user_is_created_once_and_reset_on_demand() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join(STORE_FILE)).unwrap();
        let first = ensure_admin_user(&store, WallMs(1)).unwrap().unwrap();
        assert_eq!(ensure_admin_user(&store, WallMs(2)).unwrap(), None);
        let user = store.read().unwrap().user("admin").unwrap().unwrap();
        assert!(user.must_change_password);
        assert!(!user.password_hash.contains(&first));
        assert!(password::verify(&first, &user.password_hash).unwrap());

        let second = set_admin_password(&store, WallMs(3)).unwrap();
        let user = store.read().unwrap().user("admin").unwrap().unwrap();
        assert!(password::verify(&second, &user.password_hash).unwrap());
        assert!(!password::verify(&first, &user.password_hash).unwrap());
        assert_eq!(user.password_changed, WallMs(3));
    }

    #[test]
    fn prepare_creates_a_private_dir_and_refuses_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        prepare(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = prepare(&file).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn admin_key_is_kept_across_starts_and_replaced_when_its_file_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join(STORE_FILE)).unwrap();
        let first = ensure_admin_key(&store, tmp.path()).unwrap();
        let key = fs::read_to_string(tmp.path().join(ADMIN_KEY_FILE)).unwrap();
        assert_eq!(crate::secret::sha256(key.trim().as_bytes()), first);
        assert_eq!(ensure_admin_key(&store, tmp.path()).unwrap(), first);

        fs::remove_file(tmp.path().join(ADMIN_KEY_FILE)).unwrap();
        let second = ensure_admin_key(&store, tmp.path()).unwrap();
        assert_ne!(first, second);
        assert_eq!(
            store.read().unwrap().admin_key_hash().unwrap(),
            Some(second)
        );
    }

    #[test]
    fn a_missing_or_empty_store_beside_a_site_is_refused_and_a_new_dir_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        check_store_present(dir).unwrap();
        fs::write(dir.join(STORE_FILE), b"").unwrap();
        check_store_present(dir).unwrap();

        fs::write(dir.join(ADMIN_KEY_FILE), b"key\n").unwrap();
        let err = check_store_present(dir).unwrap_err().to_string();
        assert!(
            err.contains("is empty") && err.contains(ADMIN_KEY_FILE),
            "{err}"
        );
        assert!(err.contains("backup") && err.contains("move"), "{err}");
        fs::remove_file(dir.join(STORE_FILE)).unwrap();
        let err = check_store_present(dir).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");

        let store = Store::open(&dir.join(STORE_FILE)).unwrap();
        let err = check_store_matches_site(dir, &store)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no policies"), "{err}");
        ensure_base_policy(&store).unwrap();
        check_store_matches_site(dir, &store).unwrap();
    }

    #[test]
    fn base_policy_is_created_once() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join(STORE_FILE)).unwrap();
        assert!(ensure_base_policy(&store).unwrap());
        assert!(!ensure_base_policy(&store).unwrap());
        let policies = store.read().unwrap().policies().unwrap();
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].name, BASE_POLICY_NAME);
        assert_eq!(policies[0].parent, None);
    }
}
