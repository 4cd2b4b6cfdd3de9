//! The store's own tests: records round-trip, ids, snapshots, migrations, indexes, faults;
//! the events table and its index by time in `events.rs`; the notification tables in
//! `notify.rs`, and the arrivals and cursors of forwarded events in `event_feed.rs`.

mod event_feed;
mod events;
mod notify;

use super::records::tests::{sample_computer, sample_policy, sample_token};
use super::*;
use crate::model::BASE_POLICY_NAME;

fn temp_store() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("picket.redb");
    let store = Store::open(&path).unwrap();
    (dir, path, store)
}

fn base_policy() -> Policy {
    Policy {
        rules: Vec::new(),
        id: PolicyId(1),
        name: BASE_POLICY_NAME.to_string(),
        parent: None,
        settings: Default::default(),
    }
}

fn policy_count(r: &impl Reads) -> usize {
    r.policies().unwrap().len()
}

#[test]
fn every_record_round_trips_through_a_commit_and_a_reopen() {
    let (_dir, path, store) = temp_store();
    let mut w = store.write().unwrap();
    // Put out of id order: the lists must come back in id order.
    w.put_policy(&sample_policy()).unwrap();
    w.put_policy(&base_policy()).unwrap();
    w.put_computer(&sample_computer()).unwrap();
    w.put_token(&sample_token()).unwrap();
    w.set_admin_key_hash(&[0x5a; 32]).unwrap();
    w.commit().unwrap();
    store.close().unwrap();

    let store = Store::open(&path).unwrap();
    assert_eq!(store.path(), path);
    let r = store.read().unwrap();
    assert_eq!(r.policies().unwrap(), vec![base_policy(), sample_policy()]);
    assert_eq!(r.policy(PolicyId(2)).unwrap(), Some(sample_policy()));
    assert_eq!(r.policy(PolicyId(3)).unwrap(), None);
    assert_eq!(r.computers().unwrap(), vec![sample_computer()]);
    assert_eq!(r.computer(ComputerId(7)).unwrap(), Some(sample_computer()));
    assert_eq!(r.computer(ComputerId(1)).unwrap(), None);
    assert_eq!(r.token(&sample_token().hash).unwrap(), Some(sample_token()));
    assert_eq!(r.token(&TokenHash([0; 32])).unwrap(), None);
    assert_eq!(r.admin_key_hash().unwrap(), Some([0x5a; 32]));
    assert_eq!(r.schema_version().unwrap(), CURRENT_SCHEMA_VERSION);
}

#[test]
fn a_fresh_store_is_empty_at_the_current_schema() {
    let (_dir, _path, store) = temp_store();
    let r = store.read().unwrap();
    assert_eq!(r.schema_version().unwrap(), CURRENT_SCHEMA_VERSION);
    assert!(r.policies().unwrap().is_empty());
    assert!(r.computers().unwrap().is_empty());
    assert!(r.tokens().unwrap().is_empty());
    assert_eq!(r.admin_key_hash().unwrap(), None);
}

#[test]
fn ids_are_never_reused_after_a_delete_and_a_reopen() {
    let (_dir, path, store) = temp_store();
    let mut w = store.write().unwrap();
    assert_eq!(w.next_policy_id().unwrap(), PolicyId(1));
    assert_eq!(w.next_policy_id().unwrap(), PolicyId(2));
    assert_eq!(w.next_computer_id().unwrap(), ComputerId(1));
    w.put_computer(&Computer {
        id: ComputerId(1),
        ..sample_computer()
    })
    .unwrap();
    w.commit().unwrap();

    let mut w = store.write().unwrap();
    assert!(w.delete_computer(ComputerId(1)).unwrap());
    assert!(!w.delete_computer(ComputerId(1)).unwrap());
    assert!(!w.delete_policy(PolicyId(2)).unwrap());
    w.commit().unwrap();
    store.close().unwrap();

    let store = Store::open(&path).unwrap();
    let mut w = store.write().unwrap();
    assert_eq!(w.next_policy_id().unwrap(), PolicyId(3));
    assert_eq!(w.next_computer_id().unwrap(), ComputerId(2));
}

#[test]
fn a_put_under_an_id_not_given_out_moves_the_counter_past_it() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_policy(&base_policy()).unwrap();
    w.put_computer(&sample_computer()).unwrap();
    assert_eq!(w.next_policy_id().unwrap(), PolicyId(2));
    assert_eq!(w.next_computer_id().unwrap(), ComputerId(8));
    // A put below the counter must not move it back.
    w.put_policy(&base_policy()).unwrap();
    assert_eq!(w.next_policy_id().unwrap(), PolicyId(3));
}

#[test]
fn a_dropped_write_leaves_nothing_behind() {
    let (_dir, _path, store) = temp_store();
    {
        let mut w = store.write().unwrap();
        w.next_policy_id().unwrap();
        w.put_policy(&base_policy()).unwrap();
        w.put_computer(&sample_computer()).unwrap();
        w.put_token(&sample_token()).unwrap();
        w.set_admin_key_hash(&[1; 32]).unwrap();
        // A write sees its own changes before commit.
        assert_eq!(policy_count(&w), 1);
    }
    let r = store.read().unwrap();
    assert_eq!(policy_count(&r), 0);
    assert!(r.computers().unwrap().is_empty());
    assert_eq!(r.token(&sample_token().hash).unwrap(), None);
    assert_eq!(r.admin_key_hash().unwrap(), None);
    drop(r);
    let mut w = store.write().unwrap();
    assert_eq!(w.next_policy_id().unwrap(), PolicyId(1));
}

#[test]
fn a_read_is_a_snapshot() {
    let (_dir, _path, store) = temp_store();
    let before = store.read().unwrap();
    let mut w = store.write().unwrap();
    w.put_policy(&base_policy()).unwrap();
    w.commit().unwrap();
    assert_eq!(policy_count(&before), 0);
    assert_eq!(policy_count(&store.read().unwrap()), 1);
}

#[test]
fn tokens_are_listed_in_hash_order() {
    let (_dir, _path, store) = temp_store();
    let low = Token {
        hash: TokenHash([0x01; 32]),
        ..sample_token()
    };
    let mut w = store.write().unwrap();
    w.put_token(&sample_token()).unwrap();
    w.put_token(&low).unwrap();
    w.commit().unwrap();
    let r = store.read().unwrap();
    assert_eq!(r.tokens().unwrap(), vec![low, sample_token()]);
}

#[test]
fn deleting_a_token_removes_it() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_token(&sample_token()).unwrap();
    assert!(w.delete_token(&sample_token().hash).unwrap());
    assert!(!w.delete_token(&sample_token().hash).unwrap());
    assert_eq!(w.token(&sample_token().hash).unwrap(), None);
}

#[test]
fn a_corrupt_value_is_reported_with_its_table_and_key() {
    let (_dir, _path, store) = temp_store();
    let w = store.write().unwrap();
    w.txn
        .open_table(POLICIES)
        .unwrap()
        .insert(5, [0xff, 0xfe, 0x00].as_slice())
        .unwrap();
    w.commit().unwrap();

    let r = store.read().unwrap();
    let err = r.policy(PolicyId(5)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { table: "policies", key } if key == "5"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the stored value for key 5 in table 'policies' is corrupt"
    );
    assert!(matches!(
        r.policies().unwrap_err(),
        StoreError::Corrupt {
            table: "policies",
            ..
        }
    ));
    // The other tables still read.
    assert!(r.computers().unwrap().is_empty());
}

/// Commits `w` as a binary of schema `from` would have left the file, closes it and opens
/// it again, so the migrations since run; checks they got to the current schema.
fn migrated_from(store: Store, path: &Path, w: WriteTxn, from: u32) -> Store {
    set_schema_version(&w, from);
    w.commit().unwrap();
    store.close().unwrap();
    let store = Store::open(path).unwrap();
    let version = store.read().unwrap().schema_version().unwrap();
    assert_eq!(version, CURRENT_SCHEMA_VERSION);
    store
}

/// Writes a schema version as another binary would have left it.
fn set_schema_version(w: &WriteTxn, version: u32) {
    w.txn
        .open_table(META)
        .unwrap()
        .insert(
            meta_key::SCHEMA_VERSION,
            records::encode("meta", &version).unwrap().as_slice(),
        )
        .unwrap();
}

fn named(id: u64, hostname: &str) -> Computer {
    Computer {
        id: ComputerId(id),
        hostname: hostname.into(),
        ..sample_computer()
    }
}

fn holder(r: &impl Reads, hostname: &str) -> Option<u64> {
    r.computer_by_hostname(hostname).unwrap().map(|c| c.id.0)
}

#[test]
fn computers_are_found_by_hostname_through_renames_and_deletes() {
    let (_dir, path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_computer(&named(1, "Web-1")).unwrap();
    w.put_computer(&named(2, "db-1")).unwrap();
    // The writing transaction sees its own index entries.
    assert_eq!(holder(&w, "WEB-1"), Some(1));
    w.commit().unwrap();

    let r = store.read().unwrap();
    assert_eq!(holder(&r, "web-1"), Some(1));
    assert_eq!(holder(&r, "DB-1"), Some(2));
    assert_eq!(holder(&r, "web-"), None, "a prefix is not a match");
    assert_eq!(holder(&r, "web-10"), None);
    drop(r);

    let mut w = store.write().unwrap();
    // A status change keeps the name; a rename moves it.
    w.put_computer(&Computer {
        status: crate::model::Status::Offline,
        ..named(1, "Web-1")
    })
    .unwrap();
    w.put_computer(&named(2, "db-2")).unwrap();
    assert!(w.delete_computer(ComputerId(1)).unwrap());
    assert!(!w.delete_computer(ComputerId(1)).unwrap());
    w.put_computer(&named(3, "db-1")).unwrap();
    w.commit().unwrap();
    store.close().unwrap();

    let store = Store::open(&path).unwrap();
    let r = store.read().unwrap();
    assert_eq!(holder(&r, "web-1"), None);
    assert_eq!(holder(&r, "db-2"), Some(2));
    assert_eq!(holder(&r, "db-1"), Some(3), "the old name is free again");
    // Exactly one index entry per computer: nothing stale is left behind.
    assert_eq!(r.txn.open_table(HOSTNAMES).unwrap().len().unwrap(), 2);
}

#[test]
fn a_schema_4_file_gains_the_indexes_of_its_computers_and_active_alerts() {
    let (_dir, path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_computer(&named(4, "Mail")).unwrap();
    w.put_computer(&named(9, "files")).unwrap();
    w.put_alert(&alert(1, 4, AlertKind::ComputerOffline))
        .unwrap();
    w.put_alert(&Alert {
        cleared: Some(crate::clock::WallMs(2)),
        ..alert(2, 9, AlertKind::ComputerOffline)
    })
    .unwrap();
    w.txn.delete_table(HOSTNAMES).unwrap();
    w.txn.delete_table(ACTIVE_ALERTS).unwrap();
    let store = migrated_from(store, &path, w, 4);
    let r = store.read().unwrap();
    assert_eq!(holder(&r, "mail"), Some(4));
    assert_eq!(holder(&r, "FILES"), Some(9));
    assert_eq!(r.computers().unwrap().len(), 2);
    let offline = AlertKind::ComputerOffline;
    assert_eq!(
        r.active_alert(ComputerId(4), offline).unwrap(),
        Some(alert(1, 4, offline))
    );
    assert_eq!(r.active_alert(ComputerId(9), offline).unwrap(), None);
    assert_eq!(r.active_alert_count().unwrap(), 1);
}

fn alert(id: u64, computer: u64, kind: AlertKind) -> Alert {
    Alert {
        id: AlertId(id),
        kind,
        computer: ComputerId(computer),
        raised: crate::clock::WallMs(1),
        updated: crate::clock::WallMs(1),
        count: 1,
        message: "m".into(),
        cleared: None,
        dismissed: None,
        acknowledged: None,
        about: None,
        computers: Vec::new(),
    }
}

#[test]
fn active_alerts_are_found_by_computer_and_kind_until_they_end() {
    let (_dir, path, store) = temp_store();
    let offline = AlertKind::ComputerOffline;
    let mut w = store.write().unwrap();
    w.put_alert(&alert(1, 7, offline)).unwrap();
    w.put_alert(&alert(2, 7, AlertKind::ClockChanged)).unwrap();
    w.put_alert(&alert(3, 8, offline)).unwrap();
    assert_eq!(
        w.active_alert(ComputerId(7), offline).unwrap(),
        Some(alert(1, 7, offline))
    );
    w.commit().unwrap();

    let mut w = store.write().unwrap();
    // Cleared and dismissed alerts are no longer active; a new one takes the place.
    let cleared = Alert {
        cleared: Some(crate::clock::WallMs(5)),
        ..alert(1, 7, offline)
    };
    w.put_alert(&cleared).unwrap();
    w.put_alert(&Alert {
        dismissed: Some(crate::clock::WallMs(5)),
        ..alert(3, 8, offline)
    })
    .unwrap();
    w.put_alert(&alert(4, 8, offline)).unwrap();
    // Re-putting an old, ended alert does not unindex the active one.
    w.put_alert(&Alert {
        dismissed: Some(crate::clock::WallMs(5)),
        ..alert(3, 8, offline)
    })
    .unwrap();
    w.commit().unwrap();
    store.close().unwrap();

    let store = Store::open(&path).unwrap();
    let r = store.read().unwrap();
    assert_eq!(r.active_alert(ComputerId(7), offline).unwrap(), None);
    assert_eq!(
        r.active_alerts_of(ComputerId(7)).unwrap(),
        vec![alert(2, 7, AlertKind::ClockChanged)]
    );
    assert_eq!(
        r.active_alert(ComputerId(8), offline).unwrap(),
        Some(alert(4, 8, offline))
    );
    assert_eq!(r.active_alert_count().unwrap(), 2);
    assert_eq!(r.alerts().unwrap().len(), 4, "ended alerts are kept");
}

#[test]
fn a_stale_index_entry_never_names_the_wrong_computer() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_computer(&named(5, "old-name")).unwrap();
    // As if the record had been overwritten without its index entry being moved.
    w.txn
        .open_table(COMPUTERS)
        .unwrap()
        .insert(
            5,
            records::encode(
                ComputerRecord::TABLE,
                &ComputerRecord::current(&named(5, "new-name")),
            )
            .unwrap()
            .as_slice(),
        )
        .unwrap();
    assert_eq!(holder(&w, "old-name"), None);
}

#[test]
fn a_schema_3_file_gains_the_users_table_and_keeps_its_records() {
    let (_dir, path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_policy(&sample_policy()).unwrap();
    w.txn.delete_table(USERS).unwrap();
    let store = migrated_from(store, &path, w, 3);
    let r = store.read().unwrap();
    assert_eq!(r.policies().unwrap(), vec![sample_policy()]);
    assert_eq!(r.user("admin").unwrap(), None);
}

/// The raw value stored under `id` in `table`.
fn raw(r: &ReadTxn, table: TableDefinition<u64, &[u8]>, id: u64) -> Vec<u8> {
    r.txn
        .open_table(table)
        .unwrap()
        .get(id)
        .unwrap()
        .unwrap()
        .value()
        .to_vec()
}

#[test]
fn a_schema_11_file_reads_its_policies_and_computers_with_the_upgrade_setting_inherited() {
    use crate::model::{Setting, SettingValue};
    use crate::policy::{PolicyTree, Source, resolve_computer};
    let (_dir, path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_policy(&base_policy()).unwrap();
    // The bytes a schema-11 binary wrote (`PolicyRecord::V3`, `ComputerRecord::V3`).
    let policy_v3 = records::tests::golden("policy-v3");
    let computer_v3 = records::tests::golden("computer-v3");
    w.txn
        .open_table(POLICIES)
        .unwrap()
        .insert(2, policy_v3.as_slice())
        .unwrap();
    w.txn
        .open_table(COMPUTERS)
        .unwrap()
        .insert(7, computer_v3.as_slice())
        .unwrap();
    let store = migrated_from(store, &path, w, 11);

    let r = store.read().unwrap();
    let policy = r.policy(PolicyId(2)).unwrap().unwrap();
    let computer = r.computer(ComputerId(7)).unwrap().unwrap();
    assert_eq!(policy.settings.agent_auto_upgrade, Setting::Inherited);
    assert_eq!(computer.settings.agent_auto_upgrade, Setting::Inherited);
    // Everything else reads as it was written.
    assert_eq!(policy.settings.firewall_enabled, Setting::Set(true));
    assert_eq!(computer.settings.firewall_enabled, Setting::Set(false));
    assert_eq!(policy.rules, sample_policy().rules);
    assert_eq!(computer.address, sample_computer().address);
    // Nothing was rewritten: a schema-11 binary restored from a backup of the file before the
    // migration would still read it.
    assert_eq!(raw(&r, POLICIES, 2), policy_v3);
    assert_eq!(raw(&r, COMPUTERS, 7), computer_v3);
    // Inherited all the way up: the default, off.
    let tree = PolicyTree::new(r.policies().unwrap());
    let effective = resolve_computer(&tree, &computer).agent_auto_upgrade;
    assert_eq!(
        (effective.value, effective.source),
        (false, Source::Default)
    );
    drop(r);

    // Turning it on writes the current version, which reads back with the setting.
    let mut w = store.write().unwrap();
    let mut policy = policy;
    policy.settings.set(SettingValue::AgentAutoUpgrade(true));
    w.put_policy(&policy).unwrap();
    w.commit().unwrap();
    let r = store.read().unwrap();
    assert_eq!(raw(&r, POLICIES, 2)[0], 3, "written as PolicyRecord::V4");
    let tree = PolicyTree::new(r.policies().unwrap());
    let effective = resolve_computer(&tree, &computer).agent_auto_upgrade;
    assert_eq!(
        (effective.value, effective.source),
        (true, Source::Policy(PolicyId(2)))
    );
}

#[test]
fn users_are_found_ignoring_case_and_replaced_by_name() {
    let (_dir, _path, store) = temp_store();
    let mut w = store.write().unwrap();
    w.put_user(&records::tests::sample_user()).unwrap();
    w.commit().unwrap();
    assert_eq!(
        store.read().unwrap().user("ADMIN").unwrap(),
        Some(records::tests::sample_user())
    );
    let changed = User {
        name: "Admin".into(),
        must_change_password: false,
        ..records::tests::sample_user()
    };
    let mut w = store.write().unwrap();
    w.put_user(&changed).unwrap();
    w.commit().unwrap();
    assert_eq!(store.read().unwrap().user("admin").unwrap(), Some(changed));
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let (_dir, path, store) = temp_store();
    let w = store.write().unwrap();
    set_schema_version(&w, CURRENT_SCHEMA_VERSION + 1);
    w.commit().unwrap();
    store.close().unwrap();

    for _ in 0..2 {
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported }
                    if found == CURRENT_SCHEMA_VERSION + 1 && supported == CURRENT_SCHEMA_VERSION),
            "{err:?}"
        );
    }
}

#[test]
fn a_file_of_garbage_is_damaged_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("picket.redb");
    // A fixed pseudo-random pattern, so a failure reproduces.
    let mut x: u32 = 0x1234_5678;
    let garbage: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&path, &garbage).unwrap();

    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!(
        "{} is not a Picket store or is damaged",
        path.display()
    )));
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn another_programs_redb_file_is_damaged_and_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("picket.redb");
    let other: TableDefinition<u64, u64> = TableDefinition::new("other");
    let db = redb::Database::create(&path).unwrap();
    let w = db.begin_write().unwrap();
    w.open_table(other).unwrap().insert(1, 2).unwrap();
    w.commit().unwrap();
    db.close().unwrap();

    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    let db = redb::Database::open(&path).unwrap();
    let r = db.begin_read().unwrap();
    assert!(r.open_table(META).is_err(), "the open wrote a meta table");
}

#[test]
fn a_flipped_byte_in_a_record_is_damaged_at_open() {
    let (_dir, path, store) = temp_store();
    let marker = "flip-me-".repeat(64);
    let mut w = store.write().unwrap();
    w.put_policy(&Policy {
        name: marker.clone(),
        ..sample_policy()
    })
    .unwrap();
    w.commit().unwrap();
    store.close().unwrap();

    let mut bytes = std::fs::read(&path).unwrap();
    let mut flipped = 0;
    let mut i = 0;
    while let Some(at) = find(&bytes[i..], marker.as_bytes()) {
        bytes[i + at] ^= 0x20;
        flipped += 1;
        i += at + marker.len();
    }
    assert!(flipped > 0, "the record is not in the file as plain bytes");
    std::fs::write(&path, &bytes).unwrap();

    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn a_second_open_in_the_same_process_is_locked() {
    let (_dir, path, store) = temp_store();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("is in use by another Picket manager: stop it first")
    );
    // Closing releases the lock.
    store.close().unwrap();
    Store::open(&path).unwrap();
}

#[test]
fn closing_with_a_live_write_fails() {
    let (_dir, _path, store) = temp_store();
    let w = store.write().unwrap();
    assert!(store.close().is_err());
    drop(w);
}

#[test]
fn handles_can_move_to_a_blocking_thread() {
    // The manager runs commits through smol::unblock, which needs Send + 'static.
    fn send_static<T: Send + 'static>() {}
    fn shared<T: Send + Sync>() {}
    send_static::<ReadTxn>();
    send_static::<WriteTxn>();
    shared::<Store>();
    shared::<StoreError>();
}

#[test]
fn a_schema_without_a_migration_step_is_an_error() {
    let (_dir, _path, store) = temp_store();
    let txn = store.write().unwrap().txn;
    assert!(matches!(
        migrate(&txn, CURRENT_SCHEMA_VERSION),
        Err(StoreError::NoMigration { from }) if from == CURRENT_SCHEMA_VERSION
    ));
}

#[test]
fn after_an_io_error_writes_are_refused_until_the_file_is_reopened_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(&dir.path().join("s.redb"), Reserve::Bytes(0)).unwrap();
    let token = |n: u8| Token {
        hash: TokenHash([n; 32]),
        ..sample_token()
    };
    let mut txn = store.write().unwrap();
    txn.put_token(&token(1)).unwrap();
    txn.commit().unwrap();

    store
        .health
        .io_failed("No space left on device (os error 28)".into());
    let refused = store.write().unwrap_err();
    assert!(
        matches!(&refused, StoreError::Unavailable(r) if r.contains("No space")),
        "{refused:?}"
    );
    assert!(refused.is_temporary());
    assert!(store.read().is_ok(), "reads go on");
    let at = crate::clock::Instant::from_millis;
    store.tend(at(0));
    assert!(store.write().is_err(), "the reopen waits its backoff");
    let reading = store.read().unwrap();
    store.tend(at(1_000));
    assert!(
        !store.health().writable,
        "not reopened under a live transaction"
    );
    assert!(reading.token(&TokenHash([1; 32])).unwrap().is_some());
    drop(reading);
    store.tend(at(1_000));
    assert!(store.health().writable, "reopened: writes may try");
    let mut txn = store.write().unwrap();
    txn.put_token(&token(2)).unwrap();
    txn.commit().unwrap();
    assert_eq!(store.health().reason, None, "a commit ends the episode");
    let txn = store.read().unwrap();
    assert!(txn.token(&TokenHash([1; 32])).unwrap().is_some(), "kept");
    assert!(txn.token(&TokenHash([2; 32])).unwrap().is_some());
}
