//! Schema migrations: each step brings the store from one schema version to the next inside the
//! open transaction, so a failed step leaves the file as it was (`schema/store.md` lists them).

use super::*;

/// One migration step: brings the store from schema `from` to the version it returns, inside
/// the open transaction, so a failed step leaves the file as it was.
pub(super) fn migrate(txn: &redb::WriteTransaction, from: u32) -> Result<u32, StoreError> {
    match from {
        // A fresh file. Every table is created now so that a read transaction, which cannot
        // create tables, never meets a missing one.
        0 => {
            txn.open_table(META)?;
            txn.open_table(POLICIES)?;
            txn.open_table(COMPUTERS)?;
            txn.open_table(TOKENS)?;
            Ok(1)
        }
        // The agent channel: agent state and events, and the liveness statuses (a release that
        // only knows schema 1 must refuse the file rather than meet a status it cannot read).
        1 => {
            txn.open_table(AGENTS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(ALERTS)?;
            txn.open_table(HISTORY)?;
            Ok(2)
        }
        // Communication direction: policies gain firewall rules and computers the address the
        // manager dials (records `V2`). `V1` records are converted as they are read, so nothing
        // is rewritten; the version bump keeps schema-2 binaries from meeting a `V2` record.
        2 => Ok(3),
        // The console: its users and their password hashes.
        3 => {
            txn.open_table(USERS)?;
            Ok(4)
        }
        // Indexes: computers by hostname (activation read every computer to find one by name,
        // 17-25 ms at 100,000 computers with the write lock held) and active alerts by computer
        // and kind (raising or clearing one read every alert ever kept).
        4 => {
            let computers = records::all_by_id::<ComputerRecord>(&txn.open_table(COMPUTERS)?)?;
            let mut index = txn.open_table(HOSTNAMES)?;
            for c in &computers {
                index.insert((hostname_key(&c.hostname).as_str(), c.id.0), [].as_slice())?;
            }
            let alerts = records::all_by_id::<AlertRecord>(&txn.open_table(ALERTS)?)?;
            let mut index = txn.open_table(ACTIVE_ALERTS)?;
            for a in alerts.iter().filter(|a| a.is_active()) {
                index.insert(
                    (a.computer.0, a.kind.name()),
                    a.id.0.to_be_bytes().as_slice(),
                )?;
            }
            Ok(5)
        }
        // Event retention: the events in the order they were stored, so the oldest can be
        // deleted without reading every event at each pass.
        5 => {
            let events = txn.open_table(EVENTS)?;
            let count = events.len()?;
            if count > 0 {
                log::info!("indexing {count} stored events by the time they were stored");
            }
            let mut index = txn.open_table(EVENTS_BY_TIME)?;
            // Events come in key order, a computer's together: its runs are written when the
            // next computer's events begin, so memory holds one computer's runs at a time.
            let mut runs = Runs::default();
            let mut current = None;
            for entry in events.iter()? {
                let (key, value) = entry?;
                let (computer, seq) = key.value();
                if current != Some(computer) {
                    runs.write(&mut index)?;
                    current = Some(computer);
                }
                // An event that does not decode is indexed as the oldest of all: retention's
                // first pass deletes it, instead of this step refusing to open the store.
                let received =
                    match records::decode::<EventRecord>(value.value(), EventRecord::TABLE, || {
                        format!("({computer}, {seq})")
                    }) {
                        Ok(event) => event.into_model().received.0,
                        Err(e) => {
                            log::warn!("{e}: retention will delete it first");
                            0
                        }
                    };
                runs.add(received, computer, seq);
            }
            runs.write(&mut index)?;
            Ok(6)
        }
        // Notifications: channels, routes, the outbox, delivery progress and maintenance
        // windows. Alerts are written as `AlertRecord::V2` from now on (acknowledgement, alerts
        // about no computer); `V1` records are converted as they are read.
        6 => {
            super::notify::create_tables(txn)?;
            Ok(7)
        }
        // Site incidents: offline notices held back while the detector waits for a storm. Agent
        // events forwarded to syslog: the order events arrive in and each forwarding channel's
        // cursor. Channels are written as `ChannelRecord::V2` from now on (a syslog channel's
        // events); `V1` records are converted as they are read.
        7 => {
            super::notify::create_held_table(txn)?;
            super::event_feed::create_tables(txn)?;
            Ok(8)
        }
        // The host firewall: settings gain `firewall.enabled`, rules destination IPs and `log`
        // (records `V3`). Older records are converted as they are read (the setting inherited,
        // no destination, no logging), so nothing is rewritten; the bump keeps schema-8 binaries
        // from meeting a `V3`.
        8 => Ok(9),
        // Protocol 2: agents' states record the protocol their agent speaks (`AgentStateRecord::
        // V2`). `V1` states are read as protocol 1, which every agent spoke until now; the bump
        // keeps schema-9 binaries from meeting a `V2`.
        9 => Ok(10),
        // The heartbeat's components gain a state (on, off, error) and a reason
        // (`AgentStateRecord::V3`); `V2` states are read with on or off and no reason. The bump
        // keeps schema-10 binaries from meeting a `V3`.
        10 => Ok(11),
        // Agent upgrades from the manager: settings gain `agent.auto-upgrade` (`PolicyRecord::
        // V4`, `ComputerRecord::V4`). `V3` records are read with the setting inherited (off
        // unless a policy turns it on), so nothing is rewritten; the bump keeps schema-11
        // binaries from meeting a `V4`.
        11 => Ok(12),
        _ => Err(StoreError::NoMigration { from }),
    }
}
