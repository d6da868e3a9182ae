//! Raw calls for the network helpers: fd inheritance and parent-death signal between fork and
//! exec, and the tap queue length ioctl.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::Signal;

/// Spawns `cmd` so that the fds in `inherit` (CLOEXEC in this process) stay open across its exec.
/// The flag is cleared in the child only, so processes spawned concurrently by other threads do
/// not get these fds. With `die_with_parent`, the helper gets SIGKILL when the spawning thread
/// exits (PR_SET_PDEATHSIG), which also covers SIGKILL of this process.
pub fn spawn_with_fds(
    cmd: &mut Command,
    inherit: &[RawFd],
    die_with_parent: bool,
) -> io::Result<Child> {
    let inherit = inherit.to_vec();
    let parent = nix::unistd::getpid();
    let hook = move || -> io::Result<()> {
        for &fd in &inherit {
            // SAFETY: the caller keeps these fds open until spawn returns, and the child is a
            // copy of that state: each raw fd is a valid open descriptor here.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        if die_with_parent {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between fork and prctl: then the signal never comes.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec in the child. It only calls fcntl, prctl,
    // getppid (async-signal-safe) and allocates nothing: `inherit` was copied before the fork.
    unsafe {
        cmd.pre_exec(hook);
    }
    cmd.spawn()
}

/// Sets the transmit queue length of network interface `ifname` in the calling thread's network
/// namespace (SIOCSIFTXQLEN, needs CAP_NET_ADMIN there).
pub fn set_txqueuelen(ifname: &str, qlen: i32) -> io::Result<()> {
    let name = ifname.as_bytes();
    if name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value (empty name, zero union).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_metric = qlen; // ifr_qlen is the same int member of the union
                                     // SAFETY: `sock` is an open socket; SIOCSIFTXQLEN reads a `struct ifreq` that lives across
                                     // the call, with a NUL-terminated name (zeroed, name shorter than IFNAMSIZ).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFTXQLEN, &req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
