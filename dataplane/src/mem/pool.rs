use super::region::{HugepageMode, MemError, Region};
use super::{LcoreCache, Mbuf, HEADROOM};
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU16, Ordering};

/// Bytes in front of every buffer for its header (`BufHdr`): one cache line,
/// so buffers stay cache-line aligned.
pub(super) const META: usize = 64;

/// What every buffer carries in front of it: its pool and its owner count.
/// An `Mbuf` points at the buffer, so both are one load away, with no
/// multiply by the buffer size and no pool table in between.
#[repr(C)]
pub(super) struct BufHdr {
    pub(super) pool: &'static Mempool,
    /// Owners: > 1 while a multicast fan-out shares the buffer.
    pub(super) refcnt: AtomicU16,
}

/// Geometry of a pool.
#[derive(Debug, Clone)]
pub struct MempoolConfig {
    pub name: String,
    /// Number of buffers.
    pub count: u32,
    /// Bytes per buffer, headroom included.
    pub buf_size: u32,
    pub hugepages: HugepageMode,
}

/// A fixed set of equal-sized buffers in one region. Created once and kept for
/// the life of the process (see the module docs).
pub struct Mempool {
    name: String,
    region: Region,
    buf_size: u32,
    /// Distance between buffers: header plus buffer, rounded to a cache line.
    stride: usize,
    count: u32,
    /// Shared free list; lcores mostly hit their own `LcoreCache`.
    free: ArrayQueue<u32>,
}

impl Mempool {
    pub fn new(cfg: MempoolConfig) -> Result<&'static Mempool, MemError> {
        if cfg.count == 0 {
            return Err(MemError::Geometry("a pool needs at least one buffer"));
        }
        if (cfg.buf_size as usize) <= HEADROOM || cfg.buf_size as usize >= super::mbuf::MAX_BUF_SIZE
        {
            return Err(MemError::Geometry(
                "buffer size must exceed the 128-byte headroom and be below 32768 bytes",
            ));
        }
        let stride = META + (cfg.buf_size as usize).next_multiple_of(META);
        let region = Region::new(cfg.count as usize * stride, cfg.hugepages)?;
        let free = ArrayQueue::new(cfg.count as usize);
        for idx in 0..cfg.count {
            // Cannot fail: the queue holds exactly `count` entries.
            let _ = free.push(idx);
        }
        let pool: &'static Mempool = Box::leak(Box::new(Mempool {
            name: cfg.name,
            region,
            buf_size: cfg.buf_size,
            stride,
            count: cfg.count,
            free,
        }));
        for idx in 0..cfg.count {
            let hdr = BufHdr {
                pool,
                refcnt: AtomicU16::new(0),
            };
            // SAFETY: the header slot of buffer idx is inside the region,
            // aligned (stride and META are multiples of 64) and not yet shared.
            unsafe { pool.hdr_ptr(idx).write(hdr) };
        }
        Ok(pool)
    }

    /// A per-lcore cache of up to `size` free buffers.
    pub fn cache(&'static self, size: usize) -> LcoreCache {
        LcoreCache::new(self, size)
    }

    /// Takes one buffer straight from the shared list (slow path; lcores use a cache).
    pub fn alloc(&'static self) -> Option<Mbuf> {
        self.free.pop().map(|idx| self.take(idx))
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn capacity(&self) -> usize {
        self.count as usize
    }
    #[inline]
    pub fn buf_size(&self) -> usize {
        self.buf_size as usize
    }
    /// Buffers in the shared free list. Equals `capacity()` when every mbuf has
    /// been freed and every cache dropped: the leak check.
    pub fn available(&self) -> usize {
        self.free.len()
    }
    pub fn is_hugepage(&self) -> bool {
        self.region.is_hugepage()
    }
    /// The region to register once with a provider.
    pub fn region(&self) -> (*mut u8, usize) {
        (self.region.as_ptr(), self.region.len())
    }

    #[inline]
    pub(super) fn take(&'static self, idx: u32) -> Mbuf {
        self.rc(idx).store(1, Ordering::Relaxed);
        Mbuf::new(self, idx)
    }

    /// The reference count of buffer `idx`: indices only come from this
    /// pool's free list, so they are below `count`.
    #[inline(always)]
    fn rc(&self, idx: u32) -> &AtomicU16 {
        debug_assert!(idx < self.count);
        // SAFETY: every header was written at creation and lives as long as the pool.
        unsafe { &(*self.hdr_ptr(idx)).refcnt }
    }

    /// Drops one owner of the buffer; true when it was the last and the buffer is free.
    #[inline]
    pub(super) fn release(rc: &AtomicU16) -> bool {
        // Sole owner: nobody else can share it any more, so no RMW is needed.
        // (Acquire pairs with the release of an owner that dropped its share.)
        rc.load(Ordering::Acquire) == 1 || rc.fetch_sub(1, Ordering::AcqRel) == 1
    }

    #[inline]
    pub(super) fn put_shared(&self, idx: u32) {
        // Cannot fail: at most `count` indices exist.
        let _ = self.free.push(idx);
    }

    #[inline]
    pub(super) fn pop_shared(&self) -> Option<u32> {
        self.free.pop()
    }

    /// Header of buffer `idx`.
    #[inline]
    fn hdr_ptr(&self, idx: u32) -> *mut BufHdr {
        debug_assert!(idx < self.count);
        // SAFETY: idx < count, so the offset stays inside the region.
        unsafe { self.region.as_ptr().add(idx as usize * self.stride).cast() }
    }

    /// Start of buffer `idx`.
    #[inline]
    pub(super) fn buf_ptr(&self, idx: u32) -> *mut u8 {
        // SAFETY: the buffer follows its header inside the region.
        unsafe { self.hdr_ptr(idx).cast::<u8>().add(META) }
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name)
            .field("count", &self.count)
            .field("buf_size", &self.buf_size)
            .field("available", &self.available())
            .field("hugepage", &self.is_hugepage())
            .finish()
    }
}
