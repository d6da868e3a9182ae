//! Running a test's body inside a fresh user+mount namespace, as an unprivileged user.
//!
//! The outer test re-executes its own binary (`--exact NAME`) under
//! `unshare --map-root-user --map-auto --mount --propagation private`, with
//! `BURROW_DIFF_INNER=NAME` telling the inner process to run the body. Started as root,
//! the outer first drops to `BURROW_TEST_USER` (default burrow-t1), because the point is to
//! prove what an unprivileged user can do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INNER: &str = "BURROW_DIFF_INNER";
const WORK: &str = "BURROW_DIFF_WORKDIR";

pub fn strict() -> bool {
    std::env::var("BURROW_TEST_STRICT").as_deref() == Ok("1")
}

/// Prints `SKIP: reason` (or fails under BURROW_TEST_STRICT=1).
pub fn skip(reason: &str) {
    if strict() {
        panic!("BURROW_TEST_STRICT=1 and a requirement is missing: {reason}");
    }
    println!("SKIP: {reason}");
}

pub fn is_inner(test: &str) -> bool {
    std::env::var(INNER).as_deref() == Ok(test)
}

/// The work directory the outer process made for the inner one.
pub fn inner_workdir() -> PathBuf {
    PathBuf::from(std::env::var(WORK).expect("set by the outer test"))
}

/// The FUSE overlay program under test; `kernel` puts a second kernel overlay in its place.
pub fn fuse_program() -> PathBuf {
    match std::env::var_os("BURROW_DIFF_FUSE_PROGRAM") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_burrow-overlayfs")),
    }
}

fn test_user() -> String {
    std::env::var("BURROW_TEST_USER").unwrap_or_else(|_| String::from("burrow-t1"))
}

fn can_unshare(args: &[&str]) -> bool {
    Command::new("unshare").args(args).arg("true").stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// Outer half: returns normally if the inner run passed or was skipped, panics otherwise.
pub fn run_in_namespace(test: &str, timeout: Duration) {
    run_in_namespace_env(test, timeout, &[]);
}

/// `run_in_namespace` with extra environment variables for the inner run (values a test made
/// before it, e.g. the path of a directory outside the namespace's tmpfs).
pub fn run_in_namespace_env(test: &str, timeout: Duration, vars: &[(&str, &std::ffi::OsStr)]) {
    let exe = std::env::current_exe().expect("test binary path");
    let prog = fuse_program();
    if prog != Path::new("kernel") && !prog.exists() {
        return skip(&format!("FUSE program {} not found (BURROW_DIFF_FUSE_PROGRAM)", prog.display()));
    }
    if !Path::new("/dev/fuse").exists() {
        return skip("/dev/fuse is missing");
    }
    let mut cmd;
    if nix::unistd::geteuid().is_root() && std::env::var_os("BURROW_DIFF_DROPPED").is_none() {
        let user = test_user();
        if nix::unistd::User::from_name(&user).ok().flatten().is_none() {
            return skip(&format!("running as root and test user {user} does not exist (scripts/ci-setup.sh)"));
        }
        cmd = Command::new("setpriv");
        cmd.args(["--reuid", &user, "--regid", &user, "--init-groups"]).arg(&exe);
        cmd.env("BURROW_DIFF_DROPPED", "1").env("BURROW_DIFF_FUSE_PROGRAM", &prog);
    } else {
        let map: &[&str] = if can_unshare(&["--map-root-user", "--map-auto"]) {
            &["--map-root-user", "--map-auto"]
        } else if can_unshare(&["--map-root-user"]) {
            println!("note: no subordinate ids (unshare --map-auto failed): chown to other ids will fail alike on both drivers");
            &["--map-root-user"]
        } else {
            return skip("unshare --map-root-user fails: unprivileged user namespaces are disabled");
        };
        cmd = Command::new("unshare");
        cmd.args(map).args(["--mount", "--propagation", "private"]).arg(&exe);
        cmd.env(INNER, test).env("BURROW_DIFF_FUSE_PROGRAM", &prog);
    }
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    cmd.envs(vars.iter().copied());
    run_logged(cmd, test, timeout);
}

fn run_logged(mut cmd: Command, test: &str, timeout: Duration) {
    let tmp = tempfile::Builder::new().prefix("burrow-ovldiff.").tempdir_in("/tmp").expect("temp dir in /tmp");
    // The inner side mounts a tmpfs over `work`; its namespace takes the mount along.
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    set_mode(tmp.path(), 0o755);
    set_mode(&work, 0o777); // the dropped-privilege run may create it as another user
    let log_path = tmp.path().join("log");
    let log = std::fs::File::create(&log_path).expect("log file");
    set_mode(&log_path, 0o666);
    let log2 = log.try_clone().expect("log fd");
    cmd.env(WORK, &work).stdin(Stdio::null()).stdout(log).stderr(log2);
    // Its own process group: FUSE servers it started (which keep the mount namespace alive)
    // are killed with it, whatever way it ends.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("start the namespaced test process");
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    // Only the inner test's own lines are interesting, not libtest's banner.
    for line in text.lines().filter(|l| !l.starts_with("running ") && !l.trim().is_empty()) {
        println!("{line}");
    }
    match status {
        None => panic!("{test}: inner run did not finish within {timeout:?} (a hang?)"),
        Some(st) if !st.success() => panic!("{test}: inner run failed ({st}), output above"),
        Some(_) => {}
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
}

/// Inner half: a private tmpfs over the work directory (xattrs, whiteouts and a clean
/// teardown with the namespace). `size` limits it, e.g. "size=1m".
pub fn mount_tmpfs(dir: &Path, opts: &str) -> Result<(), String> {
    let data = std::ffi::CString::new(opts).map_err(|e| e.to_string())?;
    rustix::mount::mount("tmpfs", dir, "tmpfs", rustix::mount::MountFlags::empty(), data.as_c_str())
        .map_err(|e| format!("mount tmpfs ({opts}) on {}: {e}", dir.display()))
}
