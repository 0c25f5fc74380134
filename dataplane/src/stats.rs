//! Per-lcore, per-interface counters, cache-line aligned. Each block has one
//! writer (its lcore), which adds a whole burst at a time with plain
//! load+store; readers aggregate with relaxed loads. Names follow DPDK xstats.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

/// Datapath drop reasons (the fabric counts its own separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DpDrop {
    /// Our own multicast looped back by the fabric (dropped as the kernel does).
    RxSelfLoop,
    /// IPoIB header missing or with an ethertype we do not handle.
    RxBadHeader,
    /// No neighbour entry for the destination.
    TxNoNeighbour,
    /// No room to prepend the IPoIB header.
    TxNoHeadroom,
    /// Larger than the interface MTU.
    TxTooBig,
    /// Destination group not joined and its pending queue full.
    TxMcastQueueFull,
    /// Pending packets of a group whose join failed for good.
    TxMcastJoinFailed,
    /// Join request queue to the control plane full.
    TxJoinRequestOverflow,
    /// Provider did not accept the send: its queue stayed full for a
    /// second (sends are offered again meanwhile), or at stop.
    TxProviderBusy,
    /// Received packet had no consumer room (rx ring full).
    RxRingFull,
    /// Not an IPv4/IPv6 packet, or a multicast address with no MGID.
    TxMalformed,
}

impl DpDrop {
    pub const ALL: [DpDrop; 11] = [
        DpDrop::RxSelfLoop,
        DpDrop::RxBadHeader,
        DpDrop::TxNoNeighbour,
        DpDrop::TxNoHeadroom,
        DpDrop::TxTooBig,
        DpDrop::TxMcastQueueFull,
        DpDrop::TxMcastJoinFailed,
        DpDrop::TxJoinRequestOverflow,
        DpDrop::TxProviderBusy,
        DpDrop::RxRingFull,
        DpDrop::TxMalformed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            DpDrop::RxSelfLoop => "rx_self_loop_drops",
            DpDrop::RxBadHeader => "rx_bad_header_drops",
            DpDrop::TxNoNeighbour => "tx_no_neighbour_drops",
            DpDrop::TxNoHeadroom => "tx_no_headroom_drops",
            DpDrop::TxTooBig => "tx_too_big_drops",
            DpDrop::TxMcastQueueFull => "tx_mcast_queue_full_drops",
            DpDrop::TxMcastJoinFailed => "tx_mcast_join_failed_drops",
            DpDrop::TxJoinRequestOverflow => "tx_join_request_overflow_drops",
            DpDrop::TxProviderBusy => "tx_provider_busy_drops",
            DpDrop::RxRingFull => "rx_ring_full_drops",
            DpDrop::TxMalformed => "tx_malformed_drops",
        }
    }
}

const NDROP: usize = DpDrop::ALL.len();

/// Counter block of one interface on one lcore.
#[derive(Default)]
#[repr(align(64))]
pub struct IfaceStats {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_mcast_packets: AtomicU64,
    tx_mcast_packets: AtomicU64,
    drops: [AtomicU64; NDROP],
}

/// Counts gathered during one burst, published in one go.
#[derive(Debug, Clone, Copy)]
pub struct BurstCounts {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_mcast_packets: u64,
    pub tx_mcast_packets: u64,
    /// Drops by reason, written (zeroed first) by the burst's first drop:
    /// most bursts drop nothing, and then neither zeroing nor publishing
    /// touches the array.
    drops: MaybeUninit<[u64; NDROP]>,
    /// Sum of the drops; the array is initialised when it is not 0.
    dropped: u64,
}

impl Default for BurstCounts {
    #[inline]
    fn default() -> Self {
        BurstCounts {
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            rx_mcast_packets: 0,
            tx_mcast_packets: 0,
            drops: MaybeUninit::uninit(),
            dropped: 0,
        }
    }
}

impl BurstCounts {
    #[inline]
    pub fn drop(&mut self, r: DpDrop) {
        if self.dropped == 0 {
            self.drops.write([0; NDROP]);
        }
        // SAFETY: written above by the first drop.
        unsafe { self.drops.assume_init_mut()[r as usize] += 1 };
        self.dropped += 1;
    }

    /// Drops by reason.
    pub fn drops(&self) -> [u64; NDROP] {
        if self.dropped == 0 {
            return [0; NDROP];
        }
        // SAFETY: written by the first drop.
        unsafe { self.drops.assume_init() }
    }

    /// Packets dropped in the burst.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    // Single writer: a plain load+store, no locked RMW.
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

impl IfaceStats {
    /// Adds a burst. Only the owning lcore may call this.
    #[inline]
    pub fn add(&self, b: &BurstCounts) {
        bump(&self.rx_packets, b.rx_packets);
        bump(&self.rx_bytes, b.rx_bytes);
        bump(&self.tx_packets, b.tx_packets);
        bump(&self.tx_bytes, b.tx_bytes);
        bump(&self.rx_mcast_packets, b.rx_mcast_packets);
        bump(&self.tx_mcast_packets, b.tx_mcast_packets);
        if b.dropped != 0 {
            self.add_drops(&b.drops());
        }
    }

    #[cold]
    fn add_drops(&self, drops: &[u64; NDROP]) {
        for (c, &n) in self.drops.iter().zip(drops) {
            bump(c, n);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut drops = [0; NDROP];
        for (d, c) in drops.iter_mut().zip(&self.drops) {
            *d = l(c);
        }
        StatsSnapshot {
            rx_packets: l(&self.rx_packets),
            rx_bytes: l(&self.rx_bytes),
            tx_packets: l(&self.tx_packets),
            tx_bytes: l(&self.tx_bytes),
            rx_mcast_packets: l(&self.rx_mcast_packets),
            tx_mcast_packets: l(&self.tx_mcast_packets),
            drops,
        }
    }
}

/// A reader's copy, summable across lcores.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_mcast_packets: u64,
    pub tx_mcast_packets: u64,
    pub drops: [u64; NDROP],
}

impl StatsSnapshot {
    pub fn drop_count(&self, r: DpDrop) -> u64 {
        self.drops[r as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// xstats-style (name, value) pairs.
    pub fn xstats(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [
            ("rx_good_packets", self.rx_packets),
            ("rx_good_bytes", self.rx_bytes),
            ("tx_good_packets", self.tx_packets),
            ("tx_good_bytes", self.tx_bytes),
            ("rx_multicast_packets", self.rx_mcast_packets),
            ("tx_multicast_packets", self.tx_mcast_packets),
        ]
        .into_iter()
        .chain(
            DpDrop::ALL
                .iter()
                .map(|r| (r.name(), self.drops[*r as usize])),
        )
    }
}

impl std::ops::AddAssign for StatsSnapshot {
    fn add_assign(&mut self, o: StatsSnapshot) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_mcast_packets += o.rx_mcast_packets;
        self.tx_mcast_packets += o.tx_mcast_packets;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
    }
}
