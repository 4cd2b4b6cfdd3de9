//! This process's CPU time and memory, read from /proc (Linux): for the manager's metrics and
//! the benchmark.

use std::fs;

/// Linux's USER_HZ, the unit of the CPU times in /proc (100 on every mainstream
/// architecture; reading it needs sysconf, which this crate does not call).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds from a `stat` file's text: fields 14 and 15, counted after the
/// command name, which is in parentheses and may itself hold spaces.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// The whole process's CPU seconds, threads that ended included.
pub fn process_cpu() -> f64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_seconds(&s))
        .unwrap_or(0.0)
}

/// A `VmRSS:`-style line's value in bytes.
pub fn status_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Resident memory now, and its high-water mark, in bytes.
pub fn memory() -> (u64, u64) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    (
        status_bytes(&status, "VmRSS:").unwrap_or(0),
        status_bytes(&status, "VmHWM:").unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_are_read_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (bench load) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn status_values_are_read_in_bytes() {
        let status = "Name:\tpicket\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_bytes(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(status_bytes(status, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(status_bytes(status, "VmSwap:"), None);
    }
}
