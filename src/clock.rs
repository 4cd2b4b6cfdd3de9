//! Time as an input: the real clock for the running processes, a manual one for tests.
//!
//! Two kinds of time are kept apart on purpose. [`Instant`] is monotonic and drives every
//! deadline, so a step of the wall clock cannot fake a missed heartbeat. [`WallMs`] is the wall
//! clock in milliseconds since the Unix epoch and only stamps records.
//!
//! This is the only file that reads the system's clocks or sets a timer (clippy's
//! `disallowed-methods` in `clippy.toml` holds the rest of `src/` to it): a shell sleeps with
//! [`Clock::sleep_until`], so on a [`ManualClock`] a test moves time instead of waiting for it.
//! [`Stopwatch`] measures durations (the bench's latencies, the store writer's pacing), which
//! no decision depends on.

// The one file allowed to read the system's clocks and set timers (see clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
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

    /// The instant `d` earlier, saturating at the clock's zero.
    pub fn saturating_sub(self, d: Duration) -> Instant {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(ms))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// A wait on a clock; resolves when the clock reaches its instant.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

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

/// Where the time comes from, and how a shell waits for it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    fn wall(&self) -> WallMs;
    /// Resolves once [`Clock::now`] has reached `at`; `None` never resolves (nothing is due).
    fn sleep_until(&self, at: Option<Instant>) -> Sleep;

    /// Resolves `d` from now.
    fn sleep(&self, d: Duration) -> Sleep {
        self.sleep_until(Some(self.now().saturating_add(d)))
    }
}

/// Runs `future` until it completes or `limit` passes on `clock`; `None` if the time ran out.
pub async fn within<F: Future>(clock: &dyn Clock, limit: Duration, future: F) -> Option<F::Output> {
    let deadline = clock.sleep(limit);
    smol::future::or(async { Some(future.await) }, async {
        deadline.await;
        None
    })
    .await
}

impl WallMs {
    /// The same time as the standard library's type (certificates are stamped with it).
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

/// A reading of real monotonic time, to measure how long something took: for figures
/// (latencies, the bench's pacing, the store writer's commit gap) that no decision depends on,
/// so they need no [`Clock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// The time now.
    pub fn now() -> Stopwatch {
        Stopwatch(std::time::Instant::now())
    }

    pub fn elapsed(self) -> Duration {
        self.0.elapsed()
    }

    /// Time from `earlier` to this one, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Stopwatch) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// Resolves at this reading, in real time.
    pub async fn reached(self) {
        smol::Timer::at(self.0).await;
    }
}

impl std::ops::Add<Duration> for Stopwatch {
    type Output = Stopwatch;

    /// The reading `d` later (a deadline to compare against); saturates far in the future.
    fn add(self, d: Duration) -> Stopwatch {
        Stopwatch(self.0.checked_add(d).unwrap_or(self.0))
    }
}

/// Waits `d` of real time, for code that measures rather than decides (the bench's load, the
/// CLI's request timeout, the worker pool's tests).
pub async fn real_sleep(d: Duration) {
    smol::Timer::after(d).await;
}

/// The system's wall clock, for code that stamps rather than decides (the bench's enrolment, a
/// test's certificates).
pub fn real_wall() -> WallMs {
    RealClock::new().wall()
}

/// Blocks the calling (non-async) thread for `d` of real time: the store writer's pacing and
/// waits in tests of real processes.
pub fn block_for(d: Duration) {
    std::thread::sleep(d);
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

    fn sleep_until(&self, at: Option<Instant>) -> Sleep {
        match at.and_then(|at| self.origin.checked_add(Duration::from_millis(at.0))) {
            Some(at) => Box::pin(async move {
                smol::Timer::at(at).await;
            }),
            None => Box::pin(std::future::pending()),
        }
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

/// The system's clocks, with monotonic time that goes on while the machine is suspended
/// (`CLOCK_BOOTTIME`): the agent's clock. `std::time::Instant` (`CLOCK_MONOTONIC`) stops during
/// a suspend, so a laptop asleep for an hour would see its wall clock jump an hour ahead of it
/// and report a clock change; with this clock both move together. Sleeps are relative (timers
/// run on the monotonic clock), so a deadline passed during a suspend is met soon after waking.
#[derive(Debug)]
pub struct BootClock {
    origin_ms: u64,
}

impl BootClock {
    pub fn new() -> Self {
        BootClock {
            origin_ms: boot_ms(),
        }
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

fn boot_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let ms = u64::try_from(t.tv_nsec / 1_000_000).unwrap_or(0);
    secs.saturating_mul(1000).saturating_add(ms)
}

impl Clock for BootClock {
    fn now(&self) -> Instant {
        Instant(boot_ms().saturating_sub(self.origin_ms))
    }

    fn wall(&self) -> WallMs {
        RealClock::new().wall()
    }

    fn sleep_until(&self, at: Option<Instant>) -> Sleep {
        match at {
            Some(at) => {
                let wait = at.saturating_since(self.now());
                Box::pin(async move {
                    smol::Timer::after(wait).await;
                })
            }
            None => Box::pin(std::future::pending()),
        }
    }
}

/// The system's clocks with the wall clock shifted by the milliseconds written in a file, read
/// at each look. Only for end-to-end tests of clock-change detection (`picket agent` uses it
/// when `PICKET_TEST_WALL_SKEW_FILE` is set): a test steps a real process's clock without root.
#[derive(Debug)]
pub struct SkewFileClock {
    real: BootClock,
    path: std::path::PathBuf,
}

impl SkewFileClock {
    pub fn new(path: std::path::PathBuf) -> Self {
        SkewFileClock {
            real: BootClock::new(),
            path,
        }
    }
}

impl Clock for SkewFileClock {
    fn now(&self) -> Instant {
        self.real.now()
    }

    fn sleep_until(&self, at: Option<Instant>) -> Sleep {
        self.real.sleep_until(at)
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

/// A clock that moves only when a test moves it. Clones share the same time, and a sleep on
/// any of them resolves when a clone advances past its instant.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    mono_ms: Arc<AtomicU64>,
    wall_ms: Arc<AtomicU64>,
    /// Pending sleeps by their id, with the waker of their last poll; all are woken at each
    /// advance, and each checks its own time. A sleep leaves when it resolves or is dropped.
    sleepers: Arc<Mutex<Vec<(u64, Waker)>>>,
    next_sleep: Arc<AtomicU64>,
    /// Sleeps that have begun to wait (polled once and not due).
    begun: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at monotonic zero whose wall clock reads `wall`.
    pub fn new(wall: WallMs) -> Self {
        ManualClock {
            mono_ms: Arc::new(AtomicU64::new(0)),
            wall_ms: Arc::new(AtomicU64::new(wall.0)),
            sleepers: Arc::default(),
            next_sleep: Arc::default(),
            begun: Arc::default(),
        }
    }

    /// Let `d` pass: both clocks move forward together, and sleeps now due resolve.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.mono_ms.fetch_add(ms, Ordering::SeqCst);
        self.wall_ms.fetch_add(ms, Ordering::SeqCst);
        // Taken out: each woken sleep registers again when polled if it is not due yet, so a
        // count back at its old value means the sleepers have been polled (gone back to sleep).
        let woken: Vec<(u64, Waker)> = std::mem::take(&mut *self.lock_sleepers());
        for (_, waker) in woken {
            waker.wake();
        }
    }

    /// Step only the wall clock, as an administrator or NTP would; monotonic time is unmoved.
    pub fn set_wall(&self, wall: WallMs) {
        self.wall_ms.store(wall.0, Ordering::SeqCst);
    }

    /// How many sleeps wait on this clock now (polled, not yet due, not dropped): a test can
    /// tell that a task has gone back to sleep.
    pub fn sleepers(&self) -> usize {
        self.lock_sleepers().len()
    }

    /// How many sleeps have begun to wait on this clock so far: a task that handled an event
    /// and went back to sleep has begun a new one.
    pub fn sleeps_begun(&self) -> u64 {
        self.begun.load(Ordering::SeqCst)
    }

    fn lock_sleepers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Waker)>> {
        self.sleepers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.mono_ms.load(Ordering::SeqCst))
    }

    fn wall(&self) -> WallMs {
        WallMs(self.wall_ms.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, at: Option<Instant>) -> Sleep {
        Box::pin(ManualSleep {
            clock: self.clone(),
            id: self.next_sleep.fetch_add(1, Ordering::SeqCst),
            at,
            begun: false,
        })
    }
}

/// A sleep on a [`ManualClock`], registered while it is pending.
struct ManualSleep {
    clock: ManualClock,
    id: u64,
    at: Option<Instant>,
    begun: bool,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let clock = self.clock.clone();
        // Checked under the lock `advance` takes the wakers under: a wake between the check and
        // the registration cannot be lost.
        let mut sleepers = clock.lock_sleepers();
        let due = self.at.is_some_and(|at| clock.now() >= at);
        sleepers.retain(|(id, _)| *id != self.id);
        if due {
            return Poll::Ready(());
        }
        sleepers.push((self.id, cx.waker().clone()));
        drop(sleepers);
        if !self.begun {
            self.begun = true;
            clock.begun.fetch_add(1, Ordering::SeqCst);
        }
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        let id = self.id;
        self.clock.lock_sleepers().retain(|(i, _)| *i != id);
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
    fn a_sleep_on_the_manual_clock_resolves_when_it_is_advanced_past_its_instant() {
        let clock = ManualClock::new(WallMs(0));
        let mut sleep = clock.sleep(Duration::from_secs(10));
        let mut never = clock.sleep_until(None);
        let poll = |f: &mut Sleep| {
            let waker = Waker::noop();
            f.as_mut().poll(&mut std::task::Context::from_waker(waker))
        };
        assert!(poll(&mut sleep).is_pending());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_secs(9));
        assert!(poll(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(1));
        assert!(poll(&mut sleep).is_ready());
        assert!(poll(&mut never).is_pending());
        assert_eq!(
            clock.sleepers(),
            1,
            "the resolved sleep left; the endless one waits"
        );
        drop(never);
        assert_eq!(clock.sleepers(), 0, "a dropped sleep leaves too");
        let woken = smol::block_on(within(&clock, Duration::ZERO, std::future::pending::<()>()));
        assert_eq!(woken, None, "a zero limit has passed at once");
    }

    #[test]
    fn the_boot_clock_moves_with_the_monotonic_one_while_awake() {
        let boot = BootClock::new();
        let real = RealClock::new();
        block_for(Duration::from_millis(30));
        let (b, r) = (boot.now().as_millis(), real.now().as_millis());
        assert!(
            b >= 30 && b.abs_diff(r) < 20,
            "boot {b} ms, monotonic {r} ms"
        );
        let woken = smol::block_on(within(&boot, Duration::from_secs(5), async {}));
        assert_eq!(woken, Some(()));
        let slept = smol::block_on(within(
            &boot,
            Duration::from_millis(10),
            std::future::pending::<()>(),
        ));
        assert_eq!(slept, None, "its sleeps end");
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
