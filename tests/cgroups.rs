//! `burrow run` with cgroups, against the REAL systemd user manager that scripts/ci-setup.sh starts for the test
//! user (run as burrow-t1, placed by scripts/test.sh in a cgroup delegated to it). Enforcement of the limits
//! needs delegated memory/pids/cpu controllers, which this host's hybrid layout lacks: tests/vm/limits.sh checks
//! it in a QEMU VM with systemd as PID 1 (scripts/vm-test.sh).

mod support;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn user_env(c: &mut Command) {
    let rt = format!("/run/user/{}", nix::unistd::getuid());
    c.env("XDG_RUNTIME_DIR", &rt).env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={rt}/bus"));
}

fn systemctl(args: &[&str]) -> String {
    let mut c = Command::new("systemctl");
    c.arg("--user").args(args);
    user_env(&mut c);
    String::from_utf8_lossy(&c.output().expect("systemctl").stdout).into_owned()
}

/// The user manager must answer and this process must be in a cgroup delegated to us.
macro_rules! require_manager {
    () => {{
        if let Some(reason) = unusable() {
            skip!("{reason}");
        }
        let rt = format!("/run/user/{}", nix::unistd::getuid());
        if !std::path::Path::new(&rt).join("bus").exists() {
            skip!("no systemd user manager for this user ({rt}/bus missing): scripts/ci-setup.sh starts one");
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if own.lines().any(|l| l == "0::/") {
            skip!("this test process is in the root cgroup: root must place it in a delegated one (scripts/test.sh)");
        }
    }};
}

fn burrow_scopes() -> Vec<String> {
    systemctl(&["list-units", "--no-legend", "--plain", "--all", "burrow-*.scope"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Starts `burrow run ... -- sh -c 'echo ready; sleep 1000'` and returns it once the payload runs.
fn start_sleeping(r: &Rootfs, extra: &[&str]) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut args = vec!["--cgroup-manager", "systemd"];
    args.extend_from_slice(extra);
    let mut c = run_in(r.path(), &args, &["sh", "-c", "grep ^0:: /proc/self/cgroup; echo ready; exec sleep 1000"]);
    user_env(&mut c);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

#[test]
fn the_container_lives_in_a_delegated_scope_and_sees_its_own_cgroup_root() {
    require_manager!();
    let r = Rootfs::new();
    let (mut child, mut out) = start_sleeping(&r, &[]);
    let mut inside = String::new();
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "burrow ended early: {inside}");
        if line.trim() == "ready" {
            break;
        }
        inside.push_str(&line);
    }
    assert_eq!(inside.trim(), "0::/", "the container's cgroup namespace root is its own cgroup");
    let pid = child.id() as i32;
    let sleep_pid = *descendants(pid).last().unwrap();
    let host_view = std::fs::read_to_string(format!("/proc/{sleep_pid}/cgroup")).unwrap();
    let path = host_view.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_string();
    let unit = path.split('/').find(|c| c.starts_with("burrow-") && c.ends_with(".scope")).unwrap_or_else(|| {
        panic!("payload not in a burrow-*.scope: {path}");
    });
    assert_eq!(systemctl(&["show", "-p", "Delegate", unit]).trim(), "Delegate=yes");
    assert!(!path.ends_with(".scope"), "the payload is in a leaf below the scope: {path}");
    child.kill().unwrap();
    child.wait().unwrap();
    let unit = unit.to_string();
    assert!(eventually(Duration::from_secs(10), || !burrow_scopes().contains(&unit)), "{unit} left after SIGKILL");
}

#[test]
fn the_scope_is_gone_after_a_normal_exit() {
    require_manager!();
    let r = Rootfs::new();
    let before = burrow_scopes();
    let mut c = run_in(r.path(), &["--cgroup-manager", "systemd"], &["sh", "-c", "grep ^0:: /proc/self/cgroup"]);
    user_env(&mut c);
    assert_eq!(expect(&output(c), 0), "0::/\n");
    let leaked = || burrow_scopes().into_iter().filter(|u| !before.contains(u)).collect::<Vec<_>>();
    assert!(eventually(Duration::from_secs(10), || leaked().is_empty()), "scopes left: {:?}", leaked());
}

#[test]
fn a_limit_without_its_controller_is_an_error_unless_best_effort() {
    require_manager!();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v2 = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
    let mnt = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let delegated_memory = mnt.lines().any(|l| l.contains(" - cgroup2 ")) && {
        let root = mnt.lines().find(|l| l.contains(" - cgroup2 ")).and_then(|l| l.split(' ').nth(4)).unwrap_or("");
        std::fs::read_to_string(format!("{root}{v2}/cgroup.controllers")).unwrap_or_default().contains("memory")
    };
    if delegated_memory {
        skip!("memory is delegated here: the refusal path cannot be shown (the VM tests enforcement)");
    }
    let r = Rootfs::new();
    let mut c = run_in(r.path(), &["--memory", "64m"], &["true"]);
    user_env(&mut c);
    let o = output(c);
    expect(&o, 125);
    let err = stderr(&o);
    assert!(err.contains("--memory") && err.contains("memory") && err.lines().count() == 1, "{err}");
    let mut c = run_in(r.path(), &["--memory", "64m", "--limits", "best-effort"], &["sh", "-c", "echo ran"]);
    user_env(&mut c);
    let o = output(c);
    assert_eq!(expect(&o, 0), "ran\n");
    assert!(stderr(&o).contains("warning: ignoring --memory"), "{}", stderr(&o));
}

#[test]
fn stats_are_printed_and_written_as_json() {
    require_manager!();
    let r = Rootfs::new();
    let d = tempdir();
    let json = d.path().join("stats.json");
    let mut c = run_in(
        r.path(),
        &["--stats", "--stats-json", json.to_str().unwrap()],
        &["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"],
    );
    user_env(&mut c);
    let o = output(c);
    expect(&o, 0);
    assert!(stderr(&o).contains("cpu user:"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let user = v["cpu_user_usec"].as_u64().expect("cpu_user_usec");
    assert!(user > 0, "{v}");
}

#[test]
fn no_limits_and_no_session_costs_no_cgroup() {
    if let Some(reason) = unusable() {
        skip!("{reason}");
    }
    let r = Rootfs::new();
    // HPC login node: no XDG_RUNTIME_DIR, no D-Bus; auto must just run.
    let o = output(run_in(r.path(), &["--verbose"], &["true"]));
    expect(&o, 0);
    assert!(stderr(&o).contains("cgroup manager: disabled"), "{}", stderr(&o));
}
