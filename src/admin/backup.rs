//! `picket backup`, `restore` and `check`, on the manager's host. A backup of a running manager
//! asks it (admin API key from the data dir) for a snapshot of its store, then packs it here
//! with the PKI; a stopped manager's store is opened directly.

use super::{AdminError, ApiClient, ClientOptions};
use crate::backup::{self, BackupError};
use crate::cli::backup::{BackupArgs, CheckArgs, RestoreArgs};
use crate::site::STORE_FILE;
use crate::store::{Snapshot, Store, StoreError};
use hyper::Method;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The first line of `file`: a passphrase kept out of the command line and the shell history.
fn passphrase(file: Option<&Path>) -> Result<Option<Vec<u8>>, AdminError> {
    let Some(file) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file).map_err(|source| AdminError::File {
        path: file.to_path_buf(),
        source,
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(AdminError::Usage(format!(
            "{} holds no passphrase on its first line",
            file.display()
        )));
    }
    Ok(Some(line.as_bytes().to_vec()))
}

/// `--data-dir`, else `$PICKET_DATA_DIR`. (Not for `restore`: its data dir is a new one, named
/// on purpose, never the live one a variable points at.)
fn data_dir(flag: &Option<PathBuf>) -> Result<PathBuf, AdminError> {
    crate::site::data_dir(flag.clone()).map_err(|e| AdminError::Usage(e.to_string()))
}

pub fn backup(args: BackupArgs) -> Result<(), AdminError> {
    let dir = &data_dir(&args.data_dir)?;
    let store_path = dir.join(STORE_FILE);
    if !store_path.exists() {
        return Err(BackupError::NoStore(store_path).into());
    }
    if args.out.exists() {
        return Err(AdminError::Usage(format!(
            "{} exists: a backup is never written over a file",
            args.out.display()
        )));
    }
    let pass = passphrase(args.passphrase_file.as_deref())?;
    let now = crate::clock::real_wall();
    let opened = match crate::store::schema_of(&store_path) {
        // Another version's store, stopped: opening it here would migrate it.
        Ok(_) if let Some(problem) = backup::schema_problem(&store_path) => {
            return Err(AdminError::Config(problem));
        }
        Ok(_) => Store::open(&store_path),
        Err(e) => Err(e),
    };
    let (header, snapshot) = match opened {
        // Stopped: the store is ours for the moment.
        Ok(store) => backup::backup_store(&store, dir, &args.out, pass.as_deref(), now)?,
        Err(StoreError::Locked { .. }) => {
            let options = ClientOptions {
                data_dir: Some(dir.clone()),
                ..ClientOptions::default()
            };
            // A large store takes minutes to copy; a client that gave up sooner would leave
            // the manager's snapshot behind.
            let answer = ApiClient::new(&options)?
                .with_timeout(std::time::Duration::from_secs(3600))
                .call(Method::POST, "/api/v1/backup", None)?;
            let name = answer["snapshot"].as_str().unwrap_or_default();
            // Only a file the manager wrote in its snapshot directory is read, and removed.
            let relative = Path::new(name);
            if !relative.starts_with(backup::SNAPSHOT_DIR) || relative.components().count() != 2 {
                return Err(AdminError::Config(format!(
                    "the manager named an unexpected snapshot: '{name}'"
                )));
            }
            let path = dir.join(relative);
            let snapshot = Snapshot {
                schema: u32::try_from(answer["schema"].as_u64().unwrap_or(0)).unwrap_or(0),
                tables: answer["tables"]
                    .as_object()
                    .map(|t| {
                        t.iter()
                            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let written = backup::write(dir, (&path, &snapshot), &args.out, pass.as_deref(), now);
            let _ = std::fs::remove_file(&path);
            (written?, snapshot)
        }
        Err(e) => return Err(BackupError::Store(e).into()),
    };
    let size = std::fs::metadata(&args.out).map_or(0, |m| m.len());
    let count = |t: &str| snapshot.records(t).unwrap_or(0);
    if args.json {
        out!(
            "{}",
            json!({
                "file": args.out.display().to_string(),
                "bytes": size,
                "schema": header.schema,
                "encrypted": pass.is_some(),
                "files": header.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
                "computers": count("computers"),
                "events": count("events"),
            })
        );
    } else {
        out!(
            "Backed up {} to {} ({size} bytes{}): store schema {}, {} computers, {} events, the \
             PKI with its CA key, the admin key.",
            dir.display(),
            args.out.display(),
            if pass.is_some() { ", encrypted" } else { "" },
            header.schema,
            count("computers"),
            count("events"),
        );
    }
    Ok(())
}

pub fn restore(args: RestoreArgs) -> Result<(), AdminError> {
    let pass = passphrase(args.passphrase_file.as_deref())?;
    let restored = backup::restore(&args.file, &args.data_dir, pass.as_deref())?;
    if args.json {
        out!(
            "{}",
            json!({
                "data_dir": args.data_dir.display().to_string(),
                "schema": restored.header.schema,
                "created_ms": restored.header.created_ms,
                "computers": restored.computers,
                "ca_sha256": restored.ca_sha256,
            })
        );
    } else {
        out!(
            "Restored the backup of {} into {}: {} computers, CA pin {} (the same agents trust \
             it). Start the manager with --data-dir {} where the old one ran, on the same \
             address.",
            crate::clock::format_utc(crate::clock::WallMs(restored.header.created_ms)),
            args.data_dir.display(),
            restored.computers,
            restored.ca_sha256,
            args.data_dir.display(),
        );
    }
    Ok(())
}

pub fn check(args: CheckArgs) -> Result<(), AdminError> {
    let dir = data_dir(&args.data_dir)?;
    let checked = backup::check(&dir);
    if args.json {
        out!(
            "{}",
            json!({"ok": checked.problems.is_empty(), "fine": checked.fine, "problems": checked.problems})
        );
    } else {
        for line in &checked.fine {
            out!("ok: {line}");
        }
        for line in &checked.problems {
            out!("PROBLEM: {line}");
        }
    }
    if checked.problems.is_empty() {
        Ok(())
    } else {
        Err(AdminError::Partial(format!(
            "{} problem(s) in {}",
            checked.problems.len(),
            dir.display()
        )))
    }
}
