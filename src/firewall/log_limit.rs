//! How many logged packets (and agent-port refusals) become events, sans-io: at most
//! [`PER_WINDOW`] per key (a rule) in a window of [`WINDOW`] that opens with the key's first
//! event, and at most [`TOTAL_PER_WINDOW`] for all keys together in a window of the same length;
//! the rest of a key's window is counted, and when it ends a count of what was suppressed goes
//! out once. A flood of a million packets is then ten events and one count a minute per rule,
//! and a scan across two hundred logged rules no more than sixty events a minute (and a count per
//! rule), so the spool, the agent's one thread, the session and the manager's store stay the
//! size of what a person reads.
//!
//! Time comes in as an argument: `handle` at each occurrence, `poll_timeout` for when a window
//! with a count ends, `handle_timeout` then, and `poll_suppressed` for the counts to report.

use crate::clock::Instant;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Events of one key reported in full per window.
pub const PER_WINDOW: u32 = 10;
/// Events of all keys together reported in full per window.
pub const TOTAL_PER_WINDOW: u32 = 60;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys followed at once; beyond them (only a misbehaving source of keys gets there: the rules
/// of a configuration are far fewer) occurrences are counted under [`OVERFLOW_KEY`].
const MAX_KEYS: usize = 4096;
/// The key counted for keys beyond [`MAX_KEYS`].
pub const OVERFLOW_KEY: &str = "other";

/// What to do with one occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Report,
    /// Counted; reported in the window's count.
    Suppress,
}

/// The count of a window that suppressed some occurrences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub key: String,
    pub count: u64,
    /// When the window opened and ended.
    pub start: Instant,
    pub end: Instant,
}

#[derive(Clone, Debug)]
struct Window {
    start: Instant,
    reported: u32,
    suppressed: u64,
}

#[derive(Debug)]
pub struct Limiter {
    per_window: u32,
    total_per_window: u32,
    window: Duration,
    /// All keys' window: when it opened and how many it reported.
    total: Option<(Instant, u32)>,
    windows: BTreeMap<String, Window>,
    ready: VecDeque<Suppressed>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(PER_WINDOW, WINDOW)
    }
}

impl Limiter {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Limiter::with_total(per_window, TOTAL_PER_WINDOW, window)
    }

    /// A limiter that reports at most `total_per_window` events of all keys per window.
    pub fn with_total(per_window: u32, total_per_window: u32, window: Duration) -> Self {
        Limiter {
            per_window,
            total_per_window,
            total: None,
            window,
            windows: BTreeMap::new(),
            ready: VecDeque::new(),
        }
    }

    /// One occurrence of `key` at `now`.
    pub fn handle(&mut self, now: Instant, key: &str) -> Verdict {
        if let Some(window) = self.windows.get(key)
            && self.ended(window, now)
        {
            self.close(key);
        }
        let key = if self.windows.contains_key(key) || self.windows.len() < MAX_KEYS {
            key
        } else {
            self.handle_timeout(now);
            if self.windows.len() < MAX_KEYS {
                key
            } else {
                OVERFLOW_KEY
            }
        };
        let window = self.windows.entry(key.to_string()).or_insert(Window {
            start: now,
            reported: 0,
            suppressed: 0,
        });
        let total = match self.total {
            Some((start, reported)) if now < start.saturating_add(self.window) => (start, reported),
            _ => (now, 0),
        };
        if window.reported < self.per_window && total.1 < self.total_per_window {
            window.reported += 1;
            self.total = Some((total.0, total.1 + 1));
            Verdict::Report
        } else {
            self.total = Some(total);
            window.suppressed = window.suppressed.saturating_add(1);
            Verdict::Suppress
        }
    }

    /// When the next window with a count ends: the driver calls [`Limiter::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.windows
            .values()
            .filter(|w| w.suppressed > 0)
            .map(|w| w.start.saturating_add(self.window))
            .min()
    }

    /// Closes every window that has ended: those with a count queue it.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ended: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, w)| self.ended(w, now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            self.close(&key);
        }
    }

    /// The next count to report, oldest first.
    pub fn poll_suppressed(&mut self) -> Option<Suppressed> {
        self.ready.pop_front()
    }

    fn ended(&self, window: &Window, now: Instant) -> bool {
        now >= window.start.saturating_add(self.window)
    }

    fn close(&mut self, key: &str) {
        if let Some(window) = self.windows.remove(key)
            && window.suppressed > 0
        {
            self.ready.push_back(Suppressed {
                key: key.to_string(),
                count: window.suppressed,
                start: window.start,
                end: window.start.saturating_add(self.window),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock, WallMs};

    #[test]
    fn a_flood_is_ten_reports_then_one_count_when_the_window_ends() {
        let clock = ManualClock::new(WallMs(0));
        let mut limiter = Limiter::default();
        let verdicts: Vec<Verdict> = (0..1000)
            .map(|_| limiter.handle(clock.now(), "rule-4"))
            .collect();
        let reported = verdicts.iter().filter(|v| **v == Verdict::Report).count();
        assert_eq!(reported, 10);
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Report));
        let end = clock.now().saturating_add(WINDOW);
        assert_eq!(limiter.poll_timeout(), Some(end));
        // Not before the window ends.
        clock.advance(WINDOW - Duration::from_millis(1));
        limiter.handle_timeout(clock.now());
        assert_eq!(limiter.poll_suppressed(), None);
        clock.advance(Duration::from_millis(1));
        limiter.handle_timeout(clock.now());
        let count = limiter.poll_suppressed().unwrap();
        assert_eq!((count.key.as_str(), count.count), ("rule-4", 990));
        assert_eq!(count.end, end);
        assert_eq!(limiter.poll_suppressed(), None);
        assert_eq!(limiter.poll_timeout(), None);
        // A new window reports again.
        assert_eq!(limiter.handle(clock.now(), "rule-4"), Verdict::Report);
    }

    #[test]
    fn rules_have_windows_of_their_own_and_a_quiet_window_reports_no_count() {
        let clock = ManualClock::new(WallMs(0));
        let mut limiter = Limiter::new(2, Duration::from_secs(10));
        for _ in 0..5 {
            limiter.handle(clock.now(), "rule-1");
        }
        clock.advance(Duration::from_secs(4));
        assert_eq!(limiter.handle(clock.now(), "rule-2"), Verdict::Report);
        assert_eq!(limiter.poll_timeout(), Some(Instant::from_millis(10_000)));
        clock.advance(Duration::from_secs(6));
        // rule-1's window ends at 10 s whether or not a timeout was handled: the next
        // occurrence closes it first, and its count waits.
        assert_eq!(limiter.handle(clock.now(), "rule-1"), Verdict::Report);
        let count = limiter.poll_suppressed().unwrap();
        assert_eq!((count.key.as_str(), count.count), ("rule-1", 3));
        clock.advance(Duration::from_secs(10));
        limiter.handle_timeout(clock.now());
        assert_eq!(limiter.poll_suppressed(), None, "rule-2 suppressed nothing");
    }

    #[test]
    fn all_keys_together_report_no_more_than_the_total() {
        let clock = ManualClock::new(WallMs(0));
        let mut limiter = Limiter::with_total(10, 25, WINDOW);
        // A scan across 100 logged rules, a packet each.
        let reported = (0..100)
            .filter(|n| limiter.handle(clock.now(), &format!("rule-{n}")) == Verdict::Report)
            .count();
        assert_eq!(reported, 25);
        clock.advance(WINDOW);
        limiter.handle_timeout(clock.now());
        let counts: Vec<Suppressed> = std::iter::from_fn(|| limiter.poll_suppressed()).collect();
        assert_eq!(
            counts.len(),
            75,
            "each rule that lost a packet has its count"
        );
        assert!(counts.iter().all(|c| c.count == 1));
        // The next window reports again.
        assert_eq!(limiter.handle(clock.now(), "rule-1"), Verdict::Report);
    }

    #[test]
    fn keys_beyond_the_limit_share_one_window() {
        let now = Instant::from_millis(0);
        let mut limiter = Limiter::with_total(1, u32::MAX, WINDOW);
        for n in 0..MAX_KEYS {
            limiter.handle(now, &format!("rule-{n}"));
        }
        assert_eq!(limiter.handle(now, "rule-new"), Verdict::Report);
        assert_eq!(limiter.handle(now, "rule-newer"), Verdict::Suppress);
        assert!(limiter.windows.contains_key(OVERFLOW_KEY));
        assert!(limiter.windows.len() <= MAX_KEYS + 1);
        limiter.handle_timeout(now.saturating_add(WINDOW));
        assert_eq!(limiter.poll_suppressed().unwrap().key, OVERFLOW_KEY);
        assert!(limiter.windows.is_empty());
    }
}
