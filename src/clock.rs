//! Time as an input: the real clock for the running processes, a manual one for tests.
//!
//! Two kinds of time are kept apart on purpose. [`Instant`] is monotonic and drives every
//! deadline, so a step of the wall clock cannot fake a missed heartbeat. [`WallMs`] is the wall
//! clock in milliseconds since the Unix epoch and only stamps records.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A monotonic instant, in milliseconds since the clock's own origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The instant `d` later, saturating rather than wrapping.
    pub fn saturating_add(self, d: Duration) -> Instant {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ms))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Wall-clock time in milliseconds since the Unix epoch.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct WallMs(pub u64);

/// A wall time as an administrator reads it: `2026-03-01 14:05:09 UTC`.
pub fn format_utc(t: WallMs) -> String {
    let secs = t.0 / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

/// Year, month and day of the `days`th day after 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for days that are not before the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Where the time comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    fn wall(&self) -> WallMs;
}

/// The system's clocks.
#[derive(Debug)]
pub struct RealClock {
    origin: std::time::Instant,
}

impl RealClock {
    pub fn new() -> Self {
        RealClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Instant {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Instant(ms)
    }

    fn wall(&self) -> WallMs {
        // A clock set before 1970 is reported as the epoch rather than crashing the manager.
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        WallMs(ms)
    }
}

/// The system's clocks with the wall clock shifted by the milliseconds written in a file, read
/// at each look. Only for end-to-end tests of clock-change detection (`picket agent` uses it
/// when `PICKET_TEST_WALL_SKEW_FILE` is set): a test steps a real process's clock without root.
#[derive(Debug)]
pub struct SkewFileClock {
    real: RealClock,
    path: std::path::PathBuf,
}

impl SkewFileClock {
    pub fn new(path: std::path::PathBuf) -> Self {
        SkewFileClock {
            real: RealClock::new(),
            path,
        }
    }
}

impl Clock for SkewFileClock {
    fn now(&self) -> Instant {
        self.real.now()
    }

    fn wall(&self) -> WallMs {
        let skew: i64 = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let shifted = i128::from(self.real.wall().0) + i128::from(skew);
        WallMs(u64::try_from(shifted.max(0)).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when a test moves it. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    mono_ms: Arc<AtomicU64>,
    wall_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at monotonic zero whose wall clock reads `wall`.
    pub fn new(wall: WallMs) -> Self {
        ManualClock {
            mono_ms: Arc::new(AtomicU64::new(0)),
            wall_ms: Arc::new(AtomicU64::new(wall.0)),
        }
    }

    /// Let `d` pass: both clocks move forward together.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.mono_ms.fetch_add(ms, Ordering::SeqCst);
        self.wall_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Step only the wall clock, as an administrator or NTP would; monotonic time is unmoved.
    pub fn set_wall(&self, wall: WallMs) {
        self.wall_ms.store(wall.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.mono_ms.load(Ordering::SeqCst))
    }

    fn wall(&self) -> WallMs {
        WallMs(self.wall_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(WallMs(1_000));
        let shared = clock.clone();
        assert_eq!(clock.now(), Instant::from_millis(0));
        shared.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), Instant::from_millis(90_000));
        assert_eq!(clock.wall(), WallMs(91_000));
    }

    #[test]
    fn wall_step_leaves_monotonic_time_alone() {
        let clock = ManualClock::new(WallMs(5_000));
        clock.advance(Duration::from_secs(1));
        clock.set_wall(WallMs(0));
        assert_eq!(clock.now(), Instant::from_millis(1_000));
        assert_eq!(clock.wall(), WallMs(0));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_millis(10);
        assert_eq!(t.saturating_since(Instant::from_millis(20)), Duration::ZERO);
        assert_eq!(
            Instant::from_millis(u64::MAX - 1).saturating_add(Duration::from_secs(1)),
            Instant::from_millis(u64::MAX)
        );
    }

    #[test]
    fn wall_times_format_as_utc_dates() {
        assert_eq!(format_utc(WallMs(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_utc(WallMs(1_700_000_000_999)),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(
            format_utc(WallMs(951_782_400_000)),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(
            format_utc(WallMs(951_868_799_000)),
            "2000-02-29 23:59:59 UTC"
        );
        assert_eq!(
            format_utc(WallMs(1_735_689_600_000)),
            "2025-01-01 00:00:00 UTC"
        );
        // The largest value formats without overflowing.
        assert!(format_utc(WallMs(u64::MAX)).ends_with(" UTC"));
    }

    #[test]
    fn real_clock_is_monotonic() {
        let clock = RealClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        assert!(clock.wall().0 > 1_600_000_000_000);
    }
}
