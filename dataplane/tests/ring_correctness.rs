//! Single-threaded semantics of every ring mode: FIFO order, burst and bulk
//! rules, wrap-around, full/empty, capacity rounding and dropping leftovers.
//! The same tests run for each mode; a model-based property test compares
//! random operation sequences against a `VecDeque`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrayvec::ArrayVec;
use ipoib_dataplane::ring::{ring_capacity, CapacityError};
use proptest::prelude::*;

/// A move-only item that counts its drops, like an mbuf handle returning its
/// buffer to the pool.
#[derive(Debug)]
struct Tracked {
    seq: u64,
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn tracked(range: std::ops::Range<u64>, drops: &Arc<AtomicUsize>) -> Vec<Tracked> {
    range
        .map(|seq| Tracked {
            seq,
            drops: drops.clone(),
        })
        .collect()
}

fn seqs<'a>(items: impl IntoIterator<Item = &'a Tracked>) -> Vec<u64> {
    items.into_iter().map(|item| item.seq).collect()
}

#[test]
fn capacity_is_rounded_up_to_a_power_of_two() {
    assert_eq!(ring_capacity(1), Ok(1));
    assert_eq!(ring_capacity(3), Ok(4));
    assert_eq!(ring_capacity(1000), Ok(1024));
    assert_eq!(ring_capacity(1024), Ok(1024));
}

#[test]
fn capacity_zero_or_unroundable_is_rejected() {
    assert_eq!(ring_capacity(0), Err(CapacityError::Zero));
    assert_eq!(
        ring_capacity(usize::MAX),
        Err(CapacityError::TooLarge(usize::MAX))
    );
}

macro_rules! mode_tests {
    ($mode:ident) => {
        mod $mode {
            use super::*;
            use ipoib_dataplane::ring::$mode::{channel, try_channel};

            #[test]
            fn try_channel_reports_capacity_errors() {
                assert_eq!(try_channel::<u8>(0).err(), Some(CapacityError::Zero));
                assert!(matches!(
                    try_channel::<u8>(usize::MAX),
                    Err(CapacityError::TooLarge(_))
                ));
            }

            #[test]
            #[should_panic(expected = "at least 1")]
            fn channel_panics_on_zero_capacity() {
                let _ = channel::<u8>(0);
            }

            #[test]
            fn capacity_reports_the_rounded_size() {
                let (producer, consumer) = channel::<u8>(5);
                assert_eq!(producer.capacity(), 8);
                assert_eq!(consumer.capacity(), 8);
                assert_eq!(producer.free_count(), 8);
            }

            #[test]
            fn push_pop_is_fifo_and_full_gives_the_item_back() {
                let (mut producer, mut consumer) = channel(4);
                assert_eq!(consumer.pop(), None);
                for value in 0..4 {
                    assert_eq!(producer.push(value), Ok(()));
                }
                assert_eq!(producer.push(99), Err(99));
                assert_eq!(producer.len(), 4);
                assert_eq!(consumer.len(), 4);
                assert_eq!(producer.free_count(), 0);
                assert_eq!(consumer.free_count(), 0);
                for value in 0..4 {
                    assert_eq!(consumer.pop(), Some(value));
                }
                assert_eq!(consumer.pop(), None);
                assert!(producer.is_empty());
                assert!(consumer.is_empty());
            }

            #[test]
            fn indices_wrap_around_many_times() {
                let (mut producer, mut consumer) = channel(4);
                let mut next_out = 0u32;
                for round in 0..1000u32 {
                    for offset in 0..3 {
                        assert_eq!(producer.push(round * 3 + offset), Ok(()));
                    }
                    for _ in 0..3 {
                        assert_eq!(consumer.pop(), Some(next_out));
                        next_out += 1;
                    }
                }
                assert!(consumer.is_empty());
            }

            #[test]
            fn burst_crossing_the_end_of_the_array_keeps_order() {
                let (mut producer, mut consumer) = channel(8);
                for value in 0..5u32 {
                    producer.push(value).unwrap();
                    assert_eq!(consumer.pop(), Some(value));
                }
                let mut src: ArrayVec<u32, 8> = (10..18).collect();
                assert_eq!(producer.enqueue_burst(&mut src), 8);
                assert!(src.is_empty());
                let mut dst: ArrayVec<u32, 8> = ArrayVec::new();
                assert_eq!(consumer.dequeue_burst(&mut dst), 8);
                assert_eq!(dst.as_slice(), (10..18).collect::<Vec<_>>());
            }

            #[test]
            fn enqueue_burst_moves_what_fits_and_keeps_the_rest_in_order() {
                let drops = Arc::new(AtomicUsize::new(0));
                let (mut producer, mut consumer) = channel(4);
                producer.push(tracked(0..1, &drops).pop().unwrap()).unwrap();
                let mut src: ArrayVec<Tracked, 8> = tracked(1..7, &drops).into_iter().collect();
                assert_eq!(producer.enqueue_burst(&mut src), 3);
                assert_eq!(seqs(&src), vec![4, 5, 6]);
                assert_eq!(producer.enqueue_burst(&mut src), 0);
                assert_eq!(src.len(), 3);
                let mut dst: ArrayVec<Tracked, 8> = ArrayVec::new();
                assert_eq!(consumer.dequeue_burst(&mut dst), 4);
                assert_eq!(seqs(&dst), vec![0, 1, 2, 3]);
                assert_eq!(drops.load(Ordering::SeqCst), 0, "moves must not drop");
            }

            #[test]
            fn enqueue_burst_of_nothing_is_zero() {
                let (mut producer, consumer) = channel::<u8>(4);
                let mut src: ArrayVec<u8, 4> = ArrayVec::new();
                assert_eq!(producer.enqueue_burst(&mut src), 0);
                assert!(producer.enqueue_bulk(&mut src));
                assert!(consumer.is_empty());
            }

            #[test]
            fn enqueue_bulk_is_all_or_nothing() {
                let (mut producer, mut consumer) = channel(4);
                producer.push(0u32).unwrap();
                let mut src: ArrayVec<u32, 4> = (1..5).collect();
                assert!(!producer.enqueue_bulk(&mut src));
                assert_eq!(src.as_slice(), [1, 2, 3, 4]);
                assert_eq!(consumer.len(), 1);
                src.pop();
                assert!(producer.enqueue_bulk(&mut src));
                assert!(src.is_empty());
                let mut dst: ArrayVec<u32, 4> = ArrayVec::new();
                assert_eq!(consumer.dequeue_burst(&mut dst), 4);
                assert_eq!(dst.as_slice(), [0, 1, 2, 3]);
            }

            #[test]
            fn dequeue_burst_appends_up_to_the_room_left() {
                let (mut producer, mut consumer) = channel(8);
                let mut src: ArrayVec<u32, 8> = (1..7).collect();
                assert_eq!(producer.enqueue_burst(&mut src), 6);
                let mut dst: ArrayVec<u32, 4> = ArrayVec::new();
                dst.push(0);
                assert_eq!(consumer.dequeue_burst(&mut dst), 3);
                assert_eq!(dst.as_slice(), [0, 1, 2, 3]);
                assert_eq!(consumer.dequeue_burst(&mut dst), 0);
                dst.clear();
                assert_eq!(consumer.dequeue_burst(&mut dst), 3);
                assert_eq!(dst.as_slice(), [4, 5, 6]);
                assert_eq!(consumer.dequeue_burst(&mut dst), 0);
            }

            #[test]
            fn dequeue_bulk_is_all_or_nothing() {
                let (mut producer, mut consumer) = channel(8);
                let mut src: ArrayVec<u32, 8> = (0..5).collect();
                assert!(producer.enqueue_bulk(&mut src));
                let mut dst: ArrayVec<u32, 4> = ArrayVec::new();
                assert!(!consumer.dequeue_bulk(&mut dst, 5), "no room for 5");
                assert!(dst.is_empty());
                assert!(consumer.dequeue_bulk(&mut dst, 3));
                assert_eq!(dst.as_slice(), [0, 1, 2]);
                dst.clear();
                assert!(!consumer.dequeue_bulk(&mut dst, 3), "only 2 ready");
                assert!(dst.is_empty());
                assert_eq!(consumer.len(), 2);
                assert!(consumer.dequeue_bulk(&mut dst, 2));
                assert_eq!(dst.as_slice(), [3, 4]);
                assert!(consumer.dequeue_bulk(&mut dst, 0));
            }

            #[test]
            fn slices_copy_what_fits() {
                let (mut producer, mut consumer) = channel(4);
                assert_eq!(producer.enqueue_slice(&[1u16, 2, 3]), 3);
                assert_eq!(producer.enqueue_slice(&[4, 5, 6]), 1);
                let mut out = [0u16; 3];
                assert_eq!(consumer.dequeue_slice(&mut out), 3);
                assert_eq!(out, [1, 2, 3]);
                assert_eq!(consumer.dequeue_slice(&mut out), 1);
                assert_eq!(out[0], 4);
                assert_eq!(consumer.dequeue_slice(&mut out), 0);
            }

            #[test]
            fn zero_sized_items_are_counted() {
                let (mut producer, mut consumer) = channel(4);
                for _ in 0..4 {
                    assert_eq!(producer.push(()), Ok(()));
                }
                assert_eq!(producer.push(()), Err(()));
                assert_eq!(consumer.len(), 4);
                let mut dst: ArrayVec<(), 8> = ArrayVec::new();
                assert_eq!(consumer.dequeue_burst(&mut dst), 4);
                assert_eq!(consumer.pop(), None);
            }

            #[test]
            fn dropping_the_ring_drops_exactly_the_leftovers() {
                let drops = Arc::new(AtomicUsize::new(0));
                let (mut producer, mut consumer) = channel(8);
                // Move the indices so the leftovers straddle the array end.
                for item in tracked(0..6, &drops) {
                    producer.push(item).unwrap();
                }
                for _ in 0..6 {
                    drop(consumer.pop());
                }
                assert_eq!(drops.load(Ordering::SeqCst), 6);
                let mut src: ArrayVec<Tracked, 8> = tracked(6..13, &drops).into_iter().collect();
                assert_eq!(producer.enqueue_burst(&mut src), 7);
                let kept = consumer.pop().unwrap();
                assert_eq!(kept.seq, 6);
                drop(producer);
                assert_eq!(
                    drops.load(Ordering::SeqCst),
                    6,
                    "consumer still holds the ring"
                );
                drop(consumer);
                assert_eq!(drops.load(Ordering::SeqCst), 12);
                drop(kept);
                assert_eq!(drops.load(Ordering::SeqCst), 13);
            }

            #[derive(Debug, Clone)]
            enum Op {
                Push,
                EnqueueBurst(usize),
                EnqueueBulk(usize),
                Pop,
                DequeueBurst(usize),
                DequeueBulk(usize),
            }

            fn op() -> impl Strategy<Value = Op> {
                prop_oneof![
                    Just(Op::Push),
                    (0..=8usize).prop_map(Op::EnqueueBurst),
                    (0..=8usize).prop_map(Op::EnqueueBulk),
                    Just(Op::Pop),
                    (0..=8usize).prop_map(Op::DequeueBurst),
                    (0..=8usize).prop_map(Op::DequeueBulk),
                ]
            }

            proptest! {
                #[test]
                fn behaves_like_a_bounded_deque(
                    requested in 1..=16usize,
                    ops in proptest::collection::vec(op(), 1..200),
                ) {
                    let (mut producer, mut consumer) = channel::<u64>(requested);
                    let capacity = requested.next_power_of_two();
                    let mut model = VecDeque::new();
                    let mut next = 0u64;
                    for op in ops {
                        match op {
                            Op::Push => {
                                let item = fresh_range(&mut next, 1)[0];
                                let fits = model.len() < capacity;
                                prop_assert_eq!(producer.push(item).is_ok(), fits);
                                if fits { model.push_back(item); }
                            }
                            Op::EnqueueBurst(n) => {
                                let all = fresh_range(&mut next, n);
                                let mut src: ArrayVec<u64, 8> = all.iter().copied().collect();
                                let expected = n.min(capacity - model.len());
                                prop_assert_eq!(producer.enqueue_burst(&mut src), expected);
                                model.extend(&all[..expected]);
                                prop_assert_eq!(src.as_slice(), &all[expected..]);
                            }
                            Op::EnqueueBulk(n) => {
                                let all = fresh_range(&mut next, n);
                                let mut src: ArrayVec<u64, 8> = all.iter().copied().collect();
                                let fits = n <= capacity - model.len();
                                prop_assert_eq!(producer.enqueue_bulk(&mut src), fits);
                                if fits { model.extend(&all); }
                                prop_assert_eq!(src.is_empty(), fits);
                            }
                            Op::Pop => {
                                prop_assert_eq!(consumer.pop(), model.pop_front());
                            }
                            Op::DequeueBurst(room) => {
                                let mut dst: ArrayVec<u64, 8> = ArrayVec::new();
                                for _ in room..8 { dst.push(u64::MAX); }
                                let expected = room.min(model.len());
                                prop_assert_eq!(consumer.dequeue_burst(&mut dst), expected);
                                let got: Vec<u64> = dst[8 - room..].to_vec();
                                let want: Vec<u64> = model.drain(..expected).collect();
                                prop_assert_eq!(got, want);
                            }
                            Op::DequeueBulk(n) => {
                                let mut dst: ArrayVec<u64, 8> = ArrayVec::new();
                                let ready = n <= model.len();
                                prop_assert_eq!(consumer.dequeue_bulk(&mut dst, n), ready);
                                let want: Vec<u64> =
                                    if ready { model.drain(..n).collect() } else { Vec::new() };
                                prop_assert_eq!(dst.to_vec(), want);
                            }
                        }
                        prop_assert_eq!(consumer.len(), model.len());
                        prop_assert_eq!(producer.len(), model.len());
                        prop_assert_eq!(producer.free_count(), capacity - model.len());
                    }
                }
            }

            /// The next `n` sequence numbers.
            fn fresh_range(next: &mut u64, n: usize) -> Vec<u64> {
                let start = *next;
                *next += n as u64;
                (start..*next).collect()
            }
        }
    };
}

mode_tests!(spsc);
mode_tests!(mpsc);

#[test]
fn mpsc_cloned_producers_share_one_fifo() {
    let (mut first, mut consumer) = ipoib_dataplane::ring::mpsc::channel(8);
    let mut second = first.clone();
    first.push(1u32).unwrap();
    second.push(2).unwrap();
    let mut src: ArrayVec<u32, 4> = [3, 4, 5].into_iter().collect();
    assert_eq!(second.enqueue_burst(&mut src), 3);
    first.push(6).unwrap();
    assert_eq!(second.free_count(), 2);
    let mut dst: ArrayVec<u32, 8> = ArrayVec::new();
    assert_eq!(consumer.dequeue_burst(&mut dst), 6);
    assert_eq!(dst.as_slice(), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn mpsc_leftovers_wait_for_the_last_producer() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (first, consumer) = ipoib_dataplane::ring::mpsc::channel(4);
    let mut second = first.clone();
    second.push(tracked(0..1, &drops).pop().unwrap()).unwrap();
    drop(first);
    drop(consumer);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(second);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn spsc_move_to_keeps_order_across_wraps() {
    use ipoib_dataplane::ring::spsc;
    let (mut p1, mut c1) = spsc::channel::<u64>(8);
    let (mut p2, mut c2) = spsc::channel::<u64>(4);
    let mut next = 0u64;
    let mut expect = 0u64;
    for round in 0..50 {
        while p1.push(next).is_ok() {
            next += 1;
        }
        let moved = c1.move_to(&mut p2, 3 + round % 4);
        assert!(moved <= 4);
        for _ in 0..(round % 3 + 1) {
            if let Some(v) = c2.pop() {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
    }
    // A ring forwarding into itself: items and free slots never overlap.
    let (mut p, mut c) = spsc::channel::<u64>(8);
    for v in 0..5 {
        p.push(v).unwrap();
    }
    assert_eq!(c.move_to(&mut p, 2), 2);
    let rest: Vec<u64> = std::iter::from_fn(|| c.pop()).collect();
    assert_eq!(rest, vec![2, 3, 4, 0, 1]);
}

#[test]
fn spsc_peek_runs_in_place_across_the_wrap() {
    use ipoib_dataplane::ring::spsc;
    let (mut p, mut c) = spsc::channel::<u64>(8);
    let mut next = 0u64;
    let mut expect = 0u64;
    for round in 0..40 {
        while p.push(next).is_ok() {
            next += 1;
        }
        let runs = c.peek_runs(1 + round % 8);
        let total = runs[0].1 + runs[1].1;
        assert!(total <= 1 + round % 8);
        for (first, n) in runs {
            for i in 0..n {
                // SAFETY: the runs hold `n` initialised items each, moved out once.
                let v = unsafe { first.add(i).read() };
                assert_eq!(v, expect);
                expect += 1;
            }
        }
        // SAFETY: every peeked item was read out above.
        unsafe { c.consume_peeked(total) };
    }
    assert!(expect > 100, "the ring wrapped many times");
}

#[test]
fn spsc_reserve_run_writes_in_place_and_never_wraps() {
    use ipoib_dataplane::ring::spsc;
    let (mut p, mut c) = spsc::channel::<u64>(8);
    let mut next = 0u64;
    let mut expect = 0u64;
    let (mut direct, mut refused) = (0, 0);
    for round in 0..64 {
        let want = 1 + round % 5;
        match p.reserve_run(want) {
            Some(first) => {
                // Write fewer than reserved now and then: only those appear.
                let k = if round % 3 == 0 { want - 1 } else { want };
                for i in 0..k {
                    // SAFETY: `want` free slots in one run from `first`.
                    unsafe { first.add(i).write(next) };
                    next += 1;
                }
                // SAFETY: the first k slots were written once each.
                unsafe { p.commit_reserved(k) };
                direct += 1;
            }
            None => {
                // Refused only when the slots would wrap or are not free.
                assert!(p.free_count() < want || want > 1, "round {round}");
                refused += 1;
            }
        }
        // Drain a little less than produced so the ring is sometimes full.
        for _ in 0..(round % 4) {
            if let Some(v) = c.pop() {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
    }
    while let Some(v) = c.pop() {
        assert_eq!(v, expect);
        expect += 1;
    }
    assert_eq!(expect, next, "every committed item arrived once, in order");
    assert!(
        direct > 20 && refused > 0,
        "direct {direct} refused {refused}"
    );
    // A full ring refuses; free slots that wrap are refused, a run that fits is not.
    let (mut p, mut c) = spsc::channel::<u64>(4);
    for v in 0..4 {
        p.push(v).unwrap();
    }
    assert!(p.reserve_run(1).is_none(), "full");
    for _ in 0..4 {
        c.pop();
    }
    p.push(4).unwrap();
    p.push(5).unwrap();
    p.push(6).unwrap();
    c.pop();
    c.pop();
    c.pop();
    // Empty, next write at slot 3: two slots would wrap to slot 0.
    assert!(p.reserve_run(2).is_none(), "slots 3 and 0 wrap");
    assert!(p.reserve_run(1).is_some(), "slot 3 alone is one run");
}
