//! Terminal ioctls that `nix` does not wrap: the pty peer, the controlling terminal and the window size.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A window size: rows and columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
}

/// Opens the slave of the pty whose master is `master` (`TIOCGPTPEER`, Linux 4.13), without a path lookup:
/// a container that replaced `/dev/pts` cannot hand out another file (the ptsname race of CVE-2019-5736's
/// neighbours in runc).
pub fn open_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes an int of open flags by value and returns a new descriptor or -1; no memory
    // is passed.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `fd`, a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `tty` the controlling terminal of the calling session leader (`TIOCSCTTY`, without stealing).
pub fn set_controlling(tty: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int by value (0: do not steal a terminal from another session).
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of terminal `fd`.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<WinSize> {
    // SAFETY: `winsize` is plain old data; all-zero is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` into `ws`, which lives across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(WinSize { rows: ws.ws_row, cols: ws.ws_col })
}

/// Sets the window size of terminal `fd` (the kernel sends SIGWINCH to its foreground process group).
pub fn set_window_size(fd: BorrowedFd<'_>, size: WinSize) -> io::Result<()> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ only reads one `struct winsize` from `ws`, which lives across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pty number of master `fd` (`TIOCGPTN`): fails on anything that is not a pty master, which is how a
/// `/dev/pts/ptmx` replaced by something else is recognised.
pub fn pty_number(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into `n`, which lives across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n)
}

/// Opens a new pty master from the devpts instance whose `ptmx` is at `path`, checks that it is one, and
/// unlocks its slave.
pub fn open_master(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC).open(path)?;
    let fd = OwnedFd::from(file);
    pty_number(std::os::fd::AsFd::as_fd(&fd))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from `unlock`, which lives across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
