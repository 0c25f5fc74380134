//! Just enough rtnetlink to add an address to a device: one RTM_NEWADDR
//! request and its acknowledgement. `SIOCSIFADDR` sets a single IPv4
//! address; netlink takes any number, of both families, the same way.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// No duplicate address detection (a TUN device has no neighbours to ask).
const IFA_F_NODAD: u8 = 0x02;

/// An RTM_NEWADDR message: header, `ifaddrmsg`, then IFA_LOCAL and
/// IFA_ADDRESS both set to the address (as `ip addr add` does, which on a
/// point-to-point device means "no peer": the prefix route goes to it).
pub(crate) fn new_addr_message(ifindex: u32, addr: IpAddr, prefix: u8, seq: u32) -> Vec<u8> {
    let (family, bytes): (u8, Vec<u8>) = match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let mut m = vec![0u8; NLMSG_HDR];
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    m[4..6].copy_from_slice(&libc::RTM_NEWADDR.to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // ifaddrmsg: family, prefix length, flags, scope (universe), index.
    m.extend([family, prefix, IFA_F_NODAD, 0]);
    m.extend(ifindex.to_ne_bytes());
    for kind in [IFA_LOCAL, IFA_ADDRESS] {
        let len = 4 + bytes.len();
        m.extend((len as u16).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend(&bytes);
        // Attributes are 4-byte aligned (both address sizes already are).
        m.resize(m.len().next_multiple_of(4), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// The errno of an acknowledgement to `seq` (0 = success), if `msg` is one.
pub(crate) fn ack_errno(msg: &[u8], seq: u32) -> Option<i32> {
    if msg.len() < NLMSG_HDR + 4 {
        return None;
    }
    let kind = u16::from_ne_bytes([msg[4], msg[5]]);
    let got = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
    if kind != NLMSG_ERROR || got != seq {
        return None;
    }
    let err = i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]);
    Some(-err)
}

/// Adds `addr/prefix` to the device `ifindex` (replacing it if present).
pub(crate) fn add_address(ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
    // SAFETY: plain socket call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let seq = 1;
    let msg = new_addr_message(ifindex, addr, prefix, seq);
    // SAFETY: a zeroed sockaddr_nl is the kernel as destination.
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: msg and to are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            std::ptr::addr_of!(to).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        match ack_errno(&buf[..n as usize], seq) {
            Some(0) => return Ok(()),
            Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
            None => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_addr_message_layout() {
        let m = new_addr_message(7, "10.9.0.1".parse().unwrap(), 24, 5);
        // Header 16 + ifaddrmsg 8 + two 8-byte attributes.
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), libc::RTM_NEWADDR);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 5);
        assert_eq!(&m[16..20], &[libc::AF_INET as u8, 24, IFA_F_NODAD, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(&m[28..32], &[10, 9, 0, 1]);
        assert_eq!(&m[36..40], &[10, 9, 0, 1]);
        let m6 = new_addr_message(7, "fd00::1".parse().unwrap(), 64, 5);
        assert_eq!(m6.len(), 16 + 8 + 2 * 20);
        assert_eq!(m6[16], libc::AF_INET6 as u8);
    }

    #[test]
    fn acks_are_matched_by_sequence() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[8..12].copy_from_slice(&9u32.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(ack_errno(&ack, 9), Some(libc::EPERM));
        assert_eq!(ack_errno(&ack, 8), None);
        assert_eq!(ack_errno(&ack[..10], 9), None);
        ack[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(ack_errno(&ack, 9), Some(0));
    }
}
