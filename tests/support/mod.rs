//! Shared helpers for the integration tests: the real `burrow` binary, generated root filesystems, skips that
//! become failures in strict mode, and commands with a deadline (a hung test must fail, not hang CI).
#![allow(dead_code)]

pub mod oci;
pub mod probe;

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BURROW: &str = env!("CARGO_BIN_EXE_burrow");

/// Skips the test with a printed reason, or fails it when `BURROW_TEST_STRICT=1` (CI).
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        let reason = format!($($arg)*);
        if std::env::var("BURROW_TEST_STRICT").as_deref() == Ok("1") {
            panic!("SKIP not allowed in strict mode: {reason}");
        }
        eprintln!("SKIP: {reason}");
        return;
    }};
}

/// Skips the test unless rootless containers work and the caller has a subordinate uid range; evaluates to
/// the range's first uid.
#[macro_export]
macro_rules! require_subids {
    () => {{
        if let Some(reason) = $crate::support::unusable() {
            skip!("{reason}");
        }
        match $crate::support::subuid_start() {
            Some(s) => s,
            None => skip!("the caller has no /etc/subuid range (run as burrow-t1, see scripts/ci-setup.sh)"),
        }
    }};
}

/// `len` deterministic, incompressible bytes (xorshift64 from `seed`), so that both ends of a transfer can check
/// every byte, or a layer stays large compressed, without a hash or random crate.
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Returns a skip reason when the environment cannot run rootless containers at all.
pub fn unusable() -> Option<String> {
    if nix::unistd::geteuid().is_root() {
        return Some("the tests must run as an unprivileged user (scripts/test.sh does that)".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox missing: install busybox-static".into());
    }
    None
}

/// The caller's first subordinate uid range start, if any.
pub fn subuid_start() -> Option<u32> {
    let name = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??.name;
    let content = std::fs::read_to_string("/etc/subuid").ok()?;
    content.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() == 3 && (f[0] == name || f[0] == nix::unistd::getuid().to_string())).then(|| f[1].parse().ok())?
    })
}

/// A minimal root filesystem from busybox-static, generated in a fresh temporary directory.
pub struct Rootfs {
    pub dir: tempfile::TempDir,
}

impl Rootfs {
    pub fn new() -> Rootfs {
        let dir = tempfile::Builder::new().prefix("burrow-rootfs.").tempdir().expect("tempdir");
        let r = dir.path();
        // /data, /ro and /rw are mount targets for the tests' volumes: a read-only rootfs cannot grow them.
        for d in ["bin", "etc", "proc", "dev", "sys", "tmp", "root", "home/user", "data", "ro", "rw"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", r.join("bin/busybox")).expect("copy busybox");
        let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
            let _ = symlink("busybox", r.join("bin").join(applet));
        }
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(r.join("etc/group"), "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n").unwrap();
        std::fs::write(r.join("etc/hosts"), "").unwrap();
        std::fs::write(r.join("etc/hostname"), "").unwrap();
        Rootfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A root filesystem made by scripts/mk-busybox-rootfs.sh in `dir` (the script is compiled in, so a private
/// checkout does not have to be readable by the test user).
pub fn mk_busybox_rootfs(dir: &Path) {
    let script = include_str!("../../scripts/mk-busybox-rootfs.sh");
    let out = Command::new("sh").arg("-c").arg(script).arg("mk-busybox-rootfs.sh").arg(dir).output().expect("sh");
    assert!(
        out.status.success(),
        "mk-busybox-rootfs.sh {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `burrow` with a clean environment (PATH only, plus HOME), so tests do not depend on the caller's.
pub fn burrow() -> Command {
    let mut c = Command::new(BURROW);
    c.env_clear();
    c.env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
    if let Some(home) = std::env::var_os("HOME") {
        c.env("HOME", home);
    }
    c.current_dir("/");
    c.stdin(Stdio::null());
    c
}

/// `burrow run --rootfs R ARGS... -- CMD...`
pub fn run_in(rootfs: &Path, args: &[&str], cmd: &[&str]) -> Command {
    let mut c = burrow();
    c.arg("run").arg("--rootfs").arg(rootfs).args(args).arg("--").args(cmd);
    c
}

/// Runs a command to completion with a deadline.
pub fn output(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn_retrying(&mut cmd).expect("spawn burrow");
    wait_output(child, Duration::from_secs(60))
}

/// `cmd.spawn()`, tried again for up to 2 s on ETXTBSY: a program this test process has just written (a
/// probe) stays "busy" while a child another test thread is forking holds a copy of the write descriptor,
/// until that child's exec closes it.
pub fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            other => return other,
        }
    }
}

pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Asserts exit status and returns stdout, printing everything on mismatch.
pub fn expect(o: &Output, want: i32) -> String {
    assert_eq!(code(o), want, "exit status\n--- stdout\n{}\n--- stderr\n{}", stdout(o), stderr(o));
    stdout(o)
}

/// Host pids of `pid` and all its descendants, except a user-namespace keeper that a first run is starting
/// (it outlives the run by design; tests/keeper.rs tests it).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            if parent_of(p) == Some(parent) && !all.contains(&p) {
                all.push(p);
            }
        }
        i += 1;
    }
    let keeper = |p: &i32| {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        cmdline.split(|b| *b == 0).any(|a| a == b"__keeper")
    };
    all.retain(|p| !keeper(p));
    all
}

/// The parent pid of `pid` (the field after the command name in /proc/PID/stat, which may contain spaces).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The children of `pid` (its main thread's, as /proc lists them).
pub fn children(pid: u32) -> Vec<i32> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    list.split_whitespace().map(|p| p.parse().unwrap()).collect()
}

/// True when `pid` is PID 1 of a PID namespace below ours (a container's init): the last of its NSpid is 1.
pub fn is_ns_init(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let nspid: Vec<&str> =
        status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or("").split_whitespace().collect();
    nspid.len() > 1 && nspid.last() == Some(&"1")
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit_once(')').map(|x| x.1.trim_start().starts_with('Z')).unwrap_or(false))
        .unwrap_or(false)
}

/// Polls `cond` until true or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("burrow-test.").tempdir().unwrap()
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub fn join(p: &Path, s: &str) -> PathBuf {
    p.join(s)
}

/// A child that is killed and reaped if the test panics before it ends (a leftover burrow would keep the
/// test runner's output pipe open and hang it).
pub struct Reaped(pub Child);

impl Reaped {
    /// Hands the child over (for `wait_output`), disarming the guard.
    pub fn take(mut self) -> Child {
        let placeholder = Command::new("true").spawn().expect("spawn true");
        std::mem::replace(&mut self.0, placeholder)
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads an HTTP request's head (request line and headers, up to the blank line) from `conn`, byte by byte so
/// that nothing of the body is consumed; None when the peer closes or stalls for 30 s first.
pub fn read_http_head(conn: &mut std::net::TcpStream) -> Option<String> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}
