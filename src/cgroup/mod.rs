//! Resource limits and accounting through a delegated cgroup v2 subtree.
//!
//! Two calls from the launcher's host process (P0):
//! 1. [`preflight`] before anything is created: picks the manager (systemd user manager, an
//!    already delegated cgroup, or none), checks every requested limit against the controllers that
//!    manager can really delegate, and fails (or, best-effort, warns) naming the missing controller
//!    and the administrator's fix. It reads /proc and cgroupfs only: no D-Bus, no thread, so the
//!    launcher may still fork afterwards.
//! 2. [`attach`] once the container's first process exists: creates the scope or cgroup, moves the
//!    process into a leaf cgroup below it, enables the controllers and writes the limits. It may
//!    start zbus threads, so it must run after the launcher's last fork of Rust code.
//!
//! 3. [`Attached::stats`] when the container ended, then drop the [`Attached`]: it removes the leaf.
//!
//! The container lives in a leaf (`<scope>/container`, or `<delegated>/burrow-<name>`) because a
//! cgroup that holds processes cannot enable controllers for children (cgroup v2's "no internal
//! processes" rule), and the scope must enable them for the leaf.

mod attach;
mod cgroupfs;
pub mod detect;
mod limits;
mod stats;
mod systemd;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use attach::{attach, Attached};
pub use limits::{cpu_max, parse_cpus, parse_size, write_limits, Controller, Limits};
pub use stats::Stats;
pub use systemd::{scope_name, DBUS_TIMEOUT};

use detect::Host;

/// `--cgroup-manager` (usable directly as a clap `ValueEnum`: auto, systemd, cgroupfs, disabled)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ManagerKind {
    /// systemd, then cgroupfs, then disabled
    #[default]
    Auto,
    Systemd,
    Cgroupfs,
    Disabled,
}

impl ManagerKind {
    pub fn name(self) -> &'static str {
        match self {
            ManagerKind::Auto => "auto",
            ManagerKind::Systemd => "systemd",
            ManagerKind::Cgroupfs => "cgroupfs",
            ManagerKind::Disabled => "disabled",
        }
    }
}

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub manager: ManagerKind,
    pub limits: Limits,
    /// `--limits best-effort`: a limit that cannot be enforced is a warning, not an error
    pub best_effort: bool,
    /// `--stats` / `--stats-json`: create a cgroup even without limits, to account the container
    pub want_stats: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid size '{value}': {reason}")]
    InvalidSize { value: String, reason: String },
    #[error("invalid {flag} value '{value}': {reason}")]
    InvalidLimit { flag: &'static str, value: String, reason: String },
    #[error("cannot enforce {flags}: {reason}; {fix}; or run with --limits best-effort to go on without {it}")]
    Unenforceable { flags: String, reason: String, fix: String, it: &'static str },
    #[error("--cgroup-manager {manager} cannot be used: {reason}")]
    ManagerUnavailable { manager: &'static str, reason: String },
    #[error("the systemd user manager did not start {unit}: {reason}")]
    Systemd { unit: String, reason: String },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no cgroup v2 (0::) line")]
    NoCgroup2Line { path: PathBuf },
    #[error("cannot write {flag} limit to {path}")]
    WriteLimit {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {action} {path}")]
    Cgroupfs {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The fix for the systemd user manager: what Debian, Fedora and Ubuntu do not delegate by default.
const DELEGATE_FIX: &str = "an administrator can delegate the controllers with the drop-in \
/etc/systemd/system/user@.service.d/delegate.conf containing the two lines \"[Service]\" and \
\"Delegate=cpu cpuset io memory pids\", then run `systemctl daemon-reload` and log the user in again";
const UNIFIED_FIX: &str = "boot the host with systemd.unified_cgroup_hierarchy=1 so that all \
controllers live on cgroup v2";

#[derive(Clone, Debug)]
enum Target {
    Disabled,
    Systemd(systemd::Manager),
    Cgroupfs(cgroupfs::Base),
}

impl Target {
    /// The cgroup whose files tell what its children can get.
    fn dir(&self) -> Option<&Path> {
        match self {
            Target::Disabled => None,
            Target::Systemd(m) => Some(&m.dir),
            Target::Cgroupfs(b) => Some(&b.dir),
        }
    }

    fn controllers(&self) -> BTreeSet<Controller> {
        match self {
            Target::Disabled => BTreeSet::new(),
            Target::Systemd(m) => m.controllers.clone(),
            Target::Cgroupfs(b) => b.controllers.clone(),
        }
    }
}

/// What to do when attaching fails.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OnFailure {
    /// an explicit manager, or limits in strict mode
    Error,
    /// best-effort limits: go on, and say so
    Warn,
    /// auto without limits: the cgroup was only a convenience
    Quiet,
}

/// The decision of [`preflight`], consumed by [`attach`].
#[derive(Clone, Debug)]
pub struct Plan {
    target: Target,
    host: Host,
    /// the limits that will be written (best-effort drops the unenforceable ones)
    limits: Limits,
    /// controllers to enable for the leaf: the limits' plus, for --stats, memory and pids if offered
    enable: BTreeSet<Controller>,
    on_failure: OnFailure,
    /// --stats: keep the systemd scope alive after the container ends, until the figures are read
    keep_for_stats: bool,
    warnings: Vec<String>,
}

impl Plan {
    /// Warnings for the user (best-effort limits that will not be enforced, ...).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
    pub fn is_disabled(&self) -> bool {
        matches!(self.target, Target::Disabled)
    }
    /// "systemd", "cgroupfs" or "disabled": for messages and --stats.
    pub fn manager_name(&self) -> &'static str {
        match self.target {
            Target::Disabled => "disabled",
            Target::Systemd(_) => "systemd",
            Target::Cgroupfs(_) => "cgroupfs",
        }
    }
    /// The limits that will be written.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Decides the manager and checks every limit before any process exists. See the module doc.
pub fn preflight(req: &Request) -> Result<Plan, CgroupError> {
    req.limits.settings()?;
    let needed = req.limits.controllers();
    // auto with nothing to limit or measure: no cgroup at all, so a run pays nothing for it, not even reading
    // /proc (HPC nodes run thousands of short jobs); `--cgroup-manager systemd|cgroupfs` asks for one regardless.
    let nothing_to_do = req.manager == ManagerKind::Auto && needed.is_empty() && !req.want_stats;
    let host = if nothing_to_do { Host::default() } else { Host::probe()? };
    let mut plan = Plan {
        target: Target::Disabled,
        host,
        limits: req.limits.clone(),
        enable: BTreeSet::new(),
        on_failure: OnFailure::Quiet,
        keep_for_stats: req.want_stats,
        warnings: Vec::new(),
    };
    if req.manager == ManagerKind::Disabled {
        if req.want_stats {
            plan.warnings.push("--stats: --cgroup-manager is disabled, so no figures can be read".into());
        }
        return refuse_limits(
            plan,
            req,
            "--cgroup-manager is disabled".into(),
            "drop --cgroup-manager disabled".into(),
        );
    }
    if nothing_to_do {
        return Ok(plan);
    }
    let (found, reasons) = find_managers(&plan.host, req.manager, &needed);
    // Prefer the first manager that offers every needed controller, else the first one found.
    let chosen =
        found.iter().position(|t| needed.is_subset(&t.controllers())).or(if found.is_empty() { None } else { Some(0) });
    let Some(index) = chosen else {
        let reason = reasons.join("; ");
        if req.manager != ManagerKind::Auto {
            return Err(CgroupError::ManagerUnavailable { manager: req.manager.name(), reason });
        }
        if req.want_stats && needed.is_empty() {
            plan.warnings.push(format!("--stats: no cgroup is available ({reason})"));
        }
        let fix = no_manager_fix(&plan.host);
        return refuse_limits(plan, req, format!("no cgroup manager is available ({reason})"), fix);
    };
    plan.target = found.into_iter().nth(index).unwrap_or(Target::Disabled);
    let offered = plan.target.controllers();
    let missing: BTreeSet<Controller> = needed.difference(&offered).copied().collect();
    if !missing.is_empty() {
        let (reason, fix) = missing_reason(&plan, &missing);
        let unenforced = req.limits.without(&complement(&missing));
        check_or_warn(&mut plan, req, &unenforced, reason, fix)?;
        plan.limits = req.limits.without(&missing);
    }
    check_swap_accounting(&mut plan, req)?;
    plan.enable = plan.limits.controllers();
    if req.want_stats {
        plan.enable.extend(offered.intersection(&[Controller::Memory, Controller::Pids].into()));
    }
    plan.on_failure = if req.manager != ManagerKind::Auto || (!req.limits.is_empty() && !req.best_effort) {
        OnFailure::Error
    } else if !req.limits.is_empty() || req.want_stats {
        OnFailure::Warn
    } else {
        OnFailure::Quiet
    };
    Ok(plan)
}

/// memory.swap.max exists only with swap accounting (off with `swapaccount=0` or without
/// CONFIG_MEMCG_SWAP); the target's own file tells, since memory is enabled for it.
fn check_swap_accounting(plan: &mut Plan, req: &Request) -> Result<(), CgroupError> {
    let Some(dir) = plan.target.dir() else {
        return Ok(());
    };
    if plan.limits.memory_swap.is_none() || dir.join("memory.swap.max").exists() {
        return Ok(());
    }
    let reason = format!("swap accounting is off on this host (no memory.swap.max in {})", dir.display());
    let fix = "boot the host without swapaccount=0 (or drop --memory-swap)".to_string();
    let swap_only = Limits { memory_swap: plan.limits.memory_swap, ..Limits::default() };
    check_or_warn(plan, req, &swap_only, reason, fix)?;
    plan.limits.memory_swap = None;
    Ok(())
}

/// Every controller except those in `set`: `limits.without(&complement(m))` keeps only m's limits.
fn complement(set: &BTreeSet<Controller>) -> BTreeSet<Controller> {
    [Controller::Cpu, Controller::Io, Controller::Memory, Controller::Pids]
        .into_iter()
        .filter(|c| !set.contains(c))
        .collect()
}

/// The candidate managers for `kind`, in preference order, and why the others cannot be used.
fn find_managers(host: &Host, kind: ManagerKind, needed: &BTreeSet<Controller>) -> (Vec<Target>, Vec<String>) {
    let mut found = Vec::new();
    let mut reasons = Vec::new();
    if host.cgroup2.is_empty() {
        reasons.push("cgroup v2 is not mounted on this host".to_string());
        return (found, reasons);
    }
    if matches!(kind, ManagerKind::Auto | ManagerKind::Systemd) {
        match systemd::probe(host) {
            // Good enough: no need to look further.
            Ok(m) if needed.is_subset(&m.controllers) => return (vec![Target::Systemd(m)], reasons),
            Ok(m) => found.push(Target::Systemd(m)),
            Err(r) => reasons.push(format!("systemd: {r}")),
        }
    }
    if matches!(kind, ManagerKind::Auto | ManagerKind::Cgroupfs) {
        match cgroupfs::probe(host, needed) {
            Ok(b) => found.push(Target::Cgroupfs(b)),
            Err(r) => reasons.push(format!("cgroupfs: {r}")),
        }
    }
    (found, reasons)
}

/// No manager at all: the whole request's limits cannot be enforced.
fn refuse_limits(mut plan: Plan, req: &Request, reason: String, fix: String) -> Result<Plan, CgroupError> {
    check_or_warn(&mut plan, req, &req.limits, reason, fix)?;
    plan.target = Target::Disabled;
    plan.limits = Limits::default();
    Ok(plan)
}

/// Strict: the error for `unenforced`; best-effort: a warning. Nothing when `unenforced` is empty.
fn check_or_warn(
    plan: &mut Plan,
    req: &Request,
    unenforced: &Limits,
    reason: String,
    fix: String,
) -> Result<(), CgroupError> {
    let flags: Vec<&str> = unenforced.settings()?.iter().map(|s| s.flag).collect();
    if flags.is_empty() {
        return Ok(());
    }
    let it = if flags.len() == 1 { "it" } else { "them" };
    let err = CgroupError::Unenforceable { flags: flags.join(", "), reason, fix, it };
    if !req.best_effort {
        return Err(err);
    }
    if let CgroupError::Unenforceable { flags, reason, .. } = err {
        plan.warnings.push(format!("ignoring {flags} (--limits best-effort): {reason}"));
    }
    Ok(())
}

fn missing_reason(plan: &Plan, missing: &BTreeSet<Controller>) -> (String, String) {
    let names = |set: &BTreeSet<Controller>| -> String {
        if set.is_empty() {
            "none".into()
        } else {
            set.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
        }
    };
    let mut reasons = Vec::new();
    let v1: BTreeSet<Controller> = missing.iter().copied().filter(|c| plan.host.v1.contains_key(c)).collect();
    if !v1.is_empty() {
        let mounts: Vec<String> = v1.iter().map(|c| plan.host.v1[c].display().to_string()).collect();
        reasons.push(format!(
            "the {} controller{} bound to cgroup v1 ({}: a hybrid layout), so cgroup v2 cannot delegate {}",
            names(&v1),
            if v1.len() == 1 { " is" } else { "s are" },
            mounts.join(", "),
            if v1.len() == 1 { "it" } else { "them" },
        ));
    }
    let rest: BTreeSet<Controller> = missing.difference(&v1).copied().collect();
    let mut fixes = Vec::new();
    if !v1.is_empty() {
        fixes.push(UNIFIED_FIX.to_string());
    }
    match &plan.target {
        Target::Systemd(m) => {
            if !rest.is_empty() {
                reasons.push(format!(
                    "the {} controller{} not delegated to the systemd user manager (its cgroup {} offers: {})",
                    names(&rest),
                    if rest.len() == 1 { " is" } else { "s are" },
                    m.cgroup,
                    names(&m.controllers)
                ));
            }
            fixes.push(DELEGATE_FIX.to_string());
        }
        Target::Cgroupfs(b) => {
            if !rest.is_empty() {
                reasons.push(format!(
                    "the {} controller{} not available for children of the delegated cgroup {} (it offers: {})",
                    names(&rest),
                    if rest.len() == 1 { " is" } else { "s are" },
                    b.dir.display(),
                    names(&b.controllers)
                ));
                fixes.push(format!(
                    "an administrator must enable {} in the cgroup.subtree_control of {}'s parent, and delegate \
                     a cgroup that holds no process (burrow runs in a child of it), or use the systemd manager",
                    names(&rest),
                    b.dir.display()
                ));
            }
        }
        Target::Disabled => {}
    }
    (reasons.join("; "), fixes.join("; then "))
}

fn no_manager_fix(host: &Host) -> String {
    if host.cgroup2.is_empty() {
        return UNIFIED_FIX.into();
    }
    format!(
        "run burrow inside a systemd user session (pam_systemd, or `loginctl enable-linger $USER`) and {DELEGATE_FIX}, \
         or run it in a cgroup delegated to this user (a Slurm step with cgroup/v2, an admin-made directory)"
    )
}

/// Writes `value` to an existing cgroup file (no create, no truncate: cgroupfs files are not regular files).
pub(crate) fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests;
