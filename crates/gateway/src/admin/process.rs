//! This process as the kernel reports it (`/proc/self`): resident memory, file descriptors, CPU time and start
//! time, for `/api/process` and for the standard `process_*` Prometheus gauges that `/metrics` renders; and, for
//! `/api/process`, the runtime's worker threads (`[runtime] worker_threads`).

use metrics::gauge;
use serde::Serialize;

/// One reading; a field is `None` where `/proc` does not have it (not Linux, or a format it does not know).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessStats {
    pub pid: u32,
    pub rss_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    /// Worker threads of the runtime that read this (`None` outside one).
    pub worker_threads: Option<usize>,
}

impl ProcessStats {
    /// Reads `/proc/self/{status,stat,fd,limits}` and `/proc/stat`, and the current runtime's worker count.
    pub fn read() -> ProcessStats {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss_bytes = field(&status, "VmRSS:").map(|kib| kib * 1024);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|soft| soft.parse().ok());
        let (cpu_seconds, start_time_seconds) = cpu_and_start().unzip();
        ProcessStats {
            pid: std::process::id(),
            rss_bytes,
            open_fds,
            max_fds,
            cpu_seconds,
            start_time_seconds,
            worker_threads: tokio::runtime::Handle::try_current()
                .ok()
                .map(|runtime| runtime.metrics().num_workers()),
        }
    }

    /// Sets the `process_*` gauges from this reading.
    pub fn export(&self) {
        let gauges = [
            (
                "process_resident_memory_bytes",
                self.rss_bytes.map(|v| v as f64),
            ),
            ("process_open_fds", self.open_fds.map(|v| v as f64)),
            ("process_max_fds", self.max_fds.map(|v| v as f64)),
            ("process_cpu_seconds_total", self.cpu_seconds),
            ("process_start_time_seconds", self.start_time_seconds),
        ];
        for (name, value) in gauges {
            if let Some(value) = value {
                gauge!(name).set(value);
            }
        }
    }
}

/// A `Key:   <number> ...` line's number.
fn field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// CPU seconds used (user + system) and the start time in seconds since the Unix epoch.
fn cpu_and_start() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15, starttime 22 (1-based in proc(5)).
    let ticks = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 {
        per_second as f64
    } else {
        100.0
    };
    let cpu = (ticks(14)? + ticks(15)?) / per_second;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| field(&s, "btime"))? as f64;
    Some((cpu, boot + ticks(22)? / per_second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read();
        assert_eq!(stats.pid, std::process::id());
        if cfg!(target_os = "linux") {
            assert!(stats.rss_bytes.unwrap() > 0);
            assert!(stats.open_fds.unwrap() >= 3);
            assert!(stats.max_fds.unwrap() >= stats.open_fds.unwrap());
            assert!(stats.cpu_seconds.unwrap() >= 0.0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let started = stats.start_time_seconds.unwrap();
            assert!(
                started <= now + 1.0 && started > now - 3600.0,
                "{started} vs {now}"
            );
        }
    }
}
