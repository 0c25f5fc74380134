//! Single-producer / single-consumer ring (DPDK's `SP_ENQ | SC_DEQ` mode).
//!
//! Each side owns one index and only ever stores to it; the other side's
//! index is cached locally and re-read only when the cached value says the
//! ring is full (producer) or empty (consumer). In steady state an operation
//! therefore touches the slots plus one store to its own cache line, and a
//! burst publishes its index once.

use std::fmt;

use arrayvec::ArrayVec;
use crossbeam_utils::CachePadded;

use super::burst;
use super::capacity::{ring_capacity, CapacityError};
use super::slots::Slots;
use super::sync::{Arc, AtomicUsize, Ordering};

struct Shared<T> {
    /// Next index the consumer reads; stored only by the consumer.
    read_index: CachePadded<AtomicUsize>,
    /// Next index the producer writes; stored only by the producer.
    write_index: CachePadded<AtomicUsize>,
    slots: Slots<T>,
}

// SAFETY: a slot is accessed by one side at a time, handed over through the
// release/acquire index stores; items only move between threads (`T: Send`).
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let start = self.read_index.load(Ordering::Acquire);
        let end = self.write_index.load(Ordering::Acquire);
        // SAFETY: both handles are gone; `start..end` holds the items that
        // were published and never consumed.
        unsafe { self.slots.drop_range(start, end) };
    }
}

/// Creates a ring with at least `capacity` slots (rounded up to a power of
/// two).
///
/// # Panics
/// If `capacity` is 0 or cannot be rounded up; see [`try_channel`].
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    try_channel(capacity).unwrap_or_else(|error| panic!("{error}"))
}

/// Creates a ring with at least `capacity` slots (rounded up to a power of
/// two), or says why it cannot.
pub fn try_channel<T>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    let capacity = ring_capacity(capacity)?;
    let shared = Arc::new(Shared {
        read_index: CachePadded::new(AtomicUsize::new(0)),
        write_index: CachePadded::new(AtomicUsize::new(0)),
        slots: Slots::new(capacity),
    });
    let producer = Producer {
        shared: shared.clone(),
        write_index: 0,
        cached_read_index: 0,
    };
    let consumer = Consumer {
        shared,
        read_index: 0,
        cached_write_index: 0,
    };
    Ok((producer, consumer))
}

/// The writing end of an SPSC ring.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Own index, identical to the published one.
    write_index: usize,
    /// The consumer's index as last seen; never ahead of the real one.
    cached_read_index: usize,
}

impl<T> Producer<T> {
    /// Number of free slots, up to `wanted`, re-reading the consumer's index
    /// only when the cached one shows fewer than `wanted`.
    #[inline(always)]
    fn reserve(&mut self, wanted: usize) -> usize {
        let capacity = self.shared.slots.capacity();
        let mut free = capacity - self.write_index.wrapping_sub(self.cached_read_index);
        if free < wanted {
            self.cached_read_index = self.shared.read_index.load(Ordering::Acquire);
            free = capacity - self.write_index.wrapping_sub(self.cached_read_index);
        }
        free.min(wanted)
    }

    /// Makes the next `n` written slots visible to the consumer.
    #[inline(always)]
    fn publish(&mut self, n: usize) {
        self.write_index = self.write_index.wrapping_add(n);
        self.shared
            .write_index
            .store(self.write_index, Ordering::Release);
    }

    /// Enqueues one item, or gives it back if the ring is full.
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.reserve(1) == 0 {
            return Err(value);
        }
        // SAFETY: `reserve` found the slot at `write_index` free.
        unsafe { self.shared.slots.write(self.write_index, value) };
        self.publish(1);
        Ok(())
    }

    /// Moves as many items as fit from the front of `src` into the ring and
    /// returns how many moved; the rest stay in `src`, in order.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&mut self, src: &mut ArrayVec<T, N>) -> usize {
        let n = self.reserve(src.len());
        if n > 0 {
            self.enqueue_front(src, n);
        }
        n
    }

    /// Moves all of `src` into the ring, or nothing if it does not all fit.
    #[inline]
    pub fn enqueue_bulk<const N: usize>(&mut self, src: &mut ArrayVec<T, N>) -> bool {
        let n = src.len();
        if self.reserve(n) < n {
            return false;
        }
        if n > 0 {
            self.enqueue_front(src, n);
        }
        true
    }

    /// Moves the first `n` items of `src`; `n` slots must be reserved.
    #[inline(always)]
    fn enqueue_front<const N: usize>(&mut self, src: &mut ArrayVec<T, N>, n: usize) {
        let slots = &self.shared.slots;
        let start = self.write_index;
        // SAFETY: `n` slots from `start` are free and `n <= src.len()`.
        unsafe { burst::take_front(src, n, |items| slots.write_from(start, items, n)) };
        self.publish(n);
    }

    /// `n` free slots in one run (no wrap-around), for a producer that
    /// writes items in place (no burst buffer in between); `None` when fewer
    /// are free or they wrap. Nothing is visible until `commit_reserved`.
    #[cfg(not(loom))]
    #[inline]
    pub fn reserve_run(&mut self, n: usize) -> Option<*mut T> {
        if self.reserve(n) < n {
            return None;
        }
        match self.shared.slots.run_ptrs(self.write_index, n) {
            [(first, len), _] if len == n => Some(first),
            _ => None,
        }
    }

    /// Publishes the first `k` slots of the run `reserve_run` returned.
    ///
    /// # Safety
    /// `k` is at most the `n` reserved, the first `k` slots of the run were
    /// each written exactly once since, and nothing else was enqueued.
    #[cfg(not(loom))]
    #[inline]
    pub unsafe fn commit_reserved(&mut self, k: usize) {
        self.publish(k);
    }

    /// Copies as many items of `src` as fit and returns how many.
    #[inline]
    pub fn enqueue_slice(&mut self, src: &[T]) -> usize
    where
        T: Copy,
    {
        let n = self.reserve(src.len());
        if n > 0 {
            // SAFETY: `n` slots are free; copies of `Copy` items need no
            // ownership transfer.
            unsafe {
                self.shared
                    .slots
                    .write_from(self.write_index, src.as_ptr(), n)
            };
            self.publish(n);
        }
        n
    }

    /// Slots in the ring (a power of two).
    pub fn capacity(&self) -> usize {
        self.shared.slots.capacity()
    }

    /// Items in the ring; may already be lower when read.
    pub fn len(&self) -> usize {
        let read_index = self.shared.read_index.load(Ordering::Acquire);
        self.write_index.wrapping_sub(read_index)
    }

    /// Whether the ring holds no items; may already be stale when read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots this producer can fill now; may already be higher when read.
    pub fn free_count(&self) -> usize {
        self.capacity() - self.len()
    }
}

/// The reading end of an SPSC ring.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Own index, identical to the published one.
    read_index: usize,
    /// The producer's index as last seen; never ahead of the real one.
    cached_write_index: usize,
}

impl<T> Consumer<T> {
    /// Number of items ready, up to `wanted`, re-reading the producer's index
    /// only when the cached one shows fewer than `wanted`.
    #[inline(always)]
    fn available(&mut self, wanted: usize) -> usize {
        let mut ready = self.cached_write_index.wrapping_sub(self.read_index);
        if ready < wanted {
            self.cached_write_index = self.shared.write_index.load(Ordering::Acquire);
            ready = self.cached_write_index.wrapping_sub(self.read_index);
        }
        ready.min(wanted)
    }

    /// Gives the next `n` read slots back to the producer.
    #[inline(always)]
    fn release(&mut self, n: usize) {
        self.read_index = self.read_index.wrapping_add(n);
        self.shared
            .read_index
            .store(self.read_index, Ordering::Release);
    }

    /// Dequeues one item, or `None` if the ring is empty.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: `available` found an item at `read_index`.
        let value = unsafe { self.shared.slots.read(self.read_index) };
        self.release(1);
        Some(value)
    }

    /// Appends up to `dst.remaining_capacity()` items to `dst` and returns
    /// how many.
    #[inline]
    pub fn dequeue_burst<const N: usize>(&mut self, dst: &mut ArrayVec<T, N>) -> usize {
        let n = self.available(dst.remaining_capacity());
        if n > 0 {
            self.dequeue_into(dst, n);
        }
        n
    }

    /// Appends exactly `n` items to `dst`, or nothing (returning `false`) if
    /// fewer than `n` are ready or `dst` has room for fewer than `n`.
    #[inline]
    pub fn dequeue_bulk<const N: usize>(&mut self, dst: &mut ArrayVec<T, N>, n: usize) -> bool {
        if n > dst.remaining_capacity() || self.available(n) < n {
            return false;
        }
        if n > 0 {
            self.dequeue_into(dst, n);
        }
        true
    }

    /// Moves `n` ready items to the end of `dst`, which has room for them.
    #[inline(always)]
    fn dequeue_into<const N: usize>(&mut self, dst: &mut ArrayVec<T, N>, n: usize) {
        let slots = &self.shared.slots;
        let start = self.read_index;
        // SAFETY: `n` items are ready from `start` and fit in `dst`.
        unsafe { burst::append(dst, n, |out| slots.read_into(start, out, n)) };
        self.release(n);
    }

    /// Up to `max` ready items, left in their slots, as at most two runs of
    /// (first item, count), oldest first: for a consumer that works on them
    /// in place and moves them out, with no copy into a burst buffer. The
    /// items stay in the ring until `consume_peeked`.
    #[cfg(not(loom))]
    #[inline]
    pub fn peek_runs(&mut self, max: usize) -> [(*mut T, usize); 2] {
        let n = self.available(max);
        self.shared.slots.run_ptrs(self.read_index, n)
    }

    /// Gives back the slots of the `n` oldest items, which the caller has
    /// moved out of the runs `peek_runs` returned.
    ///
    /// # Safety
    /// `n` is at most the total of those runs, every item of the first `n`
    /// was moved out (read exactly once), and none of the rest was.
    #[cfg(not(loom))]
    #[inline]
    pub unsafe fn consume_peeked(&mut self, n: usize) {
        self.release(n);
    }

    /// Moves up to `max` items straight into another ring, oldest first,
    /// with no burst buffer in between (a forwarding stage); returns how many.
    #[inline]
    pub fn move_to(&mut self, dst: &mut Producer<T>, max: usize) -> usize {
        let n = self.available(max);
        let n = dst.reserve(n);
        if n == 0 {
            return 0;
        }
        // SAFETY: `available` found n items from `read_index`, `reserve`
        // found n free slots from the producer's `write_index`; items and free
        // slots never overlap, even when both ends belong to the same ring.
        unsafe {
            self.shared
                .slots
                .move_into(self.read_index, &dst.shared.slots, dst.write_index, n)
        };
        self.release(n);
        dst.publish(n);
        n
    }

    /// Copies up to `dst.len()` items into the front of `dst` and returns how
    /// many.
    #[inline]
    pub fn dequeue_slice(&mut self, dst: &mut [T]) -> usize
    where
        T: Copy,
    {
        let n = self.available(dst.len());
        if n > 0 {
            // SAFETY: `n` items are ready and `dst` holds at least `n`;
            // overwriting `Copy` items needs no drop.
            unsafe {
                self.shared
                    .slots
                    .read_into(self.read_index, dst.as_mut_ptr(), n)
            };
            self.release(n);
        }
        n
    }

    /// Slots in the ring (a power of two).
    pub fn capacity(&self) -> usize {
        self.shared.slots.capacity()
    }

    /// Items ready to dequeue; may already be higher when read.
    pub fn len(&self) -> usize {
        let write_index = self.shared.write_index.load(Ordering::Acquire);
        write_index.wrapping_sub(self.read_index)
    }

    /// Whether no item is ready; may already be stale when read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free slots; may already be lower when read.
    pub fn free_count(&self) -> usize {
        self.capacity() - self.len()
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Producer")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Consumer")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}
