//! Raw calls for the network helpers: fd inheritance and parent-death signal between fork and
//! exec.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::Signal;

/// Spawns `cmd` so that the fds in `inherit` (CLOEXEC in this process) stay open across its exec.
/// The flag is cleared in the child only, so processes spawned concurrently by other threads do
/// not get these fds. With `die_with_parent`, the helper gets SIGKILL when the spawning thread
/// exits (PR_SET_PDEATHSIG), which also covers SIGKILL of this process.
pub fn spawn_with_fds(cmd: &mut Command, inherit: &[RawFd], die_with_parent: bool) -> io::Result<Child> {
    let inherit = inherit.to_vec();
    let parent = nix::unistd::getpid();
    let hook = move || -> io::Result<()> {
        for &fd in &inherit {
            // SAFETY: the caller keeps these fds open until spawn returns, and the child is a
            // copy of that state: each raw fd is a valid open descriptor here.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        // burrow blocks the signals it reads from a signalfd; a blocked mask survives exec, and a helper
        // must start with the default one (it would otherwise ignore SIGTERM, SIGHUP, SIGCHLD...).
        nix::sys::signal::SigSet::empty().thread_set_mask()?;
        if die_with_parent {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between fork and prctl: then the signal never comes.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec in the child. It only calls fcntl, pthread_sigmask,
    // prctl, getppid (async-signal-safe) and allocates nothing: `inherit` was copied before the fork.
    unsafe {
        cmd.pre_exec(hook);
    }
    cmd.spawn()
}
