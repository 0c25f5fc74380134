use super::{Mbuf, Mempool};
use arrayvec::ArrayVec;

/// Per-lcore stash of free buffers of one pool (the DPDK mempool cache):
/// alloc and free touch only this lcore's memory until it runs dry or full,
/// then move half a cache to or from the shared list.
pub struct LcoreCache {
    pool: &'static Mempool,
    items: Vec<u32>,
    size: usize,
}

impl LcoreCache {
    pub(super) fn new(pool: &'static Mempool, size: usize) -> LcoreCache {
        let size = size.min(pool.capacity());
        LcoreCache {
            pool,
            items: Vec::with_capacity(size),
            size,
        }
    }

    pub fn pool(&self) -> &'static Mempool {
        self.pool
    }
    /// Buffers currently held by this cache.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[inline]
    pub fn alloc(&mut self) -> Option<Mbuf> {
        if self.items.is_empty() {
            self.refill();
        }
        match self.items.pop() {
            Some(idx) => Some(self.pool.take(idx)),
            None => self.pool.alloc(),
        }
    }

    /// Appends up to `n` fresh mbufs to `dst`; returns how many.
    #[inline]
    pub fn alloc_burst<const N: usize>(&mut self, dst: &mut ArrayVec<Mbuf, N>, n: usize) -> usize {
        let want = n.min(dst.remaining_capacity());
        if self.items.len() < want {
            self.refill();
        }
        // Fast path: the whole burst from the top of the cache, one length update.
        let k = want.min(self.items.len());
        let pool = self.pool;
        for idx in self.items.drain(self.items.len() - k..).rev() {
            // SAFETY: k <= want <= dst.remaining_capacity().
            unsafe { dst.push_unchecked(pool.take(idx)) };
        }
        for i in k..want {
            match self.alloc() {
                Some(m) => dst.push(m),
                None => return i,
            }
        }
        want
    }

    /// Frees into this cache if the mbuf belongs to this cache's pool, else
    /// into its own pool: a wrong-pool free cannot happen.
    #[inline]
    pub fn free(&mut self, m: Mbuf) {
        if !std::ptr::eq(m.pool(), self.pool) {
            drop(m);
            return;
        }
        if let Some(idx) = m.into_released() {
            if self.items.len() == self.size {
                // Also the path of a zero-sized cache (always full).
                if self.size == 0 {
                    self.pool.put_shared(idx);
                    return;
                }
                self.flush(self.size / 2 + 1);
            }
            self.items.push(idx);
        }
    }

    /// Frees every mbuf in `src`.
    #[inline]
    pub fn free_burst<const N: usize>(&mut self, src: &mut ArrayVec<Mbuf, N>) {
        let n = src.len();
        let len = self.items.len();
        if len + n > self.size {
            // Would overflow the cache: one by one, flushing as needed.
            for m in src.drain(..) {
                self.free(m);
            }
            return;
        }
        // Fast path: room for the whole burst, so no per-mbuf fullness check
        // and one length update.
        let pool = self.pool;
        let items = self.items.as_mut_ptr();
        let mut k = len;
        let mbufs = src.as_ptr();
        // SAFETY: the n mbufs are read out exactly once below, so `src`
        // gives them up first.
        unsafe { src.set_len(0) };
        for i in 0..n {
            // SAFETY: i < n, initialised, no longer owned by `src`.
            let m = unsafe { mbufs.add(i).read() };
            if !std::ptr::eq(m.pool(), pool) {
                drop(m);
                continue;
            }
            if let Some(idx) = m.into_released() {
                // SAFETY: k < len + n <= size <= capacity (never grown).
                unsafe { items.add(k).write(idx) };
                k += 1;
            }
        }
        // SAFETY: the slots up to k were written above.
        unsafe { self.items.set_len(k) };
    }

    #[cold]
    fn refill(&mut self) {
        // Never beyond `size`: the Vec must not grow (no allocation after start-up).
        let want = (self.size / 2).max(1).min(self.size - self.items.len());
        for _ in 0..want {
            match self.pool.pop_shared() {
                Some(idx) => self.items.push(idx),
                None => break,
            }
        }
    }

    #[cold]
    fn flush(&mut self, n: usize) {
        for _ in 0..n.min(self.items.len()) {
            if let Some(idx) = self.items.pop() {
                self.pool.put_shared(idx);
            }
        }
    }
}

impl Drop for LcoreCache {
    fn drop(&mut self) {
        self.flush(self.items.len());
    }
}
