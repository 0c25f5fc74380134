//! The `verbs` provider: a UD QP on a real RDMA device (hardware or kernel
//! soft-RoCE) through libibverbs, loaded at run time (`rdma-sys`).
//!
//! - One [`VerbsDevice`] per process: context, PD, the mempool's whole
//!   region registered once, the port's GID and P_Key, address handles.
//! - One [`VerbsProvider`] per interface: a UD QP (RESET → INIT → RTR → RTS)
//!   with its own send and receive CQs. Sends are one `ibv_post_send` per
//!   burst, small ones inline, one in [`SIGNAL_EVERY`] and the last of each
//!   burst signalled (a completion frees every buffer before it: a UD send
//!   queue completes in order). Receives are polled in bursts; each buffer is posted with the
//!   40-byte GRH area in the mbuf's headroom, so the GRH lands right before
//!   the data, where the layer above looks for it.
//! - On RoCE the GRH area holds the IP header (IPv4 in its last 20 bytes);
//!   it is rewritten as a GRH with `::ffff:a.b.c.d` GIDs, as the rocev2
//!   provider delivers it. RoCE has no LIDs: a completion's source LID is 0
//!   for this host's own GID and 0xFFFF otherwise, so the lcore can tell its
//!   own looped-back multicast from a peer QP with the same number.

mod ah;
mod counters;
mod device;

pub use ah::{wire_gid, AhTable, VerbsAh};
pub use counters::VerbsCounters;
pub use device::{VerbsConfig, VerbsDevice, VerbsSetupError};

use super::{
    AhAttr, PortAttr, Provider, ProviderError, ProviderXstats, RecvCompletion, SendWr, BURST,
};
use crate::mem::{LcoreCache, Mbuf};
use crate::wire::grh::HEADER_LEN as GRH_LEN;
use crate::wire::Gid;
use arrayvec::ArrayVec;
use rdma_sys::ffi::{
    ibv_recv_wr, ibv_send_wr, ibv_sge, ibv_wc, IBV_SEND_INLINE, IBV_SEND_SIGNALED, IBV_WC_GRH,
    IBV_WC_SUCCESS, IBV_WR_SEND,
};
use rdma_sys::{CompChannel, Cq, Qp, UdQpSpec, VerbsError};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// One send in this many asks for a completion.
pub const SIGNAL_EVERY: u64 = 16;
/// Send queue depth (a power of two).
const SQ_DEPTH: usize = 512;
/// Messages up to this size are copied into the work request.
const INLINE_WANTED: u32 = 128;
/// Source LID reported for a peer on RoCE (no port has it).
const ROCE_PEER_LID: u16 = 0xFFFF;

/// What one interface's QP is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerbsQpConfig {
    pub qkey: u32,
    /// Receive buffers kept posted.
    pub rx_depth: u32,
    /// The QP's (P_Key index, P_Key); `None`: the device's configured
    /// `pkey_index` (a P_Key child gets the index of its own P_Key).
    pub pkey: Option<(u16, u16)>,
}

/// A QP handle the control plane attaches to multicast groups.
#[derive(Clone)]
pub struct VerbsMcastHandle {
    qp: Arc<Qp>,
    roce: bool,
}

impl VerbsMcastHandle {
    /// `ibv_attach_mcast` (the group's RoCE GID on RoCE).
    pub fn attach(&self, mgid: Gid, mlid: u16) -> Result<(), VerbsError> {
        self.qp.attach_mcast(&wire_gid(self.roce, mgid).0, mlid)
    }
    pub fn detach(&self, mgid: Gid, mlid: u16) -> Result<(), VerbsError> {
        self.qp.detach_mcast(&wire_gid(self.roce, mgid).0, mlid)
    }
}

/// Work requests and completions of one burst, built in place. Their
/// pointers only ever point into this same box, for the length of one verb
/// call.
struct Scratch {
    swr: [ibv_send_wr; BURST],
    ssge: [ibv_sge; BURST],
    rwr: [ibv_recv_wr; BURST],
    rsge: [ibv_sge; BURST],
    wc: [ibv_wc; BURST],
}

// SAFETY: see above: nothing outside the box is referenced between calls.
unsafe impl Send for Scratch {}

/// One UD QP driven by one lcore.
pub struct VerbsProvider {
    // Declared first: dropped first, after `Drop` has moved it to the error
    // state, so the device is done with every buffer below.
    qp: Arc<Qp>,
    send_cq: Cq,
    recv_cq: Cq,
    dev: Arc<VerbsDevice>,
    port: PortAttr,
    lkey: u32,
    max_inline: u32,
    cache: LcoreCache,
    /// Sent buffers by sequence number (`seq % SQ_DEPTH`), until completed.
    sq: Box<[Option<Mbuf>]>,
    sq_head: u64,
    sq_tail: u64,
    /// Posted receive buffers by slot (the work request's id), and the free slots.
    rq: Box<[Option<Mbuf>]>,
    rq_free: Vec<u32>,
    w: Box<Scratch>,
    fresh: ArrayVec<Mbuf, BURST>,
    pub counters: VerbsCounters,
    /// `counters` as last published for other threads.
    published: Arc<ProviderXstats>,
}

impl VerbsProvider {
    /// Copies the counters for readers on other threads (after a burst).
    fn publish(&self) {
        self.published
            .publish(self.counters.xstats().map(|(_, v)| v));
    }

    /// A QP on `dev`, its receive queue filled from `cache`.
    pub fn new(
        dev: &Arc<VerbsDevice>,
        cfg: VerbsQpConfig,
        cache: LcoreCache,
    ) -> Result<VerbsProvider, VerbsError> {
        let ctx = dev.context();
        let rx_depth = cfg.rx_depth.max(BURST as u32);
        let channel: Option<Arc<CompChannel>> = None;
        let send_cq = Cq::new(ctx, SQ_DEPTH as u32, channel.clone())?;
        let recv_cq = Cq::new(ctx, rx_depth, channel)?;
        let (pkey_index, pkey) = cfg.pkey.unwrap_or((dev.cfg.pkey_index, dev.pkey));
        let qp = Qp::new_ud(
            &dev.pd,
            &send_cq,
            &recv_cq,
            &UdQpSpec {
                port: dev.cfg.port,
                pkey_index,
                qkey: cfg.qkey,
                max_send_wr: SQ_DEPTH as u32,
                max_recv_wr: rx_depth,
                max_inline: INLINE_WANTED,
            },
        )
        .or_else(|_| {
            // Some devices grant no inline data at all.
            Qp::new_ud(
                &dev.pd,
                &send_cq,
                &recv_cq,
                &UdQpSpec {
                    port: dev.cfg.port,
                    pkey_index,
                    qkey: cfg.qkey,
                    max_send_wr: SQ_DEPTH as u32,
                    max_recv_wr: rx_depth,
                    max_inline: 0,
                },
            )
        })?;
        let port = PortAttr {
            lid: if dev.is_roce() { 0 } else { dev.port.lid },
            gid: dev.gid,
            qpn: qp.qp_num(),
            pkey,
            qkey: cfg.qkey,
            max_msg: dev.max_msg(),
        };
        let mut p = VerbsProvider {
            max_inline: qp.max_inline(),
            qp: Arc::new(qp),
            send_cq,
            recv_cq,
            dev: dev.clone(),
            port,
            lkey: dev.mr.lkey(),
            cache,
            sq: (0..SQ_DEPTH).map(|_| None).collect(),
            sq_head: 0,
            sq_tail: 0,
            rq: (0..rx_depth).map(|_| None).collect(),
            rq_free: (0..rx_depth).rev().collect(),
            w: Box::new(Scratch {
                swr: [ibv_send_wr::default(); BURST],
                ssge: [ibv_sge::default(); BURST],
                rwr: [ibv_recv_wr::default(); BURST],
                rsge: [ibv_sge::default(); BURST],
                wc: [ibv_wc::default(); BURST],
            }),
            fresh: ArrayVec::new(),
            counters: VerbsCounters::default(),
            published: ProviderXstats::new("verbs_", &VerbsCounters::names()),
        };
        while !p.rq_free.is_empty() {
            if p.refill_rq() == 0 {
                break;
            }
        }
        Ok(p)
    }

    pub fn device(&self) -> &Arc<VerbsDevice> {
        &self.dev
    }

    /// The handle multicast attaches go through.
    pub fn mcast_handle(&self) -> VerbsMcastHandle {
        VerbsMcastHandle {
            qp: self.qp.clone(),
            roce: self.dev.is_roce(),
        }
    }

    /// Receive buffers currently posted.
    pub fn rx_posted(&self) -> usize {
        self.rq.len() - self.rq_free.len()
    }

    /// Sends posted whose buffers are not back yet.
    pub fn tx_outstanding(&self) -> u64 {
        self.sq_head - self.sq_tail
    }

    /// Waits, at most `timeout`, until the device has completed every send
    /// posted (each burst's last is signalled), freeing their buffers; so a
    /// stop does not flush sends still queued in the device. Returns whether
    /// every send completed.
    pub fn drain_sends(&mut self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.sq_tail < self.sq_head {
            let polled = match self.send_cq.poll(&mut self.w.wc[..]) {
                Ok(n) => n,
                Err(_) => {
                    self.counters.tx_poll_errors += 1;
                    return false;
                }
            };
            for i in 0..polled {
                let wc = self.w.wc[i];
                if wc.status != IBV_WC_SUCCESS {
                    self.counters.tx_completion_errors += 1;
                }
                let end = wc.wr_id.saturating_add(1).min(self.sq_head);
                while self.sq_tail < end {
                    let slot = (self.sq_tail % SQ_DEPTH as u64) as usize;
                    if let Some(m) = self.sq[slot].take() {
                        self.cache.free(m);
                    }
                    self.sq_tail += 1;
                }
            }
            if polled == 0 {
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                std::thread::yield_now();
            }
        }
        true
    }

    /// Posts up to a burst of fresh receive buffers; returns how many.
    fn refill_rq(&mut self) -> usize {
        let want = self.rq_free.len().min(BURST);
        if want == 0 {
            return 0;
        }
        let got = self.cache.alloc_burst(&mut self.fresh, want);
        if got == 0 {
            self.counters.rx_no_buffers += 1;
            return 0;
        }
        let n = self.fresh.len();
        let base = self.w.rwr.as_mut_ptr();
        for (i, mut m) in self.fresh.drain(..).enumerate() {
            m.reset();
            // The GRH area is the 40 bytes of headroom right before the data.
            let addr = m.data().as_ptr() as u64 - GRH_LEN as u64;
            let len = (GRH_LEN + m.tailroom()) as u32;
            let Some(slot) = self.rq_free.pop() else {
                // Cannot happen: at most `rq_free.len()` were allocated.
                drop(m);
                continue;
            };
            self.w.rsge[i] = ibv_sge {
                addr,
                length: len,
                lkey: self.lkey,
            };
            let next = if i + 1 < n {
                // SAFETY: i + 1 < n <= BURST.
                unsafe { base.add(i + 1) }
            } else {
                std::ptr::null_mut()
            };
            self.w.rwr[i] = ibv_recv_wr {
                wr_id: u64::from(slot),
                next,
                sg_list: &mut self.w.rsge[i],
                num_sge: 1,
            };
            self.rq[slot as usize] = Some(m);
        }
        // SAFETY: n linked requests over registered buffers held in `rq`.
        match unsafe { self.qp.post_recv(base) } {
            Ok(()) => n,
            Err((_, bad)) => {
                // Take back what was not posted, from the first failure on.
                let first_bad = if bad.is_null() {
                    0
                } else {
                    // SAFETY: `bad` points into `rwr`.
                    unsafe { bad.offset_from(base) as usize }
                };
                for i in first_bad..n {
                    let slot = self.w.rwr[i].wr_id as u32;
                    if let Some(m) = self.rq[slot as usize].take() {
                        self.cache.free(m);
                    }
                    self.rq_free.push(slot);
                }
                self.counters.rx_post_errors += 1;
                first_bad
            }
        }
    }

    /// Frees the buffers of every send up to and including `seq`.
    fn complete_sends(&mut self, seq: u64, cache: &mut LcoreCache) {
        let end = seq.saturating_add(1).min(self.sq_head);
        while self.sq_tail < end {
            let slot = (self.sq_tail % SQ_DEPTH as u64) as usize;
            if let Some(m) = self.sq[slot].take() {
                cache.free(m);
            }
            self.sq_tail += 1;
        }
    }

    /// Rewrites a RoCE receive's header area as a GRH; returns (has GRH,
    /// multicast, from this host's own GID).
    fn roce_grh(&self, m: &mut Mbuf) -> (bool, bool, bool) {
        let Some(h) = m.headroom_bytes(GRH_LEN) else {
            return (false, false, false);
        };
        let (sgid, dgid, mcast) = if h[20] >> 4 == 4 {
            let src = Ipv4Addr::new(h[32], h[33], h[34], h[35]);
            let dst = Ipv4Addr::new(h[36], h[37], h[38], h[39]);
            (
                Gid(src.to_ipv6_mapped().octets()),
                Gid(dst.to_ipv6_mapped().octets()),
                dst.is_multicast(),
            )
        } else {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&h[8..24]);
            d.copy_from_slice(&h[24..40]);
            (Gid(s), Gid(d), d[0] == 0xff)
        };
        let own = sgid == self.port.gid;
        (super::put_grh(m, sgid, dgid), mcast, own)
    }
}

impl Drop for VerbsProvider {
    fn drop(&mut self) {
        // Flush the queues: after this the device writes no receive buffer,
        // so the buffers can go back to the pool.
        let _ = self.qp.to_error();
        for m in self.sq.iter_mut().chain(self.rq.iter_mut()) {
            if let Some(m) = m.take() {
                self.cache.free(m);
            }
        }
    }
}

impl Provider for VerbsProvider {
    type Ah = VerbsAh;

    fn port(&self) -> PortAttr {
        self.port
    }

    fn create_ah(&mut self, attr: &AhAttr) -> Result<VerbsAh, ProviderError> {
        self.dev.ahs.get(attr)
    }

    fn post_send<const N: usize>(&mut self, wrs: &mut ArrayVec<SendWr<VerbsAh>, N>) -> usize {
        let room = SQ_DEPTH as u64 - (self.sq_head - self.sq_tail);
        let n = wrs.len().min(BURST).min(room as usize);
        if n == 0 {
            if !wrs.is_empty() {
                self.counters.tx_queue_full += 1;
                self.publish();
            }
            return 0;
        }
        let base = self.w.swr.as_mut_ptr();
        for (i, wr) in wrs.iter().take(n).enumerate() {
            let seq = self.sq_head + i as u64;
            let data = wr.mbuf.data();
            let len = data.len() as u32;
            self.w.ssge[i] = ibv_sge {
                addr: data.as_ptr() as u64,
                length: len,
                lkey: self.lkey,
            };
            let mut flags = 0;
            if len <= self.max_inline {
                flags |= IBV_SEND_INLINE;
            }
            // Signal one in SIGNAL_EVERY, the last of the burst (so the
            // queue's tail always completes and a drain knows when the device
            // is done with it) and the last one the queue has room for.
            if seq % SIGNAL_EVERY == SIGNAL_EVERY - 1 || i + 1 == n || i as u64 + 1 == room {
                flags |= IBV_SEND_SIGNALED;
            }
            let s = &mut self.w.swr[i];
            s.wr_id = seq;
            s.next = if i + 1 < n {
                // SAFETY: i + 1 < n <= BURST.
                unsafe { base.add(i + 1) }
            } else {
                std::ptr::null_mut()
            };
            s.sg_list = &mut self.w.ssge[i];
            s.num_sge = 1;
            s.opcode = IBV_WR_SEND;
            s.send_flags = flags;
            s.wr.ud.ah = wr.ah.as_ptr();
            s.wr.ud.remote_qpn = wr.remote_qpn;
            s.wr.ud.remote_qkey = wr.remote_qkey;
        }
        // SAFETY: n linked requests; their buffers stay in `sq` until completed.
        let posted = match unsafe { self.qp.post_send(base) } {
            Ok(()) => n,
            Err((_, bad)) => {
                self.counters.tx_post_errors += 1;
                if bad.is_null() {
                    0
                } else {
                    // SAFETY: `bad` points into `swr`.
                    (unsafe { bad.offset_from(base) }) as usize
                }
            }
        };
        for wr in wrs.drain(..posted) {
            let slot = (self.sq_head % SQ_DEPTH as u64) as usize;
            self.sq[slot] = Some(wr.mbuf);
            self.sq_head += 1;
        }
        self.counters.tx_packets += posted as u64;
        self.publish();
        posted
    }

    fn poll_recv<const N: usize>(&mut self, out: &mut ArrayVec<RecvCompletion, N>) -> usize {
        let want = out.remaining_capacity().min(BURST);
        let polled = match self.recv_cq.poll(&mut self.w.wc[..want]) {
            Ok(n) => n,
            Err(_) => {
                self.counters.rx_poll_errors += 1;
                0
            }
        };
        let roce = self.dev.is_roce();
        let before = out.len();
        for i in 0..polled {
            let wc = self.w.wc[i];
            let slot = wc.wr_id as usize;
            let Some(mut m) = self.rq.get_mut(slot).and_then(Option::take) else {
                self.counters.rx_unknown_wr += 1;
                continue;
            };
            self.rq_free.push(slot as u32);
            let len = (wc.byte_len as usize).saturating_sub(GRH_LEN);
            if wc.status != IBV_WC_SUCCESS || m.append(len).is_none() {
                if wc.status != IBV_WC_SUCCESS {
                    self.counters.rx_completion_errors += 1;
                } else {
                    self.counters.rx_truncated += 1;
                }
                self.cache.free(m);
                continue;
            }
            let grh = wc.wc_flags & IBV_WC_GRH != 0;
            let (has_grh, multicast, slid) = if roce {
                let (has, mcast, own) = self.roce_grh(&mut m);
                (has, mcast, if own { 0 } else { ROCE_PEER_LID })
            } else {
                let mcast = grh && m.headroom_bytes(GRH_LEN).is_some_and(|h| h[24] == 0xff);
                (grh, mcast, wc.slid)
            };
            self.counters.rx_packets += 1;
            out.push(RecvCompletion {
                mbuf: m,
                src_qpn: wc.src_qp,
                slid,
                multicast,
                has_grh,
            });
        }
        // Keep the receive queue full.
        while self.rq_free.len() >= BURST || (polled > 0 && !self.rq_free.is_empty()) {
            if self.refill_rq() == 0 {
                break;
            }
            if self.rq_free.len() < BURST {
                break;
            }
        }
        if polled > 0 {
            self.publish();
        }
        out.len() - before
    }

    fn xstats(&self) -> Option<Arc<ProviderXstats>> {
        Some(self.published.clone())
    }

    fn reap(&mut self, cache: &mut LcoreCache) {
        if self.sq_head == self.sq_tail {
            return;
        }
        let polled = match self.send_cq.poll(&mut self.w.wc[..]) {
            Ok(n) => n,
            Err(_) => {
                self.counters.tx_poll_errors += 1;
                return;
            }
        };
        for i in 0..polled {
            let wc = self.w.wc[i];
            if wc.status != IBV_WC_SUCCESS {
                self.counters.tx_completion_errors += 1;
            }
            self.complete_sends(wc.wr_id, cache);
        }
    }
}
