//! Keystroke injection into the caller's terminal (TIOCSTI, TIOCLINUX), under a pseudo-terminal the test owns:
//! the outer terminal's input queue is checked from outside after the run.

use crate::probe::*;
use crate::ready;
use crate::support::*;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};

const ENXIO: i32 = 6;
const EIO: i32 = 5;

struct Pty {
    /// Kept open: the terminal hangs up when its master closes.
    _master: OwnedFd,
    slave: OwnedFd,
}

fn pty() -> Pty {
    let p = nix::pty::openpty(None, None).expect("openpty");
    Pty { _master: p.master, slave: p.slave }
}

impl Pty {
    /// Runs `inner` with the pty as its standard input, in a new session: with `ctty`, the pty is that
    /// session's controlling terminal (a shell's situation); without, nobody's.
    fn run(&self, ctty: bool, inner: Command) -> std::process::Output {
        let mut c = Command::new("setsid");
        c.env_clear().current_dir("/");
        c.envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
        c.args(if ctty { &["-c", "-w"][..] } else { &["-w"][..] });
        c.arg(inner.get_program()).args(inner.get_args());
        c.stdin(Stdio::from(self.slave.try_clone().unwrap()));
        output(c)
    }

    /// What is waiting in the terminal's input queue (what the user's shell would read next).
    fn pending_input(&self) -> String {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(self.slave.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let mut buf = [0u8; 256];
        match nix::unistd::read(self.slave.as_fd(), &mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => String::new(),
        }
    }
}

fn legacy_tiocsti() -> bool {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").map_or(true, |v| v.trim() == "1")
}

fn probe_cmd(host: &HostProbe, args: &[&str]) -> Command {
    let mut c = Command::new(&host.path);
    c.args(args);
    c
}

#[test]
fn tiocsti_cannot_push_input_into_the_callers_terminal() {
    ready!();
    let r = rootfs();
    // Control: a process of the terminal's session injects a line the shell would then run.
    let host = host_probe();
    let t = pty();
    let o = t.run(true, probe_cmd(&host, &["tiocsti", "id\n"]));
    if legacy_tiocsti() {
        assert!(outcome(&o, "tiocsti").is_ok(), "control: {}", stdout(&o));
        assert_eq!(t.pending_input(), "id\n", "control: the injected line waits in the input queue");
    } else {
        assert_eq!(outcome(&o, "tiocsti"), Err(EIO), "dev.tty.legacy_tiocsti=0: the kernel refuses it");
    }
    // From burrow on the same kind of terminal: refused, nothing queued.
    let t = pty();
    let o = t.run(true, attempt_cmd(&r, &[], &["tiocsti", "id\n"]));
    assert_eq!(outcome(&o, "tiocsti"), Err(EPERM), "{}", stderr(&o));
    assert_eq!(t.pending_input(), "");
    // Without the filter the payload is still in a session of its own, without a controlling terminal.
    let t = pty();
    let o = t.run(true, attempt_cmd(&r, WEAK, &["tiocsti", "id\n"]));
    assert!(outcome(&o, "tiocsti").is_err());
    assert_eq!(t.pending_input(), "");
}

#[test]
fn the_payload_has_no_controlling_terminal() {
    ready!();
    let r = rootfs();
    let host = host_probe();
    let t = pty();
    assert!(outcome(&t.run(true, probe_cmd(&host, &["ctty"])), "ctty").is_ok(), "control");
    let t = pty();
    assert_eq!(outcome(&t.run(true, attempt_cmd(&r, &[], &["ctty"])), "ctty"), Err(ENXIO));
}

#[test]
fn the_filter_alone_stops_tiocsti_even_on_a_terminal_the_payload_controls() {
    ready!();
    let r = rootfs();
    // The pty is nobody's controlling terminal: the payload (a session leader) takes it, then injects.
    let want_weak = if legacy_tiocsti() { Ok(String::new()) } else { Err(EIO) };
    for action in ["tiocsti", "tiocsti-high"] {
        let t = pty();
        let o = t.run(false, attempt_cmd(&r, &["-i"], &[action, "id\n", "steal"]));
        assert_eq!(outcome(&o, action), Err(EPERM), "{action}: {}", stderr(&o));
        assert_eq!(t.pending_input(), "", "{action}");
        let t = pty();
        // -i: the probe injects through its stdin, which is /dev/null without it.
        let o = t.run(false, attempt_cmd(&r, &[WEAK, &["-i"]].concat(), &[action, "id\n", "steal"]));
        assert_eq!(outcome(&o, action), want_weak, "{action} unfiltered: {}", stderr(&o));
        if legacy_tiocsti() {
            assert!(!t.pending_input().is_empty(), "{action}: unfiltered, the injection works");
        }
    }
}

#[test]
fn tioclinux_is_denied() {
    ready!();
    let r = rootfs();
    let t = pty();
    assert_eq!(outcome(&t.run(false, attempt_cmd(&r, &[], &["tioclinux"])), "tioclinux"), Err(EPERM));
    // Unfiltered, the request reaches the tty driver (which has no console selection on a pty).
    let t = pty();
    assert_ne!(outcome(&t.run(false, attempt_cmd(&r, WEAK, &["tioclinux"])), "tioclinux"), Err(EPERM));
}

/// Writes `bytes` to the terminal as if typed.
fn type_in(t: &Pty, bytes: &[u8]) {
    nix::unistd::write(t._master.as_fd(), bytes).expect("write to the pty master");
}

#[test]
fn ctrl_c_still_reaches_a_payload_in_its_own_session() {
    ready!();
    let r = rootfs();
    for extra in [&[][..], &["--no-init"][..]] {
        let t = pty();
        let mut args = vec!["--network", "none"];
        args.extend_from_slice(extra);
        // A handler, because a PID 1 (--no-init) ignores signals it does not handle.
        let script = "trap 'exit 130' INT; echo ready; for i in $(seq 30); do sleep 1; done; exit 3";
        let inner = run_in(r.path(), &args, &["sh", "-c", script]);
        let mut c = Command::new("setsid");
        c.env_clear().current_dir("/");
        c.envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))));
        c.args(["-c", "-w"]).arg(inner.get_program()).args(inner.get_args());
        c.stdin(Stdio::from(t.slave.try_clone().unwrap()));
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn burrow");
        let mut out = child.stdout.take().unwrap();
        let mut first = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut first).expect("the payload started");
        assert_eq!(&first, b"ready\n");
        // The payload is not in the terminal's foreground group any more: ^C must be relayed by burrow.
        type_in(&t, b"\x03");
        child.stdout = Some(out);
        let o = wait_output(child, std::time::Duration::from_secs(20));
        assert_eq!(code(&o), 130, "{extra:?}: {}", stderr(&o));
    }
}
