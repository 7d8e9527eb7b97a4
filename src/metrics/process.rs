//! Process metrics (CPU, memory, file descriptors, threads, start time), read from `/proc`
//! at scrape time and rendered in the Prometheus text format.
//!
//! Read here rather than through the `metrics` facade because the facade's counters are
//! integers, and CPU seconds need fractions for `rate()` to be smooth.

use std::fmt::Write;

use super::names::*;

/// The kernel's `USER_HZ`, fixed at 100 on every Linux ABI.
#[cfg(target_os = "linux")]
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// One reading of the process's resource usage. Fields the platform cannot tell are `None`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<u64>,
    pub(crate) virtual_bytes: Option<u64>,
    pub(crate) open_fds: Option<u64>,
    pub(crate) max_fds: Option<u64>,
    pub(crate) start_time_seconds: Option<f64>,
    pub(crate) threads: Option<u64>,
}

impl ProcessStats {
    /// Reads the current process's figures.
    #[cfg(target_os = "linux")]
    pub(crate) fn read() -> Self {
        let mut stats = ProcessStats::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which may itself hold spaces and parentheses.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // `fields[0]` is field 3 (state) of proc(5).
                let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
                if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                    stats.cpu_seconds = Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND);
                }
                stats.threads = field(20);
                stats.virtual_bytes = field(23);
                if let (Some(start), Some(boot)) = (field(22), boot_time()) {
                    stats.start_time_seconds = Some(boot + start as f64 / CLOCK_TICKS_PER_SECOND);
                }
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            stats.resident_bytes = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            stats.open_fds = Some((dir.count() as u64).saturating_sub(1));
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            stats.max_fds = limits
                .lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok());
        }
        stats
    }

    /// Other platforms: nothing is known, nothing is rendered.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn read() -> Self {
        ProcessStats::default()
    }

    /// Appends the figures in the Prometheus text exposition format.
    pub(crate) fn render(&self, out: &mut String) {
        let mut family = |name: &str, kind: &str, value: Option<String>| {
            let Some(value) = value else { return };
            let help = CATALOGUE
                .iter()
                .find(|m| m.name == name)
                .map_or("", |m| m.help);
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
            );
        };
        family(
            PROCESS_CPU_SECONDS,
            "counter",
            self.cpu_seconds.map(|v| v.to_string()),
        );
        family(
            PROCESS_RESIDENT_MEMORY,
            "gauge",
            self.resident_bytes.map(|v| v.to_string()),
        );
        family(
            PROCESS_VIRTUAL_MEMORY,
            "gauge",
            self.virtual_bytes.map(|v| v.to_string()),
        );
        family(
            PROCESS_OPEN_FDS,
            "gauge",
            self.open_fds.map(|v| v.to_string()),
        );
        family(
            PROCESS_MAX_FDS,
            "gauge",
            self.max_fds.map(|v| v.to_string()),
        );
        family(
            PROCESS_START_TIME,
            "gauge",
            self.start_time_seconds.map(|v| v.to_string()),
        );
        family(
            PROCESS_THREADS,
            "gauge",
            self.threads.map(|v| v.to_string()),
        );
    }
}

#[cfg(target_os = "linux")]
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read();
        assert!(stats.cpu_seconds.is_some_and(|v| v >= 0.0));
        assert!(stats.resident_bytes.is_some_and(|v| v > 1024 * 1024));
        assert!(stats.open_fds.is_some_and(|v| v >= 3));
        assert!(stats.max_fds.is_some_and(|v| v >= stats.open_fds.unwrap()));
        assert!(stats.threads.is_some_and(|v| v >= 1));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = stats.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        let mut out = String::new();
        stats.render(&mut out);
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(out.contains("\nprocess_open_fds "));
    }
}
