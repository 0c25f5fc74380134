//! The UDP sockets of a QP, set up as rxe's packets look on the wire:
//! DF set (and so IP ID 0), TTL 64 also for multicast, UDP checksum 0.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const TTL: libc::c_int = 64;

fn setopt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for `bytes` of receive buffer: SO_RCVBUFFORCE (root, past
/// rmem_max), else SO_RCVBUF (capped at rmem_max by the kernel).
pub fn set_recv_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    setopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v)
        .or_else(|_| setopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v))
}

/// Lets the kernel hand up runs of datagrams as one buffer (UDP_GRO).
pub fn set_udp_gro(fd: RawFd) -> io::Result<()> {
    setopt(fd, libc::SOL_UDP, super::slots::UDP_GRO, 1)
}

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h; not in libc's Linux list).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// The classic BPF program that picks, for a datagram to the sockets of one
/// reuseport group, the socket whose QP the BTH's destination QPN names:
/// `qpns[i]` is the QPN of the group's i-th socket (in bind order). The
/// kernel runs it on the UDP payload; an unknown QPN returns an index past
/// the group, which makes the kernel fall back to its hash (the QP there
/// counts the wrong QPN).
pub fn qpn_steering_program(qpns: &[u32]) -> Vec<libc::sock_filter> {
    let op = |code: u32| code as u16;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: op(code),
        jt: 0,
        jf: 0,
        k,
    };
    let mut prog = Vec::with_capacity(3 + 2 * qpns.len());
    // A = BTH bytes 4..8 (reserved byte, 24-bit destination QPN).
    prog.push(stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4));
    prog.push(stmt(
        libc::BPF_ALU | libc::BPF_AND | libc::BPF_K,
        0x00FF_FFFF,
    ));
    for (i, &qpn) in qpns.iter().enumerate() {
        // Equal: fall through to `ret i`; else skip it.
        prog.push(libc::sock_filter {
            code: op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            jt: 0,
            jf: 1,
            k: qpn,
        });
        prog.push(stmt(libc::BPF_RET | libc::BPF_K, i as u32));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, u32::MAX));
    prog
}

/// Attaches `qpn_steering_program(qpns)` to the reuseport group of `fd`.
pub fn steer_by_qpn(fd: RawFd, qpns: &[u32]) -> io::Result<()> {
    let prog = qpn_steering_program(qpns);
    let len = u16::try_from(prog.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many QPs to steer"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `addr` into `storage`; returns the length to pass to the kernel.
pub fn to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            sin.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = 0;
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads the address the kernel wrote into `storage`.
pub fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A non-blocking UDP socket bound to `addr` with SO_REUSEPORT (one socket
/// per lcore may share the address) and rxe's header rules. `multicast_loop`
/// decides whether this host's other sockets see its multicast sends.
/// `udp_checksum` false sends UDP checksum 0 as rxe does (IPv4 only; UDP
/// GSO needs the checksum).
pub fn bind_udp(addr: SocketAddr, multicast_loop: bool, udp_checksum: bool) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let s = fd.as_raw_fd();
    setopt(s, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let loop_on = libc::c_int::from(multicast_loop);
    match addr {
        SocketAddr::V4(_) => {
            setopt(
                s,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            )?;
            setopt(s, libc::IPPROTO_IP, libc::IP_TTL, TTL)?;
            setopt(s, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, TTL)?;
            setopt(s, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, loop_on)?;
            // Only the groups this socket joined, not every group of the host.
            setopt(s, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, 0)?;
            setopt(s, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
            // rxe sends UDP checksum 0 (the ICRC protects the datagram).
            if !udp_checksum {
                setopt(s, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1)?;
            }
        }
        SocketAddr::V6(_) => {
            setopt(s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
            setopt(
                s,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
            )?;
            setopt(s, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, TTL)?;
            setopt(s, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, TTL)?;
            setopt(s, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, loop_on)?;
            setopt(s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            // rxe sends UDP checksum 0 over IPv6 too (the ICRC protects the
            // datagram); without this the kernel drops such datagrams.
            setopt(s, libc::SOL_UDP, libc::UDP_NO_CHECK6_RX, 1)?;
        }
    }
    let mut storage: libc::sockaddr_storage = zeroed_storage();
    let len = to_storage(addr, &mut storage);
    // SAFETY: `storage` holds a valid address of `len` bytes.
    let rc = unsafe { libc::bind(s, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // Kernel rxe (or another program without SO_REUSEPORT) holding the
        // port is the usual cause: say which address.
        return Err(io::Error::new(
            e.kind(),
            format!("cannot bind UDP {addr}: {e}"),
        ));
    }
    Ok(fd)
}

/// Sends this socket's IPv4 multicast out of the interface that owns `local`.
pub fn set_multicast_if(fd: RawFd, local: Ipv4Addr) -> io::Result<()> {
    let addr = libc::in_addr {
        s_addr: u32::from_ne_bytes(local.octets()),
    };
    // SAFETY: `addr` is a live in_addr and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&addr as *const libc::in_addr).cast(),
            size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An all-zero sockaddr_storage.
pub fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The socket a QP receives multicast on, shareable with the control plane:
/// a full-member join is `IP_ADD_MEMBERSHIP` on it (the kernel sends the
/// IGMP report), a leave `IP_DROP_MEMBERSHIP`.
#[derive(Debug, Clone)]
pub struct McastSocket {
    fd: Arc<OwnedFd>,
    /// The address whose interface joins.
    local: IpAddr,
    /// Groups joined: the QP polls this socket only when there is one.
    groups: Arc<AtomicUsize>,
}

impl McastSocket {
    pub(super) fn new(fd: Arc<OwnedFd>, local: IpAddr, groups: Arc<AtomicUsize>) -> Self {
        McastSocket { fd, local, groups }
    }

    /// The local address whose interface joins.
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// Joins `group` (the kernel sends an IGMP/MLD report).
    pub fn join(&self, group: IpAddr) -> io::Result<()> {
        self.membership(group, true)?;
        self.groups.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Leaves `group`.
    pub fn leave(&self, group: IpAddr) -> io::Result<()> {
        self.membership(group, false)?;
        let _ = self
            .groups
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        Ok(())
    }

    fn membership(&self, group: IpAddr, join: bool) -> io::Result<()> {
        let s = self.fd.as_raw_fd();
        let rc = match (group, self.local) {
            (IpAddr::V4(g), IpAddr::V4(local)) => {
                let mreq = libc::ip_mreq {
                    imr_multiaddr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(g.octets()),
                    },
                    imr_interface: libc::in_addr {
                        s_addr: u32::from_ne_bytes(local.octets()),
                    },
                };
                let name = if join {
                    libc::IP_ADD_MEMBERSHIP
                } else {
                    libc::IP_DROP_MEMBERSHIP
                };
                // SAFETY: `mreq` is a live ip_mreq and its size is passed with it.
                unsafe {
                    libc::setsockopt(
                        s,
                        libc::IPPROTO_IP,
                        name,
                        (&mreq as *const libc::ip_mreq).cast(),
                        size_of::<libc::ip_mreq>() as libc::socklen_t,
                    )
                }
            }
            (IpAddr::V6(g), IpAddr::V6(_)) => {
                let mreq = libc::ipv6_mreq {
                    ipv6mr_multiaddr: libc::in6_addr {
                        s6_addr: g.octets(),
                    },
                    ipv6mr_interface: 0,
                };
                let name = if join {
                    libc::IPV6_ADD_MEMBERSHIP
                } else {
                    libc::IPV6_DROP_MEMBERSHIP
                };
                // SAFETY: `mreq` is a live ipv6_mreq and its size is passed with it.
                unsafe {
                    libc::setsockopt(
                        s,
                        libc::IPPROTO_IPV6,
                        name,
                        (&mreq as *const libc::ipv6_mreq).cast(),
                        size_of::<libc::ipv6_mreq>() as libc::socklen_t,
                    )
                }
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "group and local address differ in family",
                ))
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
