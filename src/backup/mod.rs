//! Backups of a manager's data dir: the store (a snapshot of one read transaction, taken while
//! the manager runs), the PKI with the CA key, the admin API key and the ticket key, in one file
//! (`schema/backup.md`), optionally encrypted; their restore into a new data dir; and the check
//! of a data dir's store and PKI.
//!
//! The data dir is what every agent's trust hangs on (its CA key signed their certificates):
//! a restored copy serves the same agents, whose certificates still verify.

pub mod format;

use crate::clock::WallMs;
use crate::pki::{ManagerPki, PkiError};
use crate::site::{ADMIN_KEY_FILE, PKI_DIR, STORE_FILE};
use crate::store::{CURRENT_SCHEMA_VERSION, Reads, Snapshot, Store, StoreError};
use format::{FileEntry, FormatError, Header};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where a running manager writes the snapshot a backup is made of, in its data dir (the same
/// filesystem, readable by whoever can read the data dir).
pub const SNAPSHOT_DIR: &str = "snapshots";
/// The longest header line read.
const HEADER_LIMIT: usize = 1 << 20;

#[derive(Debug)]
pub enum BackupError {
    Store(StoreError),
    Format(FormatError),
    Pki(PkiError),
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// The data dir lacks its store: nothing to back up.
    NoStore(PathBuf),
    /// Restoring over anything is refused: it could be a live data dir.
    NotEmpty(PathBuf),
    SchemaTooNew {
        found: u32,
        supported: u32,
    },
    /// A file's bytes do not match the header's hash: the backup is damaged.
    Checksum(String),
    /// A path in the header leaves the data dir or is not one a backup holds.
    BadPath(String),
}

impl std::fmt::Display for BackupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupError::Store(e) => e.fmt(f),
            BackupError::Format(e) => e.fmt(f),
            BackupError::Pki(e) => e.fmt(f),
            BackupError::Io { path, what, .. } => write!(f, "cannot {what} {}", path.display()),
            BackupError::NoStore(path) => {
                write!(
                    f,
                    "{} does not exist: is this a manager's data dir?",
                    path.display()
                )
            }
            BackupError::NotEmpty(dir) => write!(
                f,
                "{} is not empty: restore into a new directory (a data dir is never \
                 overwritten, it could be a live one)",
                dir.display()
            ),
            BackupError::SchemaTooNew { found, supported } => write!(
                f,
                "this backup was written by a newer Picket (store schema {found}, this binary \
                 supports {supported}): restore it with that version or a newer one"
            ),
            BackupError::Checksum(path) => {
                write!(
                    f,
                    "{path} in the backup does not match its checksum: the file is damaged"
                )
            }
            BackupError::BadPath(path) => write!(f, "the backup names an unexpected file: {path}"),
        }
    }
}

impl std::error::Error for BackupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackupError::Store(e) => Some(e),
            BackupError::Format(e) => Some(e),
            BackupError::Pki(e) => Some(e),
            BackupError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<StoreError> for BackupError {
    fn from(e: StoreError) -> Self {
        BackupError::Store(e)
    }
}

impl From<FormatError> for BackupError {
    fn from(e: FormatError) -> Self {
        BackupError::Format(e)
    }
}

fn io_err(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { path, what, source }
}

/// A new snapshot's path in `data_dir` (its directory made, 0700).
pub fn snapshot_path(data_dir: &Path, now: WallMs) -> Result<PathBuf, BackupError> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    crate::files::create_private_dir(&dir).map_err(io_err(&dir, "create"))?;
    Ok(dir.join(format!("picket-{}.redb", now.0)))
}

/// Deletes the snapshots left in `data_dir` by a backup that never finished (run at the
/// manager's start, when none can be in progress).
pub fn sweep_snapshots(data_dir: &Path) {
    let dir = data_dir.join(SNAPSHOT_DIR);
    for entry in fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        match fs::remove_file(entry.path()) {
            Ok(()) => log::info!("removed the leftover snapshot {}", entry.path().display()),
            Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
        }
    }
}

/// The files of `data_dir` a backup holds besides the store, as (name in the backup, path).
fn data_dir_files(data_dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let mut files = Vec::new();
    let pki = data_dir.join(PKI_DIR);
    let mut names: Vec<String> = fs::read_dir(&pki)
        .map_err(io_err(&pki, "read"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        // Half-written files of an atomic write are not the PKI.
        .filter(|n| !n.starts_with('.') && !n.ends_with(".tmp"))
        .collect();
    names.sort();
    for name in names {
        files.push((format!("{PKI_DIR}/{name}"), pki.join(&name)));
    }
    let key = data_dir.join(ADMIN_KEY_FILE);
    if key.exists() {
        files.push((ADMIN_KEY_FILE.to_string(), key));
    }
    Ok(files)
}

fn sha256_of(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = File::open(path).map_err(io_err(path, "read"))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path, "read"))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, crate::secret::hex(ctx.finish().as_ref())))
}

/// Writes the backup of `data_dir` whose store is the snapshot at `snapshot` to `out` (mode
/// 0600, written beside it and renamed, so `out` is whole or absent), encrypted if a
/// passphrase is given. Returns its header.
pub fn write(
    data_dir: &Path,
    snapshot: (&Path, &Snapshot),
    out: &Path,
    passphrase: Option<&[u8]>,
    now: WallMs,
) -> Result<Header, BackupError> {
    let mut sources = vec![(STORE_FILE.to_string(), snapshot.0.to_path_buf())];
    sources.extend(data_dir_files(data_dir)?);
    let mut entries = Vec::new();
    for (name, path) in &sources {
        let (size, sha256) = sha256_of(path)?;
        entries.push(FileEntry {
            path: name.clone(),
            size,
            sha256,
        });
    }
    let header = Header {
        created_ms: now.0,
        schema: snapshot.1.schema,
        picket: env!("CARGO_PKG_VERSION").to_string(),
        files: entries,
    };
    // A name of this process's own beside `out`: another file is never touched.
    let partial = out.with_extension(format!("partial-{}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::files::PRIVATE_FILE)
        .open(&partial)
        .map_err(io_err(&partial, "create"))?;
    let written = (|| {
        let mut sealed = format::writer(BufWriter::new(file), passphrase)?;
        let line =
            serde_json::to_vec(&header).map_err(|e| FormatError::BadHeader(e.to_string()))?;
        sealed.write_all(&line).map_err(FormatError::from)?;
        sealed.write_all(b"\n").map_err(FormatError::from)?;
        for ((_, path), entry) in sources.iter().zip(&header.files) {
            let mut file = File::open(path).map_err(io_err(path, "read"))?;
            let copied = io::copy(&mut file, &mut sealed).map_err(io_err(path, "copy"))?;
            // A file that changed between its hash and its copy (a rotated ticket key) would
            // make a backup that fails its own check: better fail now.
            if copied != entry.size {
                return Err(BackupError::Checksum(entry.path.clone()));
            }
        }
        let out_file = sealed.finish().map_err(FormatError::from)?;
        let file = out_file
            .into_inner()
            .map_err(|e| FormatError::Io(e.into_error()))?;
        file.sync_all().map_err(FormatError::from)?;
        Ok::<_, BackupError>(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    // A link, not a rename: it fails if `out` appeared meanwhile instead of replacing it.
    let linked = fs::hard_link(&partial, out).map_err(io_err(out, "write"));
    let _ = fs::remove_file(&partial);
    linked?;
    Ok(header)
}

/// Takes a snapshot of `store` (the manager's, or one opened for the purpose) into the data
/// dir's snapshot directory and writes the backup of it to `out`; the snapshot is removed.
pub fn backup_store(
    store: &Store,
    data_dir: &Path,
    out: &Path,
    passphrase: Option<&[u8]>,
    now: WallMs,
) -> Result<(Header, Snapshot), BackupError> {
    let path = snapshot_path(data_dir, now)?;
    let snapshot = store.snapshot(&path)?;
    let result = write(data_dir, (&path, &snapshot), out, passphrase, now);
    let _ = fs::remove_file(&path);
    Ok((result?, snapshot))
}

/// What a restore wrote.
#[derive(Debug)]
pub struct Restored {
    pub header: Header,
    pub computers: usize,
    /// The CA's pin: the same one agents were given.
    pub ca_sha256: String,
}

/// Restores the backup at `file` into `new_dir`, which must not exist or be empty. Nothing is
/// left in `new_dir` if the restore fails.
pub fn restore(
    file: &Path,
    new_dir: &Path,
    passphrase: Option<&[u8]>,
) -> Result<Restored, BackupError> {
    if let Ok(mut entries) = fs::read_dir(new_dir)
        && entries.next().is_some()
    {
        return Err(BackupError::NotEmpty(new_dir.to_path_buf()));
    }
    let input = File::open(file).map_err(io_err(file, "read"))?;
    let mut payload = format::reader(BufReader::new(input), passphrase)?;
    let line = format::read_line(&mut payload, HEADER_LIMIT)?;
    let header: Header =
        serde_json::from_slice(&line).map_err(|e| FormatError::BadHeader(e.to_string()))?;
    if header.schema > CURRENT_SCHEMA_VERSION {
        return Err(BackupError::SchemaTooNew {
            found: header.schema,
            supported: CURRENT_SCHEMA_VERSION,
        });
    }
    let existed = new_dir.exists();
    let result = restore_into(&header, &mut payload, new_dir);
    match result {
        Ok(restored) => Ok(restored),
        Err(e) => {
            // Back to as it was: nothing half-restored is left for a manager to start on.
            if existed {
                if let Ok(entries) = fs::read_dir(new_dir) {
                    for entry in entries.filter_map(Result::ok) {
                        let _ = fs::remove_dir_all(entry.path())
                            .or_else(|_| fs::remove_file(entry.path()));
                    }
                }
            } else {
                let _ = fs::remove_dir_all(new_dir);
            }
            Err(e)
        }
    }
}

fn restore_into(
    header: &Header,
    payload: &mut impl Read,
    new_dir: &Path,
) -> Result<Restored, BackupError> {
    let private_dir =
        |dir: &Path| crate::files::create_private_dir(dir).map_err(io_err(dir, "create"));
    private_dir(new_dir)?;
    private_dir(&new_dir.join(PKI_DIR))?;
    for entry in &header.files {
        let allowed = entry.path == STORE_FILE
            || entry.path == ADMIN_KEY_FILE
            || entry
                .path
                .strip_prefix(&format!("{PKI_DIR}/"))
                .is_some_and(|name| {
                    !name.is_empty() && !name.contains('/') && !name.starts_with('.')
                });
        if !allowed {
            return Err(BackupError::BadPath(entry.path.clone()));
        }
        let path = new_dir.join(&entry.path);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::files::PRIVATE_FILE)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut left = entry.size;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            payload
                .read_exact(&mut buf[..want])
                .map_err(FormatError::from)?;
            ctx.update(&buf[..want]);
            out.write_all(&buf[..want])
                .map_err(io_err(&path, "write"))?;
            left -= want as u64;
        }
        out.sync_all().map_err(io_err(&path, "write"))?;
        if crate::secret::hex(ctx.finish().as_ref()) != entry.sha256 {
            return Err(BackupError::Checksum(entry.path.clone()));
        }
    }
    // The store opens (its integrity checked, its schema brought up to date) and the PKI's
    // keys fit their certificates, or the restore is undone.
    let store = Store::open(&new_dir.join(STORE_FILE))?;
    let computers = store.read()?.computers()?.len();
    drop(store);
    let ca_sha256 = ManagerPki::check_files(&new_dir.join(PKI_DIR)).map_err(BackupError::Pki)?;
    Ok(Restored {
        header: header.clone(),
        computers,
        ca_sha256,
    })
}

/// Why the store at `path` must not be opened by this binary (which would migrate it): its
/// schema is another's. `None` if it is this binary's.
pub fn schema_problem(path: &Path) -> Option<String> {
    match crate::store::schema_of(path) {
        Ok(Some(found)) if found == CURRENT_SCHEMA_VERSION => None,
        Ok(found) => Some(format!(
            "store: {} is in schema {}, this binary's is {CURRENT_SCHEMA_VERSION}: run this \
             with the binary of the manager that uses it (opening it here would migrate it)",
            path.display(),
            found.map_or("none".to_string(), |f| f.to_string())
        )),
        Err(e) => Some(format!("store: {}", crate::errors::one_line(&e))),
    }
}

/// What `picket check` found in a data dir.
#[derive(Debug, Default)]
pub struct Checked {
    /// What was read and found sound, one line each.
    pub fine: Vec<String>,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
}

/// Checks a stopped manager's data dir: the store's integrity (every page's checksum, on
/// open) and its records (every one decoded), and the PKI (each key fits its certificate).
pub fn check(data_dir: &Path) -> Checked {
    let mut checked = Checked::default();
    let store_path = data_dir.join(STORE_FILE);
    if !store_path.exists() {
        checked
            .problems
            .push(format!("{} does not exist", store_path.display()));
    } else if let Some(problem) = schema_problem(&store_path) {
        checked.problems.push(problem);
    } else {
        match Store::open(&store_path).and_then(|s| s.verify_records()) {
            Ok(counts) => checked.fine.push(format!(
                "store: integrity checked, every record decodes ({})",
                counts
                    .iter()
                    .map(|(t, n)| format!("{n} {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => checked
                .problems
                .push(format!("store: {}", crate::errors::one_line(&e))),
        }
    }
    match ManagerPki::check_files(&data_dir.join(PKI_DIR)) {
        Ok(pin) => checked.fine.push(format!(
            "pki: the keys fit their certificates; CA pin {pin}"
        )),
        Err(e) => checked
            .problems
            .push(format!("pki: {}", crate::errors::one_line(&e))),
    }
    let ticket = data_dir.join(PKI_DIR).join(crate::pki::TICKET_KEY_FILE);
    match fs::metadata(&ticket) {
        Ok(m) if m.len() > 0 => checked.fine.push("pki: the ticket key is present".into()),
        Ok(_) => checked
            .problems
            .push(format!("{} is empty", ticket.display())),
        // A manager that has never run with tickets makes one at its start.
        Err(_) => {}
    }
    checked
}

#[cfg(test)]
mod tests;
