//! Loom model tests: every interleaving (within a preemption bound) of the
//! real ring code, with loom's atomics and cells swapped in by the ring's
//! `sync` shim. Run with:
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p ipoib-dataplane --test ring_loom --release`
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrayvec::ArrayVec;
use ipoib_dataplane::ring::{mpsc, spsc};
use loom::thread;

/// Bounds the explored interleavings so the whole file runs in well under a
/// minute; three preemptions find the classic publication-order bugs. The
/// branch limit is raised because waiting on a full or empty ring spins.
fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.max_branches = 20_000;
    builder.check(body);
}

/// A move-only item tagged with its producer and per-producer sequence, that
/// counts its drops.
#[derive(Debug)]
struct Item {
    producer: usize,
    seq: usize,
    drops: Arc<AtomicUsize>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

fn items(producer: usize, count: usize, drops: &Arc<AtomicUsize>) -> Vec<Item> {
    (0..count)
        .map(|seq| Item {
            producer,
            seq,
            drops: drops.clone(),
        })
        .collect()
}

/// Checks that `received` holds each producer's `per_producer` items exactly
/// once and in the order that producer sent them.
fn assert_complete_and_ordered(received: &[Item], producers: usize, per_producer: usize) {
    assert_eq!(received.len(), producers * per_producer);
    let mut next = vec![0; producers];
    for item in received {
        assert_eq!(item.seq, next[item.producer], "out of order: {received:?}");
        next[item.producer] += 1;
    }
}

/// Pops until `count` items arrived, yielding while the ring is empty.
fn receive(mut pop: impl FnMut(&mut Vec<Item>), count: usize) -> Vec<Item> {
    let mut received = Vec::new();
    while received.len() < count {
        pop(&mut received);
        thread::yield_now();
    }
    received
}

#[test]
fn spsc_push_pop_delivers_each_item_once_in_order() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut producer, mut consumer) = spsc::channel(2);
        let sent = items(0, 3, &drops);
        let sender = thread::spawn(move || {
            for mut item in sent {
                while let Err(back) = producer.push(item) {
                    item = back;
                    thread::yield_now();
                }
            }
        });
        let received = receive(|out| out.extend(consumer.pop()), 3);
        sender.join().unwrap();
        assert_complete_and_ordered(&received, 1, 3);
        assert!(consumer.pop().is_none());
    });
}

#[test]
fn spsc_bursts_deliver_each_item_once_in_order() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut producer, mut consumer) = spsc::channel(4);
        let sent = items(0, 5, &drops);
        let sender = thread::spawn(move || {
            let mut burst: ArrayVec<Item, 8> = sent.into_iter().collect();
            while !burst.is_empty() {
                producer.enqueue_burst(&mut burst);
                thread::yield_now();
            }
        });
        let received = receive(
            |out| {
                let mut burst: ArrayVec<Item, 2> = ArrayVec::new();
                consumer.dequeue_burst(&mut burst);
                out.extend(burst);
            },
            5,
        );
        sender.join().unwrap();
        assert_complete_and_ordered(&received, 1, 5);
    });
}

#[test]
fn spsc_drop_frees_leftovers_on_either_side() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut producer, mut consumer) = spsc::channel(2);
        let sent = items(0, 2, &drops);
        let sender = thread::spawn(move || {
            let mut burst: ArrayVec<Item, 2> = sent.into_iter().collect();
            assert!(producer.enqueue_bulk(&mut burst));
        });
        let taken = consumer.pop();
        drop(consumer);
        sender.join().unwrap();
        let expected_in_ring = 2 - usize::from(taken.is_some());
        assert_eq!(drops.load(Ordering::Relaxed), expected_in_ring);
        drop(taken);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    });
}

/// How often the MPSC consumer tries to receive while producers run; an
/// unbounded wait makes the model too large to explore.
const CONCURRENT_ATTEMPTS: usize = 3;

/// Two producers each send `per_producer` items with `send` into a ring
/// large enough for all of them, so only the producers' publication order
/// makes anyone wait. The consumer tries `recv` a couple of times while they
/// run, then drains the rest after joining them: it never spins, which keeps
/// the model small enough to explore per-producer order with several items.
fn mpsc_two_producers(
    per_producer: usize,
    send: fn(&mut mpsc::Producer<Item>, Vec<Item>),
    recv: fn(&mut mpsc::Consumer<Item>, &mut Vec<Item>),
) {
    let drops = Arc::new(AtomicUsize::new(0));
    let (first, mut consumer) = mpsc::channel(2 * per_producer);
    let senders: Vec<_> = [first.clone(), first]
        .into_iter()
        .enumerate()
        .map(|(id, mut producer)| {
            let sent = items(id, per_producer, &drops);
            thread::spawn(move || send(&mut producer, sent))
        })
        .collect();
    let mut received = Vec::new();
    for _ in 0..CONCURRENT_ATTEMPTS {
        // Yielding lets the model run the producers between attempts
        // without spending its preemption budget.
        thread::yield_now();
        recv(&mut consumer, &mut received);
    }
    for sender in senders {
        sender.join().unwrap();
    }
    drain(&mut consumer, &mut received, recv);
    assert_complete_and_ordered(&received, 2, per_producer);
}

/// Receives with `recv` until it returns nothing more.
fn drain(
    consumer: &mut mpsc::Consumer<Item>,
    received: &mut Vec<Item>,
    recv: fn(&mut mpsc::Consumer<Item>, &mut Vec<Item>),
) {
    loop {
        let before = received.len();
        recv(consumer, received);
        if received.len() == before {
            return;
        }
    }
}

fn push_each(producer: &mut mpsc::Producer<Item>, sent: Vec<Item>) {
    for item in sent {
        assert!(producer.push(item).is_ok(), "the ring holds every item");
    }
}

fn pop_one(consumer: &mut mpsc::Consumer<Item>, out: &mut Vec<Item>) {
    out.extend(consumer.pop());
}

fn enqueue_burst_all(producer: &mut mpsc::Producer<Item>, sent: Vec<Item>) {
    let mut burst: ArrayVec<Item, 4> = sent.into_iter().collect();
    let count = burst.len();
    assert_eq!(
        producer.enqueue_burst(&mut burst),
        count,
        "the ring holds every item"
    );
}

fn dequeue_burst(consumer: &mut mpsc::Consumer<Item>, out: &mut Vec<Item>) {
    let mut burst: ArrayVec<Item, 4> = ArrayVec::new();
    consumer.dequeue_burst(&mut burst);
    out.extend(burst);
}

#[test]
fn mpsc_two_producers_push_each_item_once_in_order() {
    model(|| mpsc_two_producers(2, push_each, pop_one));
}

#[test]
fn mpsc_two_producers_burst_each_item_once_in_order() {
    model(|| mpsc_two_producers(2, enqueue_burst_all, dequeue_burst));
}

#[test]
fn mpsc_competing_bulks_are_all_or_nothing() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (first, mut consumer) = mpsc::channel(2);
        let senders: Vec<_> = [(first.clone(), 2), (first, 1)]
            .into_iter()
            .enumerate()
            .map(|(id, (mut producer, count))| {
                let mut burst: ArrayVec<Item, 2> = items(id, count, &drops).into_iter().collect();
                thread::spawn(move || {
                    let sent = producer.enqueue_bulk(&mut burst);
                    assert_eq!(burst.is_empty(), sent, "bulk moved only part");
                    if sent {
                        count
                    } else {
                        0
                    }
                })
            })
            .collect();
        let mut received = Vec::new();
        pop_one(&mut consumer, &mut received);
        let sent: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
        assert!(sent > 0, "one bulk always fits an empty ring");
        drain(&mut consumer, &mut received, pop_one);
        assert_eq!(received.len(), sent);
        let mut next = [0, 0];
        for item in &received {
            assert_eq!(item.seq, next[item.producer]);
            next[item.producer] += 1;
        }
    });
}
#[test]
fn mpsc_drop_frees_leftovers_of_every_producer() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (first, mut consumer) = mpsc::channel(4);
        let senders: Vec<_> = [first.clone(), first]
            .into_iter()
            .enumerate()
            .map(|(id, mut producer)| {
                let sent = items(id, 1, &drops);
                thread::spawn(move || push_each(&mut producer, sent))
            })
            .collect();
        let taken = consumer.pop();
        drop(consumer);
        for sender in senders {
            sender.join().unwrap();
        }
        let expected_in_ring = 2 - usize::from(taken.is_some());
        assert_eq!(drops.load(Ordering::Relaxed), expected_in_ring);
        drop(taken);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    });
}
