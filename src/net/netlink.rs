//! One rtnetlink request: set a link's transmit queue length (IFLA_TXQLEN).
//!
//! The SIOCSIFTXQLEN ioctl is refused (EPERM) to the root of a user namespace even for a device of its own
//! network namespace; RTM_NEWLINK checks CAP_NET_ADMIN against the namespace's owner, as it should.

use std::io;

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFLA_TXQLEN: u16 = 13;

/// The request bytes: nlmsghdr, ifinfomsg for `index`, one u32 attribute.
fn request(index: u32, qlen: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    m.extend_from_slice(&[0u8, 0u8]); // ifi_family AF_UNSPEC, pad
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&(index as i32).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
    m.extend_from_slice(&8u16.to_ne_bytes()); // rta_len
    m.extend_from_slice(&IFLA_TXQLEN.to_ne_bytes());
    m.extend_from_slice(&qlen.to_ne_bytes());
    m
}

/// Sets `ifname`'s queue length in the calling process's network namespace.
pub fn set_txqueuelen(ifname: &str, qlen: u32) -> io::Result<()> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let index = nix::net::if_::if_nametoindex(ifname)?;
    let sock = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    sendto(fd, &request(index, qlen), &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
    let mut buf = [0u8; 1024];
    let n = recv(fd, &mut buf, MsgFlags::empty())?;
    // nlmsgerr: header (16 bytes) then a negative errno, or 0 for the acknowledgement.
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
    #[test]
    fn the_request_is_forty_bytes_with_the_attribute_last() {
        let m = super::request(7, 10_000);
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(m[36..40].try_into().unwrap()), 10_000);
    }
}
