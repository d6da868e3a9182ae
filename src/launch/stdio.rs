//! The payload's standard descriptors, set up in the payload's process after `pivot_root` (see
//! docs/design/lifecycle.md).
//!
//! - `-t`: a new pty from the container's own devpts (`/dev/pts/ptmx`, mounted `newinstance`), its size set
//!   before the payload starts; the master goes to burrow over the sync socket (SCM_RIGHTS); the payload makes
//!   the slave its controlling terminal in a session of its own. init has put /dev/null on its own stdio
//!   before, so that nothing inside the container holds the user's real terminal.
//! - without `-i`: the payload's stdin is /dev/null, as with podman.
//! - `-d`: a close-on-exec pipe whose read end goes to burrow: its end of file says the payload has exec'd.

use super::channel::Channel;
use super::msg::Msg;
use super::{Step, StepError};
use crate::sys::tty;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// The container's own ptmx (the devpts instance the mount plan created).
pub const PTMX: &str = "/dev/pts/ptmx";

/// The payload's pty master and start watch, until it execs (both close-on-exec).
#[derive(Default)]
pub struct Stdio {
    pub master: Option<OwnedFd>,
    /// Write end of the start watch (close-on-exec: the payload's exec closes it).
    pub watch: Option<OwnedFd>,
    pub interactive: bool,
}

/// In the payload's process, after pivot_root: opens the pty and the watch pipe the spec asks for and hands their other ends
/// to burrow.
pub fn prepare(
    terminal: Option<tty::WinSize>,
    watch: bool,
    interactive: bool,
    chan: &Channel,
) -> Result<Stdio, StepError> {
    let mut stdio = Stdio { interactive, ..Stdio::default() };
    if terminal.is_none() && !watch {
        return Ok(stdio);
    }
    let mut send: Vec<OwnedFd> = Vec::new();
    if let Some(size) = terminal {
        let master = tty::open_master(Path::new(PTMX)).step("terminal", format!("open {PTMX}"))?;
        tty::set_window_size(master.as_fd(), size).step("terminal", "set the window size")?;
        send.push(master.try_clone().step("terminal", "dup the pty master")?);
        stdio.master = Some(master);
    }
    if watch {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).step("start", "pipe")?;
        send.push(r);
        stdio.watch = Some(w);
    }
    let fds: Vec<BorrowedFd<'_>> = send.iter().map(|f| f.as_fd()).collect();
    chan.send_with_fds(&Msg::Attach { terminal: terminal.is_some(), watch }, &fds)
        .map_err(|e| StepError::plain("terminal", format!("send the pty to burrow: {e}")))?;
    Ok(stdio)
}

/// In the payload's process, before `exec::payload`: the pty as controlling terminal and stdio, or /dev/null
/// as stdin without `-i`. `owner` is the payload's uid and gid: the slave is theirs, as on a login.
pub fn attach_payload(stdio: &Stdio, owner: (u32, u32)) -> nix::Result<()> {
    match &stdio.master {
        Some(master) => attach_terminal(master, Some(owner)),
        None if !stdio.interactive => null_onto(&[0]),
        None => Ok(()),
    }
}

/// Makes the slave of `master` the calling process's controlling terminal and stdio, in a new session.
pub fn attach_terminal(master: &OwnedFd, owner: Option<(u32, u32)>) -> nix::Result<()> {
    nix::unistd::setsid()?;
    let slave = tty::open_peer(master.as_fd()).map_err(io_errno)?;
    if let Some((uid, gid)) = owner {
        // Best effort: an unmapped owner keeps the slave root's, which the payload can use through its fds.
        let _ = nix::unistd::fchown(&slave, Some(uid.into()), Some(gid.into()));
    }
    tty::set_controlling(slave.as_fd()).map_err(io_errno)?;
    onto_stdio(slave.as_fd(), &[0, 1, 2])
}

/// Puts /dev/null on each of `fds`.
pub fn null_onto(fds: &[i32]) -> nix::Result<()> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    onto_stdio(null.as_fd(), fds)
}

/// Duplicates `fd` onto each of the standard descriptors in `which` (0, 1, 2).
pub fn onto_stdio(fd: BorrowedFd<'_>, which: &[i32]) -> nix::Result<()> {
    for n in which {
        match n {
            0 => nix::unistd::dup2_stdin(fd)?,
            1 => nix::unistd::dup2_stdout(fd)?,
            _ => nix::unistd::dup2_stderr(fd)?,
        }
    }
    Ok(())
}

fn io_errno(e: std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}
