//! Memory: one pinned region per pool (hugepages when reserved), a `Mempool`
//! of fixed-size buffers with per-lcore caches, and move-only `Mbuf` handles.
//!
//! Pools live for the whole process (`&'static`), as in DPDK: everything is
//! allocated at start-up and stays fixed, and an `Mbuf` can always find its
//! pool without a lifetime parameter threading through every ring and
//! provider. Misuse is impossible through the safe API: an `Mbuf` is not
//! `Clone` (no double free), and it returns to the pool it came from whatever
//! cache it is freed into (no wrong-pool free).
//!
//! Each buffer is preceded by a one-cache-line header (its pool and owner
//! count), and an `Mbuf` (16 bytes) holds the buffer's address, index and
//! data window: the data is one add away and the owner count one load away,
//! with no per-access multiply by the buffer size or pool table lookup.

mod cache;
mod mbuf;
mod pool;
mod region;

pub use cache::LcoreCache;
pub use mbuf::Mbuf;
pub use pool::{Mempool, MempoolConfig};
pub use region::{HugepageMode, MemError, Region};

/// Bytes reserved in front of the data of a fresh mbuf: room for the IPoIB
/// header (4), a GRH (40), or RoCEv2's Ethernet+IPv6+UDP+BTH+DETH (14+40+8+12+8)
/// without moving the payload.
pub const HEADROOM: usize = 128;
