//! Shared helpers of the net_lib suite: the stand-in container, skips, small servers.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use burrow::net::{self, Mode, Request};

pub fn strict() -> bool {
    std::env::var("BURROW_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// Prints SKIP and returns true when `what` is missing (fails instead under BURROW_TEST_STRICT=1).
pub fn skip_unless(ok: bool, what: &str) -> bool {
    if ok {
        return false;
    }
    assert!(!strict(), "BURROW_TEST_STRICT=1 and {what}");
    eprintln!("SKIP: {what}");
    true
}

pub fn installed(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

pub fn backend_missing(mode: Mode) -> bool {
    let bin = match mode {
        Mode::Slirp4netns => "slirp4netns",
        Mode::Pasta => "pasta",
        _ => return false,
    };
    skip_unless(installed(bin), &format!("{bin} is not installed"))
        || skip_unless(installed("nsenter") && installed("unshare"), "util-linux nsenter/unshare missing")
        || skip_unless(
            std::fs::metadata("/dev/net/tun")
                .is_ok_and(|_| std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").is_ok()),
            "/dev/net/tun is not usable by this user",
        )
}

/// A stand-in container: a process in new user + network namespaces (root mapped to us).
pub struct Target {
    pub child: Child,
}

impl Target {
    pub fn new() -> Target {
        let child = Command::new("unshare").args(["-Urn", "sleep", "120"]).spawn().expect("spawn unshare -Urn");
        let t = Target { child };
        // Ready once unshare has written the maps and exec'd sleep.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{}/comm", t.pid())).unwrap_or_default() != "sleep\n" {
            assert!(Instant::now() < deadline, "unshare -Urn did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        t.ns(&["ip", "link", "set", "lo", "up"]).success_or_panic();
        t
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn ns_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["--preserve-credentials", "-U", "-n", "-t", &self.pid().to_string()]);
        c.args(args);
        c
    }

    pub fn ns(&self, args: &[&str]) -> std::process::Output {
        self.ns_cmd(args).output().expect("run nsenter")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub trait Success {
    fn success_or_panic(self) -> String;
}

impl Success for std::process::Output {
    fn success_or_panic(self) -> String {
        assert!(
            self.status.success(),
            "command failed ({}): {}{}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        );
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn req(mode: Mode) -> Request {
    Request { mode, ..Request::default() }
}

/// A TCP connect from inside the namespace: true when it connects within 3 s.
pub fn connects_from_inside(t: &Target, host: &str, port: u16) -> bool {
    let script = format!("exec 3<>/dev/tcp/{host}/{port}");
    t.ns(&["timeout", "3", "bash", "-c", &script]).status.success()
}

/// Accepts connections on the host's loopback for as long as the test runs.
pub fn host_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            drop(s);
        }
    });
    port
}

pub fn proc_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

pub fn wait_dead(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while proc_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

pub fn attached(plan: &net::Plan, t: &Target, dir: &Path) -> net::Attached {
    let a = net::attach(plan, t.pid(), dir).unwrap_or_else(|e| panic!("attach: {e}"));
    // attach returns only once the interface is configured: no waiting here.
    let addr = t.ns(&["ip", "-4", "-o", "addr", "show", "dev", "tap0"]).success_or_panic();
    assert!(addr.contains("10.0.2.100/24"), "tap0 not configured at return: {addr}");
    a
}
