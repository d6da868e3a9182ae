//! The container's init serves `burrow exec` on a control socket (see docs/design/lifecycle.md).
//!
//! init binds it before `pivot_root`, in the container's private record directory on the host (so nothing
//! inside the container can reach it), listens close-on-exec, and checks each client's credentials
//! (SO_PEERCRED: the container's owner only). A client sends one `Msg::Exec` with its stdio attached (or asks
//! for a terminal: init then opens a new pty from the container's devpts and sends the master back); init forks
//! the command, which ends in the same `exec::payload` as the container's payload, with the container's
//! hardening, environment and user. The command is thus inside every namespace, the cgroup and the root, and
//! init's child for reaping and signals; init sends `Msg::Exited` when it reaps it. A client that goes away
//! takes its command with it (SIGKILL): nothing runs on unattended.

use super::channel::Channel;
use super::exec::{self, Payload};
use super::msg::{ExecRequest, Msg};
use super::{child_exit, report, stdio, Step, StepError};
use crate::sys::{fork, tty, Forked};
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Binds and listens on `path` (before pivot_root; the descriptor keeps working after it).
pub fn listen(path: &Path) -> Result<OwnedFd, StepError> {
    let what = || format!("control socket {}", path.display());
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .step("control", what())?;
    let addr = UnixAddr::new(path).step("control", what())?;
    let _ = std::fs::remove_file(path);
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).step("control", what())?;
    socket::listen(&fd, socket::Backlog::new(16).unwrap_or(socket::Backlog::MAXCONN)).step("control", what())?;
    Ok(fd)
}

/// One client: its connection, and the command once started.
struct Session {
    conn: Channel,
    pid: Option<Pid>,
}

/// init's side of `burrow exec`.
pub struct Control {
    listener: OwnedFd,
    /// The owner's uid as seen inside the container's user namespace.
    owner: u32,
    template: Payload,
    sessions: Vec<Session>,
}

impl Control {
    pub fn new(listener: OwnedFd, owner: u32, template: Payload) -> Control {
        Control { listener, owner, template, sessions: Vec::new() }
    }

    /// The listener, then each client's connection ([`Control::service`] takes their events in this order).
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        fds.extend(self.sessions.iter().map(|s| PollFd::new(s.conn.as_fd(), PollFlags::POLLIN)));
        fds
    }

    pub fn service(&mut self, events: &[PollFlags]) {
        let mut gone = Vec::new();
        for (i, ev) in events.iter().enumerate().skip(1) {
            if !ev.is_empty() && i - 1 < self.sessions.len() && !self.on_message(i - 1) {
                gone.push(i - 1);
            }
        }
        for i in gone.into_iter().rev() {
            let s = self.sessions.remove(i);
            if let Some(pid) = s.pid {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        if events.first().is_some_and(|e| !e.is_empty()) {
            self.accept();
        }
    }

    fn accept(&mut self) {
        // Non-blocking: init only reads a connection that poll() found readable, and a client that stops reading
        // must never stall init (a reply that does not fit is dropped; each session gets at most three).
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        while let Ok(fd) = socket::accept4(std::os::fd::AsRawFd::as_raw_fd(&self.listener), flags) {
            let fd = crate::sys::adopt_received(vec![fd]).pop();
            let Some(fd) = fd else { continue };
            let peer = socket::getsockopt(&fd, socket::sockopt::PeerCredentials);
            let conn = Channel::from_fd(fd);
            match peer {
                Ok(c) if c.uid() == self.owner => self.sessions.push(Session { conn, pid: None }),
                _ => {
                    let message = "permission denied: only the container's owner may exec into it".to_string();
                    report(&conn, "exec", message, libc::EPERM);
                }
            }
        }
    }

    /// Handles one message of session `i`; false when the session is over (its client left).
    fn on_message(&mut self, i: usize) -> bool {
        let (msg, fds) = match self.sessions[i].conn.recv_with_fds() {
            Ok((Some(m), fds)) => (m, fds),
            _ => return false,
        };
        let session = &mut self.sessions[i];
        match msg {
            Msg::Exec(req) if session.pid.is_none() => match spawn(&self.template, &req, fds, &session.conn) {
                Ok(pid) => session.pid = Some(pid),
                Err(e) => {
                    e.report(&session.conn);
                    return false;
                }
            },
            Msg::Signal { signo } => {
                if let (Some(pid), Ok(sig)) = (session.pid, Signal::try_from(signo)) {
                    let _ = kill(pid, sig);
                }
            }
            _ => {}
        }
        true
    }

    /// A child was reaped: if it was a client's command, tell the client. True if it was one.
    pub fn reaped(&mut self, pid: Pid, code: i32) -> bool {
        let Some(i) = self.sessions.iter().position(|s| s.pid == Some(pid)) else { return false };
        let s = self.sessions.remove(i);
        let _ = s.conn.send(&Msg::Exited { code });
        true
    }
}

/// Forks the command of `req`: init's child, ending in `exec::payload` with the container's payload
/// settings, changed only as asked.
fn spawn(template: &Payload, req: &ExecRequest, fds: Vec<OwnedFd>, conn: &Channel) -> Result<Pid, StepError> {
    if req.command.is_empty() {
        return Err(StepError::plain("exec", "no command given"));
    }
    let master = match req.terminal {
        Some(size) => {
            let m = tty::open_master(Path::new(stdio::PTMX)).step("exec", format!("open {}", stdio::PTMX))?;
            tty::set_window_size(m.as_fd(), size).step("exec", "set the window size")?;
            Some(m)
        }
        None if fds.len() == 3 => None,
        None => return Err(StepError::plain("exec", "the request carried no stdio")),
    };
    match fork().step("exec", "fork")? {
        Forked::Child => become_command(template, req, &fds, master.as_ref(), conn),
        Forked::Parent(pid) => {
            if let Some(m) = master {
                let _ = conn.send_with_fds(&Msg::Attach { terminal: true, watch: false }, &[m.as_fd()]);
            }
            Ok(pid)
        }
    }
}

fn become_command(
    template: &Payload,
    req: &ExecRequest,
    fds: &[OwnedFd],
    master: Option<&OwnedFd>,
    conn: &Channel,
) -> ! {
    let fail = |what: String, e: nix::Error| child_exit(report(conn, "exec", what, e as i32));
    let mut payload = template.clone();
    if let Some(user) = &req.user {
        match crate::spec::resolve_user(user, &crate::spec::Etc::Tree("/".into())) {
            Ok(ids) => payload.user = ids,
            Err(e) => child_exit(report(conn, "exec", e.to_string(), libc::EINVAL)),
        }
    }
    let attached = match master {
        Some(m) => stdio::attach_terminal(m, Some(payload.user)),
        None => nix::unistd::setsid()
            .map(drop)
            .and_then(|()| (0..3).try_for_each(|n| stdio::onto_stdio(fds[n].as_fd(), &[n as i32]))),
    };
    if let Err(e) = attached {
        fail("attach the command's stdio".into(), e);
    }
    if let Some(dir) = &req.workdir {
        if let Err(e) = nix::unistd::chdir(dir) {
            fail(format!("workdir {}", dir.display()), e);
        }
    }
    payload.command = req.command.clone();
    // The session is arranged above (a new one, with the pty as its controlling terminal when there is one):
    // the hardening stage must not start another.
    payload.hardening.controlling_tty = true;
    for (k, v) in &req.env {
        payload.env.retain(|(key, _)| key != k);
        payload.env.push((k.clone(), v.clone()));
    }
    exec::payload(&payload, conn)
}
