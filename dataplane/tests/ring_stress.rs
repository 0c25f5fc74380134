//! Threads pushing millions of sequenced items through the rings; the
//! consumer checks per-producer order and the exact count. Producers and the
//! consumer vary their burst sizes and mix single, burst and bulk calls so
//! every path runs while the other side is active. Sized to finish in a few
//! seconds in a debug build on two cores.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use arrayvec::ArrayVec;
use ipoib_dataplane::ring::{mpsc, spsc};

const BURST: usize = 32;

/// A move-only 16-byte item, like an mbuf handle.
#[derive(Debug)]
struct Seq {
    producer: u64,
    seq: u64,
}

/// The common surface of the producer handles, so one driver exercises both.
trait Sink {
    fn push(&mut self, item: Seq) -> Result<(), Seq>;
    fn enqueue_burst(&mut self, src: &mut ArrayVec<Seq, BURST>) -> usize;
    fn enqueue_bulk(&mut self, src: &mut ArrayVec<Seq, BURST>) -> bool;
}

/// The common surface of the consumer handles.
trait Source {
    fn pop(&mut self) -> Option<Seq>;
    fn dequeue_burst(&mut self, dst: &mut ArrayVec<Seq, BURST>) -> usize;
    fn dequeue_bulk(&mut self, dst: &mut ArrayVec<Seq, BURST>, n: usize) -> bool;
}

macro_rules! impl_handles {
    ($mode:ident) => {
        impl Sink for $mode::Producer<Seq> {
            fn push(&mut self, item: Seq) -> Result<(), Seq> {
                $mode::Producer::push(self, item)
            }
            fn enqueue_burst(&mut self, src: &mut ArrayVec<Seq, BURST>) -> usize {
                $mode::Producer::enqueue_burst(self, src)
            }
            fn enqueue_bulk(&mut self, src: &mut ArrayVec<Seq, BURST>) -> bool {
                $mode::Producer::enqueue_bulk(self, src)
            }
        }

        impl Source for $mode::Consumer<Seq> {
            fn pop(&mut self) -> Option<Seq> {
                $mode::Consumer::pop(self)
            }
            fn dequeue_burst(&mut self, dst: &mut ArrayVec<Seq, BURST>) -> usize {
                $mode::Consumer::dequeue_burst(self, dst)
            }
            fn dequeue_bulk(&mut self, dst: &mut ArrayVec<Seq, BURST>, n: usize) -> bool {
                $mode::Consumer::dequeue_bulk(self, dst, n)
            }
        }
    };
}

impl_handles!(spsc);
impl_handles!(mpsc);

/// Sends `count` items numbered from 0, cycling through single pushes,
/// bursts and bulk enqueues of varying sizes.
fn produce(sink: &mut impl Sink, producer: u64, count: u64) {
    let mut next = 0;
    let mut round = 0usize;
    let mut pending: ArrayVec<Seq, BURST> = ArrayVec::new();
    while next < count || !pending.is_empty() {
        let size = 1 + (round * 7) % BURST;
        while pending.len() < size && next < count {
            pending.push(Seq {
                producer,
                seq: next,
            });
            next += 1;
        }
        let progressed = match round % 3 {
            0 => match pending.pop_at(0) {
                Some(item) => match sink.push(item) {
                    Ok(()) => true,
                    Err(item) => {
                        pending.insert(0, item);
                        false
                    }
                },
                None => false,
            },
            1 => sink.enqueue_burst(&mut pending) > 0,
            _ => sink.enqueue_bulk(&mut pending),
        };
        round += 1;
        if !progressed {
            thread::yield_now();
        }
    }
}

/// Receives `per_producer` items from each of `producers`, checking that
/// each producer's items arrive in order, then checks the ring is empty.
fn consume(source: &mut impl Source, producers: usize, per_producer: u64) {
    let mut next = vec![0u64; producers];
    let total = producers as u64 * per_producer;
    let mut received = 0u64;
    let mut round = 0usize;
    let mut batch: ArrayVec<Seq, BURST> = ArrayVec::new();
    while received < total {
        let got = match round % 3 {
            0 => source.pop().map(|item| batch.push(item)).is_some(),
            1 => source.dequeue_burst(&mut batch) > 0,
            _ => source.dequeue_bulk(&mut batch, 1 + (round * 5) % BURST),
        };
        round += 1;
        if !got {
            thread::yield_now();
            continue;
        }
        for item in batch.drain(..) {
            let expected = &mut next[item.producer as usize];
            assert_eq!(
                item.seq, *expected,
                "producer {} out of order",
                item.producer
            );
            *expected += 1;
            received += 1;
        }
    }
    assert!(next.iter().all(|&count| count == per_producer));
    assert!(source.pop().is_none(), "more items than were sent");
}

#[test]
fn spsc_delivers_millions_in_order() {
    const COUNT: u64 = 2_000_000;
    let (mut producer, mut consumer) = spsc::channel(256);
    let sender = thread::spawn(move || produce(&mut producer, 0, COUNT));
    consume(&mut consumer, 1, COUNT);
    sender.join().unwrap();
}

#[test]
fn mpsc_delivers_every_producer_in_order() {
    const PRODUCERS: usize = 3;
    const PER_PRODUCER: u64 = 500_000;
    let (producer, mut consumer) = mpsc::channel(256);
    let senders: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let mut producer = producer.clone();
            thread::spawn(move || produce(&mut producer, id as u64, PER_PRODUCER))
        })
        .collect();
    drop(producer);
    consume(&mut consumer, PRODUCERS, PER_PRODUCER);
    for sender in senders {
        sender.join().unwrap();
    }
}

/// Counts drops of the items it is attached to.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn items_left_when_the_consumer_quits_early_are_dropped_once() {
    const READ: usize = 50_000;
    let drops = Arc::new(AtomicUsize::new(0));
    let consumer_done = Arc::new(AtomicBool::new(false));
    let (mut producer, mut consumer) = spsc::channel(1024);
    let sender = {
        let drops = drops.clone();
        let consumer_done = consumer_done.clone();
        thread::spawn(move || {
            let mut created = 0;
            loop {
                let item = Counted(drops.clone());
                created += 1;
                if let Err(item) = producer.push(item) {
                    drop(item);
                    if consumer_done.load(Ordering::Acquire) {
                        return created;
                    }
                    thread::yield_now();
                }
            }
        })
    };
    let mut read = 0;
    while read < READ {
        match consumer.pop() {
            Some(item) => {
                drop(item);
                read += 1;
            }
            None => thread::yield_now(),
        }
    }
    drop(consumer);
    consumer_done.store(true, Ordering::Release);
    let created = sender.join().unwrap();
    assert!(created > READ);
    assert_eq!(drops.load(Ordering::Relaxed), created);
}
