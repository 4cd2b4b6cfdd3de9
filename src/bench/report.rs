//! The report of a run: one serialisable structure, printed as text, JSON or a markdown row.

use super::histogram::Histogram;
use super::tally::Tally;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Serialize)]
pub struct Report {
    pub agents: u64,
    pub stopping_agents: u64,
    pub interval_s: f64,
    pub duration_s: f64,
    pub events_per_heartbeat: u32,
    pub direction: &'static str,
    pub registration: Registration,
    /// From starting the manager to its ports file: loading the registry and liveness state.
    pub manager_start_s: f64,
    pub load: Phase,
    pub saturation: Option<Phase>,
    pub floor: Option<Floor>,
    /// Saturated Picket sessions per second over floor handshakes per second.
    pub saturation_to_floor: Option<f64>,
    pub memory: Memory,
    pub store: StoreSize,
    pub alerts: Alerts,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Registration {
    pub method: &'static str,
    pub keys_and_certificates_s: f64,
    pub store_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
}

impl Latency {
    fn of(h: &Histogram) -> Latency {
        let ms = |q| h.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
        Latency {
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub seconds: f64,
    pub sessions_offered: u64,
    pub sessions_completed: u64,
    pub offered_per_s: f64,
    pub completed_per_s: f64,
    /// Count and the first message seen, by reason.
    pub failures: BTreeMap<&'static str, (u64, String)>,
    /// Connect to the end of the TLS handshake.
    pub handshake: Latency,
    /// Connect to the manager's `done`: what an agent waits.
    pub session: Latency,
    /// Connect to the manager's close, after it recorded the heartbeat: the manager's handling.
    pub until_manager_close: Latency,
    pub events_stored_per_s: f64,
    /// CPU seconds of everything but the load generator's threads (see notes).
    pub manager_cpu_s: f64,
    pub generator_cpu_s: f64,
    pub manager_cpu_s_per_1000_sessions: Option<f64>,
    /// Completed sessions whose TLS handshake resumed the agent's previous one.
    pub sessions_resumed: u64,
}

impl Phase {
    pub fn new(tally: &Tally, seconds: f64, manager_cpu_s: f64, generator_cpu_s: f64) -> Phase {
        let per_s = |n: u64| n as f64 / seconds.max(1e-9);
        Phase {
            seconds,
            sessions_offered: tally.started,
            sessions_completed: tally.completed,
            offered_per_s: per_s(tally.started),
            completed_per_s: per_s(tally.completed),
            failures: tally.failures.clone(),
            handshake: Latency::of(&tally.handshake),
            session: Latency::of(&tally.done),
            until_manager_close: Latency::of(&tally.closed),
            events_stored_per_s: per_s(tally.events_acked),
            manager_cpu_s,
            generator_cpu_s,
            manager_cpu_s_per_1000_sessions: (tally.completed > 0)
                .then(|| manager_cpu_s * 1000.0 / tally.completed as f64),
            sessions_resumed: tally.resumed,
        }
    }

    fn failed(&self) -> u64 {
        self.failures.values().map(|(n, _)| n).sum()
    }
}

#[derive(Debug, Serialize)]
pub struct Floor {
    pub handshakes: u64,
    pub failed: u64,
    pub seconds: f64,
    pub per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub rss_before_manager_bytes: u64,
    pub rss_after_load_bytes: u64,
    pub peak_rss_bytes: u64,
    /// RSS growth from just before the manager started to the end of the interval phase.
    pub manager_bytes: u64,
    pub bytes_per_computer: u64,
}

#[derive(Debug, Serialize)]
pub struct StoreSize {
    pub after_registration_bytes: u64,
    pub at_end_bytes: u64,
    /// Growth over every session of the run (interval and saturation phases).
    pub growth_per_session_bytes: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Alerts {
    /// Alerts on computers whose agents kept heartbeating: must be 0.
    pub raised: u64,
    /// Computers the manager marked offline at some point, of those not stopped on purpose: an
    /// overloaded run loses sessions, and a computer not heard from is offline.
    pub went_offline: u64,
    /// Of those, the ones whose every session had completed: the manager blamed them for its
    /// own delay. Must be 0.
    pub falsely_offline: u64,
    /// Offline alerts of the stopping agents: from the missed deadline (last heartbeat +
    /// interval + grace) to the alert, in ms; `None` if it did not come within the run.
    pub offline_alert_delay_ms: Vec<Option<i64>>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "picket bench: {} agents (+{} stopping), interval {}s, {}s, {} event(s)/heartbeat, {}",
            self.agents,
            self.stopping_agents,
            self.interval_s,
            self.duration_s,
            self.events_per_heartbeat,
            self.direction
        );
        let r = &self.registration;
        let _ = writeln!(
            out,
            "registration: {} (keys and certificates {:.1}s, store {:.1}s); manager start {:.2}s",
            r.method, r.keys_and_certificates_s, r.store_s, self.manager_start_s
        );
        phase(&mut out, "interval phase", &self.load);
        if let Some(s) = &self.saturation {
            phase(&mut out, "saturation", s);
        }
        if let Some(f) = &self.floor {
            let _ = writeln!(
                out,
                "floor (bare mTLS + round trip): {:.0}/s ({} in {:.1}s, {} failed)",
                f.per_s, f.handshakes, f.seconds, f.failed
            );
        }
        if let Some(ratio) = self.saturation_to_floor {
            let _ = writeln!(out, "saturated sessions / floor: {ratio:.2}");
        }
        let m = &self.memory;
        let _ = writeln!(
            out,
            "memory: RSS {} MiB before the manager, {} MiB after the load (peak {} MiB): \
             manager +{} MiB, {} B per computer",
            mib(m.rss_before_manager_bytes),
            mib(m.rss_after_load_bytes),
            mib(m.peak_rss_bytes),
            mib(m.manager_bytes),
            m.bytes_per_computer
        );
        let s = &self.store;
        let _ = writeln!(
            out,
            "store: {} MiB after registration, {} MiB at the end ({} B per session)",
            mib(s.after_registration_bytes),
            mib(s.at_end_bytes),
            s.growth_per_session_bytes
                .map_or("-".into(), |g| format!("{g:.0}"))
        );
        let _ = writeln!(
            out,
            "alerts on healthy computers: {}, marked offline: {} ({} of them never missed a \
             session); offline alert after the missed deadline: {:?} ms",
            self.alerts.raised,
            self.alerts.went_offline,
            self.alerts.falsely_offline,
            self.alerts.offline_alert_delay_ms
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    pub const MARKDOWN_HEADER: &'static str = "| agents | direction | interval | offered/s | completed/s | failed | p50 ms | p99 ms | p99.9 ms | close p99 ms | events/s | mgr CPU s/1k | RSS MiB | B/computer | store MiB | alerts / offline / false | alert delay ms | saturated/s | sat. mgr CPU ms/session | floor/s | ratio |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

    pub fn markdown(&self) -> String {
        let l = &self.load;
        let delays: Vec<String> = self
            .alerts
            .offline_alert_delay_ms
            .iter()
            .map(|d| d.map_or("none".into(), |d| d.to_string()))
            .collect();
        let alerts = format!(
            "{} / {} / {}",
            self.alerts.raised, self.alerts.went_offline, self.alerts.falsely_offline
        );
        format!(
            "{}\n| {} | {} | {}s | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            Self::MARKDOWN_HEADER,
            self.agents,
            self.direction,
            self.interval_s,
            l.offered_per_s,
            l.completed_per_s,
            l.failed(),
            ms(l.session.p50_ms),
            ms(l.session.p99_ms),
            ms(l.session.p999_ms),
            ms(l.until_manager_close.p99_ms),
            l.events_stored_per_s,
            l.manager_cpu_s_per_1000_sessions
                .map_or("-".into(), |c| format!("{c:.2}")),
            mib(self.memory.rss_after_load_bytes),
            self.memory.bytes_per_computer,
            mib(self.store.at_end_bytes),
            alerts,
            delays.join(" "),
            self.saturation
                .as_ref()
                .map_or("-".into(), |s| format!("{:.0}", s.completed_per_s)),
            // CPU seconds per 1,000 sessions is milliseconds per session.
            self.saturation
                .as_ref()
                .and_then(|s| s.manager_cpu_s_per_1000_sessions)
                .map_or("-".into(), |c| format!("{c:.2}")),
            self.floor
                .as_ref()
                .map_or("-".into(), |f| format!("{:.0}", f.per_s)),
            self.saturation_to_floor
                .map_or("-".into(), |r| format!("{r:.2}")),
        )
    }
}

fn phase(out: &mut String, name: &str, p: &Phase) {
    let _ = writeln!(
        out,
        "{name}: {:.1}s, offered {:.1}/s, completed {:.1}/s ({} of {}, {} resumed TLS), events stored {:.0}/s",
        p.seconds,
        p.offered_per_s,
        p.completed_per_s,
        p.sessions_completed,
        p.sessions_offered,
        p.sessions_resumed,
        p.events_stored_per_s
    );
    for (label, l) in [
        ("handshake", &p.handshake),
        ("session (to done)", &p.session),
        ("until manager close", &p.until_manager_close),
    ] {
        let _ = writeln!(
            out,
            "  {label:<20} p50 {} ms  p99 {} ms  p99.9 {} ms",
            ms(l.p50_ms),
            ms(l.p99_ms),
            ms(l.p999_ms)
        );
    }
    let _ = writeln!(
        out,
        "  CPU: manager {:.2}s ({} s per 1000 sessions), generator {:.2}s",
        p.manager_cpu_s,
        p.manager_cpu_s_per_1000_sessions
            .map_or("-".into(), |c| format!("{c:.3}")),
        p.generator_cpu_s
    );
    for (reason, (n, detail)) in &p.failures {
        let _ = writeln!(out, "  failed: {n} × {reason} (first: {detail})");
    }
}
