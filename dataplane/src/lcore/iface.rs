//! One interface on one lcore: its UD QP, the ring producers fill, the ring
//! the application drains, and the per-burst TX and RX paths.

use super::mcast_tx::McastTx;
use super::neigh::{NeighEntry, NeighTable};
use crate::capture::Tap;
use crate::mem::{LcoreCache, Mbuf};
use crate::provider::{AhAttr, PortAttr, Provider, RecvCompletion, SendWr, BURST, MCAST_QPN};
use crate::ring::spsc;
use crate::stats::{BurstCounts, DpDrop, IfaceStats};
use crate::tables::{JoinRequestQueue, McastTable, Published, RequestQueue, SnapshotReader};
use crate::wire::ipoib::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, HEADER_LEN};
use crate::wire::mgid::mgid_for_ip;
use crate::wire::Gid;
use arrayvec::ArrayVec;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Static facts about an interface.
#[derive(Debug, Clone)]
pub struct IfaceConfig {
    pub name: String,
    pub ifindex: u16,
    /// IPoIB MTU: the largest IP packet.
    pub mtu: u16,
    pub pkey: u16,
    /// Multicast scope nibble of the link (2 = link-local).
    pub scope: u8,
}

/// The channels an interface is wired to.
pub struct IfaceWiring<A> {
    /// Packets (IP, headroom intact) from producers, one ring per producer.
    pub tx_in: Vec<spsc::Consumer<Mbuf>>,
    /// Received IP packets for the application; `None` makes this a sink.
    pub rx_out: Option<spsc::Producer<Mbuf>>,
    pub neigh: Published<NeighTable<A>>,
    pub mcast: Published<McastTable>,
    pub join_requests: Arc<JoinRequestQueue>,
    pub stats: Arc<IfaceStats>,
}

/// Where the control plane wants a frame or packet sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlDest<A> {
    Unicast(NeighEntry<A>),
    /// To a multicast group (the broadcast or a solicited-node group).
    Multicast(Gid),
}

/// A whole IPoIB frame (header included) the control plane hands to the lcore.
#[derive(Debug)]
pub struct CtrlSend<A> {
    pub mbuf: Mbuf,
    pub to: CtrlDest<A>,
}

/// The lcore's side of address resolution: misses go up with their packet,
/// ARP/ND frames go up, and what control wants sent comes down. Every
/// channel is bounded and lock-free; a full one is a counted drop.
pub struct CtrlChannels<A> {
    /// (destination, packet with its IPoIB header) for a neighbour not in the table.
    pub resolve: Arc<RequestQueue<(IpAddr, Mbuf)>>,
    /// Received ARP and ND frames, IPoIB header included.
    pub to_control: spsc::Producer<Mbuf>,
    pub from_control: spsc::Consumer<CtrlSend<A>>,
}

pub struct Iface<P: Provider> {
    cfg: IfaceConfig,
    provider: P,
    port: PortAttr,
    tx_in: Vec<spsc::Consumer<Mbuf>>,
    /// Ring to start the next TX burst from, so no producer starves the others.
    tx_next: usize,
    rx_out: Option<spsc::Producer<Mbuf>>,
    neigh: SnapshotReader<NeighTable<P::Ah>>,
    mcast: McastTx<P::Ah>,
    stats: Arc<IfaceStats>,
    wrs: ArrayVec<SendWr<P::Ah>, BURST>,
    pkts: ArrayVec<Mbuf, BURST>,
    rxc: ArrayVec<RecvCompletion, BURST>,
    /// Last IPv4 group sent to and its MGID; 0.0.0.0 (never a group) when none.
    last_v4_group: (u32, Gid),
    /// The neighbour table version and IPv4 unicast address the last TX
    /// burst ended on (u32::MAX: none).
    tx_last: (u64, u32),
    ctrl: Option<CtrlChannels<P::Ah>>,
    /// QPNs of the interface's other queues (same port, same LID): their
    /// multicast looped back to this QP is our own, as ours is.
    siblings: Box<[u32]>,
    /// Misses already handed to control since the table last changed, so a
    /// flow to an unresolved neighbour sends its first few packets up, not
    /// every packet (the resolver would only queue a few anyway).
    misses: MissFilter,
    /// ICMP other than neighbour discovery goes to the application ring (a
    /// TUN device's kernel answers echo), not to the control plane's stack.
    kernel_icmp: bool,
    /// Packet capture, checked once per burst.
    capture: Option<Tap>,
    /// Since when sends the provider refused (left in `wrs`) have waited
    /// without progress.
    held_since: Option<Instant>,
}

/// Recent unicast misses: (address key, packets sent up), reset when a new
/// neighbour table is published. Fixed size: no allocation on the datapath.
struct MissFilter {
    /// Version of the table the counts belong to.
    table: u64,
    slots: [(u128, u8); 8],
    next: usize,
}

/// Packets per unresolved address handed to control per table version:
/// enough to fill the resolver's queue (default 3) with one to spare.
const MISSES_UP: u8 = 4;

/// How long sends the provider refused are offered again, without any of
/// them going out, before they are dropped: a busy send queue drains, a
/// provider that refuses for this long is broken, not busy.
const HOLD_LIMIT: Duration = Duration::from_secs(1);

impl MissFilter {
    fn new() -> Self {
        MissFilter {
            table: 0,
            slots: [(0, 0); 8],
            next: 0,
        }
    }

    /// Whether another packet to `key` should go up to control.
    #[inline]
    fn admit(&mut self, table: u64, key: u128) -> bool {
        if table != self.table {
            self.table = table;
            self.slots = [(0, 0); 8];
        }
        if let Some(s) = self.slots.iter_mut().find(|s| s.1 != 0 && s.0 == key) {
            if s.1 >= MISSES_UP {
                return false;
            }
            s.1 += 1;
            return true;
        }
        self.slots[self.next] = (key, 1);
        self.next = (self.next + 1) % self.slots.len();
        true
    }
}

/// A packet's destination, small and register-friendly (no `u128`/`IpAddr`
/// in the hot loop; multicast addresses become an `IpAddr` only for the MGID).
#[derive(Clone, Copy)]
enum Dest {
    Unicast4(u32),
    Unicast6([u8; 16]),
    Multicast4(u32),
    Multicast6([u8; 16]),
}

/// Reads the destination of an IP packet; `None` if it is not one.
#[inline(always)]
fn ip_dest(d: &[u8]) -> Option<(u16, Dest)> {
    let version = d.first()? >> 4;
    if version == 4 && d.len() >= 20 {
        let a = u32::from_be_bytes([d[16], d[17], d[18], d[19]]);
        // 224.0.0.0/4 or the limited broadcast: the same test as
        // `Ipv4Addr::is_multicast() || is_broadcast()`, on the integer.
        let dest = if a >> 28 == 0xE || a == u32::MAX {
            Dest::Multicast4(a)
        } else {
            Dest::Unicast4(a)
        };
        return Some((ETHERTYPE_IPV4, dest));
    }
    if version == 6 && d.len() >= 40 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[24..40]);
        let dest = if b[0] == 0xff {
            Dest::Multicast6(b)
        } else {
            Dest::Unicast6(b)
        };
        return Some((ETHERTYPE_IPV6, dest));
    }
    None
}

const IPPROTO_ICMP: u8 = 1;

/// Frames for the control plane: ARP, and ICMP/ICMPv6 (neighbour discovery
/// for the resolver, echo and errors for the host's own IP stack). The bulk
/// of traffic (UDP, TCP) goes to the application ring. With `all_icmp`
/// false (a kernel behind a TUN device answers echo), only ARP and neighbour
/// discovery go up.
#[inline]
fn is_control_frame(ethertype: u16, frame: &[u8], all_icmp: bool) -> bool {
    const ICMPV6: u8 = 58;
    match ethertype {
        ETHERTYPE_ARP => true,
        ETHERTYPE_IPV4 => {
            all_icmp && frame.len() > HEADER_LEN + 9 && frame[HEADER_LEN + 9] == IPPROTO_ICMP
        }
        ETHERTYPE_IPV6 => {
            frame.len() > HEADER_LEN + 6
                && frame[HEADER_LEN + 6] == ICMPV6
                // Router and neighbour discovery: types 133..=137.
                && (all_icmp || frame.get(HEADER_LEN + 40).is_some_and(|t| (133..=137).contains(t)))
        }
        _ => false,
    }
}

/// Up to a burst of packets left in the ring's slots, as one run (first
/// packet, count): a burst that would wrap stops at the end of the slot array
/// and the rest comes next burst, so the TX loop walks one run (see
/// `spsc::Consumer::peek_runs`). Never under the loom model build, whose
/// slots cannot be addressed in place.
#[inline(always)]
fn peek_burst(ring: &mut spsc::Consumer<Mbuf>) -> Option<(*mut Mbuf, usize)> {
    #[cfg(not(loom))]
    return Some(ring.peek_runs(BURST)[0]);
    #[cfg(loom)]
    {
        let _ = ring;
        None
    }
}

/// One run of `n` free slots of the application ring to deliver into in
/// place (see `spsc::Producer::reserve_run`); never under loom.
#[inline(always)]
fn reserve_burst(ring: &mut spsc::Producer<Mbuf>, n: usize) -> Option<*mut Mbuf> {
    #[cfg(not(loom))]
    return ring.reserve_run(n);
    #[cfg(loom)]
    {
        let _ = (ring, n);
        None
    }
}

/// Publishes `k` packets written into a reserved run.
///
/// # Safety
/// As `spsc::Producer::commit_reserved`.
#[inline(always)]
unsafe fn commit_burst(ring: &mut spsc::Producer<Mbuf>, k: usize) {
    #[cfg(not(loom))]
    ring.commit_reserved(k);
    #[cfg(loom)]
    let _ = (ring, k);
}

/// Gives the slots of `n` peeked packets back to the ring.
///
/// # Safety
/// As `spsc::Consumer::consume_peeked`.
#[inline(always)]
unsafe fn consume_burst(ring: &mut spsc::Consumer<Mbuf>, n: usize) {
    #[cfg(not(loom))]
    ring.consume_peeked(n);
    #[cfg(loom)]
    let _ = (ring, n);
}

/// The general RX path: what the IPv4 fast path did not take. Drops and
/// counts bad frames and our own looped-back multicast, hands control frames
/// up (counted as received), and returns an IP packet to deliver, its IPoIB
/// header stripped.
#[inline(never)]
fn rx_general<A>(
    ctrl: &mut Option<CtrlChannels<A>>,
    all_icmp: bool,
    mut m: Mbuf,
    self_loop: bool,
    multicast: bool,
    cache: &mut LcoreCache,
    counts: &mut BurstCounts,
) -> Option<Mbuf> {
    // Our own multicast comes back from the fabric; the kernel drops it too.
    if self_loop {
        counts.drop(DpDrop::RxSelfLoop);
        cache.free(m);
        return None;
    }
    let d = m.data();
    let ethertype = if d.len() >= HEADER_LEN {
        u16::from_be_bytes([d[0], d[1]])
    } else {
        0
    };
    if !matches!(ethertype, ETHERTYPE_IPV4 | ETHERTYPE_IPV6 | ETHERTYPE_ARP) {
        counts.drop(DpDrop::RxBadHeader);
        cache.free(m);
        return None;
    }
    if let Some(ctrl) = ctrl.as_mut() {
        if is_control_frame(ethertype, d, all_icmp) {
            // Whole frame, header and all: control parses it.
            counts.rx_packets += 1;
            counts.rx_bytes += (m.len() - HEADER_LEN) as u64;
            counts.rx_mcast_packets += multicast as u64;
            if let Err(m) = ctrl.to_control.push(m) {
                counts.drop(DpDrop::RxRingFull);
                cache.free(m);
            }
            return None;
        }
    }
    m.adj(HEADER_LEN);
    Some(m)
}

/// The TX fast path: runs of packets to the last two destinations found
/// (neighbours or joined IPv4 groups: a flow, or a unicast and a multicast
/// flow interleaved), taken in a loop of its own, so that its state stays
/// in registers (the general path's calls would otherwise push it to the
/// stack).
struct FastRun<A> {
    next: *mut Mbuf,
    end: *mut Mbuf,
    /// Where the next request goes.
    wr: *mut SendWr<A>,
    bytes: u64,
    /// Multicast requests the run wrote.
    mcast: u64,
    /// The destinations, the one found last first; none yet when `has_dest`
    /// is false, and the same one twice when only one is known.
    dest: [FastDest<A>; 2],
    has_dest: bool,
    /// IPv4 packets of 20..=mtu bytes take the run: mtu - 20 (config
    /// keeps mtu >= 68).
    span: usize,
}

/// A destination of the TX fast run. Plain bytes (nothing to drop): it is
/// duplicated with `ptr::read`.
struct FastDest<A> {
    /// Its IPv4 address as stored in packets (network order).
    addr_be: u32,
    multicast: bool,
    /// A request to it, all but the mbuf.
    tmpl: MaybeUninit<SendWr<A>>,
}

/// The bytes of a request after its mbuf, which comes first (`SendWr` is
/// `repr(C)`).
const WR_TAIL: usize = std::mem::size_of::<Mbuf>();

impl<A: Copy> FastRun<A> {
    fn new(first: *mut Mbuf, taken: usize, wr: *mut SendWr<A>, mtu: usize) -> Self {
        let none = || FastDest {
            addr_be: 0,
            multicast: false,
            tmpl: MaybeUninit::uninit(),
        };
        FastRun {
            // SAFETY (of the add): the caller passes a run of `taken` packets.
            end: first.wrapping_add(taken),
            next: first,
            wr,
            bytes: 0,
            mcast: 0,
            dest: [none(), none()],
            has_dest: false,
            span: mtu.saturating_sub(20),
        }
    }

    /// Makes packets to `a` (host order) go out as `ah`, `qpn`, `qkey`;
    /// the destination found before it stays second.
    fn set_dest(&mut self, a: u32, ah: A, qpn: u32, qkey: u32) {
        let mut tmpl = MaybeUninit::<SendWr<A>>::uninit();
        let t = tmpl.as_mut_ptr();
        // SAFETY: field writes into our own template.
        unsafe {
            std::ptr::addr_of_mut!((*t).ah).write(ah);
            std::ptr::addr_of_mut!((*t).remote_qpn).write(qpn);
            std::ptr::addr_of_mut!((*t).remote_qkey).write(qkey);
        }
        let d = FastDest {
            addr_be: a.to_be(),
            multicast: qpn == MCAST_QPN,
            tmpl,
        };
        // SAFETY: bitwise copies of plain data (`MaybeUninit` drops nothing).
        let second = unsafe {
            if self.has_dest && self.dest[0].addr_be != d.addr_be {
                std::ptr::read(&self.dest[0])
            } else {
                std::ptr::read(&d)
            }
        };
        self.dest = [d, second];
        self.has_dest = true;
    }

    /// Encapsulates packets while they are IPv4 without options, 20..=mtu
    /// bytes, to one of the run's destinations, with header room and
    /// unshared, writing their requests; stops at the first other packet,
    /// untouched (`next` then points at it), or at the end of the run.
    ///
    /// # Safety
    /// `next..end` are initialised packets nobody else owns or touches while
    /// this runs, each moved out at most once (by this, or by the caller at
    /// `next` after it); `wr` has room for a request per packet.
    #[inline(never)]
    unsafe fn run(&mut self) {
        if !self.has_dest {
            return;
        }
        let (mut next, end, mut wr) = (self.next, self.end, self.wr);
        let (mut bytes, span) = (self.bytes, self.span);
        let [d0, d1] = &self.dest;
        let (a0, a1) = (d0.addr_be, d1.addr_be);
        let tail0 = d0.tmpl.as_ptr().cast::<u8>().add(WR_TAIL);
        let tail1 = d1.tmpl.as_ptr().cast::<u8>().add(WR_TAIL);
        let tail_len = std::mem::size_of::<SendWr<A>>() - WR_TAIL;
        let first_wr = wr;
        // Packets to the second destination (the first needs no count).
        let mut to1 = 0u64;
        while next != end {
            let m = &mut *next;
            let (d, len) = m.data_raw();
            // One compare for 20 <= len <= mtu. SAFETY: the reads are
            // inside the data when it passes.
            let beyond20 = len.wrapping_sub(20);
            if beyond20 > span || *d != 0x45 {
                break;
            }
            let a = d.add(16).cast::<u32>().read_unaligned();
            let tail = if a == a0 {
                tail0
            } else if a == a1 {
                to1 += 1;
                tail1
            } else {
                break;
            };
            if !m.grow_front(HEADER_LEN as u16) {
                to1 -= (a != a0) as u64;
                break;
            }
            // SAFETY: the header room in front of the data is ours now; the
            // templates are written (`has_dest`).
            d.sub(HEADER_LEN)
                .cast_mut()
                .cast::<[u8; HEADER_LEN]>()
                .write_unaligned(IPV4_HDR);
            // The 20 + HEADER_LEN bytes each are added once, below.
            bytes += beyond20 as u64;
            std::ptr::addr_of_mut!((*wr).mbuf).write(std::ptr::read(m));
            std::ptr::copy_nonoverlapping(tail, wr.cast::<u8>().add(WR_TAIL), tail_len);
            wr = wr.add(1);
            next = next.add(1);
        }
        // Counted once per run, not per packet.
        let n = wr.offset_from(first_wr) as u64;
        bytes += n * (20 + HEADER_LEN) as u64;
        let to0 = n - to1;
        self.mcast += d0.multicast as u64 * to0 + (a1 != a0 && d1.multicast) as u64 * to1;
        (self.next, self.wr, self.bytes) = (next, wr, bytes);
    }

    /// The packet the run stopped at, moved past; `None` at the end.
    #[inline(always)]
    fn take_stopped(&mut self) -> Option<*mut Mbuf> {
        if self.next == self.end {
            return None;
        }
        let m = self.next;
        // SAFETY: next < end.
        self.next = unsafe { m.add(1) };
        Some(m)
    }
}

/// What a packet is to the TX path, its header room prepended.
enum Class {
    /// IPv4 unicast (a hash probe).
    Unicast4(u32),
    /// IPv4 to the group sent to last (its MGID is remembered).
    Group,
    /// Anything else: the general path.
    General,
}

/// Classifies a packet of `len` bytes at `w` (IPoIB header room first):
/// IPv4 without options (version 4, header length 5) of 20..=mtu bytes
/// (`span` is mtu - 20), by destination; everything else is `General`.
#[inline(always)]
fn classify(w: &[u8], span: usize, last_group: u32) -> Class {
    let len = w.len();
    // One compare for HEADER_LEN + 20 <= len <= mtu + HEADER_LEN.
    if len.wrapping_sub(HEADER_LEN + 20) > span || w[HEADER_LEN] != 0x45 {
        return Class::General;
    }
    let a = u32::from_be_bytes([w[20], w[21], w[22], w[23]]);
    // Below 224.0.0.0: neither multicast nor the broadcast (240/4 is
    // unicast too, but rare: it goes the general way).
    if a < 0xE000_0000 {
        Class::Unicast4(a)
    } else if a >> 28 == 0xE && a == last_group {
        Class::Group
    } else {
        Class::General
    }
}

/// Ethertype IPv4, then 16 reserved bits: an IPoIB header in one store.
const IPV4_HDR: [u8; 4] = ((ETHERTYPE_IPV4 as u32) << 16).to_be_bytes();

/// `m` with an IPv4 IPoIB header in its (prepended) header room.
#[inline(always)]
fn with_ipv4_header(mut m: Mbuf) -> Mbuf {
    if let Some(w) = m.data_mut() {
        w[..HEADER_LEN].copy_from_slice(&IPV4_HDR);
    }
    m
}

/// The general TX path: every packet the IPv4-unicast fast path did not
/// take (IPv6, multicast, unknown neighbours, malformed or oversize ones).
struct TxSlow<'a, A> {
    neigh: &'a NeighTable<A>,
    cfg: &'a IfaceConfig,
    qkey: u32,
    mcast: &'a mut McastTx<A>,
    last_v4_group: &'a mut (u32, Gid),
    misses: &'a mut MissFilter,
    ctrl: &'a Option<CtrlChannels<A>>,
}

impl<A: Copy> TxSlow<'_, A> {
    /// A packet whose header could not be prepended (shared or no headroom):
    /// dropped, with the same precedence of reasons as `send`.
    #[cold]
    #[inline(never)]
    fn no_headroom(&mut self, m: Mbuf, cache: &mut LcoreCache, counts: &mut BurstCounts) {
        let r = match ip_dest(m.data()) {
            None => DpDrop::TxMalformed,
            Some(_) if m.len() > self.cfg.mtu as usize => DpDrop::TxTooBig,
            Some(_) => DpDrop::TxNoHeadroom,
        };
        counts.drop(r);
        cache.free(m);
    }

    /// A packet with its IPoIB header room already prepended: builds the
    /// header and routes it; `None` when it was queued, handed up or dropped.
    #[inline(never)]
    fn send(
        &mut self,
        mut m: Mbuf,
        cache: &mut LcoreCache,
        counts: &mut BurstCounts,
    ) -> Option<SendWr<A>> {
        let mtu = self.cfg.mtu as usize;
        let dest = {
            // Prepended by the caller, so the buffer is ours and writable.
            let w = m.data_mut().expect("prepended, so not shared");
            let (hdr, ip) = w.split_at_mut(HEADER_LEN);
            let parsed = ip_dest(ip).filter(|_| ip.len() <= mtu);
            let Some((ethertype, dest)) = parsed else {
                // A packet that is dropped anyway: its header does not matter.
                let r = if ip_dest(ip).is_none() {
                    DpDrop::TxMalformed
                } else {
                    DpDrop::TxTooBig
                };
                counts.drop(r);
                cache.free(m);
                return None;
            };
            // Ethertype, then 16 reserved bits, in one store.
            hdr.copy_from_slice(&((ethertype as u32) << 16).to_be_bytes());
            dest
        };
        let entry = match dest {
            Dest::Unicast4(a) => self.neigh.lookup_v4(a),
            Dest::Unicast6(a) => self.neigh.lookup_v6(u128::from_be_bytes(a)),
            Dest::Multicast4(_) | Dest::Multicast6(_) => {
                let mgid = match dest {
                    // The mapping is a pure function of the group:
                    // remember the last one (flows repeat it).
                    Dest::Multicast4(a) if a == self.last_v4_group.0 => Ok(self.last_v4_group.1),
                    Dest::Multicast4(a) => {
                        let r = mgid_for_ip(
                            IpAddr::V4(Ipv4Addr::from(a)),
                            self.cfg.pkey,
                            self.cfg.scope,
                        );
                        if let Ok(g) = r {
                            *self.last_v4_group = (a, g);
                        }
                        r
                    }
                    Dest::Multicast6(b) => {
                        mgid_for_ip(IpAddr::V6(Ipv6Addr::from(b)), self.cfg.pkey, self.cfg.scope)
                    }
                    _ => unreachable!("matched above"),
                };
                let Ok(mgid) = mgid else {
                    counts.drop(DpDrop::TxMalformed);
                    cache.free(m);
                    return None;
                };
                return self.mcast.classify_send(mgid, m, cache, counts).map(
                    |(ah, remote_qkey, mbuf)| SendWr {
                        mbuf,
                        ah,
                        remote_qpn: MCAST_QPN,
                        remote_qkey,
                    },
                );
            }
        };
        if let Some(e) = entry {
            return Some(SendWr {
                mbuf: m,
                ah: e.ah,
                remote_qpn: e.qpn,
                remote_qkey: self.qkey,
            });
        }
        let (ip, key) = match dest {
            Dest::Unicast4(a) => (IpAddr::V4(Ipv4Addr::from(a)), u128::from(a)),
            Dest::Unicast6(b) => (IpAddr::V6(Ipv6Addr::from(b)), u128::from_be_bytes(b)),
            _ => unreachable!("multicast handled above"),
        };
        let table = self.neigh.version();
        match self.ctrl {
            // The packet waits in the resolver; a full queue drops it.
            Some(c) if self.misses.admit(table, key) => {
                if !c.resolve.push((ip, m)) {
                    counts.drop(DpDrop::TxNoNeighbour);
                }
            }
            // Already enough of this flow waiting, or no resolver: drop here, counted.
            _ => {
                counts.drop(DpDrop::TxNoNeighbour);
                cache.free(m);
            }
        }
        None
    }
}

impl<P: Provider> Iface<P> {
    pub fn new(cfg: IfaceConfig, provider: P, wiring: IfaceWiring<P::Ah>) -> Self {
        let port = provider.port();
        Iface {
            mcast: McastTx::new(cfg.ifindex, wiring.mcast, wiring.join_requests),
            cfg,
            provider,
            port,
            tx_in: wiring.tx_in,
            tx_next: 0,
            rx_out: wiring.rx_out,
            neigh: arc_swap::Cache::new(wiring.neigh),
            stats: wiring.stats,
            wrs: ArrayVec::new(),
            pkts: ArrayVec::new(),
            rxc: ArrayVec::new(),
            last_v4_group: (0, Gid::default()),
            tx_last: (0, u32::MAX),
            ctrl: None,
            siblings: Box::new([]),
            misses: MissFilter::new(),
            kernel_icmp: false,
            capture: None,
            held_since: None,
        }
    }

    /// Copies the frames this interface sends and receives to `tap` while
    /// a capture runs.
    pub fn set_capture(&mut self, tap: Tap) {
        self.capture = Some(tap);
    }

    /// The burst about to be posted, to a running capture.
    #[inline(always)]
    fn tap_tx(&mut self) {
        if let Some(tap) = self.capture.as_mut() {
            let session = tap.session();
            if session != 0 {
                let p = &self.provider;
                tap.record_tx(session, &self.wrs, |ah| p.ah_dgid(ah));
            }
        }
    }

    /// The burst just polled, to a running capture (not our own multicast
    /// looped back, which the stack never sees).
    #[inline(always)]
    fn tap_rx(capture: &mut Option<Tap>, me: (u32, u16), siblings: &[u32], rxc: &[RecvCompletion]) {
        if let Some(tap) = capture.as_mut() {
            let session = tap.session();
            if session != 0 {
                tap.record_rx(session, rxc, |c| {
                    c.slid == me.1 && (c.src_qpn == me.0 || siblings.contains(&c.src_qpn))
                });
            }
        }
    }

    /// The QPNs of the interface's other queues, whose packets looped back
    /// here are dropped as our own.
    pub fn set_siblings(&mut self, qpns: &[u32]) {
        self.siblings = qpns
            .iter()
            .copied()
            .filter(|&q| q != self.port.qpn)
            .collect();
    }

    /// Delivers ICMP (but not ARP or neighbour discovery) to the application
    /// ring, for a kernel behind a TUN device to answer: exactly one IP stack
    /// then answers echo for the interface's addresses.
    pub fn set_kernel_icmp(&mut self, on: bool) {
        self.kernel_icmp = on;
    }

    /// Resolves unknown neighbours through the control plane instead of
    /// dropping their packets, and passes ARP/ND up to it.
    pub fn with_control(mut self, ctrl: CtrlChannels<P::Ah>) -> Self {
        self.ctrl = Some(ctrl);
        self
    }

    /// As `with_control`, on an interface already placed on an lcore.
    pub fn set_control(&mut self, ctrl: CtrlChannels<P::Ah>) {
        self.ctrl = Some(ctrl);
    }

    /// Moves what the control plane asked to send into this burst.
    fn gather_control(&mut self, cache: &mut LcoreCache, counts: &mut BurstCounts) -> u64 {
        let Some(ctrl) = self.ctrl.as_mut() else {
            return 0;
        };
        let mut bytes = 0;
        while !self.wrs.is_full() {
            let Some(CtrlSend { mbuf, to }) = ctrl.from_control.pop() else {
                break;
            };
            let sendable = match to {
                CtrlDest::Unicast(e) => Some((e.ah, e.qpn, self.port.qkey, mbuf)),
                CtrlDest::Multicast(mgid) => self
                    .mcast
                    .classify_send(mgid, mbuf, cache, counts)
                    .map(|(ah, qkey, m)| (ah, MCAST_QPN, qkey, m)),
            };
            if let Some((ah, remote_qpn, remote_qkey, mbuf)) = sendable {
                bytes += mbuf.len() as u64;
                self.wrs.push(SendWr {
                    mbuf,
                    ah,
                    remote_qpn,
                    remote_qkey,
                });
            }
        }
        bytes
    }

    pub fn config(&self) -> &IfaceConfig {
        &self.cfg
    }
    pub fn port(&self) -> PortAttr {
        self.port
    }
    pub fn provider_mut(&mut self) -> &mut P {
        &mut self.provider
    }
    /// Packets waiting for multicast joins.
    pub fn mcast_pending(&self) -> usize {
        self.mcast.pending()
    }

    /// Fills `pkts` from the producer rings, leaving room for what pending
    /// multicast already put in `wrs`.
    #[inline]
    fn gather_tx(&mut self) {
        let rings = self.tx_in.len();
        if rings == 1 && self.wrs.is_empty() {
            self.tx_in[0].dequeue_burst(&mut self.pkts);
            return;
        }
        let room = BURST - self.wrs.len();
        for k in 0..rings {
            let ring = &mut self.tx_in[(self.tx_next + k) % rings];
            while self.pkts.len() < room {
                match ring.pop() {
                    Some(m) => self.pkts.push(m),
                    None => break,
                }
            }
        }
        self.tx_next = (self.tx_next + 1) % rings.max(1);
    }

    /// One TX burst: ring → encapsulate → route → post. Returns packets posted.
    /// Not inlined into the lcore loop: a burst loop of its own keeps its
    /// state in registers, which is worth far more than one call per burst.
    #[inline(never)]
    pub fn tx_burst(&mut self, cache: &mut LcoreCache) -> usize {
        // What the provider refused last time (its send queue full) goes
        // first, and nothing new is taken until it is posted: producers are
        // held back (their rings fill) instead of losing what they handed over.
        if !self.wrs.is_empty() {
            return self.post_held(cache);
        }
        let mut counts = BurstCounts::default();
        let provider = &mut self.provider;
        let ready = self.mcast.refresh(
            |r| {
                provider
                    .create_ah(&AhAttr {
                        dlid: r.mlid,
                        dgid: Some(r.mgid),
                        sl: r.sl,
                    })
                    .ok()
            },
            cache,
            &mut counts,
        );
        let mut bytes = 0u64;
        let mut mcast_n = 0u64;
        if ready {
            // Packets that waited for a join go first, in order.
            let wrs = &mut self.wrs;
            let n = self.mcast.drain_ready(BURST, |ah, route, mbuf| {
                bytes += mbuf.len() as u64;
                wrs.push(SendWr {
                    mbuf,
                    ah,
                    remote_qpn: MCAST_QPN,
                    remote_qkey: route.qkey,
                });
            });
            mcast_n += n as u64;
        }
        bytes += self.gather_control(cache, &mut counts);
        // One producer ring and nothing queued ahead (the common case): the
        // packets are worked on in the ring's slots, no copy in between.
        // Otherwise they are gathered into `pkts` first.
        let peeked = if self.tx_in.len() == 1 && self.wrs.is_empty() {
            peek_burst(&mut self.tx_in[0])
        } else {
            None
        };
        let (first, taken) = match peeked {
            Some(run) => run,
            None => {
                self.gather_tx();
                let n = self.pkts.len();
                // SAFETY: the `n` packets are moved out exactly once in the
                // loop below, so `pkts` gives them up first.
                unsafe { self.pkts.set_len(0) };
                (self.pkts.as_mut_ptr(), n)
            }
        };
        debug_assert!(taken + self.wrs.len() <= BURST);
        let neigh = self.neigh.load();
        // Slots and mask in registers for the whole burst.
        let v4 = neigh.v4_view();
        let mtu = self.cfg.mtu as usize;
        let qkey = self.port.qkey;
        let wrs = self.wrs.as_mut_ptr();
        // SAFETY: wrs.len() <= BURST: one past the end at most.
        let wr = unsafe { wrs.add(self.wrs.len()) };
        let mut slow = TxSlow {
            neigh,
            cfg: &self.cfg,
            qkey,
            mcast: &mut self.mcast,
            last_v4_group: &mut self.last_v4_group,
            misses: &mut self.misses,
            ctrl: &self.ctrl,
        };
        // The last neighbour found in this burst: packets of a flow come in
        // trains, so most skip the hash probe (the entry's accessed bit is
        // already set). u32::MAX is never looked up (not unicast).
        // At most BURST - wrs.len() packets were taken, and each adds at most
        // one request, so `wr` stays inside `wrs` when written.
        // The neighbour the last burst sent to, found again in this burst's
        // table (which also sets its accessed bit): a flow's next burst
        // starts on the fast run.
        let mut run = FastRun::new(first, taken, wr, mtu);
        // The run starts on the neighbour the last burst sent to, found
        // again in this burst's table (which also sets its accessed bit),
        // else on the joined group sent to last.
        let mut last_a = u32::MAX;
        match self.tx_last {
            (version, a) if version == neigh.version() && a != u32::MAX => {
                if let Some(e) = v4.lookup(a) {
                    run.set_dest(a, e.ah, e.qpn, qkey);
                    last_a = a;
                }
            }
            _ => {}
        }
        if !run.has_dest {
            if let Some((ah, gqkey)) = slow.mcast.joined_last(slow.last_v4_group.1) {
                run.set_dest(slow.last_v4_group.0, ah, MCAST_QPN, gqkey);
            }
        }
        loop {
            // SAFETY: the run's packets are initialised and owned by nobody
            // else (neither the ring nor `pkts` touches them while it runs);
            // `wr` has room for each (see above).
            unsafe { run.run() };
            let Some(m) = run.take_stopped() else {
                break;
            };
            // SAFETY: the mbuf moves out once (see above).
            let mut m = unsafe { std::ptr::read(m) };
            let class = match m.prepend_window(HEADER_LEN) {
                Some(w) => classify(w, run.span, slow.last_v4_group.0),
                None => {
                    slow.no_headroom(m, cache, &mut counts);
                    continue;
                }
            };
            let r = match class {
                Class::Unicast4(a) => match v4.lookup(a) {
                    Some(e) => {
                        // Its flow's next packets stay on the run.
                        run.set_dest(a, e.ah, e.qpn, qkey);
                        last_a = a;
                        SendWr {
                            mbuf: with_ipv4_header(m),
                            ah: e.ah,
                            remote_qpn: e.qpn,
                            remote_qkey: qkey,
                        }
                    }
                    // Not resolved: the general path hands it to control.
                    None => match slow.send(m, cache, &mut counts) {
                        Some(r) => r,
                        None => continue,
                    },
                },
                Class::Group => {
                    let mgid = slow.last_v4_group.1;
                    let m = with_ipv4_header(m);
                    let Some((ah, remote_qkey, mbuf)) =
                        slow.mcast.classify_send(mgid, m, cache, &mut counts)
                    else {
                        continue;
                    };
                    if slow.mcast.joined_last(mgid).is_some() {
                        // The group's next packets stay on the run.
                        run.set_dest(slow.last_v4_group.0, ah, MCAST_QPN, remote_qkey);
                    }
                    SendWr {
                        mbuf,
                        ah,
                        remote_qpn: MCAST_QPN,
                        remote_qkey,
                    }
                }
                Class::General => match slow.send(m, cache, &mut counts) {
                    Some(r) => r,
                    None => continue,
                },
            };
            bytes += r.mbuf.len() as u64;
            mcast_n += (r.remote_qpn == MCAST_QPN) as u64;
            // SAFETY: the slot at `wr` is ours to write; then at most one
            // past the last slot of `wrs`.
            unsafe {
                run.wr.write(r);
                run.wr = run.wr.add(1);
            }
        }
        let wr = run.wr;
        bytes += run.bytes;
        mcast_n += run.mcast;
        self.tx_last = (neigh.version(), last_a);
        if peeked.is_some() {
            // SAFETY: every packet of the run was moved out above.
            unsafe { consume_burst(&mut self.tx_in[0], taken) };
        }
        // SAFETY: the slots up to `wr` were written above.
        unsafe { self.wrs.set_len(wr.offset_from(wrs) as usize) };
        let wanted = self.wrs.len();
        let posted = if wanted == 0 {
            0
        } else {
            self.tap_tx();
            let posted = self.provider.post_send(&mut self.wrs);
            self.provider.reap(cache);
            posted
        };
        if !self.wrs.is_empty() {
            // Refused: offered again, first, from the next burst on.
            for wr in self.wrs.iter() {
                bytes -= wr.mbuf.len() as u64;
                if wr.remote_qpn == MCAST_QPN {
                    mcast_n = mcast_n.saturating_sub(1);
                }
            }
            self.held_since = Some(Instant::now());
        }
        counts.tx_packets = posted as u64;
        counts.tx_bytes = bytes;
        counts.tx_mcast_packets = mcast_n.min(posted as u64);
        self.stats.add(&counts);
        posted
    }

    /// Offers the refused sends again; drops them (counted) once the
    /// provider has refused everything for `HOLD_LIMIT`.
    #[cold]
    #[inline(never)]
    fn post_held(&mut self, cache: &mut LcoreCache) -> usize {
        let mut counts = BurstCounts::default();
        let sums = |wrs: &ArrayVec<SendWr<P::Ah>, BURST>| {
            wrs.iter().fold((0u64, 0u64), |(b, m), w| {
                (
                    b + w.mbuf.len() as u64,
                    m + u64::from(w.remote_qpn == MCAST_QPN),
                )
            })
        };
        let before = sums(&self.wrs);
        let posted = self.provider.post_send(&mut self.wrs);
        self.provider.reap(cache);
        let after = sums(&self.wrs);
        counts.tx_packets = posted as u64;
        counts.tx_bytes = before.0 - after.0;
        counts.tx_mcast_packets = before.1 - after.1;
        let now = Instant::now();
        if self.wrs.is_empty() {
            self.held_since = None;
        } else if posted > 0 {
            self.held_since = Some(now);
        } else if self
            .held_since
            .is_none_or(|t| now.duration_since(t) >= HOLD_LIMIT)
        {
            for wr in self.wrs.drain(..) {
                counts.drop(DpDrop::TxProviderBusy);
                cache.free(wr.mbuf);
            }
            self.held_since = None;
        }
        self.stats.add(&counts);
        posted
    }

    /// One RX burst: poll → decapsulate → classify → deliver. Returns packets polled.
    /// Not inlined, as `tx_burst`.
    #[inline(never)]
    pub fn rx_burst(&mut self, cache: &mut LcoreCache) -> usize {
        // Completions are worked on in place, in the provider's memory when
        // it keeps them (no copy), else in `rxc`; their mbufs are moved out
        // one by one and their slots given back after the loop, so none is
        // owned twice.
        let (rxc, polled, in_place) = match self.provider.peek_recv(BURST) {
            Some((_, 0)) => return 0,
            Some((first, n)) => (first, n, true),
            None => {
                let n = self.provider.poll_recv(&mut self.rxc);
                if n == 0 {
                    return 0;
                }
                let polled = self.rxc.len();
                // SAFETY: each of the `polled` mbufs is read out exactly once below.
                unsafe { self.rxc.set_len(0) };
                (self.rxc.as_mut_ptr(), polled, false)
            }
        };
        let me = (self.port.qpn, self.port.lid);
        // SAFETY: `polled` initialised completions from `rxc`, untouched
        // until the loop below moves them out.
        Self::tap_rx(&mut self.capture, me, &self.siblings, unsafe {
            std::slice::from_raw_parts(rxc, polled)
        });
        let mut counts = BurstCounts::default();
        // Every burst leaves `pkts` empty, so a whole poll fits.
        debug_assert!(self.pkts.is_empty());
        // Delivered packets go straight into the application ring's free
        // slots when they are one run (most bursts), else into `pkts` first.
        let direct = match self.rx_out.as_mut() {
            Some(ring) => reserve_burst(ring, polled),
            None => None,
        };
        let out = direct.unwrap_or(self.pkts.as_mut_ptr());
        // The run has `polled` slots; `pkts` started empty and a poll is at
        // most BURST. Either way `o` stays inside whenever it is written.
        let mut o = out;
        let (mut bytes, mut mcast) = (0u64, 0u64);
        let ctrl = &mut self.ctrl;
        let siblings = &*self.siblings;
        // ICMP goes up to the IP stack unless a TUN device's kernel answers it.
        let all_icmp = !self.kernel_icmp;
        // SAFETY: one past the last completion.
        let end = unsafe { rxc.add(polled) };
        let mut next = rxc;
        while next != end {
            // SAFETY: next < end, so the completion is initialised; `rxc`
            // is not touched otherwise while the loop runs.
            let c = unsafe { &mut *next };
            // SAFETY: at most one past the last completion.
            next = unsafe { next.add(1) };
            let multicast = c.multicast;
            let (d, len) = c.mbuf.data_raw();
            // Fast path: IPv4 from another QP, not ICMP (control frames go the
            // general way, which delivers them when there is no control
            // plane). The ethertype is compared in network order, as stored.
            let own = c.slid == me.1 && (c.src_qpn == me.0 || siblings.contains(&c.src_qpn));
            // SAFETY: the reads are inside the data (len > HEADER_LEN + 9).
            let fast = !own
                && len > HEADER_LEN + 9
                && unsafe {
                    d.cast::<[u8; 2]>().read() == ETHERTYPE_IPV4.to_be_bytes()
                        && *d.add(HEADER_LEN + 9) != IPPROTO_ICMP
                };
            if fast {
                // SAFETY: len > HEADER_LEN.
                unsafe { c.mbuf.adj_unchecked(HEADER_LEN as u16) };
                // Headers included: taken off per burst below.
                bytes += len as u64;
                mcast += multicast as u64;
                // SAFETY: moved out once (`rxc` no longer owns it); see `o` above.
                unsafe {
                    o.write(std::ptr::read(&c.mbuf));
                    o = o.add(1);
                }
                continue;
            }
            let self_loop = own;
            // SAFETY: moved out once; `rxc` no longer owns it.
            let m = unsafe { std::ptr::read(&c.mbuf) };
            if let Some(m) = rx_general(ctrl, all_icmp, m, self_loop, multicast, cache, &mut counts)
            {
                bytes += (m.len() + HEADER_LEN) as u64;
                mcast += multicast as u64;
                // SAFETY: see `o` above.
                unsafe {
                    o.write(m);
                    o = o.add(1);
                }
            }
        }
        // SAFETY: both inside the same run or `pkts`, `o` not before `out`.
        let k = unsafe { o.offset_from(out) } as usize;
        if in_place {
            // SAFETY: every completion of the peek was moved out above.
            unsafe { self.provider.consume_recv(polled) };
        }
        counts.rx_packets += k as u64;
        counts.rx_bytes += bytes - (k * HEADER_LEN) as u64;
        counts.rx_mcast_packets += mcast;
        if direct.is_some() {
            if let Some(ring) = self.rx_out.as_mut() {
                // SAFETY: the first k slots of the reserved run were written once each.
                unsafe { commit_burst(ring, k) };
            }
            self.stats.add(&counts);
            return polled;
        }
        // SAFETY: the first k slots were written above.
        unsafe { self.pkts.set_len(k) };
        match self.rx_out.as_mut() {
            Some(ring) => {
                ring.enqueue_burst(&mut self.pkts);
                if !self.pkts.is_empty() {
                    for m in self.pkts.drain(..) {
                        counts.drop(DpDrop::RxRingFull);
                        cache.free(m);
                    }
                }
            }
            // A sink: delivered means counted and freed.
            None => cache.free_burst(&mut self.pkts),
        }
        self.stats.add(&counts);
        polled
    }

    /// Frees what the interface still holds (stop).
    pub fn drain(&mut self, cache: &mut LcoreCache) {
        const DRAIN_POLLS: usize = 4096;
        // Sends the provider still refused are never sent: counted drops.
        let mut counts = BurstCounts::default();
        for wr in self.wrs.drain(..) {
            counts.drop(DpDrop::TxProviderBusy);
            cache.free(wr.mbuf);
        }
        self.held_since = None;
        self.stats.add(&counts);
        self.mcast.clear(cache);
        if let Some(ctrl) = self.ctrl.as_mut() {
            while let Some(c) = ctrl.from_control.pop() {
                cache.free(c.mbuf);
            }
        }
        for ring in &mut self.tx_in {
            while let Some(m) = ring.pop() {
                cache.free(m);
            }
        }
        // Bounded: on a live link (a real device, a peer still sending)
        // messages keep arriving, and a provider may repost as it polls.
        for _ in 0..DRAIN_POLLS {
            if self.provider.poll_recv(&mut self.rxc) == 0 {
                break;
            }
            for c in self.rxc.drain(..) {
                cache.free(c.mbuf);
            }
        }
    }
}
