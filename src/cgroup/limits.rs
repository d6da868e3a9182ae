//! Resource limits: parsing of the user's values and writing them into a cgroup v2 directory.

use std::collections::BTreeSet;
use std::path::Path;

use super::{write_file, CgroupError};

/// The cgroup v2 controllers burrow can use. Ordered so that sets print in a stable order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Cpu,
    Io,
    Memory,
    Pids,
}

impl Controller {
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Io => "io",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }

    /// The name of the same controller on a cgroup v1 hierarchy (io was called blkio there).
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Io => "blkio",
            other => other.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "cpu" => Some(Controller::Cpu),
            "io" => Some(Controller::Io),
            "memory" => Some(Controller::Memory),
            "pids" => Some(Controller::Pids),
            _ => None,
        }
    }
}

/// Every limit the user may request; `None` means "not limited".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// memory.max, bytes
    pub memory: Option<u64>,
    /// memory.swap.max, bytes of swap (not memory+swap as in cgroup v1 / podman)
    pub memory_swap: Option<u64>,
    /// pids.max
    pub pids: Option<u64>,
    /// cpu.max as a number of CPUs (1.5 = 150 ms every 100 ms)
    pub cpus: Option<f64>,
    /// cpu.weight, 1..=10000
    pub cpu_weight: Option<u64>,
    /// io.weight, 1..=10000
    pub io_weight: Option<u64>,
}

/// One requested limit: the flag that asked for it, its controller and the file it is written to.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub flag: &'static str,
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
}

/// cpu.max period in microseconds: the kernel's default, also used by systemd and podman.
const CPU_PERIOD_USEC: u64 = 100_000;
/// The kernel refuses cpu.max quotas below 1 ms.
const CPU_MIN_QUOTA_USEC: u64 = 1_000;
const WEIGHT_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.settings_unchecked().is_empty()
    }

    /// The controllers these limits need.
    pub fn controllers(&self) -> BTreeSet<Controller> {
        self.settings_unchecked().iter().map(|s| s.controller).collect()
    }

    /// Checks the ranges and returns the files to write, in the order they are written.
    pub fn settings(&self) -> Result<Vec<Setting>, CgroupError> {
        if let Some(cpus) = self.cpus {
            cpu_max(cpus)?;
        }
        for (flag, w) in [("--cpu-weight", self.cpu_weight), ("--io-weight", self.io_weight)] {
            if let Some(w) = w {
                if !WEIGHT_RANGE.contains(&w) {
                    return Err(CgroupError::InvalidLimit {
                        flag,
                        value: w.to_string(),
                        reason: "a weight must be between 1 and 10000".into(),
                    });
                }
            }
        }
        if self.pids == Some(0) {
            return Err(CgroupError::InvalidLimit {
                flag: "--pids-limit",
                value: "0".into(),
                reason: "the container needs at least one process".into(),
            });
        }
        Ok(self.settings_unchecked())
    }

    /// Removes the limits whose controller is in `missing` (best-effort mode).
    pub fn without(&self, missing: &BTreeSet<Controller>) -> Limits {
        let keep = |c: Controller| !missing.contains(&c);
        Limits {
            memory: self.memory.filter(|_| keep(Controller::Memory)),
            memory_swap: self.memory_swap.filter(|_| keep(Controller::Memory)),
            pids: self.pids.filter(|_| keep(Controller::Pids)),
            cpus: self.cpus.filter(|_| keep(Controller::Cpu)),
            cpu_weight: self.cpu_weight.filter(|_| keep(Controller::Cpu)),
            io_weight: self.io_weight.filter(|_| keep(Controller::Io)),
        }
    }

    fn settings_unchecked(&self) -> Vec<Setting> {
        let mut out = Vec::new();
        let mut add = |flag, controller, file, value: Option<String>| {
            if let Some(value) = value {
                out.push(Setting { flag, controller, file, value });
            }
        };
        use Controller::*;
        add("--memory", Memory, "memory.max", self.memory.map(|v| v.to_string()));
        add("--memory-swap", Memory, "memory.swap.max", self.memory_swap.map(|v| v.to_string()));
        add("--pids-limit", Pids, "pids.max", self.pids.map(|v| v.to_string()));
        add("--cpus", Cpu, "cpu.max", self.cpus.map(|c| cpu_max(c).unwrap_or_default()));
        add("--cpu-weight", Cpu, "cpu.weight", self.cpu_weight.map(|v| v.to_string()));
        add("--io-weight", Io, "io.weight", self.io_weight.map(|v| format!("default {v}")));
        out
    }
}

/// Writes every limit into the cgroup directory `dir` (the container's leaf).
pub fn write_limits(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    for s in limits.settings()? {
        write_file(&dir.join(s.file), &s.value).map_err(|source| CgroupError::WriteLimit {
            flag: s.flag,
            path: dir.join(s.file),
            source,
        })?;
    }
    Ok(())
}

/// `--cpus 1.5` → cpu.max "150000 100000": quota and period in microseconds.
pub fn cpu_max(cpus: f64) -> Result<String, CgroupError> {
    let invalid =
        |reason: &str| CgroupError::InvalidLimit { flag: "--cpus", value: cpus.to_string(), reason: reason.into() };
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err(invalid("the number of CPUs must be a positive number"));
    }
    // Bounded above by 1e6 CPUs so the product cannot overflow a u64.
    if cpus > 1_000_000.0 {
        return Err(invalid("the number of CPUs is too large"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let quota = (cpus * CPU_PERIOD_USEC as f64).round() as u64;
    if quota < CPU_MIN_QUOTA_USEC {
        return Err(invalid("the smallest value is 0.01 (1 ms every 100 ms)"));
    }
    Ok(format!("{quota} {CPU_PERIOD_USEC}"))
}

/// Parses a size: a number of bytes with an optional binary unit suffix
/// (`b`, `k`, `m`, `g`, `t`, case-insensitive, optionally followed by `b` or `ib`): `512m`, `1g`, `1GiB`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, CgroupError> {
    let invalid = |reason: &str| CgroupError::InvalidSize { value: s.to_string(), reason: reason.into() };
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(invalid("expected a number such as 512m or 2g"));
    }
    let n: u64 = num.parse().map_err(|_| invalid("the number is too large"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(invalid("unknown unit; use b, k, m, g or t")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| invalid("the size is too large"))
}

/// Parses `--cpus`: a positive decimal number of CPUs (for a clap `value_parser`).
pub fn parse_cpus(s: &str) -> Result<f64, CgroupError> {
    let cpus: f64 = s.trim().parse().map_err(|_| CgroupError::InvalidLimit {
        flag: "--cpus",
        value: s.to_string(),
        reason: "expected a number of CPUs such as 1.5".into(),
    })?;
    cpu_max(cpus)?;
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("10k").unwrap(), 10240);
        for bad in ["", "m", "1.5g", "12x", "-1", "99999999999999999999", "99999999999t"] {
            assert!(parse_size(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn cpus_to_cpu_max() {
        assert_eq!(cpu_max(1.5).unwrap(), "150000 100000");
        assert_eq!(cpu_max(0.5).unwrap(), "50000 100000");
        assert_eq!(cpu_max(2.0).unwrap(), "200000 100000");
        assert_eq!(cpu_max(0.01).unwrap(), "1000 100000");
        for bad in [0.0, -1.0, 0.001, f64::NAN, f64::INFINITY] {
            assert!(cpu_max(bad).is_err(), "{bad} must be refused");
        }
        assert_eq!(parse_cpus("1.5").unwrap(), 1.5);
        assert!(parse_cpus("one").is_err());
    }

    #[test]
    fn settings_and_controllers() {
        let l =
            Limits { memory: Some(1 << 20), pids: Some(20), cpus: Some(0.5), io_weight: Some(50), ..Limits::default() };
        let files: Vec<_> = l.settings().unwrap().into_iter().map(|s| (s.file, s.value)).collect();
        assert_eq!(
            files,
            [
                ("memory.max", "1048576".to_string()),
                ("pids.max", "20".into()),
                ("cpu.max", "50000 100000".into()),
                ("io.weight", "default 50".into()),
            ]
        );
        let c: Vec<_> = l.controllers().into_iter().map(Controller::name).collect();
        assert_eq!(c, ["cpu", "io", "memory", "pids"]);
        assert!(Limits::default().is_empty());
        let missing = [Controller::Memory, Controller::Io].into_iter().collect();
        let kept = l.without(&missing);
        assert_eq!((kept.memory, kept.io_weight, kept.pids), (None, None, Some(20)));
    }

    #[test]
    fn ranges_are_checked() {
        let weight = Limits { cpu_weight: Some(0), ..Limits::default() };
        assert!(weight.settings().is_err());
        let pids = Limits { pids: Some(0), ..Limits::default() };
        assert!(pids.settings().is_err());
        let ok = Limits { cpu_weight: Some(10_000), ..Limits::default() };
        assert!(ok.settings().is_ok());
    }
}
