//! rdma_cm for multicast: an event channel, UDP-port-space ids bound to a
//! local address, full-member and send-only joins, leaves, and the events
//! that answer them.

use crate::bindings::cm::RdmaCm;
use crate::ffi::*;
use crate::{load, Gid, LoadError, VerbsError};
use std::net::{IpAddr, SocketAddr};
use std::ptr::NonNull;
use std::sync::Arc;

/// An rdma_cm event channel; its fd is readable when an event is pending.
pub struct EventChannel {
    cm: &'static RdmaCm,
    raw: NonNull<rdma_event_channel>,
}

// SAFETY: rdma_cm objects may be used from any thread.
unsafe impl Send for EventChannel {}
unsafe impl Sync for EventChannel {}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: every id holds an Arc to the channel, so none is left.
        unsafe { (self.cm.rdma_destroy_event_channel)(self.raw.as_ptr()) }
    }
}

/// What happened to a join (or to the id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmEventKind {
    AddrResolved,
    /// Address resolution failed (e.g. no route to the address).
    AddrError,
    RouteResolved,
    RouteError,
    MulticastJoin,
    MulticastError,
    AddrChange,
    DeviceRemoval,
    Other(u32),
}

/// One event, already acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmEvent {
    pub kind: CmEventKind,
    pub status: i32,
    /// The id it concerns (compare with `CmId::raw_addr`).
    pub id: usize,
    /// The context given to the join.
    pub context: u64,
    /// For a join: the group's GID, and the Q_Key and QPN to send to.
    pub mgid: Gid,
    /// The group's LID on InfiniBand (0 on RoCE).
    pub mlid: u16,
    /// The service level to send to the group with (InfiniBand).
    pub sl: u8,
    pub qkey: u32,
    pub qpn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Verbs(#[from] VerbsError),
}

impl EventChannel {
    pub fn new() -> Result<Arc<EventChannel>, CmError> {
        let cm = load::rdmacm()?;
        // SAFETY: no preconditions.
        let raw = unsafe { (cm.rdma_create_event_channel)() };
        let raw = NonNull::new(raw).ok_or_else(|| VerbsError::last("rdma_create_event_channel"))?;
        let ch = EventChannel { cm, raw };
        let fd = ch.fd();
        // SAFETY: the channel's own fd; reads must not block the reader.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(VerbsError::last("fcntl(rdma_cm channel)").into());
            }
        }
        Ok(Arc::new(ch))
    }

    pub fn fd(&self) -> libc::c_int {
        // SAFETY: live channel.
        unsafe { self.raw.as_ref().fd }
    }

    /// The next pending event, acknowledged; `None` when there is none.
    pub fn next_event(&self) -> Result<Option<CmEvent>, VerbsError> {
        let mut ev: *mut rdma_cm_event = std::ptr::null_mut();
        // SAFETY: live channel, valid out-pointer.
        let rc = unsafe { (self.cm.rdma_get_cm_event)(self.raw.as_ptr(), &mut ev) };
        if rc != 0 || ev.is_null() {
            let e = VerbsError::last("rdma_get_cm_event");
            return if e.errno == libc::EAGAIN {
                Ok(None)
            } else {
                Err(e)
            };
        }
        // SAFETY: a live event until acknowledged below.
        let out = unsafe {
            let e = &*ev;
            let kind = match e.event {
                RDMA_CM_EVENT_ADDR_RESOLVED => CmEventKind::AddrResolved,
                RDMA_CM_EVENT_ADDR_ERROR => CmEventKind::AddrError,
                RDMA_CM_EVENT_ROUTE_RESOLVED => CmEventKind::RouteResolved,
                RDMA_CM_EVENT_ROUTE_ERROR => CmEventKind::RouteError,
                RDMA_CM_EVENT_MULTICAST_JOIN => CmEventKind::MulticastJoin,
                RDMA_CM_EVENT_MULTICAST_ERROR => CmEventKind::MulticastError,
                RDMA_CM_EVENT_ADDR_CHANGE => CmEventKind::AddrChange,
                RDMA_CM_EVENT_DEVICE_REMOVAL => CmEventKind::DeviceRemoval,
                other => CmEventKind::Other(other),
            };
            let ud = e.param.ud;
            CmEvent {
                kind,
                status: e.status,
                id: e.id as usize,
                context: ud.private_data as u64,
                mgid: ud.ah_attr.grh.dgid.raw,
                mlid: ud.ah_attr.dlid,
                sl: ud.ah_attr.sl,
                qkey: ud.qkey,
                qpn: ud.qp_num,
            }
        };
        // SAFETY: acknowledged once.
        unsafe { (self.cm.rdma_ack_cm_event)(ev) };
        Ok(Some(out))
    }
}

/// The essentials of a resolved route's SA path record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmPath {
    pub dgid: Gid,
    pub dlid: u16,
    pub sl: u8,
    /// Path MTU in bytes (0 when the code is unknown).
    pub mtu: u16,
    /// IBA rate code.
    pub rate: u8,
    pub pkey: u16,
}

/// An rdma_cm id in the UDP port space, bound to a local address.
pub struct CmId {
    ch: Arc<EventChannel>,
    raw: NonNull<rdma_cm_id>,
}

// SAFETY: as the channel.
unsafe impl Send for CmId {}
unsafe impl Sync for CmId {}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: created by rdma_create_id, destroyed once.
        unsafe { (self.ch.cm.rdma_destroy_id)(self.raw.as_ptr()) };
    }
}

/// An address rdma_cm binds to or joins: an IP address (RoCE, or an IB
/// port with a kernel IPoIB netdev), or an InfiniBand GID with its P_Key
/// (`AF_IB`: on IB the group is the IPoIB MGID itself, and an id binds to
/// the port's GID without any netdev).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmAddr {
    Ip(IpAddr),
    Ib { gid: Gid, pkey: u16 },
}

impl CmAddr {
    /// The port space an id for this address lives in: UDP for IP
    /// addresses, IB for `AF_IB` ones.
    pub fn port_space(&self) -> rdma_port_space {
        match self {
            CmAddr::Ip(_) => RDMA_PS_UDP,
            CmAddr::Ib { .. } => RDMA_PS_IB,
        }
    }
}

impl std::fmt::Display for CmAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmAddr::Ip(ip) => write!(f, "{ip}"),
            CmAddr::Ib { gid, pkey } => {
                write!(f, "{} pkey {pkey:#06x}", std::net::Ipv6Addr::from(*gid))
            }
        }
    }
}

/// `AF_IB` (linux/socket.h).
pub const AF_IB: libc::sa_family_t = 27;

/// `struct sockaddr_ib` (rdma/ib.h): not in the generated bindings.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIb {
    sib_family: libc::sa_family_t,
    sib_pkey: u16,
    sib_flowinfo: u32,
    sib_addr: [u8; 16],
    sib_sid: u64,
    sib_sid_mask: u64,
    sib_scope_id: u64,
}

const _: () = assert!(std::mem::size_of::<SockaddrIb>() == 48);
const _: () =
    assert!(std::mem::size_of::<SockaddrIb>() <= std::mem::size_of::<libc::sockaddr_storage>());

/// A socket address as rdma_cm takes it.
fn sockaddr_of(addr: CmAddr) -> libc::sockaddr_storage {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let ip = match addr {
        CmAddr::Ip(ip) => ip,
        CmAddr::Ib { gid, pkey } => {
            // SAFETY: sockaddr_storage is large and aligned enough (asserted above).
            let sib = unsafe { &mut *(&mut ss as *mut _ as *mut SockaddrIb) };
            sib.sib_family = AF_IB;
            sib.sib_pkey = pkey.to_be();
            sib.sib_addr = gid;
            return ss;
        }
    };
    match SocketAddr::new(ip, 0) {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.ip().octets();
        }
    }
    ss
}

impl CmId {
    /// An unbound id on `ch` in port space `ps`.
    pub fn new(ch: &Arc<EventChannel>, ps: rdma_port_space) -> Result<CmId, VerbsError> {
        let mut raw: *mut rdma_cm_id = std::ptr::null_mut();
        // SAFETY: live channel, valid out-pointer.
        let rc =
            unsafe { (ch.cm.rdma_create_id)(ch.raw.as_ptr(), &mut raw, std::ptr::null_mut(), ps) };
        VerbsError::check("rdma_create_id", rc)?;
        let raw = NonNull::new(raw).ok_or_else(|| VerbsError::last("rdma_create_id"))?;
        Ok(CmId {
            ch: ch.clone(),
            raw,
        })
    }

    /// Starts resolving `dst` from `src` (`RDMA_CM_EVENT_ADDR_RESOLVED` or
    /// `ADDR_ERROR` follows), which also binds the id.
    pub fn resolve_addr(
        &self,
        src: CmAddr,
        dst: CmAddr,
        timeout_ms: i32,
    ) -> Result<(), VerbsError> {
        let mut s = sockaddr_of(src);
        let mut d = sockaddr_of(dst);
        // SAFETY: live id; rdma_cm copies the addresses.
        let rc = unsafe {
            (self.ch.cm.rdma_resolve_addr)(
                self.raw.as_ptr(),
                &mut s as *mut _ as *mut libc::sockaddr,
                &mut d as *mut _ as *mut libc::sockaddr,
                timeout_ms,
            )
        };
        VerbsError::check("rdma_resolve_addr", rc)
    }

    /// Asks the SA for the path to the resolved address
    /// (`RDMA_CM_EVENT_ROUTE_RESOLVED` or `ROUTE_ERROR` follows).
    pub fn resolve_route(&self, timeout_ms: i32) -> Result<(), VerbsError> {
        // SAFETY: live id.
        let rc = unsafe { (self.ch.cm.rdma_resolve_route)(self.raw.as_ptr(), timeout_ms) };
        VerbsError::check("rdma_resolve_route", rc)
    }

    /// The first path record of a resolved route.
    pub fn path(&self) -> Option<CmPath> {
        // SAFETY: live id; after ROUTE_RESOLVED `path_rec` holds `num_paths` records.
        unsafe {
            let route = &self.raw.as_ref().route;
            if route.num_paths < 1 || route.path_rec.is_null() {
                return None;
            }
            let p = &*route.path_rec;
            Some(CmPath {
                dgid: p.dgid.raw,
                dlid: u16::from_be(p.dlid),
                sl: p.sl,
                mtu: crate::mtu_bytes(u32::from(p.mtu)),
                rate: p.rate,
                pkey: u16::from_be(p.pkey),
            })
        }
    }

    /// An id on `ch` in `local`'s port space, bound to `local` (which
    /// picks the device and port).
    pub fn bound(ch: &Arc<EventChannel>, local: CmAddr) -> Result<CmId, VerbsError> {
        let id = CmId::new(ch, local.port_space())?;
        let raw = id.raw;
        let mut ss = sockaddr_of(local);
        // SAFETY: live id, a valid address.
        let rc = unsafe {
            (ch.cm.rdma_bind_addr)(raw.as_ptr(), &mut ss as *mut _ as *mut libc::sockaddr)
        };
        VerbsError::check("rdma_bind_addr", rc)?;
        Ok(id)
    }

    /// This id's identity in events.
    pub fn raw_addr(&self) -> usize {
        self.raw.as_ptr() as usize
    }

    /// The port the id is bound to.
    pub fn port_num(&self) -> u8 {
        // SAFETY: live id.
        unsafe { self.raw.as_ref().port_num }
    }

    /// Starts a join of `group`; `context` comes back in its event.
    /// Send-only joins are `RDMA_MC_JOIN_FLAG_SENDONLY_FULLMEMBER`.
    pub fn join(&self, group: CmAddr, send_only: bool, context: u64) -> Result<(), VerbsError> {
        let mut ss = sockaddr_of(group);
        let addr = &mut ss as *mut _ as *mut libc::sockaddr;
        let ctx = context as *mut libc::c_void;
        // SAFETY: live id; rdma_cm copies the address.
        let rc = unsafe {
            if send_only {
                let mut attr = rdma_cm_join_mc_attr_ex {
                    comp_mask: RDMA_CM_JOIN_MC_ATTR_ADDRESS | RDMA_CM_JOIN_MC_ATTR_JOIN_FLAGS,
                    join_flags: RDMA_MC_JOIN_FLAG_SENDONLY_FULLMEMBER,
                    addr,
                };
                (self.ch.cm.rdma_join_multicast_ex)(self.raw.as_ptr(), &mut attr, ctx)
            } else {
                (self.ch.cm.rdma_join_multicast)(self.raw.as_ptr(), addr, ctx)
            }
        };
        VerbsError::check("rdma_join_multicast", rc)
    }

    /// Leaves `group` (joined through this id).
    pub fn leave(&self, group: CmAddr) -> Result<(), VerbsError> {
        let mut ss = sockaddr_of(group);
        // SAFETY: live id.
        let rc = unsafe {
            (self.ch.cm.rdma_leave_multicast)(
                self.raw.as_ptr(),
                &mut ss as *mut _ as *mut libc::sockaddr,
            )
        };
        VerbsError::check("rdma_leave_multicast", rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ib_addresses_are_sockaddr_ib_with_the_gid_and_pkey() {
        let mgid = [
            0xff, 0x12, 0x40, 0x1b, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        ];
        let ss = sockaddr_of(CmAddr::Ib {
            gid: mgid,
            pkey: 0x8001,
        });
        // SAFETY: written as a sockaddr_ib above.
        let sib = unsafe { &*(&ss as *const _ as *const SockaddrIb) };
        assert_eq!(sib.sib_family, AF_IB);
        assert_eq!(u16::from_be(sib.sib_pkey), 0x8001);
        assert_eq!(sib.sib_addr, mgid);
        assert_eq!(CmAddr::Ib { gid: mgid, pkey: 1 }.port_space(), RDMA_PS_IB);
        let ip = CmAddr::Ip("239.1.2.3".parse().unwrap());
        assert_eq!(ip.port_space(), RDMA_PS_UDP);
        assert_eq!(
            sockaddr_of(ip).ss_family,
            libc::AF_INET as libc::sa_family_t
        );
    }
}
