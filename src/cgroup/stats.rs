//! Accounting read from the container's cgroup: peak memory, CPU time, peak processes, OOM kills.

use std::fmt;
use std::fs;
use std::path::Path;

use serde::Serialize;

/// Figures read from the container's leaf cgroup. `None`: the kernel or the delegated controllers
/// do not provide the figure (e.g. memory.peak needs Linux 5.19 and the memory controller).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub memory_peak: Option<u64>,
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
    pub pids_peak: Option<u64>,
    pub oom_kills: Option<u64>,
}

impl Stats {
    /// Reads the figures of cgroup directory `dir`. `memory_seen` is the highest memory.current
    /// sampled so far, used where memory.peak does not exist (kernels before 5.19).
    pub fn read(dir: &Path, memory_seen: Option<u64>) -> Stats {
        let cpu = fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
        let events = fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
        let memory_peak =
            read_u64(&dir.join("memory.peak")).or_else(|| max_opt(read_u64(&dir.join("memory.current")), memory_seen));
        Stats {
            memory_peak,
            cpu_user_usec: keyed(&cpu, "user_usec"),
            cpu_system_usec: keyed(&cpu, "system_usec"),
            cpu_usage_usec: keyed(&cpu, "usage_usec"),
            pids_peak: read_u64(&dir.join("pids.peak")),
            oom_kills: keyed(&events, "oom_kill"),
        }
    }
}

/// Reads a file holding one number ("max" and unreadable files give `None`).
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file such as cpu.stat ("usage_usec 1234").
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Human-readable summary for `--stats`, one figure per line.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let na = "unavailable";
        let bytes = |v: Option<u64>| v.map_or(na.to_string(), human_bytes);
        let secs = |v: Option<u64>| v.map_or(na.to_string(), |us| format!("{:.3} s", us as f64 / 1e6));
        let num = |v: Option<u64>| v.map_or(na.to_string(), |n| n.to_string());
        writeln!(f, "memory peak:   {}", bytes(self.memory_peak))?;
        writeln!(f, "cpu user:      {}", secs(self.cpu_user_usec))?;
        writeln!(f, "cpu system:    {}", secs(self.cpu_system_usec))?;
        writeln!(f, "pids peak:     {}", num(self.pids_peak))?;
        write!(f, "oom kills:     {}", num(self.oom_kills))
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit} ({n} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_cgroup_directory() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, s: &str| fs::write(d.path().join(f), s).unwrap();
        w("cpu.stat", "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 0\n");
        w("memory.current", "4096\n");
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n");
        w("pids.peak", "7\n");
        let s = Stats::read(d.path(), Some(10_000));
        assert_eq!(s.memory_peak, Some(10_000), "memory.current is below the sampled maximum");
        assert_eq!((s.cpu_user_usec, s.cpu_system_usec, s.cpu_usage_usec), (Some(2000), Some(1000), Some(3000)));
        assert_eq!((s.pids_peak, s.oom_kills), (Some(7), Some(1)));
        w("memory.peak", "123456\n");
        assert_eq!(Stats::read(d.path(), Some(10_000)).memory_peak, Some(123_456));
        let text = Stats::read(d.path(), None).to_string();
        assert!(text.contains("120.6 KiB (123456 bytes)"), "{text}");
        assert!(text.contains("cpu user:      0.002 s"), "{text}");
    }

    #[test]
    fn missing_files_are_none() {
        let d = tempfile::tempdir().unwrap();
        let s = Stats::read(d.path(), None);
        assert_eq!(s, Stats::default());
        assert!(s.to_string().contains("memory peak:   unavailable"));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"memory_peak\":null"), "{json}");
    }
}
