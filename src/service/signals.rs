//! The signals a long-running `picket` (manager or agent) answers: SIGINT and SIGTERM stop it
//! cleanly; SIGHUP, which `kill -HUP`, a closed terminal or a habit of "reloading" daemons
//! sends, is logged and ignored rather than killing the process as its default action would.

use async_signal::{Signal, Signals};
use smol::stream::StreamExt;

/// What SIGHUP would reload, if anything could be: nothing yet. The log level is `RUST_LOG`'s,
/// read once at start (a process never sees its environment change), and every other setting
/// is a flag or lives in the store, where changes take effect at once.
pub const SIGHUP_IGNORED: &str = concat!(
    "received SIGHUP: ignored, nothing to reload ",
    "(the log level is RUST_LOG's at start: restart to change it)"
);

/// The stop signals, installed early so that none is lost while the process starts.
pub struct StopSignals(Signals);

impl StopSignals {
    /// Catches SIGINT, SIGTERM and SIGHUP from now on.
    pub fn install() -> std::io::Result<StopSignals> {
        Signals::new([Signal::Int, Signal::Term, Signal::Hup]).map(StopSignals)
    }

    /// Resolves at the first SIGINT or SIGTERM, logging `received SIG...: {doing}`; each SIGHUP
    /// before it is logged and ignored.
    pub async fn wait(mut self, doing: &str) {
        while let Some(received) = self.0.next().await {
            match received {
                Ok(Signal::Hup) => log::info!("{SIGHUP_IGNORED}"),
                Ok(signal) => {
                    log::info!("received {signal:?}: {doing}");
                    return;
                }
                Err(e) => {
                    // Signals cannot be read any more, so none could stop the process: stop now
                    // rather than run on deaf to SIGTERM.
                    log::warn!("cannot read signals: {e}; {doing}");
                    return;
                }
            }
        }
    }
}
