//! Scheduled backups (`--backup-every 24h --backup-dir DIR --backup-keep 7`), for sites without
//! a backup system: a backup of the running store every period into DIR, the newest `keep`
//! kept. The schedule follows the newest backup already in DIR, so a manager restarted more
//! often than the period still backs up once a period.

use crate::backup;
use crate::clock::{Clock, WallMs};
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `--backup-*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    pub dir: PathBuf,
    pub keep: usize,
}

const PREFIX: &str = "picket-";
const SUFFIX: &str = ".backup";
/// After a failure, the next try: not a full period away, not a tight loop either.
const RETRY: Duration = Duration::from_secs(15 * 60);

/// The backups in `dir`, oldest first, with the time in their name.
fn existing(dir: &Path) -> Vec<(WallMs, PathBuf)> {
    let mut found: Vec<(WallMs, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let ms = name
                .strip_prefix(PREFIX)?
                .strip_suffix(SUFFIX)?
                .parse()
                .ok()?;
            Some((WallMs(ms), e.path()))
        })
        .collect();
    found.sort();
    found
}

/// How long until the next backup is due, given the newest one's time.
pub fn due_in(newest: Option<WallMs>, now: WallMs, every: Duration) -> Duration {
    match newest {
        None => Duration::ZERO,
        Some(at) => Duration::from_millis(
            (at.0.saturating_add(every.as_millis() as u64)).saturating_sub(now.0),
        ),
    }
}

pub async fn run(store: Arc<Store>, data_dir: PathBuf, clock: Arc<dyn Clock>, schedule: Schedule) {
    loop {
        let newest = existing(&schedule.dir).last().map(|(at, _)| *at);
        clock
            .sleep(due_in(newest, clock.wall(), schedule.every))
            .await;
        let (store, data_dir, schedule_dir, now) = (
            store.clone(),
            data_dir.clone(),
            schedule.dir.clone(),
            clock.wall(),
        );
        let out = schedule_dir.join(format!("{PREFIX}{}{SUFFIX}", now.0));
        let done = smol::unblock(move || {
            std::fs::create_dir_all(&schedule_dir)
                .map_err(|source| backup::BackupError::Io {
                    path: schedule_dir.clone(),
                    what: "create",
                    source,
                })
                .and_then(|()| backup::backup_store(&store, &data_dir, &out, None, now))
                .map(|(_, snapshot)| (out, snapshot))
        })
        .await;
        match done {
            Ok((out, snapshot)) => {
                log::info!(
                    "backup written to {} ({} computers)",
                    out.display(),
                    snapshot.records("computers").unwrap_or(0)
                );
                let all = existing(&schedule.dir);
                for (_, old) in all.iter().take(all.len().saturating_sub(schedule.keep)) {
                    if let Err(e) = std::fs::remove_file(old) {
                        log::warn!("cannot remove the old backup {}: {e}", old.display());
                    }
                }
            }
            Err(e) => {
                log::error!(
                    "the scheduled backup failed: {}; trying again in {} min",
                    crate::errors::one_line(&e),
                    RETRY.as_secs() / 60
                );
                clock.sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_backup_is_a_period_after_the_newest_one_or_now() {
        let day = Duration::from_secs(86_400);
        assert_eq!(due_in(None, WallMs(5), day), Duration::ZERO);
        assert_eq!(
            due_in(Some(WallMs(1_000)), WallMs(3_600_000), day),
            Duration::from_millis(86_400_000 + 1_000 - 3_600_000)
        );
        assert_eq!(
            due_in(Some(WallMs(0)), WallMs(90_000_000), day),
            Duration::ZERO
        );
    }

    #[test]
    fn scheduled_backups_are_written_and_only_the_newest_are_kept() {
        use crate::clock::ManualClock;
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let store = Arc::new(Store::open(&data.join(crate::site::STORE_FILE)).unwrap());
        crate::pki::ManagerPki::load_or_create(
            &data.join(crate::site::PKI_DIR),
            "localhost",
            crate::clock::real_wall().to_system_time(),
        )
        .unwrap();
        let dir = tmp.path().join("backups");
        let clock = Arc::new(ManualClock::new(WallMs(1_000_000)));
        let schedule = Schedule {
            every: Duration::from_secs(3600),
            dir: dir.clone(),
            keep: 2,
        };
        let task = smol::spawn(run(store, data, clock.clone(), schedule));
        let hour = 3_600_000;
        let times = || -> Vec<u64> { existing(&dir).iter().map(|(at, _)| at.0).collect() };
        let until = |want: &[u64]| {
            let deadline = crate::clock::Stopwatch::now() + Duration::from_secs(20);
            while times() != want && crate::clock::Stopwatch::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            times()
        };
        assert_eq!(until(&[1_000_000]), [1_000_000], "the first is due at once");
        // Then one an hour; the two newest are kept.
        for want in [
            vec![1_000_000, 1_000_000 + hour],
            vec![1_000_000 + hour, 1_000_000 + 2 * hour],
        ] {
            while clock.sleepers() == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            clock.advance(Duration::from_secs(3600));
            assert_eq!(until(&want), want);
        }
        drop(task);
    }
}
