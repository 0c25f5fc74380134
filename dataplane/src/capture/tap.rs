//! The lcore's side of packet capture: a per-interface tap that copies the
//! frames of a burst into preallocated slots, handed to the writer thread
//! through two SPSC rings of slot numbers (free slots going to the lcore,
//! filled ones coming back). Nothing allocates, locks or blocks: with no free
//! slot a frame is a counted capture drop, and the packet itself goes on.
//!
//! Capture off costs one relaxed load per burst (`Tap::session`).

use super::ipoib_link::{LinkHeader, PSEUDO_HEADER_LEN};
use super::pcap::Timestamp;
use crate::provider::{RecvCompletion, SendWr};
use crate::ring::spsc;
use crate::wire::{Gid, HwAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Largest IPoIB frame a slot holds (a 4096-byte UD message); the snap
/// length cuts frames shorter still.
pub const SLOT_FRAME: usize = 4096;
/// Largest record: the pseudo header and a whole slot.
pub const MAX_SNAPLEN: u32 = (PSEUDO_HEADER_LEN + SLOT_FRAME) as u32;
/// Smallest useful record: the pseudo header, the IPoIB header and an IPv4 header.
pub const MIN_SNAPLEN: u32 = (PSEUDO_HEADER_LEN + 4 + 20) as u32;
/// Slots per interface: a burst of bursts of headroom for the writer.
pub const DEFAULT_SLOTS: usize = 1024;

/// A slot's fixed part, then the frame bytes.
#[derive(Clone, Copy)]
#[repr(C)]
struct SlotMeta {
    session: u32,
    secs: u32,
    nanos: u32,
    orig_len: u32,
    cap_len: u32,
    pseudo: [u8; PSEUDO_HEADER_LEN],
}

const META: usize = std::mem::size_of::<SlotMeta>();
const STRIDE: usize = (META + SLOT_FRAME).next_multiple_of(64);

/// The slots' memory: zeroed on creation, so untouched slots take no RSS.
struct Region {
    ptr: *mut u8,
    slots: usize,
}

// SAFETY: a slot is touched by one side at a time: the side holding its
// number, handed over through the rings' release/acquire.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    fn new(slots: usize) -> Region {
        let bytes = vec![0u8; slots * STRIDE].into_boxed_slice();
        Region {
            ptr: Box::into_raw(bytes).cast::<u8>(),
            slots,
        }
    }

    /// # Safety
    /// The caller holds slot `i`'s number (from the free or the full ring).
    #[allow(clippy::mut_from_ref)]
    unsafe fn slot(&self, i: u32) -> (&mut SlotMeta, &mut [u8; SLOT_FRAME]) {
        debug_assert!((i as usize) < self.slots);
        let base = self.ptr.add(i as usize * STRIDE);
        (
            &mut *base.cast::<SlotMeta>(),
            &mut *base.add(META).cast::<[u8; SLOT_FRAME]>(),
        )
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let len = self.slots * STRIDE;
        // SAFETY: made from a boxed slice of this length in `new`.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, len)) });
    }
}

/// What the lcore and the writer share for one interface.
pub(super) struct TapShared {
    /// 0: off; otherwise the running capture's session number.
    session: AtomicU32,
    snaplen: AtomicU32,
    /// Frames copied into slots, and frames lost for want of a free slot.
    /// Written by the lcore only.
    captured: AtomicU64,
    drops: AtomicU64,
    region: Region,
    /// The interface's own address, for received frames without a GRH.
    local: (u32, Gid),
}

/// Single writer: a plain load and store, as the datapath counters do.
fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

/// The lcore's end of an interface's capture.
pub struct Tap {
    shared: Arc<TapShared>,
    free: spsc::Consumer<u32>,
    full: spsc::Producer<u32>,
}

/// The writer's end of an interface's capture.
pub struct TapReader {
    pub(super) name: String,
    shared: Arc<TapShared>,
    free: spsc::Producer<u32>,
    full: spsc::Consumer<u32>,
}

/// A filled slot the reader holds until it gives it back.
pub(super) struct Filled {
    pub slot: u32,
    pub session: u32,
    pub ts: Timestamp,
}

/// A tap for an interface whose QP has number `qpn` and GID `gid`, with
/// `slots` slots (rounded up to a power of two).
pub fn tap(name: &str, qpn: u32, gid: Gid, slots: usize) -> (Tap, TapReader) {
    let slots = slots.clamp(2, 1 << 16).next_power_of_two();
    let (mut free_tx, free_rx) = spsc::channel::<u32>(slots);
    let (full_tx, full_rx) = spsc::channel::<u32>(slots);
    for i in 0..slots as u32 {
        let pushed = free_tx.push(i).is_ok();
        debug_assert!(pushed, "the free ring holds every slot");
    }
    let shared = Arc::new(TapShared {
        session: AtomicU32::new(0),
        snaplen: AtomicU32::new(MAX_SNAPLEN),
        captured: AtomicU64::new(0),
        drops: AtomicU64::new(0),
        region: Region::new(slots),
        local: (qpn, gid),
    });
    (
        Tap {
            shared: shared.clone(),
            free: free_rx,
            full: full_tx,
        },
        TapReader {
            name: name.to_owned(),
            shared,
            free: free_tx,
            full: full_rx,
        },
    )
}

/// The GRH-form pseudo header of a received frame: source QPN and GID,
/// destination GID (tshark shows all three).
fn rx_pseudo(c: &RecvCompletion, local: (u32, Gid)) -> [u8; PSEUDO_HEADER_LEN] {
    match c.grh() {
        Some(g) => {
            let vtf =
                (6u32 << 28) | (u32::from(g.traffic_class) << 20) | (g.flow_label & 0x000f_ffff);
            LinkHeader::grh_bytes(vtf, c.src_qpn, &g.sgid, &g.dgid)
        }
        None => LinkHeader::grh_bytes(6 << 28, c.src_qpn, &Gid::default(), &local.1),
    }
}

impl Tap {
    /// The running capture's session, 0 when capture is off: the one check
    /// per burst.
    #[inline(always)]
    pub fn session(&self) -> u32 {
        self.shared.session.load(Ordering::Acquire)
    }

    /// Copies one frame into a free slot; false when none is free.
    #[inline]
    fn put(
        &mut self,
        session: u32,
        ts: Timestamp,
        snap: usize,
        pseudo: [u8; PSEUDO_HEADER_LEN],
        frame: &[u8],
    ) -> bool {
        let Some(i) = self.free.pop() else {
            return false;
        };
        let take = frame.len().min(snap).min(SLOT_FRAME);
        // SAFETY: slot `i` came off the free ring: it is ours until pushed.
        let (meta, data) = unsafe { self.shared.region.slot(i) };
        *meta = SlotMeta {
            session,
            secs: ts.secs,
            nanos: ts.nanos,
            orig_len: (PSEUDO_HEADER_LEN + frame.len()) as u32,
            cap_len: (PSEUDO_HEADER_LEN + take) as u32,
            pseudo,
        };
        data[..take].copy_from_slice(&frame[..take]);
        // The full ring has room for every slot, so this cannot fail.
        let pushed = self.full.push(i).is_ok();
        debug_assert!(pushed);
        true
    }

    fn snap(&self) -> usize {
        let s = self.shared.snaplen.load(Ordering::Relaxed) as usize;
        s.saturating_sub(PSEUDO_HEADER_LEN)
    }

    fn count(&self, captured: u64, dropped: u64) {
        bump(&self.shared.captured, captured);
        bump(&self.shared.drops, dropped);
    }

    /// Records a TX burst as it goes to the provider: each frame behind its
    /// destination hardware address (`dgid` gives the address handle's GID).
    #[cold]
    #[inline(never)]
    pub fn record_tx<A>(
        &mut self,
        session: u32,
        wrs: &[SendWr<A>],
        dgid: impl Fn(&A) -> Option<Gid>,
    ) {
        let ts = Timestamp::now();
        let snap = self.snap();
        let (mut ok, mut lost) = (0, 0);
        for wr in wrs {
            let gid = dgid(&wr.ah).unwrap_or_default();
            let pseudo = LinkHeader::dest_hwaddr_bytes(&HwAddr::new(0, wr.remote_qpn, gid));
            if self.put(session, ts, snap, pseudo, wr.mbuf.data()) {
                ok += 1;
            } else {
                lost += 1;
            }
        }
        self.count(ok, lost);
    }

    /// Records an RX burst as polled (IPoIB header still on), leaving out
    /// what `skip` says the stack never sees (our own looped-back multicast).
    #[cold]
    #[inline(never)]
    pub fn record_rx(
        &mut self,
        session: u32,
        rxc: &[RecvCompletion],
        skip: impl Fn(&RecvCompletion) -> bool,
    ) {
        let ts = Timestamp::now();
        let snap = self.snap();
        let local = self.shared.local;
        let (mut ok, mut lost) = (0, 0);
        for c in rxc.iter().filter(|c| !skip(c)) {
            if self.put(session, ts, snap, rx_pseudo(c, local), c.mbuf.data()) {
                ok += 1;
            } else {
                lost += 1;
            }
        }
        self.count(ok, lost);
    }
}

/// A reader's view of a tap's counters.
pub struct TapStats(Arc<TapShared>);

impl TapStats {
    /// Frames captured and frames dropped for want of a slot, since start.
    pub fn get(&self) -> (u64, u64) {
        (
            self.0.captured.load(Ordering::Relaxed),
            self.0.drops.load(Ordering::Relaxed),
        )
    }
}

impl TapReader {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> TapStats {
        TapStats(self.shared.clone())
    }

    /// Frames captured and frames dropped for want of a slot, since start.
    pub fn counters(&self) -> (u64, u64) {
        self.stats().get()
    }

    /// Turns capture on (`session` != 0) with `snaplen`, or off (0).
    pub(super) fn set_session(&self, session: u32, snaplen: u32) {
        self.shared
            .snaplen
            .store(snaplen.clamp(MIN_SNAPLEN, MAX_SNAPLEN), Ordering::Relaxed);
        self.shared.session.store(session, Ordering::Release);
    }

    /// The next filled slot, if any; give it back with `release`.
    pub(super) fn next(&mut self) -> Option<Filled> {
        let slot = self.full.pop()?;
        // SAFETY: popped off the full ring: ours until released.
        let (meta, _) = unsafe { self.shared.region.slot(slot) };
        Some(Filled {
            slot,
            session: meta.session,
            ts: Timestamp {
                secs: meta.secs,
                nanos: meta.nanos,
            },
        })
    }

    /// The record of a filled slot: (original length, pseudo header, frame).
    pub(super) fn record(&self, f: &Filled) -> (u32, &[u8; PSEUDO_HEADER_LEN], &[u8]) {
        // SAFETY: `f` came from `next` and was not released yet.
        let (meta, data) = unsafe { self.shared.region.slot(f.slot) };
        let take = (meta.cap_len as usize).saturating_sub(PSEUDO_HEADER_LEN);
        (meta.orig_len, &meta.pseudo, &data[..take.min(SLOT_FRAME)])
    }

    pub(super) fn release(&mut self, f: Filled) {
        let pushed = self.free.push(f.slot).is_ok();
        debug_assert!(pushed, "the free ring holds every slot");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{HugepageMode, Mempool, MempoolConfig};

    fn pool() -> &'static Mempool {
        Mempool::new(MempoolConfig {
            name: "tap-test".into(),
            count: 64,
            buf_size: 2176,
            hugepages: HugepageMode::Off,
        })
        .unwrap()
    }

    fn wr(pool: &'static Mempool, bytes: &[u8], qpn: u32) -> SendWr<u8> {
        let mut m = pool.alloc().unwrap();
        m.append(bytes.len()).unwrap().copy_from_slice(bytes);
        SendWr {
            mbuf: m,
            ah: 7,
            remote_qpn: qpn,
            remote_qkey: 0x0b1b,
        }
    }

    #[test]
    fn a_full_tap_counts_drops_and_never_blocks() {
        let pool = pool();
        let (mut tap, mut reader) = tap("ib0", 0x101, Gid::default(), 4);
        reader.set_session(3, MAX_SNAPLEN);
        assert_eq!(tap.session(), 3);
        let wrs: Vec<_> = (0..6)
            .map(|i| wr(pool, &[0x08, 0, 0, 0, i], 0x102))
            .collect();
        tap.record_tx(3, &wrs, |_| Some(Gid([0xfe; 16])));
        assert_eq!(reader.counters(), (4, 2));
        let mut seen = Vec::new();
        while let Some(f) = reader.next() {
            let (orig, pseudo, frame) = reader.record(&f);
            assert_eq!(orig as usize, PSEUDO_HEADER_LEN + 5);
            assert_eq!(&pseudo[21..24], &[0, 1, 0x02]);
            assert_eq!(&pseudo[24..40], &[0xfe; 16]);
            seen.push(frame[4]);
            reader.release(f);
        }
        assert_eq!(seen, [0, 1, 2, 3]);
        // Slots came back: the next burst is captured again.
        tap.record_tx(3, &wrs[..2], |_| None);
        assert_eq!(reader.counters(), (6, 2));
        drop(wrs);
    }

    #[test]
    fn the_snap_length_cuts_frames_but_keeps_their_length() {
        let pool = pool();
        let (mut tap, mut reader) = tap("ib0", 0x101, Gid::default(), 8);
        reader.set_session(1, MIN_SNAPLEN);
        let big = vec![0xabu8; 1000];
        tap.record_tx(1, &[wr(pool, &big, 5)], |_| None);
        let f = reader.next().expect("one record");
        let (orig, _, frame) = reader.record(&f);
        assert_eq!(orig as usize, PSEUDO_HEADER_LEN + 1000);
        assert_eq!(frame.len() as u32, MIN_SNAPLEN - PSEUDO_HEADER_LEN as u32);
        reader.release(f);
    }

    #[test]
    fn received_frames_carry_the_source_qpn_and_gids() {
        let pool = pool();
        let (mut tap, mut reader) = tap("ib0", 0x101, Gid([9; 16]), 8);
        reader.set_session(1, MAX_SNAPLEN);
        let mut m = pool.alloc().unwrap();
        m.append(8)
            .unwrap()
            .copy_from_slice(&[8, 0, 0, 0, 1, 2, 3, 4]);
        assert!(crate::provider::put_grh(&mut m, Gid([1; 16]), Gid([2; 16])));
        let with_grh = RecvCompletion {
            mbuf: m,
            src_qpn: 0x345,
            slid: 0,
            multicast: false,
            has_grh: true,
        };
        let mut m = pool.alloc().unwrap();
        m.append(4).unwrap().copy_from_slice(&[8, 6, 0, 0]);
        let looped = RecvCompletion {
            mbuf: m,
            src_qpn: 0x101,
            slid: 0,
            multicast: true,
            has_grh: false,
        };
        tap.record_rx(1, &[with_grh, looped], |c| c.src_qpn == 0x101);
        let f = reader.next().expect("one record");
        let (_, pseudo, frame) = reader.record(&f);
        assert_eq!(
            pseudo[0] >> 4,
            6,
            "GRH form: tshark reads bytes 0-1 as non-zero"
        );
        assert_eq!(&pseudo[5..8], &[0, 3, 0x45]);
        assert_eq!(&pseudo[8..24], &[1; 16]);
        assert_eq!(&pseudo[24..40], &[2; 16]);
        assert_eq!(frame, &[8, 0, 0, 0, 1, 2, 3, 4]);
        reader.release(f);
        assert!(reader.next().is_none(), "the looped-back frame is left out");
    }
}
