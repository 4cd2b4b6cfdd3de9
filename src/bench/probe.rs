//! The load generator's own CPU time, from /proc, so the manager's share of this process can be
//! told apart in a single process.

use crate::process::{cpu_seconds, process_cpu};
use std::fs;
use std::sync::Arc;

/// The load generator's threads are named `bench-load-N`; every other thread is the manager's
/// (or idle bench bookkeeping).
pub const GENERATOR_THREAD: &str = "bench-load";

/// CPU seconds of the live threads whose name starts with `prefix`.
pub fn threads_cpu(prefix: &str) -> f64 {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.starts_with(prefix))
        })
        .filter_map(|task| fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| cpu_seconds(&stat))
        .sum()
}

/// Where the manager's CPU time comes from.
#[derive(Clone)]
pub enum CpuSource {
    /// The manager runs in this process: its share is everything but the generator's threads.
    InProcess,
    /// A running manager: its own metrics say; all of this process is the load generator.
    Remote(Arc<dyn ManagerCpu>),
}

/// A manager that reports its own CPU time (a running one, through its metrics).
pub trait ManagerCpu: Send + Sync {
    /// Its CPU seconds so far; NaN if they could not be read.
    fn cpu_seconds(&self) -> f64;
}

impl CpuSource {
    /// The manager's CPU seconds so far, if they can be told apart from the generator's here.
    fn manager(&self) -> Option<f64> {
        match self {
            CpuSource::InProcess => None,
            CpuSource::Remote(target) => Some(target.cpu_seconds()),
        }
    }
}

/// CPU time at a point, to split a phase's CPU between the manager and the generator.
pub struct CpuMark {
    source: CpuSource,
    wall: crate::clock::WallMs,
    process: f64,
    generator: f64,
    manager: Option<f64>,
}

impl CpuMark {
    pub fn now(source: &CpuSource) -> CpuMark {
        CpuMark {
            source: source.clone(),
            wall: crate::clock::real_wall(),
            process: process_cpu(),
            generator: threads_cpu(GENERATOR_THREAD),
            manager: source.manager(),
        }
    }

    /// When the mark was taken.
    pub fn wall(&self) -> crate::clock::WallMs {
        self.wall
    }

    /// (manager, generator) CPU seconds since the mark. A running manager whose metrics could
    /// not be read gives NaN (null in JSON), not a made-up figure.
    pub fn since(&self) -> (f64, f64) {
        let later = CpuMark::now(&self.source);
        match (self.manager, later.manager) {
            (Some(before), Some(after)) => (after - before, later.process - self.process),
            _ => {
                let generator = later.generator - self.generator;
                let manager = (later.process - self.process - generator).max(0.0);
                (manager, generator)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        assert!(process_cpu() >= 0.0);
        assert!(crate::process::memory().0 > 0);
    }
}
