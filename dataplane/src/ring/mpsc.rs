//! Multi-producer / single-consumer ring (DPDK's `MP_ENQ | SC_DEQ` mode).
//!
//! Producers share two indices. `reserved` is claimed with one
//! compare-and-swap per burst, which gives the producer a contiguous range of
//! slots; after filling them it waits until every earlier reservation is
//! published (`published` reaches the start of its range) and then moves
//! `published` past its own range. The consumer only reads `published`, so
//! it never sees a slot that is still being written.
//!
//! Like DPDK's default multi-producer mode this is not lock-free: a producer
//! preempted between reserving and publishing holds back later producers
//! (not the consumer, which keeps draining what was published). Run
//! producers on dedicated cores, as poll-mode lcores are.

use std::fmt;

use arrayvec::ArrayVec;
use crossbeam_utils::CachePadded;

use super::burst;
use super::capacity::{ring_capacity, CapacityError};
use super::slots::Slots;
use super::sync::{spin_hint, Arc, AtomicUsize, Ordering};

struct Shared<T> {
    /// End of the slots claimed by producers (DPDK's `prod.head`).
    reserved: CachePadded<AtomicUsize>,
    /// End of the slots filled and visible to the consumer (`prod.tail`).
    published: CachePadded<AtomicUsize>,
    /// Next index the consumer reads (`cons.tail`).
    read_index: CachePadded<AtomicUsize>,
    slots: Slots<T>,
}

// SAFETY: a slot is accessed by one thread at a time: the producer that
// reserved it until it is published, then the consumer until it is released;
// hand-overs go through release/acquire index updates.
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Every reservation is published before its enqueue call returns, so
        // with all handles gone `published` covers every written slot.
        let start = self.read_index.load(Ordering::Acquire);
        let end = self.published.load(Ordering::Acquire);
        // SAFETY: `start..end` holds the published items never consumed.
        unsafe { self.slots.drop_range(start, end) };
    }
}

/// Creates a ring with at least `capacity` slots (rounded up to a power of
/// two). Clone the producer for each additional producing thread.
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
        reserved: CachePadded::new(AtomicUsize::new(0)),
        published: CachePadded::new(AtomicUsize::new(0)),
        read_index: CachePadded::new(AtomicUsize::new(0)),
        slots: Slots::new(capacity),
    });
    let producer = Producer {
        shared: shared.clone(),
        cached_read_index: 0,
    };
    let consumer = Consumer {
        shared,
        read_index: 0,
        cached_published: 0,
    };
    Ok((producer, consumer))
}

/// A writing end of an MPSC ring; clone it for each producing thread.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// The consumer's index as last seen by this handle; never ahead of the
    /// real one.
    cached_read_index: usize,
}

/// How many slots a reservation must get.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Up to this many (burst).
    UpTo(usize),
    /// Exactly this many or none (bulk).
    Exactly(usize),
}

impl<T> Producer<T> {
    /// Claims a contiguous range of free slots with one CAS and returns its
    /// start and length, or `None` if nothing (bulk: not enough) is free.
    #[inline(always)]
    fn reserve(&mut self, want: Want) -> Option<(usize, usize)> {
        let (Want::UpTo(wanted) | Want::Exactly(wanted)) = want;
        let capacity = self.shared.slots.capacity();
        let mut start = self.shared.reserved.load(Ordering::Relaxed);
        loop {
            let mut used = start.wrapping_sub(self.cached_read_index);
            if used > capacity || capacity - used < wanted {
                self.cached_read_index = self.shared.read_index.load(Ordering::Acquire);
                used = start.wrapping_sub(self.cached_read_index);
                if used > capacity {
                    // `start` predates the consumer index just read; a
                    // read-modify-write returns the latest reservation.
                    start = self.shared.reserved.fetch_add(0, Ordering::Relaxed);
                    continue;
                }
            }
            let free = capacity - used;
            let n = match want {
                Want::Exactly(_) if free < wanted => 0,
                _ => free.min(wanted),
            };
            if n == 0 {
                return None;
            }
            match self.shared.reserved.compare_exchange_weak(
                start,
                start.wrapping_add(n),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((start, n)),
                Err(current) => start = current,
            }
        }
    }

    /// Publishes the filled range `start..start + n` once every earlier
    /// reservation has been published.
    #[inline(always)]
    fn publish(&self, start: usize, n: usize) {
        // Acquire: the consumer's acquire of our store must also cover the
        // slots written by the producers that published before us.
        while self.shared.published.load(Ordering::Acquire) != start {
            spin_hint();
        }
        self.shared
            .published
            .store(start.wrapping_add(n), Ordering::Release);
    }

    /// Enqueues one item, or gives it back if the ring is full.
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), T> {
        let Some((start, _)) = self.reserve(Want::Exactly(1)) else {
            return Err(value);
        };
        // SAFETY: the slot at `start` is reserved by this call.
        unsafe { self.shared.slots.write(start, value) };
        self.publish(start, 1);
        Ok(())
    }

    /// Moves as many items as fit from the front of `src` into the ring and
    /// returns how many moved; the rest stay in `src`, in order.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&mut self, src: &mut ArrayVec<T, N>) -> usize {
        if src.is_empty() {
            return 0;
        }
        match self.reserve(Want::UpTo(src.len())) {
            Some((start, n)) => {
                self.enqueue_front(src, start, n);
                n
            }
            None => 0,
        }
    }

    /// Moves all of `src` into the ring, or nothing if it does not all fit.
    #[inline]
    pub fn enqueue_bulk<const N: usize>(&mut self, src: &mut ArrayVec<T, N>) -> bool {
        if src.is_empty() {
            return true;
        }
        match self.reserve(Want::Exactly(src.len())) {
            Some((start, n)) => {
                self.enqueue_front(src, start, n);
                true
            }
            None => false,
        }
    }

    /// Moves the first `n` items of `src` into the reserved range at `start`.
    #[inline(always)]
    fn enqueue_front<const N: usize>(&self, src: &mut ArrayVec<T, N>, start: usize, n: usize) {
        let slots = &self.shared.slots;
        // SAFETY: `start..start + n` is reserved by this call, `n <= src.len()`.
        unsafe { burst::take_front(src, n, |items| slots.write_from(start, items, n)) };
        self.publish(start, n);
    }

    /// Copies as many items of `src` as fit and returns how many.
    #[inline]
    pub fn enqueue_slice(&mut self, src: &[T]) -> usize
    where
        T: Copy,
    {
        if src.is_empty() {
            return 0;
        }
        let Some((start, n)) = self.reserve(Want::UpTo(src.len())) else {
            return 0;
        };
        // SAFETY: the range is reserved by this call; `Copy` items need no
        // ownership transfer.
        unsafe { self.shared.slots.write_from(start, src.as_ptr(), n) };
        self.publish(start, n);
        n
    }

    /// Slots in the ring (a power of two).
    pub fn capacity(&self) -> usize {
        self.shared.slots.capacity()
    }

    /// Published items in the ring; a snapshot under concurrent use.
    pub fn len(&self) -> usize {
        let read_index = self.shared.read_index.load(Ordering::Acquire);
        let published = self.shared.published.load(Ordering::Acquire);
        published.wrapping_sub(read_index).min(self.capacity())
    }

    /// Whether no item is published; a snapshot under concurrent use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots not yet reserved by any producer; a snapshot under concurrent use.
    pub fn free_count(&self) -> usize {
        let read_index = self.shared.read_index.load(Ordering::Acquire);
        let reserved = self.shared.reserved.load(Ordering::Acquire);
        let used = reserved.wrapping_sub(read_index).min(self.capacity());
        self.capacity() - used
    }
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            cached_read_index: self.cached_read_index,
        }
    }
}

/// The reading end of an MPSC ring.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Own index, identical to the published one.
    read_index: usize,
    /// `published` as last seen; never ahead of the real one.
    cached_published: usize,
}

impl<T> Consumer<T> {
    /// Number of items ready, up to `wanted`, re-reading `published` only
    /// when the cached value shows fewer than `wanted`.
    #[inline(always)]
    fn available(&mut self, wanted: usize) -> usize {
        let mut ready = self.cached_published.wrapping_sub(self.read_index);
        if ready < wanted {
            self.cached_published = self.shared.published.load(Ordering::Acquire);
            ready = self.cached_published.wrapping_sub(self.read_index);
        }
        ready.min(wanted)
    }

    /// Gives the next `n` read slots back to the producers.
    #[inline(always)]
    fn release(&mut self, n: usize) {
        self.read_index = self.read_index.wrapping_add(n);
        self.shared
            .read_index
            .store(self.read_index, Ordering::Release);
    }

    /// Dequeues one item, or `None` if nothing is published.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: `available` found a published item at `read_index`.
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
        // SAFETY: `n` published items start at `start` and fit in `dst`.
        unsafe { burst::append(dst, n, |out| slots.read_into(start, out, n)) };
        self.release(n);
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
            // SAFETY: `n` items are published and `dst` holds at least `n`;
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
        let published = self.shared.published.load(Ordering::Acquire);
        published.wrapping_sub(self.read_index)
    }

    /// Whether no item is ready; may already be stale when read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots not yet reserved by any producer; may already be lower when read.
    pub fn free_count(&self) -> usize {
        let reserved = self.shared.reserved.load(Ordering::Acquire);
        self.capacity() - reserved.wrapping_sub(self.read_index).min(self.capacity())
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Producer")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Consumer")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}
