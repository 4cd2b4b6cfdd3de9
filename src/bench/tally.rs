//! What a phase of sessions adds up to: counts, failures by reason, latency histograms.

use super::agent::{Failure, Timing};
use super::histogram::Histogram;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub started: u64,
    pub completed: u64,
    /// Count and the first detail seen, by reason.
    pub failures: BTreeMap<&'static str, (u64, String)>,
    pub handshake: Histogram,
    pub done: Histogram,
    pub closed: Histogram,
    /// Sessions whose connection the manager had not closed 10 s after its last message.
    pub not_closed: u64,
    pub events_acked: u64,
    /// Completed sessions whose TLS handshake was resumed.
    pub resumed: u64,
}

impl Tally {
    pub fn add(&mut self, result: &Result<Timing, Failure>) {
        self.started += 1;
        match result {
            Ok(t) => {
                self.completed += 1;
                self.handshake.record(t.handshake);
                self.done.record(t.done);
                match t.closed {
                    Some(closed) => self.closed.record(closed),
                    None => self.not_closed += 1,
                }
                self.events_acked += t.events_acked;
                self.resumed += u64::from(t.resumed);
            }
            Err(f) => self.fail(f.reason, &f.detail),
        }
    }

    pub fn fail(&mut self, reason: &'static str, detail: &str) {
        self.failures
            .entry(reason)
            .or_insert_with(|| (0, detail.to_string()))
            .0 += 1;
    }

    pub fn merge(&mut self, other: &Tally) {
        self.started += other.started;
        self.completed += other.completed;
        self.not_closed += other.not_closed;
        self.events_acked += other.events_acked;
        self.resumed += other.resumed;
        self.handshake.merge(&other.handshake);
        self.done.merge(&other.done);
        self.closed.merge(&other.closed);
        for (reason, (n, detail)) in &other.failures {
            self.failures
                .entry(reason)
                .or_insert_with(|| (0, detail.clone()))
                .0 += n;
        }
    }
}
