//! Creating the container's cgroup, moving its first process in, and removing it at the end.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::detect::{self, read_controllers};
use super::limits::{write_limits, Controller};
use super::stats::{read_u64, Stats};
use super::{cgroupfs, systemd, write_file, CgroupError, OnFailure, Plan, Target};

/// Name of the container's leaf inside the systemd scope.
const SCOPE_LEAF: &str = "container";
/// Name of the keeper's leaf inside the systemd scope (see [`Keeper`]).
const KEEPER_LEAF: &str = "keeper";
/// How long Drop waits for killed processes to leave the leaf before giving up on rmdir.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// cgroupfs leaves of crashed burrows (SIGKILL) are removed by later runs once empty and this old.
const STALE_AGE: Duration = Duration::from_secs(60);

/// A process that keeps a systemd scope populated, so that systemd does not remove the scope (and
/// the container's leaf with its figures) the moment the container's last process exits: `--stats`
/// reads them afterwards. It is `cat` reading a pipe whose only writer is this process: when burrow
/// exits or is SIGKILLed the pipe closes, cat ends, the scope empties and systemd collects it.
#[derive(Debug)]
struct Keeper {
    child: std::process::Child,
    leaf: Option<PathBuf>,
}

impl Keeper {
    fn spawn() -> Option<Keeper> {
        let child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(child) => Some(Keeper { child, leaf: None }),
            Err(e) => {
                log::debug!("cgroup: no keeper process (cat: {e}): --stats must be read before the container ends");
                None
            }
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(-1)
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        if let Some(leaf) = self.leaf.take() {
            let _ = fs::remove_dir(leaf);
        }
    }
}

/// The container's cgroup. Dropping it kills what is left in the leaf and removes the leaf; systemd
/// collects the then empty scope by itself (CollectMode=inactive-or-failed).
#[derive(Debug)]
pub struct Attached {
    leaf: Option<PathBuf>,
    /// dropped after the leaf is removed
    keeper: Option<Keeper>,
    unit: Option<String>,
    /// Whether Drop kills what is left in the leaf. Not while attaching in a mode that goes on
    /// without a cgroup on failure: the container's process must survive a half-done attach.
    kill_on_drop: bool,
    memory_seen: AtomicU64,
    warnings: Vec<String>,
}

impl Attached {
    fn none(warnings: Vec<String>) -> Attached {
        Attached { leaf: None, keeper: None, unit: None, kill_on_drop: false, memory_seen: AtomicU64::new(0), warnings }
    }

    /// The leaf cgroup directory holding the container; `None` when cgroups are disabled.
    pub fn leaf_path(&self) -> Option<&Path> {
        self.leaf.as_deref()
    }

    /// The systemd scope unit, e.g. `burrow-abc.scope` (systemd manager only).
    pub fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }

    /// Warnings produced while attaching (best-effort: the cgroup could not be created).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Records memory.current, for kernels without memory.peak (before 5.19); call it now and then.
    pub fn sample(&self) {
        if let Some(current) = self.leaf.as_deref().and_then(|l| read_u64(&l.join("memory.current"))) {
            self.memory_seen.fetch_max(current, Ordering::Relaxed);
        }
    }

    /// Reads the accounting figures; valid until the handle is dropped, also after the container
    /// ended when the plan was made with `want_stats` (a keeper process holds the systemd scope).
    pub fn stats(&self) -> Stats {
        let Some(leaf) = self.leaf.as_deref() else {
            return Stats::default();
        };
        let seen = self.memory_seen.load(Ordering::Relaxed);
        Stats::read(leaf, (seen > 0).then_some(seen))
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(leaf) = self.leaf.take() {
            if let Err(e) = remove_leaf(&leaf, self.kill_on_drop) {
                log::warn!("cannot remove cgroup {}: {e}", leaf.display());
            }
        }
        // Only now may the scope become empty and be collected.
        drop(self.keeper.take());
    }
}

/// Creates the container's cgroup below the plan's manager, moves `pid` (the container's first
/// process) into it, and writes the limits. `name` must be unique among running containers.
pub fn attach(plan: &Plan, pid: i32, name: &str) -> Result<Attached, CgroupError> {
    let result = match &plan.target {
        Target::Disabled => return Ok(Attached::none(Vec::new())),
        Target::Systemd(m) => attach_systemd(plan, m, pid, name),
        Target::Cgroupfs(b) => attach_cgroupfs(plan, b, pid, name),
    };
    match (result, plan.on_failure) {
        (Ok(a), _) => Ok(a),
        (Err(e), OnFailure::Error) => Err(e),
        (Err(e), OnFailure::Warn) => {
            Ok(Attached::none(vec![format!("running without a cgroup (no limits, no --stats): {}", error_chain(&e))]))
        }
        (Err(e), OnFailure::Quiet) => {
            log::debug!("running without a cgroup: {}", error_chain(&e));
            Ok(Attached::none(Vec::new()))
        }
    }
}

fn attach_systemd(plan: &Plan, manager: &systemd::Manager, pid: i32, name: &str) -> Result<Attached, CgroupError> {
    let unit = systemd::scope_name(name);
    let mut keeper = if plan.keep_for_stats { Keeper::spawn() } else { None };
    let mut pids = vec![pid];
    pids.extend(keeper.as_ref().map(Keeper::pid));
    let started = Instant::now();
    systemd::start_scope(manager, &pids, &unit)?;
    log::debug!("cgroup: {unit} started in {:?}", started.elapsed());
    // The scope's cgroup is where systemd put pid: no D-Bus round trip needed to learn it.
    let cgroup = detect::cgroup2_path_of(pid)?;
    let scope = plan.host.dir_of(&cgroup).filter(|d| d.ends_with(&unit)).ok_or_else(|| CgroupError::Systemd {
        unit: unit.clone(),
        reason: format!("process {pid} is in cgroup {cgroup}, not in the new scope"),
    })?;
    let leaf = scope.join(SCOPE_LEAF);
    make_dir(&leaf)?;
    let mut attached = Attached::none(Vec::new());
    attached.leaf = Some(leaf.clone());
    attached.unit = Some(unit);
    attached.kill_on_drop = plan.on_failure == OnFailure::Error;
    if let Some(k) = keeper.as_mut() {
        let keeper_leaf = scope.join(KEEPER_LEAF);
        make_dir(&keeper_leaf)?;
        k.leaf = Some(keeper_leaf.clone());
        move_pid(&keeper_leaf, &k.pid().to_string())?;
    }
    attached.keeper = keeper;
    // Everything else in the scope moves down, so that the scope holds no process and may enable controllers.
    for p in fs::read_to_string(scope.join("cgroup.procs")).unwrap_or_default().split_whitespace() {
        move_pid(&leaf, p)?;
    }
    enable_controllers(&scope, &plan.enable)?;
    write_limits(&leaf, &plan.limits)?;
    attached.kill_on_drop = true;
    Ok(attached)
}

fn attach_cgroupfs(plan: &Plan, base: &cgroupfs::Base, pid: i32, name: &str) -> Result<Attached, CgroupError> {
    remove_stale_leaves(&base.dir);
    let leaf = base.dir.join(systemd::scope_name(name).trim_end_matches(".scope"));
    if !plan.enable.is_empty() {
        enable_controllers(&base.dir, &plan.enable)?;
    }
    make_dir(&leaf)?;
    let mut attached = Attached::none(Vec::new());
    attached.leaf = Some(leaf.clone());
    attached.kill_on_drop = plan.on_failure == OnFailure::Error;
    move_pid(&leaf, &pid.to_string())?;
    write_limits(&leaf, &plan.limits)?;
    attached.kill_on_drop = true;
    Ok(attached)
}

fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir(dir).map_err(|source| CgroupError::Cgroupfs {
        action: "create cgroup",
        path: dir.to_path_buf(),
        source,
    })
}

fn move_pid(leaf: &Path, pid: &str) -> Result<(), CgroupError> {
    let procs = leaf.join("cgroup.procs");
    match write_file(&procs, pid) {
        // A process that exited meanwhile has nothing left to move.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map_err(|source| CgroupError::Cgroupfs {
            action: "move the container's process into",
            path: procs,
            source,
        }),
    }
}

/// Enables `wanted` for the children of `dir` (those already enabled are skipped).
fn enable_controllers(dir: &Path, wanted: &BTreeSet<Controller>) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = read_controllers(&file)?;
    let line: Vec<String> = wanted.difference(&enabled).map(|c| format!("+{}", c.name())).collect();
    if line.is_empty() {
        return Ok(());
    }
    write_file(&file, &line.join(" ")).map_err(|source| CgroupError::Cgroupfs {
        action: "enable controllers in",
        path: file,
        source,
    })
}

/// Kills what is left in `leaf` (if `kill`), waits until it is empty, and removes it.
fn remove_leaf(leaf: &Path, kill: bool) -> std::io::Result<()> {
    if kill && populated(leaf) == Some(true) {
        // cgroup.kill (Linux 5.14) kills every process of the cgroup atomically, forks included.
        if write_file(&leaf.join("cgroup.kill"), "1").is_err() {
            kill_each(leaf);
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while populated(leaf) == Some(true) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    match fs::remove_dir(leaf) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        // Still populated after a failed attach that goes on: systemd collects the scope later,
        // a cgroupfs leaf is swept by a later run.
        Err(e) if !kill && e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other,
    }
}

fn kill_each(leaf: &Path) {
    let procs = fs::read_to_string(leaf.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// `populated` of cgroup.events; `None` once the cgroup is gone.
fn populated(dir: &Path) -> Option<bool> {
    let events = fs::read_to_string(dir.join("cgroup.events")).ok()?;
    events.lines().find_map(|l| l.strip_prefix("populated ")).map(|v| v.trim() == "1")
}

/// Removes empty `burrow-*` cgroups left below `base` by burrows that were SIGKILLed (systemd
/// collects its scopes by itself; a plain delegated cgroup has nobody else to do it). Young ones
/// are left alone: another burrow may have just created one and not yet moved its process in.
fn remove_stale_leaves(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry.file_name().to_string_lossy().starts_with("burrow-");
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_AGE);
        if is_ours && old && populated(&path) == Some(false) {
            let _ = fs::remove_dir(&path);
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
