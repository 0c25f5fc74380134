//! Criterion view of burst-32 throughput per element: our SPSC ring, `rtrb`
//! (chunk API) and `crossbeam_queue::ArrayQueue` (per item), on one thread
//! and across a producer and a consumer thread. `ring_peers` runs the same
//! workloads with its own timing for the comparison script.

#[path = "ring_workloads.rs"]
mod workloads;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use workloads::{array_queue, rtrb_ring, single_thread, spsc_ring, two_threads, BURST};

/// Items per timed iteration: criterion's iteration count times one burst.
fn items(iterations: u64) -> u64 {
    iterations * BURST as u64
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.throughput(Throughput::Elements(BURST as u64));
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
}

fn single_thread_burst(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_burst32_single_thread");
    configure(&mut group);
    group.bench_function("spsc", |b| {
        b.iter_custom(|n| {
            let (tx, rx) = spsc_ring();
            single_thread(tx, rx, items(n))
        })
    });
    group.bench_function("rtrb", |b| {
        b.iter_custom(|n| {
            let (tx, rx) = rtrb_ring();
            single_thread(tx, rx, items(n))
        })
    });
    group.bench_function("arrayqueue", |b| {
        b.iter_custom(|n| {
            let (tx, rx) = array_queue();
            single_thread(tx, rx, items(n))
        })
    });
    group.finish();
}

fn two_thread_burst(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_burst32_two_threads");
    configure(&mut group);
    group.sample_size(20);
    group.bench_function("spsc", |b| {
        b.iter_custom(|n| {
            let (tx, rx) = spsc_ring();
            two_threads(tx, rx, items(n))
        })
    });
    group.bench_function("rtrb", |b| {
        b.iter_custom(|n| {
            let (tx, rx) = rtrb_ring();
            two_threads(tx, rx, items(n))
        })
    });
    group.bench_function("arrayqueue", |b| {
        b.iter_custom(|n| {
            let (tx, rx) = array_queue();
            two_threads(tx, rx, items(n))
        })
    });
    group.finish();
}

criterion_group!(benches, single_thread_burst, two_thread_burst);
criterion_main!(benches);
