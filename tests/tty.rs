//! `-t` and `-i` of the real binary under a pseudo-terminal the test owns: job control inside, window size
//! changes, the user's terminal settings restored, stdin only with -i.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// The outer terminal: a pty whose slave is burrow's controlling terminal and stdio, and whose master the
/// test reads (everything burrow writes) and writes (the user's keys).
struct Term {
    master: std::fs::File,
    slave: OwnedFd,
    seen: Arc<Mutex<Vec<u8>>>,
    /// Where in `seen` the next `expect` starts looking.
    from: usize,
}

impl Term {
    fn new(rows: u16, cols: u16) -> Term {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        // Close-on-exec: another test's burrow must not inherit this terminal.
        for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).unwrap();
        }
        let master = std::fs::File::from(pty.master);
        let t = Term { master, slave: pty.slave, seen: Arc::default(), from: 0 };
        t.stty(&["rows", &rows.to_string(), "cols", &cols.to_string()]);
        let mut reader = t.master.try_clone().unwrap();
        let seen = t.seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        t
    }

    /// Runs stty on the outer terminal (its settings or size, as a user's terminal emulator would).
    fn stty(&self, args: &[&str]) -> String {
        let o = Command::new("stty").args(args).stdin(self.fd()).output().expect("stty");
        assert!(o.status.success(), "stty {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn fd(&self) -> Stdio {
        Stdio::from(self.slave.as_fd().try_clone_to_owned().unwrap())
    }

    /// Starts burrow with this terminal as its controlling terminal and stdio (setsid --ctty, like a login).
    fn spawn(&self, args: &[&str]) -> Reaped {
        self.spawn_env(args, &[])
    }

    fn spawn_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Reaped {
        let mut c = Command::new("setsid");
        c.arg("--ctty").arg(BURROW).args(args);
        c.env_clear().env("PATH", "/usr/bin:/bin").env("TERM", "dumb").current_dir("/");
        c.envs(env.iter().copied());
        c.stdin(self.fd()).stdout(self.fd()).stderr(self.fd());
        Reaped(c.spawn().expect("spawn burrow"))
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until `text` appears after the previous match; returns everything up to it.
    fn expect(&mut self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let seen = String::from_utf8_lossy(&self.seen.lock().unwrap()[self.from..]).into_owned();
            if let Some(i) = seen.find(text) {
                self.from += seen[..i + text.len()].len();
                return seen[..i + text.len()].to_string();
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no {text:?} on the terminal; it shows:\n{seen}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn wait_exit(child: Reaped) -> i32 {
    let mut child = child.take();
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("burrow did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ready() -> Option<Rootfs> {
    if let Some(why) = unusable() {
        eprintln!("SKIP: {why}");
        return None;
    }
    Some(Rootfs::new())
}

#[test]
fn job_control_and_ctrl_c_work_inside() {
    let Some(root) = ready() else { skip!("unusable") };
    let mut t = Term::new(24, 80);
    let r = path_str(root.path());
    let child = t.spawn(&["run", "-it", "--rootfs", &r, "--", "/bin/sh"]);
    t.send("PS1='$ '; echo st$((1+1))art\n");
    t.expect("st2art");
    // A job in the background, listed, then brought back and interrupted with Ctrl-C.
    t.send("sleep 100 &\n");
    t.send("jobs\n");
    t.expect("sleep 100");
    t.send("fg\n");
    std::thread::sleep(Duration::from_millis(300));
    t.send("\x03");
    t.send("echo rc=$?\n");
    t.expect("rc=130");
    // Ctrl-Z stops the job inside, not burrow: the shell reports it and goes on.
    t.send("sleep 101\n");
    std::thread::sleep(Duration::from_millis(300));
    t.send("\x1a");
    t.send("jobs\n");
    t.expect("Stopped");
    t.send("kill -9 %1; echo after=ok\n");
    t.expect("after=ok");
    t.send("tty; exit 3\n");
    t.expect("/dev/pts/");
    assert_eq!(wait_exit(child), 3);
}

#[test]
fn the_window_size_is_set_before_start_and_follows_changes() {
    let Some(root) = ready() else { skip!("unusable") };
    let mut t = Term::new(31, 101);
    let r = path_str(root.path());
    // The first thing the payload does: no resize can have arrived yet.
    let child = t.spawn(&["run", "-it", "--rootfs", &r, "--", "/bin/sh", "-c", "stty size; read x; stty size"]);
    t.expect("31 101");
    t.stty(&["rows", "42", "cols", "120"]);
    std::thread::sleep(Duration::from_millis(200));
    t.send("\n");
    t.expect("42 120");
    assert_eq!(wait_exit(child), 0);
}

/// `run -it` of a shell that prints "ready" and sleeps, once it runs: the terminal, its settings from before
/// (checked to have been changed to raw mode since) and burrow's process.
fn raw_sleeper(root: &Rootfs) -> (Term, String, Reaped) {
    let mut t = Term::new(24, 80);
    let before = t.stty(&["-g"]);
    let r = path_str(root.path());
    let child = t.spawn(&["run", "-it", "--rootfs", &r, "--", "/bin/sh", "-c", "echo re''ady; exec sleep 100"]);
    t.expect("ready");
    assert_ne!(t.stty(&["-g"]), before, "the outer terminal was not made raw");
    (t, before, child)
}

#[test]
fn the_outer_terminal_is_restored_after_the_payload_is_killed() {
    let Some(root) = ready() else { skip!("unusable") };
    let (t, before, child) = raw_sleeper(&root);
    let pid = child.0.id() as i32;
    let sleeper = descendants(pid)
        .into_iter()
        .find(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\x00100")))
        .expect("the payload");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleeper), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(wait_exit(child), 137);
    assert_eq!(t.stty(&["-g"]), before, "the outer terminal's settings were not restored");
}

#[test]
fn a_signal_that_kills_burrow_restores_the_terminal_first() {
    let Some(root) = ready() else { skip!("unusable") };
    let (t, before, child) = raw_sleeper(&root);
    let pid = child.0.id() as i32;
    let family = descendants(pid);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGALRM).unwrap();
    let mut child = child.take();
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGALRM), "{status:?}");
    assert_eq!(t.stty(&["-g"]), before, "the outer terminal's settings were not restored");
    assert!(eventually(Duration::from_secs(10), || family.iter().all(|p| !alive(*p))), "the container outlived burrow");
}

#[test]
fn the_payload_cannot_reach_the_outer_terminal() {
    let Some(root) = ready() else { skip!("unusable") };
    let mut t = Term::new(24, 80);
    let r = path_str(root.path());
    // init (burrow's code, PID 1) keeps no descriptor of the user's terminal; the payload's is the container's
    // first pty.
    let script = "ls -l /proc/1/fd/; echo self=$(readlink /proc/self/fd/0); echo list=done";
    let child = t.spawn(&["run", "-it", "--rootfs", &r, "--", "/bin/sh", "-c", script]);
    let out = t.expect("list=done");
    let init_fds: Vec<&str> = out.lines().filter(|l| l.contains(" -> ")).collect();
    // (A non-dumpable init hides its descriptors altogether, which is as good.)
    assert!(out.contains("Permission denied") || init_fds.iter().any(|l| l.contains(" 0 -> /dev/null")), "{out}");
    assert!(!init_fds.iter().any(|l| l.contains("pts") || l.contains("tty")), "init holds a terminal: {out}");
    assert!(out.contains("self=/dev/pts/0"), "{out}");
    assert_eq!(wait_exit(child), 0);
}

#[test]
fn tty_without_a_terminal_on_stdin_is_a_clear_error() {
    let Some(root) = ready() else { skip!("unusable") };
    let o = output(run_in(root.path(), &["-t"], &["true"]));
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(stderr(&o).contains("not a terminal"), "{}", stderr(&o));
}

#[test]
fn stdin_reaches_the_payload_only_with_i() {
    let Some(root) = ready() else { skip!("unusable") };
    for (flags, want) in [(vec![], ""), (vec!["-i"], "hello")] {
        let mut c = run_in(root.path(), &flags, &["cat"]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"hello");
        drop(stdin);
        let o = wait_output(child, Duration::from_secs(30));
        assert_eq!(expect(&o, 0), want, "flags {flags:?}");
    }
}

#[test]
fn exec_it_gets_a_terminal_of_its_own_with_job_control() {
    let Some(root) = ready() else { skip!("unusable") };
    let (tmp, home) = (tempdir(), tempdir());
    let env = [("TMPDIR", tmp.path()), ("HOME", home.path())];
    let cmd = |args: &[&str]| {
        let mut c = burrow();
        c.envs(env.iter().copied()).args(args);
        output(c)
    };
    let r = path_str(root.path());
    let id = expect(&cmd(&["run", "-d", "--rootfs", &r, "--", "sleep", "100"]), 0).trim().to_string();
    let mut t = Term::new(33, 90);
    let child = t.spawn_env(&["exec", "-it", &id, "/bin/sh"], &env);
    t.send("PS1='$ '; tty; stty size; echo st$((1+1))art\n");
    let seen = t.expect("st2art");
    assert!(seen.contains("/dev/pts/") && seen.contains("33 90"), "{seen}");
    t.send("sleep 50 &\n");
    t.send("jobs\n");
    t.expect("sleep 50");
    t.send("sleep 60\n");
    std::thread::sleep(Duration::from_millis(300));
    t.send("\x03");
    t.send("echo rc=$?\n");
    t.expect("rc=130");
    t.send("exit 4\n");
    assert_eq!(wait_exit(child), 4);
    expect(&cmd(&["rm", "-f", &id]), 0);
}
