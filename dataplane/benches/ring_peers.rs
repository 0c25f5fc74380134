//! Our SPSC ring against `rtrb` and `crossbeam_queue::ArrayQueue`, burst 32,
//! in one process: several alternating repetitions, median per queue,
//! printed as `name: value` lines for `benches/ring_vs_peers.sh`.
//! Ratios are peer time / our time, so higher is better for us.

#[path = "ring_workloads.rs"]
mod workloads;

use std::time::Duration;

use workloads::{array_queue, rtrb_ring, single_thread, spsc_ring, two_threads};

const REPETITIONS: usize = 9;
const SINGLE_THREAD_ITEMS: u64 = 4_000_000;
const TWO_THREAD_ITEMS: u64 = 4_000_000;
const QUEUES: [&str; 3] = ["spsc", "rtrb", "arrayqueue"];

fn run(queue: &str, two_thread: bool) -> Duration {
    match (queue, two_thread) {
        ("spsc", false) => {
            let (tx, rx) = spsc_ring();
            single_thread(tx, rx, SINGLE_THREAD_ITEMS)
        }
        ("rtrb", false) => {
            let (tx, rx) = rtrb_ring();
            single_thread(tx, rx, SINGLE_THREAD_ITEMS)
        }
        ("arrayqueue", false) => {
            let (tx, rx) = array_queue();
            single_thread(tx, rx, SINGLE_THREAD_ITEMS)
        }
        ("spsc", true) => {
            let (tx, rx) = spsc_ring();
            two_threads(tx, rx, TWO_THREAD_ITEMS)
        }
        ("rtrb", true) => {
            let (tx, rx) = rtrb_ring();
            two_threads(tx, rx, TWO_THREAD_ITEMS)
        }
        ("arrayqueue", true) => {
            let (tx, rx) = array_queue();
            two_threads(tx, rx, TWO_THREAD_ITEMS)
        }
        _ => unreachable!("unknown queue {queue}"),
    }
}

fn ns_per_item(elapsed: Duration, items: u64) -> f64 {
    elapsed.as_secs_f64() * 1e9 / items as f64
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median ns per item of each queue, repetitions rotating the queue order so
/// none always runs first or last.
fn measure(two_thread: bool, items: u64) -> [f64; 3] {
    for queue in QUEUES {
        run(queue, two_thread); // warm-up: page faults, frequency ramp
    }
    let mut samples: [Vec<f64>; 3] = Default::default();
    for repetition in 0..REPETITIONS {
        for offset in 0..QUEUES.len() {
            let which = (repetition + offset) % QUEUES.len();
            let elapsed = run(QUEUES[which], two_thread);
            samples[which].push(ns_per_item(elapsed, items));
        }
    }
    samples.map(median)
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no options.
    let [spsc, rtrb, arrayqueue] = measure(false, SINGLE_THREAD_ITEMS);
    println!("single_spsc_ns_per_elem: {spsc:.3}");
    println!("single_rtrb_ns_per_elem: {rtrb:.3}");
    println!("single_arrayqueue_ns_per_elem: {arrayqueue:.3}");
    println!("single_ratio_vs_rtrb: {:.2}", rtrb / spsc);
    println!("single_ratio_vs_arrayqueue: {:.2}", arrayqueue / spsc);

    let [spsc, rtrb, arrayqueue] = measure(true, TWO_THREAD_ITEMS);
    println!("spsc_ns_per_elem: {spsc:.3}");
    println!("rtrb_ns_per_elem: {rtrb:.3}");
    println!("arrayqueue_ns_per_elem: {arrayqueue:.3}");
    println!("ratio_vs_rtrb: {:.2}", rtrb / spsc);
    println!("ratio_vs_arrayqueue: {:.2}", arrayqueue / spsc);
}
