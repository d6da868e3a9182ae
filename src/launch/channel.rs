//! A SEQPACKET socketpair carrying [`Msg`] values as JSON, one message per packet.
//!
//! SEQPACKET keeps message boundaries and reports the peer's close as end-of-file, which is how P0 learns that
//! the payload has exec'd (every child's copy of the socket is close-on-exec).

use super::msg::Msg;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("sync socket: {0}")]
    Io(#[from] nix::Error),
    #[error("sync socket: peer closed the connection while burrow waited for {expected}")]
    Closed { expected: &'static str },
    #[error("sync socket: malformed message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("sync socket: expected {expected}, got {got:?}")]
    Unexpected { expected: &'static str, got: Msg },
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

/// Creates the two ends (both close-on-exec).
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// A second descriptor for the same end (close-on-exec).
    pub fn try_clone(&self) -> std::io::Result<Channel> {
        Ok(Channel { fd: self.fd.try_clone()? })
    }

    pub fn send(&self, msg: &Msg) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(msg)?;
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// Wraps a connected SEQPACKET socket (the control socket of a running container's init).
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// Sends `msg` with descriptors attached (SCM_RIGHTS): a pty master, stdio for `exec`.
    pub fn send_with_fds(&self, msg: &Msg, fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        use nix::sys::socket::{sendmsg, ControlMessage};
        let bytes = serde_json::to_vec(msg)?;
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let iov = [std::io::IoSlice::new(&bytes)];
        loop {
            match sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
                Err(nix::Error::EINTR) => continue,
                other => return other.map(drop).map_err(ChannelError::from),
            }
        }
    }

    /// Receives one message and the descriptors attached to it (close-on-exec); `Ok((None, _))` at end of file.
    pub fn recv_with_fds(&self) -> Result<(Option<Msg>, Vec<OwnedFd>), ChannelError> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned};
        let mut buf = vec![0u8; 64 * 1024];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let (n, fds) = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(m) => {
                    let mut fds = Vec::new();
                    for c in m.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(crate::sys::adopt_received(raw));
                        }
                    }
                    break (m.bytes, fds);
                }
            }
        };
        if n == 0 {
            return Ok((None, fds));
        }
        Ok((Some(serde_json::from_slice(&buf[..n])?), fds))
    }

    /// Receives one message; `Ok(None)` when every peer has closed its end.
    pub fn recv(&self) -> Result<Option<Msg>, ChannelError> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&buf[..n])?))
    }

    /// Waits for exactly `want`; a `Failed` message or anything else is an error the caller reports.
    fn expect(&self, expected: &'static str, matches: impl Fn(&Msg) -> bool) -> Result<Msg, ChannelError> {
        match self.recv()? {
            Some(m) if matches(&m) => Ok(m),
            Some(got) => Err(ChannelError::Unexpected { expected, got }),
            None => Err(ChannelError::Closed { expected }),
        }
    }

    pub fn wait_for_unshared(&self) -> Result<(), ChannelError> {
        self.expect("Unshared", |m| *m == Msg::Unshared).map(drop)
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
