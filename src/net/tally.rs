//! Refused and dropped connections counted over a window and logged as one line (sans-io: the
//! time comes in). A stranger's flood must not become a flood of log lines: one WARN per closed
//! connection wrote 45,037 lines in 46 s on an agent.

use crate::clock::Instant;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

/// How long a window lasts: at most one summary line a minute per listener.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Distinct sources remembered per window; past it the count is "at least".
const MAX_SOURCES: usize = 65_536;
/// The first few closures of a window are worth a line each (which peer, which certificate
/// error: a deleted computer's agent, a foreign CA); the rest only count.
pub const DETAILED_PER_WINDOW: u64 = 5;

/// Closed connections by reason, over the current window.
#[derive(Debug)]
pub struct Tally {
    what: &'static str,
    window: Duration,
    started: Option<Instant>,
    reasons: BTreeMap<&'static str, u64>,
    sources: HashSet<IpAddr>,
    sources_capped: bool,
    /// Closures of this window that were told to log a line of their own.
    detailed: u64,
}

impl Tally {
    /// `what` names the listener in the line ("agent port", "console").
    pub fn new(what: &'static str) -> Tally {
        Tally::with_window(what, WINDOW)
    }

    pub fn with_window(what: &'static str, window: Duration) -> Tally {
        Tally {
            what,
            window,
            started: None,
            reasons: BTreeMap::new(),
            sources: HashSet::new(),
            sources_capped: false,
            detailed: 0,
        }
    }

    /// One connection from `source` was closed for `reason` ("the TLS handshake timed out").
    /// Returns whether it is among the first few of the window, which deserve a line each.
    pub fn record(&mut self, now: Instant, source: IpAddr, reason: &'static str) -> bool {
        self.started.get_or_insert(now);
        *self.reasons.entry(reason).or_default() += 1;
        if self.sources.len() < MAX_SOURCES {
            self.sources.insert(source);
        } else if !self.sources.contains(&source) {
            self.sources_capped = true;
        }
        self.detailed += 1;
        self.detailed <= DETAILED_PER_WINDOW
    }

    /// When the summary of what is counted is due, if anything is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.started.map(|t| t.saturating_add(self.window))
    }

    /// The summary line once the window that began with the first count has passed; the
    /// counts then start again.
    pub fn poll_summary(&mut self, now: Instant) -> Option<String> {
        let started = self.started?;
        if now.saturating_since(started) < self.window {
            return None;
        }
        let total: u64 = self.reasons.values().sum();
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        let logged = self.detailed.min(DETAILED_PER_WINDOW);
        let line = format!(
            "{}: closed {total} connection{} from {}{} source{} in the last {} s before they \
             authenticated ({}; the first {logged} logged one by one)",
            self.what,
            if total == 1 { "" } else { "s" },
            if self.sources_capped { "at least " } else { "" },
            self.sources.len(),
            if self.sources.len() == 1 { "" } else { "s" },
            now.saturating_since(started).as_secs(),
            reasons.join(", ")
        );
        self.started = None;
        self.reasons.clear();
        self.sources.clear();
        self.sources_capped = false;
        self.detailed = 0;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_a_window_with_its_reasons_and_sources() {
        let mut tally = Tally::new("agent port");
        let t0 = Instant::from_millis(1_000);
        assert_eq!(tally.poll_timeout(), None);
        for i in 0..5_000u32 {
            let ip = IpAddr::from([127, 0, 1, (i % 40) as u8]);
            let reason = if i % 5 == 0 {
                "evicted to make room"
            } else {
                "TLS handshake timed out"
            };
            let at = t0.saturating_add(Duration::from_millis(i.into()));
            assert_eq!(
                tally.record(at, ip, reason),
                u64::from(i) < DETAILED_PER_WINDOW
            );
        }
        assert_eq!(
            tally.poll_summary(t0.saturating_add(Duration::from_secs(59))),
            None
        );
        assert_eq!(tally.poll_timeout(), Some(t0.saturating_add(WINDOW)));
        let line = tally.poll_summary(t0.saturating_add(WINDOW)).unwrap();
        assert_eq!(
            line,
            "agent port: closed 5000 connections from 40 sources in the last 60 s before they \
             authenticated (4000 TLS handshake timed out, 1000 evicted to make room; the first \
             5 logged one by one)"
        );
        assert_eq!(tally.poll_summary(t0.saturating_add(WINDOW * 2)), None);
        assert_eq!(tally.poll_timeout(), None);
    }
}
