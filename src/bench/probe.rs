//! The load generator's own CPU time, from /proc, so the manager's share of this process can be
//! told apart in a single process.

use crate::process::{cpu_seconds, process_cpu};
use std::fs;

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

/// CPU time at a point, to split a phase's CPU between the manager and the generator.
pub struct CpuMark {
    process: f64,
    generator: f64,
}

impl CpuMark {
    pub fn now() -> CpuMark {
        CpuMark {
            process: process_cpu(),
            generator: threads_cpu(GENERATOR_THREAD),
        }
    }

    /// (manager, generator) CPU seconds since the mark.
    pub fn since(&self) -> (f64, f64) {
        let later = CpuMark::now();
        let generator = later.generator - self.generator;
        let manager = (later.process - self.process - generator).max(0.0);
        (manager, generator)
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
