//! One rtnetlink request, built by hand: setting a link's transmit queue length. The ioctl
//! (SIOCSIFTXQLEN) needs CAP_NET_ADMIN in the *initial* user namespace, rtnetlink only in the
//! namespace owning the network namespace, which is what a rootless container has.

use std::io;

use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFLA_TXQLEN: u16 = 13;

/// nlmsghdr (16) + ifinfomsg (16) + one u32 attribute (8): native byte order, as the kernel reads it.
fn txqlen_request(ifindex: u32, qlen: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    m.extend_from_slice(&[0, 0]); // ifi_family AF_UNSPEC, padding
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
    m.extend_from_slice(&8u16.to_ne_bytes()); // rta_len
    m.extend_from_slice(&IFLA_TXQLEN.to_ne_bytes());
    m.extend_from_slice(&qlen.to_ne_bytes());
    m
}

/// Sets the transmit queue length of `ifname` in the calling thread's network namespace.
pub fn set_txqueuelen(ifname: &str, qlen: u32) -> io::Result<()> {
    let index = nix::net::if_::if_nametoindex(ifname)?;
    let sock = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &NetlinkAddr::new(0, 0))?;
    send(std::os::fd::AsRawFd::as_raw_fd(&sock), &txqlen_request(index, qlen), MsgFlags::empty())?;
    let mut buf = [0u8; 1024];
    let n = recv(std::os::fd::AsRawFd::as_raw_fd(&sock), &mut buf, MsgFlags::empty())?;
    if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != NLMSG_ERROR {
        return Err(io::Error::other("unexpected rtnetlink answer"));
    }
    match i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let m = txqlen_request(7, 10_000);
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(m[34..36].try_into().unwrap()), IFLA_TXQLEN);
        assert_eq!(u32::from_ne_bytes(m[36..40].try_into().unwrap()), 10_000);
    }
}
