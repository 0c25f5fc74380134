use super::pool::{BufHdr, META};
use super::{Mempool, HEADROOM};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// A move-only handle to one buffer: where it starts, its index, and the
/// data window. The buffer's header (pool, owner count) sits right before
/// it, so the data is one add away and the owner count one load away.
///
/// Dropping an `Mbuf` returns it to its own pool's shared list; lcores free
/// through their `LcoreCache` for speed. `share` adds an owner for multicast
/// fan-out; shared data is read-only.
pub struct Mbuf {
    buf: NonNull<u8>,
    idx: u32,
    /// The data window in one word, so that moving its front (prepend a
    /// header, strip one) is one add: offset in the low 15 bits (buffers
    /// are smaller than 32 KiB), `MAYBE_SHARED` in bit 15, length in the
    /// high 16 bits.
    win: u32,
}

/// The window word for offset `off` and length `len`.
#[inline(always)]
const fn window(off: u16, len: u16) -> u32 {
    off as u32 | (len as u32) << 16
}

/// Set in both handles by `share`, and kept: a handle without it is the
/// buffer's only owner, which the hot paths learn from the window word
/// alone, without loading the owner count.
const MAYBE_SHARED: u32 = 0x8000;

/// The offset bits of the window word.
const OFF_MASK: u32 = 0x7fff;

/// Buffers must be smaller than this for the offset to fit its 15 bits.
pub(crate) const MAX_BUF_SIZE: usize = OFF_MASK as usize + 1;

// SAFETY: the handle owns (or co-owns, read-only) its buffer; the pool and
// the owner count are Sync, and shared data is never written.
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only reads the data or adds an owner (atomically).
unsafe impl Sync for Mbuf {}

impl Mbuf {
    #[inline]
    pub(super) fn new(pool: &'static Mempool, idx: u32) -> Mbuf {
        Mbuf {
            // SAFETY: a buffer address inside the region is never null.
            buf: unsafe { NonNull::new_unchecked(pool.buf_ptr(idx)) },
            idx,
            win: window(HEADROOM as u16, 0),
        }
    }

    #[inline(always)]
    fn hdr(&self) -> &'static BufHdr {
        // SAFETY: every buffer of a pool is preceded by its header, written
        // when the pool was created; pools live for the whole process.
        unsafe { &*self.buf.as_ptr().sub(META).cast::<BufHdr>() }
    }

    #[inline(always)]
    fn rc(&self) -> &'static AtomicU16 {
        &self.hdr().refcnt
    }

    #[inline]
    pub fn pool(&self) -> &'static Mempool {
        self.hdr().pool
    }
    /// Buffer index inside the pool (stable for the buffer's life).
    #[inline]
    pub fn index(&self) -> u32 {
        self.idx
    }
    #[inline(always)]
    fn off(&self) -> u16 {
        (self.win & OFF_MASK) as u16
    }
    #[inline(always)]
    fn len16(&self) -> u16 {
        (self.win >> 16) as u16
    }
    #[inline]
    pub fn len(&self) -> usize {
        self.len16() as usize
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len16() == 0
    }
    #[inline]
    pub fn headroom(&self) -> usize {
        self.off() as usize
    }
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.pool().buf_size() - self.off() as usize - self.len16() as usize
    }
    /// More than one handle refers to this buffer (multicast fan-out).
    #[inline]
    pub fn is_shared(&self) -> bool {
        self.win & MAYBE_SHARED != 0 && self.rc().load(Ordering::Acquire) > 1
    }

    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: off+len <= buf_size is an invariant of every mutator below.
        unsafe {
            std::slice::from_raw_parts(
                self.buf.as_ptr().add(self.off() as usize),
                self.len16() as usize,
            )
        }
    }

    /// The `n` bytes of headroom right before the data (a header a provider
    /// left there, such as a GRH); `None` if the headroom is shorter.
    #[inline]
    pub fn headroom_bytes(&self, n: usize) -> Option<&[u8]> {
        let off = self.off() as usize;
        if n > off {
            return None;
        }
        // SAFETY: off - n..off is inside the buffer; read-only, as shared data is.
        Some(unsafe { std::slice::from_raw_parts(self.buf.as_ptr().add(off - n), n) })
    }

    /// Writable data, or `None` when the buffer is shared.
    #[inline]
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        if self.is_shared() {
            return None;
        }
        // SAFETY: sole owner, window inside the buffer.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.buf.as_ptr().add(self.off() as usize),
                self.len16() as usize,
            )
        })
    }

    /// `n` writable bytes at `at` (from the buffer start), unchecked.
    ///
    /// # Safety
    /// The caller is the sole owner and `at + n` is inside the buffer.
    #[inline(always)]
    unsafe fn bytes_mut(&mut self, at: usize, n: usize) -> &mut [u8] {
        std::slice::from_raw_parts_mut(self.buf.as_ptr().add(at), n)
    }

    /// Grows the window by `n` bytes at the front (a header goes there) and
    /// returns them; `None` without headroom or when shared.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let (front, _) = self.prepend_raw(u16::try_from(n).ok()?)?;
        // SAFETY: sole owner (checked by `prepend_raw`); the new front is inside the buffer.
        Some(unsafe { std::slice::from_raw_parts_mut(front, n) })
    }

    /// For the TX fast path: as `prepend`, but returns the address of the
    /// new front and the new length, so that a caller checks the length
    /// once and reads the payload and writes the header without further
    /// bounds checks.
    #[inline(always)]
    pub(crate) fn prepend_raw(&mut self, n: u16) -> Option<(*mut u8, usize)> {
        if !self.grow_front(n) {
            return None;
        }
        let win = self.win;
        // SAFETY: the new front is inside the buffer.
        let front = unsafe { self.buf.as_ptr().add((win & OFF_MASK) as usize) };
        Some((front, (win >> 16) as usize))
    }

    /// For the TX fast path, which knows where its data starts: grows the
    /// window by `n` bytes at the front (the caller writes them at the
    /// data's address minus `n`); false without room or when shared.
    #[inline(always)]
    pub(crate) fn grow_front(&mut self, n: u16) -> bool {
        let win = self.win;
        // Offset >= n and never shared, in one compare: the offset with
        // the MAYBE_SHARED bit, minus n, is at most OFF_MASK - n.
        let fast = n <= OFF_MASK as u16 && (win as u16).wrapping_sub(n) <= OFF_MASK as u16 - n;
        if !fast && (n > self.off() || self.is_shared()) {
            return false;
        }
        // off - n, len + n (n <= off, and off + len fits the buffer; the
        // MAYBE_SHARED bit is left as it is).
        self.win = win.wrapping_add(((n as u32) << 16).wrapping_sub(n as u32));
        true
    }

    /// As `prepend`, but returns the whole new window (the `n` new bytes,
    /// then the old data), so a caller can read the payload and write the
    /// header with one address computation and one shared check.
    #[inline]
    pub(crate) fn prepend_window(&mut self, n: usize) -> Option<&mut [u8]> {
        let (front, len) = self.prepend_raw(u16::try_from(n).ok()?)?;
        // SAFETY: sole owner (checked by `prepend_raw`); the window is inside the buffer.
        Some(unsafe { std::slice::from_raw_parts_mut(front, len) })
    }

    /// For the RX fast path: the data's address and length, read once.
    #[inline(always)]
    pub(crate) fn data_raw(&self) -> (*const u8, usize) {
        let win = self.win;
        // SAFETY: the window is inside the buffer.
        let front = unsafe { self.buf.as_ptr().add((win & OFF_MASK) as usize) };
        (front, (win >> 16) as usize)
    }

    /// Drops `n` bytes from the front, unchecked: off + n and len - n in
    /// one add (off + len fits the buffer, so neither half carries).
    ///
    /// # Safety
    /// `n <= self.len()`.
    #[inline(always)]
    pub(crate) unsafe fn adj_unchecked(&mut self, n: u16) {
        self.win = self
            .win
            .wrapping_add((n as u32).wrapping_sub((n as u32) << 16));
    }

    /// Grows the window by `n` bytes at the end and returns them.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() || self.is_shared() {
            return None;
        }
        let end = self.off() as usize + self.len16() as usize;
        self.win += (n as u32) << 16;
        // SAFETY: sole owner (checked once above); n fits the tailroom.
        Some(unsafe { self.bytes_mut(end, n) })
    }

    /// Drops `n` bytes from the front (strip a header). False if too short.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        if n > self.len16() as usize {
            return false;
        }
        // SAFETY: checked above.
        unsafe { self.adj_unchecked(n as u16) };
        true
    }

    /// Drops `n` bytes from the end. False if too short.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        if n > self.len16() as usize {
            return false;
        }
        self.win -= (n as u32) << 16;
        true
    }

    /// Empties the window and restores the full headroom (for reuse).
    #[inline]
    pub fn reset(&mut self) {
        self.win = (self.win & MAYBE_SHARED) | window(HEADROOM as u16, 0);
    }

    /// Another handle to the same bytes (refcount + 1), for multicast
    /// fan-out. Both handles are marked as maybe shared from now on.
    #[inline]
    pub fn share(&mut self) -> Mbuf {
        self.rc().fetch_add(1, Ordering::Relaxed);
        self.win |= MAYBE_SHARED;
        Mbuf {
            buf: self.buf,
            idx: self.idx,
            win: self.win,
        }
    }

    /// Consumes the handle without running `Drop`; returns the index if this
    /// was the last owner. Used by `LcoreCache`.
    #[inline]
    pub(super) fn into_released(self) -> Option<u32> {
        let last = Mempool::release(self.rc());
        let idx = self.idx;
        std::mem::forget(self);
        last.then_some(idx)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        if Mempool::release(self.rc()) {
            self.pool().put_shared(self.idx);
        }
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("pool", &self.pool().name())
            .field("idx", &self.idx)
            .field("off", &self.off())
            .field("len", &self.len16())
            .finish()
    }
}
