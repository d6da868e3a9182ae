//! The probe (tests/security/probe.c, compiled with `gcc -static` once per test run) and a busybox rootfs
//! holding it as /bin/probe; helpers to run one attempt and read its outcome.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// What burrow's defaults are loosened with to show that an attempt can succeed at all.
pub const WEAK: &[&str] = &["--seccomp", "unconfined", "--cap-add", "all", "--allow-setuid"];

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const ESRCH: i32 = 3;
pub const EBADF: i32 = 9;
pub const EACCES: i32 = 13;
pub const ENOSYS: i32 = 38;
pub const EROFS: i32 = 30;

/// The outcome the probe printed: `Ok(detail)` or `Err(errno)`.
pub type Outcome = Result<String, i32>;

static PROBE: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();

/// The compiled probe's bytes (built once per test binary in a temporary directory that is removed again),
/// or why it cannot be built.
pub fn probe() -> Result<&'static [u8], String> {
    PROBE
        .get_or_init(|| {
            let dir = tempfile::Builder::new().prefix("burrow-probe.").tempdir().map_err(|e| e.to_string())?;
            let out = dir.path().join("probe");
            let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/security/probe.c");
            let o = Command::new("gcc")
                .args(["-static", "-O1", "-o"])
                .arg(&out)
                .arg(src)
                .output()
                .map_err(|e| format!("gcc: {e} (install gcc and libc6-dev: scripts/ci-setup.sh)"))?;
            if !o.status.success() {
                return Err(format!("gcc -static failed: {}", String::from_utf8_lossy(&o.stderr)));
            }
            std::fs::read(&out).map_err(|e| e.to_string())
        })
        .as_deref()
        .map_err(|e| e.clone())
}

/// Writes the probe to `path` as an executable (mode `mode`).
pub fn install_probe(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, probe().expect("probe built")).expect("write the probe");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod the probe");
}

/// The probe as a host file, for the controls run outside any container (removed with the value).
pub struct HostProbe {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn host_probe() -> HostProbe {
    let dir = tempfile::Builder::new().prefix("burrow-probe.").tempdir().expect("tempdir");
    let path = dir.path().join("probe");
    install_probe(&path, 0o755);
    HostProbe { _dir: dir, path }
}

/// Skips (fails in strict mode) unless rootless containers run here and the probe builds.
#[macro_export]
macro_rules! ready {
    () => {{
        if let Some(reason) = $crate::support::unusable() {
            $crate::skip!("{reason}");
        }
        match $crate::probe::probe() {
            Ok(p) => p,
            Err(reason) => $crate::skip!("{reason}"),
        }
    }};
}

/// A busybox rootfs with the probe at /bin/probe.
pub fn rootfs() -> Rootfs {
    let r = Rootfs::new();
    install_probe(&r.path().join("bin/probe"), 0o755);
    r
}

/// `burrow run --rootfs R --network none ARGS... -- /bin/probe PROBE_ARGS...`
pub fn attempt_cmd(r: &Rootfs, args: &[&str], probe_args: &[&str]) -> Command {
    let mut all = if args.contains(&"--network") { vec![] } else { vec!["--network", "none"] };
    all.extend_from_slice(args);
    let mut cmd = vec!["/bin/probe"];
    cmd.extend_from_slice(probe_args);
    run_in(r.path(), &all, &cmd)
}

/// Runs one attempt in a container and returns the probe's outcome (panics when burrow itself failed).
pub fn attempt(r: &Rootfs, args: &[&str], probe_args: &[&str]) -> Outcome {
    outcome(&output(attempt_cmd(r, args, probe_args)), probe_args[0])
}

/// Runs the probe on the host, as the test user: the control that shows the attempt can work.
pub fn on_host(probe_args: &[&str]) -> Outcome {
    let host = host_probe();
    let o = output({
        let mut c = Command::new(&host.path);
        c.args(probe_args);
        c
    });
    outcome(&o, probe_args[0])
}

/// Parses the probe's line `ACTION ok DETAIL` / `ACTION err ERRNO`.
pub fn outcome(o: &Output, action: &str) -> Outcome {
    let out = stdout(o);
    let line = out.lines().find(|l| l.starts_with(&format!("{action} "))).unwrap_or_else(|| {
        panic!("no probe line for {action}: status {:?}\nstdout: {out}\nstderr: {}", o.status, stderr(o))
    });
    let rest = &line[action.len() + 1..];
    match rest.split_once(' ').unwrap_or((rest, "")) {
        ("ok", detail) => Ok(detail.trim().to_string()),
        ("err", e) => Err(e.split_whitespace().next().and_then(|n| n.parse().ok()).expect("an errno")),
        _ => panic!("unexpected probe line {line:?}"),
    }
}

/// A host file the container must never read: in a fresh directory that nothing binds.
pub struct Secret {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn secret() -> Secret {
    let dir = tempfile::Builder::new().prefix("burrow-secret.").tempdir().expect("tempdir");
    let path = dir.path().join("secret");
    std::fs::write(&path, "host-secret\n").expect("write the secret");
    Secret { dir, path }
}

/// Runs `inner` from `sh -c 'exec REDIRECTS; exec "$@"' sh PATH INNER...`: the shell opens descriptors (on
/// `$1` = `path`) that `inner` inherits, as a caller's shell would.
pub fn through_shell(redirects: &str, path: &Path, inner: Command) -> Output {
    let mut c = Command::new("sh");
    c.env_clear().current_dir("/");
    c.envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let script = format!("p=$1; shift; set -- \"$@\"; exec {}; exec \"$@\"", redirects.replace("$1", "$p"));
    c.arg("-c").arg(script).arg("sh").arg(path);
    c.arg(inner.get_program()).args(inner.get_args());
    output(c)
}
