//! Pre-allocated `mmsghdr`/`iovec`/address/control arrays for one burst,
//! so neither direction allocates per packet.

use super::socket::zeroed_storage;
use std::mem::size_of;

/// Most messages one `sendmmsg`/`recvmmsg` moves.
pub const MAX_BURST: usize = 64;
/// Most iovecs behind them: eight full GSO sends of messages sent where
/// they lie, one iovec each.
pub const MAX_IOVS: usize = 8 * MAX_BURST;
/// The UDP GSO segment size control message (linux/udp.h).
const UDP_SEGMENT: libc::c_int = 103;
/// The UDP GRO segment size control message on receive (linux/udp.h).
pub const UDP_GRO: libc::c_int = 104;
/// Room for an IP_PKTINFO or IPV6_PKTINFO control message and a UDP_GRO
/// one (u64 for alignment).
const CMSG_WORDS: usize = 12;

pub struct Slots {
    pub msgs: [libc::mmsghdr; MAX_BURST],
    pub iovs: [libc::iovec; MAX_IOVS],
    pub names: [libc::sockaddr_storage; MAX_BURST],
    pub cmsgs: [[u64; CMSG_WORDS]; MAX_BURST],
}

// SAFETY: the raw pointers inside `msgs` and `iovs` are rewritten right
// before every syscall and never dereferenced by Rust code; between calls
// they are stale values only.
unsafe impl Send for Slots {}

impl Slots {
    pub fn new() -> Box<Slots> {
        // SAFETY: every field is plain old data (integers and raw pointers);
        // all zeroes is a valid value for each.
        let msgs: [libc::mmsghdr; MAX_BURST] = unsafe { std::mem::zeroed() };
        let iovs: [libc::iovec; MAX_IOVS] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOVS];
        Box::new(Slots {
            msgs,
            iovs,
            names: [zeroed_storage(); MAX_BURST],
            cmsgs: [[0; CMSG_WORDS]; MAX_BURST],
        })
    }

    /// Points message `i` at its iovec (`base`, `len`), its address slot of
    /// `name_len` bytes and, for receives, its control buffer.
    pub fn link(&mut self, i: usize, base: *mut u8, len: usize, name_len: u32, control: bool) {
        self.iovs[i] = libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        };
        let hdr = &mut self.msgs[i].msg_hdr;
        hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = name_len;
        hdr.msg_iov = &mut self.iovs[i];
        hdr.msg_iovlen = 1;
        if control {
            hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            hdr.msg_controllen = CMSG_WORDS * size_of::<u64>();
        } else {
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
        }
        hdr.msg_flags = 0;
        self.msgs[i].msg_len = 0;
    }

    /// Points iovec `j` at `len` bytes at `base`.
    pub fn set_iov(&mut self, j: usize, base: *mut u8, len: usize) {
        self.iovs[j] = libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        };
    }

    /// Makes message `i` the `count` iovecs from `first` (set with
    /// `set_iov`), sent to its address slot; with `segment`, as one UDP GSO
    /// send of segments that size.
    pub fn link_run(
        &mut self,
        i: usize,
        first: usize,
        count: usize,
        name_len: u32,
        segment: Option<u16>,
    ) {
        let hdr = &mut self.msgs[i].msg_hdr;
        hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = name_len;
        hdr.msg_iov = &mut self.iovs[first];
        hdr.msg_iovlen = count;
        hdr.msg_flags = 0;
        self.msgs[i].msg_len = 0;
        let Some(size) = segment else {
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            return;
        };
        hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 96-byte control
        // slot; the header and data are written inside it, unaligned-safe.
        unsafe {
            hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(hdr);
            if cmsg.is_null() {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                return;
            }
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
        }
    }

    /// One non-blocking `recvmmsg` into the first `n` linked messages: how
    /// many came (0 for none or an interrupt), `None` on a real error.
    ///
    /// # Safety
    /// The first `n` messages point at buffers and at this struct's address
    /// and control slots that nothing else uses during the call.
    pub unsafe fn recv_batch(&mut self, fd: std::os::fd::RawFd, n: usize) -> Option<usize> {
        let rc = libc::recvmmsg(
            fd,
            self.msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        );
        if rc >= 0 {
            return Some(rc as usize);
        }
        let err = std::io::Error::last_os_error().raw_os_error();
        matches!(err, Some(libc::EAGAIN) | Some(libc::EINTR)).then_some(0)
    }

    /// The segment size of received message `i` when the kernel handed up
    /// several coalesced datagrams at once (UDP_GRO), from its control message.
    pub fn gro_segment(&self, i: usize) -> Option<usize> {
        let hdr = &self.msgs[i].msg_hdr;
        // SAFETY: as in `pktinfo_dst`: the CMSG_* helpers stay inside the
        // control buffer the kernel filled, the payload is read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
            while !cmsg.is_null() {
                let c = &*cmsg;
                if c.cmsg_level == libc::SOL_UDP && c.cmsg_type == UDP_GRO {
                    let size: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    return usize::try_from(size).ok().filter(|&s| s > 0);
                }
                cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
            }
        }
        None
    }

    /// The destination address of received message `i` from its
    /// IP_PKTINFO / IPV6_PKTINFO control message.
    pub fn pktinfo_dst(&self, i: usize) -> Option<std::net::IpAddr> {
        let hdr = &self.msgs[i].msg_hdr;
        // SAFETY: `hdr` describes the control buffer the kernel filled
        // (msg_controllen was updated by recvmmsg); the CMSG_* helpers stay
        // inside it and the payload is read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
            while !cmsg.is_null() {
                let c = &*cmsg;
                if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_PKTINFO {
                    let info: libc::in_pktinfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    return Some(
                        std::net::Ipv4Addr::from(info.ipi_addr.s_addr.to_ne_bytes()).into(),
                    );
                }
                if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                    let info: libc::in6_pktinfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    return Some(std::net::Ipv6Addr::from(info.ipi6_addr.s6_addr).into());
                }
                cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
            }
        }
        None
    }
}
