//! Workloads shared by the ring benches: the same burst-32 producer and
//! consumer loops driven over our SPSC ring, `rtrb` (through its chunk API)
//! and `crossbeam_queue::ArrayQueue` (per item; it has no burst API).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use crossbeam_queue::ArrayQueue;
use ipoib_dataplane::ring::spsc;
use rtrb::chunks::ChunkError;

pub const BURST: usize = 32;
pub const RING_CAPACITY: usize = 1024;

pub type Burst = ArrayVec<Handle, BURST>;

/// A 16-byte move-only item, the size of an mbuf handle.
pub struct Handle {
    index: u64,
    meta: u64,
}

/// The sending half of a queue under test.
pub trait Tx: Send + 'static {
    /// Moves items from the front of `src`; returns how many.
    fn send(&mut self, src: &mut Burst) -> usize;
}

/// The receiving half of a queue under test.
pub trait Rx: Send + 'static {
    /// Appends items to `dst`; returns how many.
    fn recv(&mut self, dst: &mut Burst) -> usize;
}

impl Tx for spsc::Producer<Handle> {
    #[inline]
    fn send(&mut self, src: &mut Burst) -> usize {
        self.enqueue_burst(src)
    }
}

impl Rx for spsc::Consumer<Handle> {
    #[inline]
    fn recv(&mut self, dst: &mut Burst) -> usize {
        self.dequeue_burst(dst)
    }
}

impl Tx for rtrb::Producer<Handle> {
    #[inline]
    fn send(&mut self, src: &mut Burst) -> usize {
        let chunk = match self.write_chunk_uninit(src.len()) {
            Ok(chunk) => chunk,
            Err(ChunkError::TooFewSlots(0)) => return 0,
            Err(ChunkError::TooFewSlots(free)) => match self.write_chunk_uninit(free) {
                Ok(chunk) => chunk,
                Err(_) => return 0,
            },
        };
        let n = chunk.len();
        chunk.fill_from_iter(src.drain(..n))
    }
}

impl Rx for rtrb::Consumer<Handle> {
    #[inline]
    fn recv(&mut self, dst: &mut Burst) -> usize {
        let chunk = match self.read_chunk(dst.remaining_capacity()) {
            Ok(chunk) => chunk,
            Err(ChunkError::TooFewSlots(0)) => return 0,
            Err(ChunkError::TooFewSlots(ready)) => match self.read_chunk(ready) {
                Ok(chunk) => chunk,
                Err(_) => return 0,
            },
        };
        let n = chunk.len();
        dst.extend(chunk);
        n
    }
}

/// One end of a shared `ArrayQueue`.
pub struct ArrayQueueEnd(Arc<ArrayQueue<Handle>>);

impl Tx for ArrayQueueEnd {
    #[inline]
    fn send(&mut self, src: &mut Burst) -> usize {
        let mut sent = 0;
        let mut unsent = Burst::new();
        for item in src.drain(..) {
            if unsent.is_empty() {
                match self.0.push(item) {
                    Ok(()) => sent += 1,
                    Err(item) => unsent.push(item),
                }
            } else {
                unsent.push(item);
            }
        }
        *src = unsent;
        sent
    }
}

impl Rx for ArrayQueueEnd {
    #[inline]
    fn recv(&mut self, dst: &mut Burst) -> usize {
        let before = dst.len();
        while !dst.is_full() {
            match self.0.pop() {
                Some(item) => dst.push(item),
                None => break,
            }
        }
        dst.len() - before
    }
}

pub fn spsc_ring() -> (spsc::Producer<Handle>, spsc::Consumer<Handle>) {
    spsc::channel(RING_CAPACITY)
}

pub fn rtrb_ring() -> (rtrb::Producer<Handle>, rtrb::Consumer<Handle>) {
    rtrb::RingBuffer::new(RING_CAPACITY)
}

pub fn array_queue() -> (ArrayQueueEnd, ArrayQueueEnd) {
    let queue = Arc::new(ArrayQueue::new(RING_CAPACITY));
    (ArrayQueueEnd(queue.clone()), ArrayQueueEnd(queue))
}

/// Tops `src` up to a full burst with the next sequence numbers, without
/// going past `total` items.
#[inline]
fn refill(src: &mut Burst, next: &mut u64, total: u64) {
    while !src.is_full() && *next < total {
        src.push(Handle {
            index: *next,
            meta: *next ^ 0x5a5a,
        });
        *next += 1;
    }
}

/// Consumes a received burst, folding it into a checksum.
#[inline]
fn consume(dst: &mut Burst) -> u64 {
    dst.drain(..)
        .map(|handle| handle.index + (handle.meta ^ handle.index ^ 0x5a5a))
        .sum()
}

/// The checksum of items `0..total`, to prove every queue moved them all.
fn expected_checksum(total: u64) -> u64 {
    total * (total - 1) / 2
}

/// Enqueues and dequeues `total` items in bursts on one thread; returns the
/// elapsed time.
pub fn single_thread(mut tx: impl Tx, mut rx: impl Rx, total: u64) -> Duration {
    let mut src = Burst::new();
    let mut dst = Burst::new();
    let mut next = 0;
    let mut checksum = 0;
    let start = Instant::now();
    while next < total || !src.is_empty() {
        refill(&mut src, &mut next, total);
        black_box(tx.send(&mut src));
        black_box(rx.recv(&mut dst));
        checksum += consume(&mut dst);
    }
    let elapsed = start.elapsed();
    assert_eq!(black_box(checksum), expected_checksum(total));
    elapsed
}

/// Streams `total` items from a producer thread to a consumer thread in
/// bursts, each pinned to its own core when there are two; returns the time
/// until the consumer has them all.
pub fn two_threads(tx: impl Tx, rx: impl Rx, total: u64) -> Duration {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pin = move |index: usize| {
        if cores.len() >= 2 {
            core_affinity::set_for_current(cores[index]);
        }
    };
    let ready = Arc::new(Barrier::new(2));
    let producer = {
        let ready = ready.clone();
        let pin = pin.clone();
        thread::spawn(move || {
            pin(0);
            let mut tx = tx;
            let mut src = Burst::new();
            let mut next = 0;
            ready.wait();
            while next < total || !src.is_empty() {
                refill(&mut src, &mut next, total);
                if tx.send(&mut src) == 0 {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let consumer = thread::spawn(move || {
        pin(1);
        let mut rx = rx;
        let mut dst = Burst::new();
        let mut received = 0;
        let mut checksum = 0;
        ready.wait();
        let start = Instant::now();
        while received < total {
            let n = rx.recv(&mut dst);
            if n == 0 {
                std::hint::spin_loop();
                continue;
            }
            received += n as u64;
            checksum += consume(&mut dst);
        }
        let elapsed = start.elapsed();
        assert_eq!(checksum, expected_checksum(total));
        elapsed
    });
    producer.join().expect("producer thread");
    consumer.join().expect("consumer thread")
}
