//! Unit tests of the decisions of preflight that need no real host: messages and best-effort.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;

const UNIFIED: &str = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
const HYBRID: &str = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";

fn plan(mountinfo: &str, target: Target) -> Plan {
    Plan {
        target,
        host: Host::parse(mountinfo, "0::/user.slice/user-1000.slice/session-1.scope\n"),
        limits: Limits::default(),
        enable: BTreeSet::new(),
        on_failure: OnFailure::Error,
        keep_for_stats: false,
        warnings: Vec::new(),
    }
}

fn systemd_offering(controllers: &[Controller]) -> Target {
    Target::Systemd(systemd::Manager {
        cgroup: "/user.slice/user-1000.slice/user@1000.service".into(),
        dir: "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service".into(),
        controllers: controllers.iter().copied().collect(),
        bus: systemd::Bus::Path("/run/user/1000/bus".into()),
    })
}

fn set(c: &[Controller]) -> BTreeSet<Controller> {
    c.iter().copied().collect()
}

#[test]
fn undelegated_controller_names_it_and_the_drop_in() {
    let p = plan(UNIFIED, systemd_offering(&[Controller::Pids]));
    let (reason, fix) = missing_reason(&p, &set(&[Controller::Memory]));
    assert_eq!(
        reason,
        "the memory controller is not delegated to the systemd user manager \
         (its cgroup /user.slice/user-1000.slice/user@1000.service offers: pids)"
    );
    assert!(fix.contains("/etc/systemd/system/user@.service.d/delegate.conf"), "{fix}");
    assert!(fix.contains("Delegate=cpu cpuset io memory pids"), "{fix}");
}

#[test]
fn hybrid_layout_names_the_v1_hierarchy() {
    let p = plan(HYBRID, systemd_offering(&[]));
    let (reason, fix) = missing_reason(&p, &set(&[Controller::Memory, Controller::Pids]));
    assert!(reason.contains("memory controller is bound to cgroup v1 (/sys/fs/cgroup/memory"), "{reason}");
    assert!(reason.contains("the pids controller is not delegated"), "{reason}");
    assert!(fix.starts_with("boot the host with systemd.unified_cgroup_hierarchy=1"), "{fix}");
}

#[test]
fn cgroupfs_explains_where_to_enable() {
    let base =
        cgroupfs::Base { dir: PathBuf::from("/sys/fs/cgroup/job_1/step_0"), controllers: set(&[Controller::Cpu]) };
    let p = plan(UNIFIED, Target::Cgroupfs(base));
    let (reason, fix) = missing_reason(&p, &set(&[Controller::Memory]));
    assert!(reason.contains("memory controller is not available for children of the delegated cgroup /sys/fs/cgroup/job_1/step_0 (it offers: cpu)"), "{reason}");
    assert!(fix.contains("cgroup.subtree_control"), "{fix}");
}

#[test]
fn best_effort_turns_the_error_into_a_warning() {
    let limits = Limits { memory: Some(1 << 30), pids: Some(10), ..Limits::default() };
    let mut req = Request { limits: limits.clone(), ..Request::default() };
    let mut p = plan(UNIFIED, systemd_offering(&[]));
    let err = check_or_warn(&mut p, &req, &limits, "why".into(), "fix it".into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot enforce --memory, --pids-limit: why; fix it; or run with --limits best-effort to go on without them"
    );
    req.best_effort = true;
    check_or_warn(&mut p, &req, &limits, "why".into(), "fix it".into()).unwrap();
    assert_eq!(p.warnings(), ["ignoring --memory, --pids-limit (--limits best-effort): why"]);
    let mut none = plan(UNIFIED, systemd_offering(&[]));
    check_or_warn(&mut none, &req, &Limits::default(), "why".into(), "fix".into()).unwrap();
    assert!(none.warnings().is_empty());
}

#[test]
fn scope_names_are_valid_unit_names() {
    assert_eq!(scope_name("abc-1.2_x"), "burrow-abc-1.2_x.scope");
    assert_eq!(scope_name("a b/é"), "burrow-a_b__.scope");
}

#[test]
fn auto_without_limits_or_stats_creates_no_cgroup() {
    let plan = super::preflight(&super::Request::default()).expect("auto without limits never fails");
    assert!(plan.is_disabled(), "auto with nothing to limit or measure must not cost a cgroup");
}
