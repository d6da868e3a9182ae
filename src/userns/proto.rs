//! The keeper's socket protocol: one JSON message per SEQPACKET packet, one request and one reply per
//! connection. The reply to `Namespace` carries the new user namespace's descriptor (`SCM_RIGHTS`), then those
//! of a network, a UTS and an IPC namespace it owns, made with it (a keeper that could not make them, or an older
//! one, sends the user namespace alone; an older burrow takes the first descriptor and closes the others).

use crate::idmap::MapLine;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// The socket's name in the user's runtime directory (`state::base_dir()`), and its lock. The number is the
/// protocol's version: a burrow that speaks another one never meets this keeper (each version has its own
/// keeper, and an old one exits when idle).
pub const SOCKET: &str = "keeper-1.sock";
pub const LOCK: &str = "keeper-1.lock";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A user namespace nested in the keeper's, with these maps relative to the keeper's namespace.
    Namespace { uid_map: Vec<MapLine>, gid_map: Vec<MapLine> },
    /// Exit now (the maps are out of date, or a policy forbids keepers); answered with `Stopped` once the
    /// socket is gone and the lock released, so that a new keeper can start at once.
    Stop,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Here is the namespace (the descriptor travels with this message); `prepared_us` is how long the keeper
    /// took to create and map it, `maps_us` the part spent writing its uid_map and gid_map.
    Namespace {
        prepared_us: u64,
        maps_us: u64,
    },
    Stopped,
    /// The request could not be served (the reason is for --verbose).
    Refused {
        reason: String,
    },
}

/// Sends one message, with descriptors when given (at most four).
pub fn send<T: Serialize>(sock: BorrowedFd<'_>, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg: Vec<ControlMessage<'_>> =
        (!raw.is_empty()).then(|| ControlMessage::ScmRights(&raw)).into_iter().collect();
    let iov = [io::IoSlice::new(&bytes)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message and the descriptors passed with it, if any. EOF is `UnexpectedEof`.
pub fn recv<T: for<'de> Deserialize<'de>>(sock: BorrowedFd<'_>) -> io::Result<(T, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fd) = crate::sys::ns::recv_with_fds(sock, &mut buf)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let msg = serde_json::from_slice(&buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((msg, fd))
}

/// Bounds how long a peer may keep us waiting on this socket.
pub fn set_timeout(sock: BorrowedFd<'_>, limit: std::time::Duration) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let tv = nix::sys::time::TimeVal::new(limit.as_secs() as _, limit.subsec_micros() as _);
    setsockopt(&sock, sockopt::ReceiveTimeout, &tv)?;
    setsockopt(&sock, sockopt::SendTimeout, &tv)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    #[test]
    fn a_reply_carries_a_namespace_descriptor_and_a_request_carries_none() {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let ns = std::fs::File::open("/proc/self/ns/user").unwrap();
        let reply = Reply::Namespace { prepared_us: 12, maps_us: 3 };
        let net = std::fs::File::open("/proc/self/ns/net").unwrap();
        send(a.as_fd(), &reply, &[ns.as_fd(), net.as_fd()]).unwrap();
        let (got, fds) = recv::<Reply>(b.as_fd()).unwrap();
        assert_eq!(got, reply);
        assert_eq!(fds.len(), 2, "both descriptors came along, in order");
        assert_eq!(crate::sys::ns::ns_type(fds[1].as_fd()).unwrap(), libc::CLONE_NEWNET);
        let fd = &fds[0];
        assert_eq!(crate::sys::ns::ns_type(fd.as_fd()).unwrap(), libc::CLONE_NEWUSER);
        assert!(crate::sys::ns::ns_owner_uid(fd.as_fd()).is_ok());
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & libc::FD_CLOEXEC != 0, "a received descriptor must be close-on-exec");
        let req = Request::Namespace { uid_map: vec![MapLine { inside: 0, outside: 0, count: 1 }], gid_map: vec![] };
        send(b.as_fd(), &req, &[]).unwrap();
        let (got, fds) = recv::<Request>(a.as_fd()).unwrap();
        assert!(got == req && fds.is_empty());
        drop(b);
        let eof = recv::<Request>(a.as_fd()).unwrap_err();
        assert_eq!(eof.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
