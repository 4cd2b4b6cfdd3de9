//! Agent upgrades from the manager (`agent.auto-upgrade`): the offer of this manager's own
//! binary, and its streaming to an agent that asked for it, a few agents at a time so that a
//! fleet upgrading at once neither fills the session slots nor the uplink.

use crate::clock::Clock;
use crate::framed;
use crate::proto::{BINARY_CHUNK, ManagerMsg, UpgradeOffer};
use crate::release;
use smol::io::AsyncWrite;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Agents sent the binary at once; the others are told `Done` without it and are offered it
/// again at their next heartbeat. Four 14 MB streams keep a 100 Mbit/s uplink busy.
pub const MAX_DOWNLOADS: usize = 4;

/// How many binaries are being sent.
#[derive(Default)]
pub struct Downloads(AtomicUsize);

/// One download in progress; dropping it frees the place.
pub struct Permit<'a>(&'a Downloads);

impl Downloads {
    pub fn try_start(&self) -> Option<Permit<'_>> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_DOWNLOADS).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(self))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a computer is offered when its `agent.auto-upgrade` is on and it last reported an older
/// version than this manager's: this manager's own binary. `None` when the binary cannot be
/// read (the error was logged once when it was first read).
pub fn offer(auto_upgrade: bool, reported: &str) -> Option<UpgradeOffer> {
    if !auto_upgrade || !release::is_newer(release::version(), reported) {
        return None;
    }
    let own = release::own_binary().ok()?;
    Some(UpgradeOffer {
        version: release::version().to_string(),
        arch: release::arch().to_string(),
        size: own.bytes.len() as u64,
        sha256: own.sha256,
    })
}

/// The slowest an agent may read the binary: 14 MB take under 4 minutes at this rate. An agent
/// slower than that (or one that keeps asking and reads slowly) does not hold one of the
/// [`MAX_DOWNLOADS`] places for longer.
const MIN_RATE: u64 = 64 * 1024;

/// Sends the offered binary in `BinaryChunk`s, each within `step`, the whole within `step` plus
/// its size at [`MIN_RATE`]. Returns the bytes sent, or why it stopped.
pub async fn stream<S: AsyncWrite + Unpin>(
    tls: &mut S,
    offer: &UpgradeOffer,
    clock: &dyn Clock,
    step: Duration,
    addr: SocketAddr,
) -> Result<u64, String> {
    let limit = step.saturating_add(Duration::from_secs(offer.size / MIN_RATE));
    let sent = crate::clock::within(clock, limit, stream_chunks(tls, offer, clock, step, addr));
    sent.await.unwrap_or_else(|| {
        Err(format!(
            "after {} s: the agent {addr} reads slower than {} KiB/s",
            limit.as_secs(),
            MIN_RATE / 1024
        ))
    })
}

async fn stream_chunks<S: AsyncWrite + Unpin>(
    tls: &mut S,
    offer: &UpgradeOffer,
    clock: &dyn Clock,
    step: Duration,
    addr: SocketAddr,
) -> Result<u64, String> {
    let own = release::own_binary().map_err(|e| format!("cannot read the binary: {e}"))?;
    // The offer was made from the same bytes; a mismatch would mean it was not.
    if own.sha256 != offer.sha256 {
        return Err("the binary changed since it was offered".into());
    }
    let mut sent = 0u64;
    for piece in own.bytes.chunks(BINARY_CHUNK) {
        let message = ManagerMsg::BinaryChunk {
            data: piece.to_vec(),
        };
        match crate::clock::within(clock, step, framed::write(tls, &message)).await {
            Some(Ok(())) => sent += piece.len() as u64,
            Some(Err(e)) => return Err(format!("after {sent} bytes: {e}")),
            None => {
                return Err(format!(
                    "after {sent} bytes: the agent {addr} stopped reading"
                ));
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_so_many_downloads_run_at_once() {
        let downloads = Downloads::default();
        let permits: Vec<_> = (0..MAX_DOWNLOADS)
            .map(|_| downloads.try_start().expect("a place"))
            .collect();
        assert!(downloads.try_start().is_none());
        drop(permits);
        let again: Vec<_> = (0..MAX_DOWNLOADS)
            .filter_map(|_| downloads.try_start())
            .collect();
        assert_eq!(again.len(), MAX_DOWNLOADS, "every place freed");
    }

    #[test]
    fn nothing_is_offered_when_off_or_not_newer() {
        assert_eq!(offer(false, "0.0.1"), None);
        assert_eq!(offer(true, release::version()), None);
        assert_eq!(offer(true, "999.0.0"), None);
        assert_eq!(offer(true, "not a version"), None);
    }
}
