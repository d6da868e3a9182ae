//! A SEQPACKET socketpair carrying [`Msg`] values as JSON, one message per packet.
//!
//! SEQPACKET keeps message boundaries and reports the peer's close as end-of-file, which is how P0 learns that
//! the payload has exec'd (every child's copy of the socket is close-on-exec).

use super::msg::Msg;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

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
