//! Namespace descriptors (the nsfs ioctls of linux/nsfs.h) and the descriptor-passing calls of the user-namespace
//! keeper's socket, whose results are new descriptors that only an `unsafe` constructor may own.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const NSIO: u8 = 0xb7;
// All four are _IO(NSIO, n) in linux/nsfs.h, even NS_GET_OWNER_UID, which writes a uid_t through its argument.
type Request = nix::sys::ioctl::ioctl_num_type;
const NS_GET_USERNS: Request = nix::request_code_none!(NSIO, 0x1);
const NS_GET_PARENT: Request = nix::request_code_none!(NSIO, 0x2);
const NS_GET_NSTYPE: Request = nix::request_code_none!(NSIO, 0x3);
const NS_GET_OWNER_UID: Request = nix::request_code_none!(NSIO, 0x4);

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The parent of the user namespace `ns` (`NS_GET_PARENT`), as a new descriptor. EPERM when the parent lies
/// outside the caller's own user namespace.
pub fn ns_parent(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: NS_GET_PARENT takes no argument and only reads the namespace behind `ns` (any other kind of
    // descriptor fails with ENOTTY).
    let fd = check(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_PARENT) })?;
    // SAFETY: on success the ioctl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The user namespace that owns the namespace `ns` (`NS_GET_USERNS`), as a new descriptor.
pub fn ns_owner(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: NS_GET_USERNS takes no argument and only reads the namespace behind `ns` (any other kind of
    // descriptor fails with ENOTTY).
    let fd = check(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) })?;
    // SAFETY: on success the ioctl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A namespace's identity: the device and inode of its nsfs file, the same for every descriptor of it.
pub fn ns_id(ns: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(ns)?;
    Ok((st.st_dev, st.st_ino))
}

/// Whether the user namespace `user` owns the namespace `ns` (`NS_GET_USERNS`).
pub fn owned_by(ns: BorrowedFd<'_>, user: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(ns_id(ns_owner(ns)?.as_fd())? == ns_id(user)?)
}

/// The kind of namespace behind `ns` (`NS_GET_NSTYPE`): one of the `CLONE_NEW*` values.
pub fn ns_type(ns: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and returns a plain integer.
    check(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_NSTYPE) })
}

/// The uid (in the caller's user namespace) that created the user namespace `ns` (`NS_GET_OWNER_UID`).
pub fn ns_owner_uid(ns: BorrowedFd<'_>) -> io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through its argument, a pointer to a live local of that type.
    check(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID, &mut uid as *mut libc::uid_t) })?;
    Ok(uid)
}

/// Accepts a connection on a listening socket (close-on-exec).
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = nix::sys::socket::accept4(listener.as_raw_fd(), nix::sys::socket::SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Receives one message and at most four descriptors passed with it (`SCM_RIGHTS`, close-on-exec); any further
/// descriptors are closed. Returns the message's length (0: the peer closed the connection).
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let (len, raw) = loop {
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                let mut raw = Vec::new();
                for cmsg in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        raw.extend(fds);
                    }
                }
                break (msg.bytes, raw);
            }
        }
    };
    // SAFETY: descriptors received with SCM_RIGHTS were installed in this process for this call alone.
    Ok((len, raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect()))
}

/// Closes every descriptor from `first` up (`close_range(2)`). Only for a process that has just started and
/// owns nothing there yet: what it inherited without asking (a caller's pipes) must not be kept alive.
pub fn close_inherited_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; the caller guarantees that no object of this process owns any
    // descriptor in the range, so nothing is closed twice or used after closing.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn nsfs_ioctls_tell_a_user_namespace_from_other_files() {
        let user = std::fs::File::open("/proc/self/ns/user").unwrap();
        assert_eq!(ns_type(user.as_fd()).unwrap(), libc::CLONE_NEWUSER);
        let net = std::fs::File::open("/proc/self/ns/net").unwrap();
        assert_eq!(ns_type(net.as_fd()).unwrap(), libc::CLONE_NEWNET);
        let plain = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(ns_type(plain.as_fd()).unwrap_err().raw_os_error(), Some(libc::ENOTTY));
        assert!(ns_owner_uid(plain.as_fd()).is_err());
        // The initial namespace has no parent the caller may see; a nested one would.
        assert!(ns_parent(user.as_fd()).is_err());
    }
}
