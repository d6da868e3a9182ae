//! The one way burrow forks a process of its own (P1, init, the FUSE overlay server, the port forwarder, doctor's
//! probe), and the one way it signals them: through a pidfd, never a pid number that may have been reused.
//!
//! A forked child must die with its parent: `PR_SET_PDEATHSIG` arms that, but only from the moment it is set,
//! so a parent that died between `fork` and `prctl` would leave the child running forever (re-parented to the
//! host's init or a subreaper). The child therefore checks, after arming the signal, that its parent still lives.
//! `getppid()` cannot tell when the parent is in another PID namespace (it returns 0 for init), so the check
//! polls a pidfd of the parent opened before the fork: it becomes readable when the parent exits, whatever the
//! namespaces. The payload is not forked here: it dies with its PID namespace when init does.

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// The result of [`fork_tied`], as seen by the caller.
pub enum Tied {
    Parent(Pid),
    Child,
}

/// Forks a child that receives `death` when the calling thread exits; a child whose parent already died exits
/// at once (status 0: nobody is left to read it). Must be called while single-threaded (see `sys::fork`).
pub fn fork_tied(death: Signal) -> io::Result<Tied> {
    let parent = pidfd(nix::unistd::getpid()).ok();
    let parent_pid = nix::unistd::getpid();
    match crate::sys::fork()? {
        crate::sys::Forked::Parent(pid) => Ok(Tied::Parent(pid)),
        crate::sys::Forked::Child => {
            arm(death, parent.as_ref(), parent_pid);
            Ok(Tied::Child)
        }
    }
}

/// The result of [`fork_pidfd_tied`], as seen by the caller.
pub enum Pidfd {
    /// The child, which the caller can signal and poll for its exit (and wait for, when it is its own).
    Parent(Child),
    Child,
}

/// Like [`fork_tied`], in new `namespaces` (`CLONE_NEW*`) and with a pidfd of the child. With `sibling_of` (the
/// caller's parent) the child is a sibling: a child of that parent, which reaps it and which it dies with
/// (`death`); without, the caller's own child. ENOSYS on kernels without clone3 (before 5.3).
pub fn fork_pidfd_tied(death: Signal, namespaces: libc::c_int, sibling_of: Option<Pid>) -> io::Result<Pidfd> {
    let parent = sibling_of.unwrap_or_else(nix::unistd::getpid);
    let parent_fd = pidfd(parent).ok();
    match crate::sys::fork_pidfd(namespaces, sibling_of.is_some())? {
        Some((pid, fd)) => Ok(Pidfd::Parent(Child { pid, fd: Some(fd) })),
        None => {
            arm(death, parent_fd.as_ref(), parent);
            Ok(Pidfd::Child)
        }
    }
}

/// In a new child: arms the parent-death signal, then exits at once if the parent is already gone.
fn arm(death: Signal, parent: Option<&OwnedFd>, parent_pid: Pid) {
    if nix::sys::prctl::set_pdeathsig(death).is_err() || parent_gone(parent, parent_pid) {
        crate::sys::exit_now(0);
    }
}

/// True when the parent has exited (after the death signal was armed, so no exit can be missed).
fn parent_gone(parent: Option<&OwnedFd>, parent_pid: Pid) -> bool {
    match parent {
        Some(fd) => {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            // A pidfd is readable once its process has exited.
            matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        }
        // Kernels without pidfd_open (before 5.3): getppid, which reads 0 across a PID namespace boundary.
        None => {
            let now = nix::unistd::getppid();
            now.as_raw() != 0 && now != parent_pid
        }
    }
}

/// A pidfd for `pid` (close-on-exec).
pub fn pidfd(pid: Pid) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid.as_raw()).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?)
}

/// Sends `sig` to the process behind `pidfd`: a process that has exited (even if its pid was reused since) is
/// ESRCH, never another process.
pub fn signal(pidfd: &OwnedFd, sig: Signal) -> io::Result<()> {
    let sig = rustix::process::Signal::from_named_raw(sig as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, sig)?)
}

/// A child of the calling process, signalled through its pidfd (or, on kernels without pidfds, its pid, which
/// stays ours as long as we have not reaped it).
pub struct Child {
    pub pid: Pid,
    fd: Option<OwnedFd>,
}

impl Child {
    /// Call before reaping `pid` (a reaped pid may be reused).
    pub fn of(pid: Pid) -> Child {
        Child { pid, fd: pidfd(pid).ok() }
    }

    /// `fd` is a pidfd of `pid`.
    pub fn with_pidfd(pid: Pid, fd: OwnedFd) -> Child {
        Child { pid, fd: Some(fd) }
    }

    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        match &self.fd {
            Some(fd) => signal(fd, sig),
            None => Ok(nix::sys::signal::kill(self.pid, sig)?),
        }
    }

    /// The pidfd, when the kernel has them (readable once the process has exited).
    pub fn pidfd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }
}

/// Where a panicking child reports (a copy of its channel to P0), while [`contained`] runs.
static REPORTER: std::sync::Mutex<Option<super::channel::Channel>> = std::sync::Mutex::new(None);

/// Runs a forked child's body and exits with its status. A panic (a bug) must neither print (a child never
/// prints) nor unwind into the frames the child shares with its parent after fork (P0's destructors would run
/// in the child: remove the state directory, kill P1): the panic hook reports it to P0 as
/// `Failed { stage: "internal" }` (so it works under `panic = "abort"` too) and the child exits 125.
/// `reporter` is a copy of the child's channel (`Channel::try_clone`), kept until [`release_reporter`].
pub fn contained(reporter: super::channel::Channel, body: impl FnOnce() -> i32) -> ! {
    if let Ok(mut slot) = REPORTER.lock() {
        *slot = Some(reporter);
    }
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload.downcast_ref::<&str>().copied().or(payload.downcast_ref::<String>().map(String::as_str));
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let text = format!("burrow bug: panicked{at}: {}; please report it", what.unwrap_or("(no message)"));
        if let Some(chan) = REPORTER.try_lock().ok().and_then(|mut s| s.take()) {
            let _ = chan.send(&super::msg::Msg::Failed { stage: "internal".into(), errno: 0, message: text });
        }
    }));
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(125);
    crate::sys::exit_now(code)
}

/// Drops the panic reporter's copy of the channel (init, before it waits for the payload: P0 learns that the
/// payload exec'd when every copy is closed).
pub fn release_reporter() {
    if let Ok(mut slot) = REPORTER.lock() {
        slot.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_signals_its_own_process_only() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let fd = pidfd(pid).unwrap();
        signal(&fd, Signal::SIGKILL).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        // Reaped: the pidfd refers to a process that no longer exists, whatever now holds its number.
        let e = signal(&fd, Signal::SIGTERM).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn a_child_of_a_dead_parent_is_detected() {
        // The parent here is a short-lived `true`: once reaped, its pidfd is readable.
        let mut p = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(p.id() as i32);
        let fd = pidfd(pid).unwrap();
        p.wait().unwrap();
        assert!(parent_gone(Some(&fd), pid));
        let me = pidfd(nix::unistd::getpid()).unwrap();
        assert!(!parent_gone(Some(&me), nix::unistd::getpid()));
    }
}
