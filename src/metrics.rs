//! The manager's measurements and their Prometheus text form (`GET /metrics`). Counters and
//! histograms are updated where things happen (agent port, dialer, store writer, login);
//! the gauges that describe the store (computers by status, events stored, active alerts) are
//! read from it at scrape time, so they cannot drift from what is stored.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Who opened the connection a session ran over.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Dialer {
    Agent,
    Manager,
}

/// What a session was for.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum SessionKind {
    Heartbeat,
    Activation,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

impl Dialer {
    fn label(self) -> &'static str {
        match self {
            Dialer::Agent => "agent-initiated",
            Dialer::Manager => "manager-initiated",
        }
    }
}

impl SessionKind {
    fn label(self) -> &'static str {
        match self {
            SessionKind::Heartbeat => "heartbeat",
            SessionKind::Activation => "activation",
        }
    }
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        }
    }
}

// Label values are the lowercase words Prometheus users expect, hence `&str` fields. A
// session's `direction` is who opened its connection, in the words of the setting.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    direction: &'static str,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DialerLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What the store holds at scrape time.
#[derive(Debug, Default, Clone)]
pub struct StoreCounts {
    pub computers_by_status: Vec<(String, u64)>,
    pub events: u64,
    pub active_alerts: u64,
    /// The store file's size on disk.
    pub file_bytes: u64,
    pub health: crate::store::HealthReport,
    /// Notices in the outbox, and dropped by it ever.
    pub notices_queued: u64,
    pub notices_dropped: u64,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
    /// `alert` (a notice of the outbox) or `event` (an agent event a syslog channel forwards).
    what: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabels {
    channel: String,
    /// sent, failed (given up), skipped (not routed there, in a maintenance window, or an
    /// event of another id), dropped (an event retention deleted before it was sent).
    outcome: &'static str,
    what: &'static str,
}

/// What became of one notice, or one forwarded event, on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeOutcome {
    Sent,
    Failed,
    Skipped,
    Dropped,
}

/// What a channel delivers: the `what` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Alert,
    Event,
}

impl Delivered {
    fn label(self) -> &'static str {
        match self {
            Delivered::Alert => "alert",
            Delivered::Event => "event",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    sessions: Family<SessionLabels, Counter>,
    session_seconds: HistogramFamily<DialerLabels>,
    dial_failures: Counter,
    events_received: Counter,
    events_deleted: Counter,
    commit_seconds: Histogram,
    commit_jobs: Counter,
    logins: Family<OutcomeLabels, Counter>,
    unauthenticated_closed: Family<ClosedLabels, Counter>,
    computers: Family<StatusLabels, Gauge>,
    events_stored: Gauge,
    active_alerts: Gauge,
    heartbeat_delay: Gauge<f64, AtomicU64>,
    store_bytes: Gauge,
    store_writable: Gauge,
    store_takes_events: Gauge,
    store_free_bytes: Gauge,
    store_reserve_bytes: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_bytes: Gauge,
    notices: Family<NoticeLabels, Counter>,
    notice_seconds: HistogramFamily<ChannelLabels>,
    notices_pending: Family<ChannelLabels, Gauge>,
    notices_queued: Gauge,
    notices_dropped: Gauge,
    /// Scrapes set the store gauges then encode; one at a time, so two scrapes cannot mix.
    scrape: Mutex<()>,
}

fn notice_histogram() -> Histogram {
    // 10 ms to about 3 days: a channel down for a day still lands in a bucket.
    Histogram::new(exponential_buckets(0.01, 4.0, 14))
}

fn session_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("picket");
        let sessions = Family::<SessionLabels, Counter>::default();
        registry.register(
            "sessions",
            "Sessions with agents, by who dialed, what for and how they ended",
            sessions.clone(),
        );
        let session_seconds: HistogramFamily<DialerLabels> =
            Family::new_with_constructor(session_histogram);
        registry.register(
            "session_duration_seconds",
            "Time from the end of the TLS handshake to the session's close",
            session_seconds.clone(),
        );
        let dial_failures = Counter::default();
        registry.register(
            "dial_failures",
            "Dials to listening agents that never reached a session (resolution, connection, TLS)",
            dial_failures.clone(),
        );
        let events_received = Counter::default();
        registry.register(
            "events_received",
            "Agent events stored durably and acknowledged",
            events_received.clone(),
        );
        let events_deleted = Counter::default();
        registry.register(
            "events_deleted",
            "Agent events deleted by retention (older than --event-retention)",
            events_deleted.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "store_commit_duration_seconds",
            "Time of one group commit of the store writer, fsync included",
            commit_seconds.clone(),
        );
        let commit_jobs = Counter::default();
        registry.register(
            "store_commit_jobs",
            "Changes written by the store writer's group commits",
            commit_jobs.clone(),
        );
        let logins = Family::<OutcomeLabels, Counter>::default();
        registry.register("console_logins", "Console login attempts", logins.clone());
        let unauthenticated_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "unauthenticated_closed",
            "Connections closed before they authenticated, by listener and reason (evicted, \
             timed-out, handshake-failed, failed, refused)",
            unauthenticated_closed.clone(),
        );
        let computers = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "computers",
            "Computers by status, as stored",
            computers.clone(),
        );
        let events_stored = Gauge::default();
        registry.register(
            "events_stored",
            "Agent events in the store",
            events_stored.clone(),
        );
        let active_alerts = Gauge::default();
        registry.register(
            "alerts_active",
            "Alerts neither cleared nor dismissed",
            active_alerts.clone(),
        );
        let heartbeat_delay = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "heartbeat_delay_seconds",
            "How long heartbeats now wait inside the manager before they are recorded (a high \
             quantile over the last 10 s); offline verdicts wait as long",
            heartbeat_delay.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_file_bytes",
            "Size of the store file (DIR/picket.redb)",
            store_bytes.clone(),
        );
        let store_writable = Gauge::default();
        registry.register(
            "store_writable",
            "1 while the store takes writes; 0 after an I/O error (a full disk) until the store \
             has reopened its file by itself",
            store_writable.clone(),
        );
        let store_takes_events = Gauge::default();
        registry.register(
            "store_takes_events",
            "1 while the store takes agent events; 0 while it cannot write or free space is \
             below the reserve (agents keep their events meanwhile)",
            store_takes_events.clone(),
        );
        let store_free_bytes = Gauge::default();
        registry.register(
            "store_free_bytes",
            "Free space on the store's filesystem, as last read (about once a second)",
            store_free_bytes.clone(),
        );
        let store_reserve_bytes = Gauge::default();
        registry.register(
            "store_reserve_bytes",
            "Free space kept for everything but agent events (--store-reserve)",
            store_reserve_bytes.clone(),
        );
        // The usual `process_*` measurements, under the manager's prefix: what a capacity
        // check (and `picket bench --manager`) reads of a manager on another box.
        let cpu_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time of the manager process, user and system",
            cpu_seconds.clone(),
        );
        let resident_bytes = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the manager process",
            resident_bytes.clone(),
        );
        let notices = Family::<NoticeLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notices and forwarded agent events done with, by channel, outcome (sent; failed: \
             given up; skipped: not routed there, silenced, or an event of another id; dropped: \
             an event deleted before it was sent) and what (alert or event)",
            notices.clone(),
        );
        let notice_seconds: HistogramFamily<ChannelLabels> =
            Family::new_with_constructor(notice_histogram);
        registry.register(
            "notification_latency_seconds",
            "Time from an alert's change (or an event's storing) to its delivery, by channel \
             and what",
            notice_seconds.clone(),
        );
        let notices_pending = Family::<ChannelLabels, Gauge>::default();
        registry.register(
            "notifications_pending",
            "Notices (or agent events to forward) a channel has not yet done with, after its \
             position",
            notices_pending.clone(),
        );
        let notices_queued = Gauge::default();
        registry.register(
            "notifications_queued",
            "Notices in the outbox, waiting for some channel",
            notices_queued.clone(),
        );
        let notices_dropped = Gauge::default();
        registry.register(
            "notifications_dropped",
            "Notices the full outbox dropped undelivered, ever (a channel failing for long)",
            notices_dropped.clone(),
        );
        Metrics {
            registry,
            notices,
            notice_seconds,
            notices_pending,
            notices_queued,
            notices_dropped,
            heartbeat_delay,
            store_bytes,
            store_writable,
            store_takes_events,
            store_free_bytes,
            store_reserve_bytes,
            cpu_seconds,
            resident_bytes,
            sessions,
            session_seconds,
            dial_failures,
            events_received,
            events_deleted,
            commit_seconds,
            commit_jobs,
            logins,
            unauthenticated_closed,
            computers,
            events_stored,
            active_alerts,
            scrape: Mutex::new(()),
        }
    }

    /// The liveness monitor's estimate of the manager's own delay.
    pub fn heartbeat_delay(&self, delay: Duration) {
        self.heartbeat_delay.set(delay.as_secs_f64());
    }

    pub fn session(&self, dialer: Dialer, kind: SessionKind, outcome: Outcome, took: Duration) {
        self.sessions
            .get_or_create(&SessionLabels {
                direction: dialer.label(),
                kind: kind.label(),
                outcome: outcome.label(),
            })
            .inc();
        self.session_seconds
            .get_or_create(&DialerLabels {
                direction: dialer.label(),
            })
            .observe(took.as_secs_f64());
    }

    /// A connection to `listener` ("agent", "console") closed before it authenticated.
    pub fn unauthenticated_closed(&self, listener: &'static str, why: crate::net::Closed) {
        self.unauthenticated_closed
            .get_or_create(&ClosedLabels {
                listener,
                reason: why.label(),
            })
            .inc();
    }

    pub fn dial_failed(&self) {
        self.dial_failures.inc();
    }

    pub fn events_received(&self, n: u64) {
        self.events_received.inc_by(n);
    }

    pub fn events_deleted(&self, n: u64) {
        self.events_deleted.inc_by(n);
    }

    pub fn commit(&self, jobs: usize, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_jobs
            .inc_by(u64::try_from(jobs).unwrap_or(u64::MAX));
    }

    /// A notice done with on `channel`; `latency` since its alert changed, for a sent one.
    pub fn notice(&self, channel: &str, outcome: NoticeOutcome, latency: Option<Duration>) {
        self.delivered(channel, Delivered::Alert, outcome, 1, latency);
    }

    /// `count` notices or forwarded events done with on `channel`; `latency` since the alert
    /// changed or the event was stored, for a sent one.
    pub fn delivered(
        &self,
        channel: &str,
        what: Delivered,
        outcome: NoticeOutcome,
        count: u64,
        latency: Option<Duration>,
    ) {
        let label = match outcome {
            NoticeOutcome::Sent => "sent",
            NoticeOutcome::Failed => "failed",
            NoticeOutcome::Skipped => "skipped",
            NoticeOutcome::Dropped => "dropped",
        };
        self.notices
            .get_or_create(&NoticeLabels {
                channel: channel.to_string(),
                outcome: label,
                what: what.label(),
            })
            .inc_by(count);
        if let Some(latency) = latency {
            self.notice_seconds
                .get_or_create(&ChannelLabels {
                    channel: channel.to_string(),
                    what: what.label(),
                })
                .observe(latency.as_secs_f64());
        }
    }

    /// How many notices `channel` has still to do with; a removed channel is forgotten.
    pub fn notices_pending(&self, channel: &str, pending: Option<u64>) {
        self.pending(channel, Delivered::Alert, pending);
    }

    /// How many notices or events `channel` has still to do with; `None` forgets the series
    /// (a removed channel, one that no longer forwards events).
    pub fn pending(&self, channel: &str, what: Delivered, pending: Option<u64>) {
        let labels = ChannelLabels {
            channel: channel.to_string(),
            what: what.label(),
        };
        match pending {
            Some(n) => {
                self.notices_pending
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            None => {
                self.notices_pending.remove(&labels);
            }
        }
    }

    pub fn login(&self, outcome: Outcome) {
        self.logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// The Prometheus text exposition, with the store gauges set from `counts`.
    pub fn encode(&self, counts: &StoreCounts) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.computers.clear();
        for (status, n) in &counts.computers_by_status {
            self.computers
                .get_or_create(&StatusLabels {
                    status: status.clone(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.events_stored
            .set(i64::try_from(counts.events).unwrap_or(i64::MAX));
        self.active_alerts
            .set(i64::try_from(counts.active_alerts).unwrap_or(i64::MAX));
        self.store_bytes
            .set(i64::try_from(counts.file_bytes).unwrap_or(i64::MAX));
        self.notices_queued
            .set(i64::try_from(counts.notices_queued).unwrap_or(i64::MAX));
        self.notices_dropped
            .set(i64::try_from(counts.notices_dropped).unwrap_or(i64::MAX));
        let health = &counts.health;
        self.store_writable.set(i64::from(health.writable));
        self.store_takes_events.set(i64::from(health.takes_events));
        if let Some(space) = health.space {
            self.store_free_bytes
                .set(i64::try_from(space.free).unwrap_or(i64::MAX));
        }
        self.store_reserve_bytes
            .set(i64::try_from(health.reserve).unwrap_or(i64::MAX));
        // A counter only goes up: it is brought to the process's total, under the scrape lock.
        let cpu = crate::process::process_cpu();
        let counted = self.cpu_seconds.get();
        if cpu > counted {
            self.cpu_seconds.inc_by(cpu - counted);
        }
        self.resident_bytes
            .set(i64::try_from(crate::process::memory().0).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_each_measurement_with_its_labels() {
        let m = Metrics::new();
        m.session(
            Dialer::Manager,
            SessionKind::Heartbeat,
            Outcome::Ok,
            Duration::from_millis(3),
        );
        m.session(
            Dialer::Agent,
            SessionKind::Heartbeat,
            Outcome::Failed,
            Duration::from_millis(30),
        );
        m.commit(12, Duration::from_millis(2));
        m.events_received(5);
        m.events_deleted(3);
        m.login(Outcome::Failed);
        m.notice("mail", NoticeOutcome::Sent, Some(Duration::from_millis(40)));
        m.notice("mail", NoticeOutcome::Skipped, None);
        m.notices_pending("mail", Some(3));
        m.delivered("siem", Delivered::Event, NoticeOutcome::Dropped, 4, None);
        m.pending("siem", Delivered::Event, Some(2));
        let text = m.encode(&StoreCounts {
            computers_by_status: vec![("online".into(), 3), ("offline".into(), 1)],
            events: 42,
            active_alerts: 2,
            file_bytes: 4096,
            health: crate::store::HealthReport {
                writable: true,
                takes_events: false,
                reason: Some("refusing agent events".into()),
                space: Some(crate::store::Space {
                    free: 1000,
                    total: 1 << 20,
                }),
                reserve: 2000,
            },
            notices_queued: 7,
            notices_dropped: 1,
        });
        for line in [
            "picket_sessions_total{direction=\"manager-initiated\",kind=\"heartbeat\",outcome=\"ok\"} 1",
            "picket_sessions_total{direction=\"agent-initiated\",kind=\"heartbeat\",outcome=\"failed\"} 1",
            "picket_session_duration_seconds_count{direction=\"agent-initiated\"} 1",
            "picket_store_commit_jobs_total 12",
            "picket_store_writable 1",
            "picket_store_takes_events 0",
            "picket_store_free_bytes 1000",
            "picket_store_reserve_bytes 2000",
            "picket_store_commit_duration_seconds_count 1",
            "picket_events_received_total 5",
            "picket_events_deleted_total 3",
            "picket_console_logins_total{outcome=\"failed\"} 1",
            "picket_computers{status=\"online\"} 3",
            "picket_computers{status=\"offline\"} 1",
            "picket_events_stored 42",
            "picket_alerts_active 2",
            "picket_store_file_bytes 4096",
            "picket_notifications_total{channel=\"mail\",outcome=\"sent\",what=\"alert\"} 1",
            "picket_notifications_total{channel=\"mail\",outcome=\"skipped\",what=\"alert\"} 1",
            "picket_notifications_total{channel=\"siem\",outcome=\"dropped\",what=\"event\"} 4",
            "picket_notification_latency_seconds_count{channel=\"mail\",what=\"alert\"} 1",
            "picket_notifications_pending{channel=\"mail\",what=\"alert\"} 3",
            "picket_notifications_pending{channel=\"siem\",what=\"event\"} 2",
            "picket_notifications_queued 7",
            "picket_notifications_dropped 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // The process's own figures: this test process has used some CPU and memory.
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line[name.len()..].trim().parse().unwrap()
        };
        assert!(value("picket_process_cpu_seconds_total ") > 0.0, "{text}");
        assert!(
            value("picket_process_resident_memory_bytes ") > 1e6,
            "{text}"
        );
        // A status gone from the store is gone from the next scrape.
        let text = m.encode(&StoreCounts::default());
        assert!(!text.contains("status=\"offline\""), "{text}");
    }
}
