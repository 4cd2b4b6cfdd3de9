//! Files in a data dir written whole or not at all, with their permissions set from the start,
//! and a data dir made private to its owner.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of every file in a data dir: the store holds password and key hashes and every
/// event, the PKI its keys; nothing in it is for another user.
pub const PRIVATE_FILE: u32 = 0o600;
/// The mode of a data dir and the folders in it.
pub const PRIVATE_DIR: u32 = 0o700;
/// How deep [`make_private`] goes: a data dir has one level of folders (`pki/`).
const MAX_DEPTH: usize = 4;

/// Creates `path` empty with mode 0600 if it does not exist, so a database library that creates
/// it under the process's umask (0644, or 0666 under umask 000) finds it private already.
pub fn create_private(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A file or folder whose mode [`make_private`] narrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    pub path: PathBuf,
    pub was: u32,
    pub now: u32,
}

/// Makes `dir` 0700 and every regular file and folder under it 0600 / 0700 (0700 for a file its
/// owner may run), and says which it
/// changed so the caller can log them. Symbolic links are left alone (their target may not be
/// ours to change); a file that cannot be changed is an error naming it.
pub fn make_private(dir: &Path) -> io::Result<Vec<Tightened>> {
    let mut changed = Vec::new();
    tighten(dir, 0, &mut changed)?;
    Ok(changed)
}

fn tighten(path: &Path, depth: usize, changed: &mut Vec<Tightened>) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let wanted = if meta.is_dir() {
        PRIVATE_DIR
    } else if meta.is_file() && meta.permissions().mode() & 0o100 != 0 {
        // A program its owner runs (an agent's upgrade, `DATA/upgrade/picket-VERSION`) stays
        // runnable, by its owner only.
        PRIVATE_DIR
    } else if meta.is_file() {
        PRIVATE_FILE
    } else {
        return Ok(());
    };
    let was = meta.permissions().mode() & 0o7777;
    // Only narrowed: a file the owner cannot write (0400) stays so.
    let now = was & wanted;
    if now != was {
        fs::set_permissions(path, fs::Permissions::from_mode(now))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        changed.push(Tightened {
            path: path.to_path_buf(),
            was,
            now,
        });
    }
    if meta.is_dir() && depth < MAX_DEPTH {
        for entry in fs::read_dir(path)? {
            tighten(&entry?.path(), depth + 1, changed)?;
        }
    }
    Ok(())
}

/// [`make_private`], with a log line for each mode it narrowed (an administrator should know
/// that something had loosened them) and a warning if it could not.
pub fn make_private_logged(dir: &Path) {
    match make_private(dir) {
        Ok(changed) => {
            for t in changed {
                log::warn!(
                    "{} was mode {:04o}; narrowed to {:04o} (a data dir is private to its owner)",
                    t.path.display(),
                    t.was,
                    t.now
                );
            }
        }
        Err(e) => log::warn!(
            "cannot make data dir {} private to its owner: {e}",
            dir.display()
        ),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash leaves the old content or the new, never half of it. The file is created with `mode`
/// (0o600 for secrets), so it is never readable by others even for a moment.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its missing parents, the new ones 0700 from the start (a data dir, its
/// staging and snapshot folders); an existing one is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// Makes the entries of `dir` (a rename into it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_loose_data_dir_is_narrowed_and_what_changed_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir_all(dir.join("pki")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("picket.redb"), b"x").unwrap();
        fs::set_permissions(dir.join("picket.redb"), fs::Permissions::from_mode(0o666)).unwrap();
        fs::write(dir.join("pki/ca.key"), b"k").unwrap();
        fs::set_permissions(dir.join("pki/ca.key"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(dir.join("pki/read-only"), b"r").unwrap();
        fs::set_permissions(dir.join("pki/read-only"), fs::Permissions::from_mode(0o444)).unwrap();
        fs::write(dir.join("program"), b"#!").unwrap();
        fs::set_permissions(dir.join("program"), fs::Permissions::from_mode(0o755)).unwrap();

        let changed = make_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("pki")), 0o700);
        assert_eq!(mode(&dir.join("picket.redb")), 0o600);
        assert_eq!(mode(&dir.join("pki/ca.key")), 0o600);
        assert_eq!(mode(&dir.join("pki/read-only")), 0o400);
        assert_eq!(mode(&dir.join("program")), 0o700, "its owner still runs it");
        let names: Vec<_> = changed.iter().map(|t| t.path.clone()).collect();
        assert!(names.contains(&dir.join("picket.redb")), "{changed:?}");
        assert!(!names.contains(&dir.join("pki/ca.key")), "{changed:?}");
        assert!(changed.iter().any(|t| t.path == dir && t.was == 0o755));
        assert!(
            make_private(&dir).unwrap().is_empty(),
            "a second pass has nothing to do"
        );
    }

    #[test]
    fn writes_whole_file_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join("secret.tmp").exists());
    }
}
