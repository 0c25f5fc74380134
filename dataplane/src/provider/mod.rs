//! Providers: the burst interface to a UD queue pair, and its implementations.
//!
//! Lcores are generic over `Provider` (monomorphized: no dynamic dispatch on
//! the hot path). Every call moves a whole burst.

pub mod fabric;
pub mod null;
pub mod rocev2;
pub mod verbs;
mod xstats;

pub use xstats::ProviderXstats;

use crate::mem::Mbuf;
use crate::wire::grh::{HEADER_LEN as GRH_LEN, NEXT_HEADER_IBA};
use crate::wire::{Gid, GrhPacket, GrhRepr};
use arrayvec::ArrayVec;

/// Default burst size, as in DPDK.
pub const BURST: usize = 32;
pub type Burst<T> = ArrayVec<T, BURST>;

/// Multicast destinations use this QPN (IBA 10.8.1).
pub const MCAST_QPN: u32 = 0xFF_FFFF;
/// LIDs at and above this value are multicast LIDs.
pub const MLID_BASE: u16 = 0xC000;

/// What a port and its UD QP look like to the layer above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAttr {
    pub lid: u16,
    pub gid: Gid,
    pub qpn: u32,
    pub pkey: u16,
    pub qkey: u32,
    /// Largest UD message (the IB MTU, e.g. 2048).
    pub max_msg: u16,
}

/// Attributes an address handle is created from (a path record's essentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AhAttr {
    pub dlid: u16,
    /// Present for global routing and for multicast (the MGID).
    pub dgid: Option<Gid>,
    pub sl: u8,
}

/// A UD send work request: the mbuf moves into the provider. `repr(C)`
/// with the mbuf first: the TX fast path copies the rest from a template.
#[derive(Debug)]
#[repr(C)]
pub struct SendWr<A> {
    pub mbuf: Mbuf,
    pub ah: A,
    pub remote_qpn: u32,
    pub remote_qkey: u32,
}

/// A received UD message with what the completion tells about it: only what
/// the IPoIB layer needs per packet, so a completion is 24 bytes. As on a
/// real UD QP, the GRH (when the message carried one) is in the receive
/// buffer: the 40 bytes of headroom right before the data (see `grh`).
#[derive(Debug)]
#[repr(C)]
pub struct RecvCompletion {
    pub mbuf: Mbuf,
    pub src_qpn: u32,
    pub slid: u16,
    pub multicast: bool,
    /// A GRH precedes the data in the headroom.
    pub has_grh: bool,
}

// The layout `RecvCompletion::tail` relies on.
const _: () = {
    assert!(std::mem::offset_of!(RecvCompletion, src_qpn) == 16);
    assert!(std::mem::offset_of!(RecvCompletion, slid) == 20);
    assert!(std::mem::offset_of!(RecvCompletion, multicast) == 22);
    assert!(std::mem::offset_of!(RecvCompletion, has_grh) == 23);
    assert!(std::mem::size_of::<RecvCompletion>() == 24);
};

impl RecvCompletion {
    /// Everything after the mbuf as one word: a provider filling many
    /// completions from one source writes it with one store (see
    /// `write_with_tail`).
    #[inline(always)]
    pub fn tail(src_qpn: u32, slid: u16, multicast: bool, has_grh: bool) -> u64 {
        let [a, b, c, d] = src_qpn.to_ne_bytes();
        let [e, f] = slid.to_ne_bytes();
        u64::from_ne_bytes([a, b, c, d, e, f, multicast as u8, has_grh as u8])
    }

    /// Writes a completion of `mbuf` with the rest given by `tail`.
    ///
    /// # Safety
    /// `dst` is valid for writing a `RecvCompletion`.
    #[inline(always)]
    pub unsafe fn write_with_tail(dst: *mut RecvCompletion, mbuf: Mbuf, tail: u64) {
        std::ptr::addr_of_mut!((*dst).mbuf).write(mbuf);
        // SAFETY: the tail is the last 8 bytes (layout asserted above), and
        // its bytes are valid values of each field (0/1 for the booleans).
        dst.cast::<u8>().add(16).cast::<u64>().write_unaligned(tail);
    }

    /// The GRH the message came with, if any.
    pub fn grh(&self) -> Option<GrhRepr> {
        if !self.has_grh {
            return None;
        }
        let bytes = self.mbuf.headroom_bytes(GRH_LEN)?;
        GrhRepr::parse(&GrhPacket::new_unchecked(bytes)).ok()
    }
    /// The source GID (from the GRH).
    pub fn sgid(&self) -> Option<Gid> {
        self.grh().map(|g| g.sgid)
    }
    /// The destination GID (from the GRH): the MGID for multicast.
    pub fn dgid(&self) -> Option<Gid> {
        self.grh().map(|g| g.dgid)
    }
}

/// Writes a GRH into the headroom in front of `m`'s data, as a UD receive
/// buffer holds it. False (and nothing written) when the buffer is shared or
/// has no room.
pub fn put_grh(m: &mut Mbuf, sgid: Gid, dgid: Gid) -> bool {
    GrhTemplate::new(sgid, dgid).put(m)
}

/// The GRH of messages from one source to one destination, emitted once:
/// each message then gets a copy with its payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrhTemplate([u8; GRH_LEN]);

impl GrhTemplate {
    pub fn new(sgid: Gid, dgid: Gid) -> Self {
        let mut bytes = [0u8; GRH_LEN];
        let grh = GrhRepr {
            traffic_class: 0,
            flow_label: 0,
            payload_len: 0,
            next_header: NEXT_HEADER_IBA,
            hop_limit: 1,
            sgid,
            dgid,
        };
        // 40 bytes always hold a GRH.
        let _ = grh.emit(&mut GrhPacket::new_unchecked(&mut bytes[..]));
        GrhTemplate(bytes)
    }

    /// As `put_grh`.
    #[inline]
    pub fn put(&self, m: &mut Mbuf) -> bool {
        let payload_len = m.len() as u16;
        let Some(h) = m.prepend(GRH_LEN) else {
            return false;
        };
        h.copy_from_slice(&self.0);
        GrhPacket::new_unchecked(h).set_payload_len(payload_len);
        m.adj(GRH_LEN);
        true
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("no port with LID {0:#x} on this fabric")]
    NoSuchLid(u16),
    #[error("no port with GID {0} on this fabric")]
    NoSuchGid(Gid),
    #[error("invalid address handle: {0}")]
    InvalidAh(&'static str),
    #[error("port index {0} does not exist")]
    NoSuchPort(usize),
    /// A verb failed (its name and errno).
    #[error("{0}")]
    Verbs(String),
}

/// One UD queue pair driven by one lcore.
pub trait Provider: Send {
    /// The provider's address handle: created once per path, copied per send.
    type Ah: Copy + Send + Sync + std::fmt::Debug + 'static;

    fn port(&self) -> PortAttr;

    fn create_ah(&mut self, attr: &AhAttr) -> Result<Self::Ah, ProviderError>;

    /// The destination GID an address handle sends to, where the provider
    /// knows it (packet capture names it; never called per packet otherwise).
    fn ah_dgid(&self, _ah: &Self::Ah) -> Option<Gid> {
        None
    }

    /// Posts work requests from the front of `wrs`; returns how many were taken.
    /// Requests left in `wrs` were not accepted (send queue full): the caller
    /// retries or drops them.
    fn post_send<const N: usize>(&mut self, wrs: &mut ArrayVec<SendWr<Self::Ah>, N>) -> usize;

    /// Appends up to `out.remaining_capacity()` received messages.
    fn poll_recv<const N: usize>(&mut self, out: &mut ArrayVec<RecvCompletion, N>) -> usize;

    /// Zero-copy poll, for providers that keep ready completions in memory
    /// of their own: up to `max` of them, left in place, as (first, count).
    /// The caller moves each one out exactly once (`ptr::read`) and then
    /// gives the slots back with `consume_recv(count)` before any other
    /// call. `None` (the default): use `poll_recv`.
    #[inline]
    fn peek_recv(&mut self, _max: usize) -> Option<(*mut RecvCompletion, usize)> {
        None
    }

    /// Gives back the slots of `n` completions `peek_recv` returned.
    ///
    /// # Safety
    /// The last `peek_recv` returned at least `n` completions, and the first
    /// `n` were moved out.
    #[inline]
    unsafe fn consume_recv(&mut self, _n: usize) {}

    /// Hands buffers of finished sends back to the calling lcore's cache, so
    /// they go round one lcore instead of through the pool's shared list.
    /// Providers that pass buffers on (the fabric) have nothing to reap.
    #[inline]
    fn reap(&mut self, _cache: &mut crate::mem::LcoreCache) {}

    /// The provider's own counters as its lcore publishes them, for readers
    /// on other threads (`ipoibctl stats`); `None` where it has none beyond
    /// the interface's.
    fn xstats(&self) -> Option<std::sync::Arc<ProviderXstats>> {
        None
    }
}
