//! An interface's TUN device on the lcore that owns the interface. Each poll
//! writes the packets the interface received (its RX ring) to the device,
//! then reads up to a burst from it straight into mbufs — the IPoIB header
//! goes into their headroom later — and hands them to the interface's TX
//! path through a producer ring, like any traffic source (neighbour lookup,
//! resolution misses and multicast joins are the interface's). One system
//! call per packet is what a TUN descriptor allows; a poll that finds the
//! device empty costs one `read` returning EAGAIN.

use crate::mem::{LcoreCache, Mbuf};
use crate::provider::BURST;
use crate::ring::spsc;
use arrayvec::ArrayVec;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one TUN device, written by its lcore only. `rx` is what the
/// dataplane read from the device (host → IPoIB), `tx` what it wrote to it
/// (IPoIB → host).
#[derive(Default)]
#[repr(align(64))]
pub struct TunStats {
    c: [AtomicU64; TunCounter::ALL.len()],
}

/// The counters, by xstats name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum TunCounter {
    RxPackets,
    RxBytes,
    TxPackets,
    TxBytes,
    /// No mbuf to read into: the packet stays in the kernel's queue (or is
    /// dropped there when the queue is full).
    RxNoMbuf,
    /// Neighbour or router discovery from the host's kernel: the control
    /// plane's resolver owns those on the IPoIB link.
    RxFilteredDrops,
    /// The interface's TX ring had no room.
    RxRingFullDrops,
    /// A read failed other than with EAGAIN.
    RxErrors,
    /// A write to the device failed; the packet is dropped.
    TxErrorDrops,
}

impl TunCounter {
    pub const ALL: [TunCounter; 9] = [
        TunCounter::RxPackets,
        TunCounter::RxBytes,
        TunCounter::TxPackets,
        TunCounter::TxBytes,
        TunCounter::RxNoMbuf,
        TunCounter::RxFilteredDrops,
        TunCounter::RxRingFullDrops,
        TunCounter::RxErrors,
        TunCounter::TxErrorDrops,
    ];
    pub fn name(self) -> &'static str {
        match self {
            TunCounter::RxPackets => "tun_rx_packets",
            TunCounter::RxBytes => "tun_rx_bytes",
            TunCounter::TxPackets => "tun_tx_packets",
            TunCounter::TxBytes => "tun_tx_bytes",
            TunCounter::RxNoMbuf => "tun_rx_nombuf",
            TunCounter::RxFilteredDrops => "tun_rx_filtered_drops",
            TunCounter::RxRingFullDrops => "tun_rx_ring_full_drops",
            TunCounter::RxErrors => "tun_rx_errors",
            TunCounter::TxErrorDrops => "tun_tx_error_drops",
        }
    }
}

type Counts = [u64; TunCounter::ALL.len()];

impl TunStats {
    /// Adds a burst's counts. Only the owning lcore may call this.
    fn add(&self, counts: &Counts) {
        for (c, &n) in self.c.iter().zip(counts) {
            // Single writer: a plain load+store, no locked RMW.
            if n != 0 {
                c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
            }
        }
    }

    pub fn get(&self, c: TunCounter) -> u64 {
        self.c[c as usize].load(Ordering::Relaxed)
    }

    /// xstats-style (name, value) pairs.
    pub fn xstats(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        TunCounter::ALL.iter().map(|&c| (c.name(), self.get(c)))
    }
}

/// ICMPv6 router or neighbour discovery (types 133..=137) with no extension
/// header, as a kernel sends it.
#[inline]
fn is_discovery(p: &[u8]) -> bool {
    p.len() > 40 && p[0] >> 4 == 6 && p[6] == 58 && (133..=137).contains(&p[40])
}

/// The lcore's end of one TUN device.
pub struct TunPort {
    fd: OwnedFd,
    /// Packets read from the device, into the interface's TX path.
    to_iface: spsc::Producer<Mbuf>,
    /// Packets the interface received, to write to the device.
    from_iface: spsc::Consumer<Mbuf>,
    stats: Arc<TunStats>,
    burst: ArrayVec<Mbuf, BURST>,
    /// A buffer a read found nothing for, kept for the next poll.
    spare: Option<Mbuf>,
}

impl TunPort {
    /// `fd` must be non-blocking, and each read or write one IP packet (a
    /// TUN device with IFF_NO_PI; a SOCK_SEQPACKET socket in tests).
    pub fn new(
        fd: OwnedFd,
        to_iface: spsc::Producer<Mbuf>,
        from_iface: spsc::Consumer<Mbuf>,
        stats: Arc<TunStats>,
    ) -> Self {
        TunPort {
            fd,
            to_iface,
            from_iface,
            stats,
            burst: ArrayVec::new(),
            spare: None,
        }
    }

    pub fn stats(&self) -> &Arc<TunStats> {
        &self.stats
    }

    /// Writes what the interface received, then reads a burst for it to send.
    /// Returns the packets moved.
    #[inline]
    pub fn poll(&mut self, cache: &mut LcoreCache) -> usize {
        self.write_burst(cache) + self.read_burst(cache)
    }

    /// Up to a burst from the interface's RX ring to the device.
    pub fn write_burst(&mut self, cache: &mut LcoreCache) -> usize {
        let n = self.from_iface.dequeue_burst(&mut self.burst);
        if n == 0 {
            return 0;
        }
        let mut counts: Counts = [0; TunCounter::ALL.len()];
        let fd = self.fd.as_raw_fd();
        for m in &self.burst {
            let d = m.data();
            // SAFETY: d is valid for its length.
            let w = unsafe { libc::write(fd, d.as_ptr().cast(), d.len()) };
            if w == d.len() as isize {
                counts[TunCounter::TxPackets as usize] += 1;
                counts[TunCounter::TxBytes as usize] += d.len() as u64;
            } else {
                counts[TunCounter::TxErrorDrops as usize] += 1;
            }
        }
        cache.free_burst(&mut self.burst);
        self.stats.add(&counts);
        n
    }

    /// Up to a burst (as much as the TX ring takes) from the device.
    pub fn read_burst(&mut self, cache: &mut LcoreCache) -> usize {
        let room = self.to_iface.free_count().min(BURST);
        let mut counts: Counts = [0; TunCounter::ALL.len()];
        let fd = self.fd.as_raw_fd();
        while self.burst.len() < room {
            let Some(mut m) = self.spare.take().or_else(|| cache.alloc()) else {
                counts[TunCounter::RxNoMbuf as usize] += 1;
                break;
            };
            // The whole tailroom: the device's MTU is at most that.
            let cap = m.tailroom();
            let Some(buf) = m.append(cap) else {
                // A fresh buffer is never shared; nothing to read into otherwise.
                cache.free(m);
                break;
            };
            // SAFETY: buf is valid for writes of its length.
            let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                if r < 0 {
                    let e = std::io::Error::last_os_error().raw_os_error();
                    if !matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR)) {
                        counts[TunCounter::RxErrors as usize] += 1;
                    }
                }
                m.reset();
                self.spare = Some(m);
                break;
            }
            m.trim(cap - r as usize);
            if is_discovery(m.data()) {
                counts[TunCounter::RxFilteredDrops as usize] += 1;
                m.reset();
                self.spare = Some(m);
                continue;
            }
            counts[TunCounter::RxPackets as usize] += 1;
            counts[TunCounter::RxBytes as usize] += r as u64;
            self.burst.push(m);
        }
        let n = self.burst.len();
        self.to_iface.enqueue_burst(&mut self.burst);
        for m in self.burst.drain(..) {
            counts[TunCounter::RxRingFullDrops as usize] += 1;
            cache.free(m);
        }
        if counts.iter().any(|&c| c != 0) {
            self.stats.add(&counts);
        }
        n
    }

    /// Frees what the port still holds (stop): received packets not yet
    /// written, and the spare buffer.
    pub fn drain(&mut self, cache: &mut LcoreCache) {
        while let Some(m) = self.from_iface.pop() {
            cache.free(m);
        }
        if let Some(m) = self.spare.take() {
            cache.free(m);
        }
    }
}
