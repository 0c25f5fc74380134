//! 10,000 groups joined through the soft SA (no faults, no delay), then the
//! interface is stopped, which leaves and frees them all. Prints
//! `joins_per_s: N` and `flush_ms: N` (median of several runs).

use ipoib_control::{Engine, EngineConfig, SoftSa};
use ipoib_dataplane::wire::Gid;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUPS: usize = 10_000;
const RUNS: usize = 5;

fn mgid(n: usize) -> Gid {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&[0xff, 0x12, 0x40, 0x1b]);
    b[12..].copy_from_slice(&(n as u32).to_be_bytes());
    Gid(b)
}

/// Returns (join time of the 10,000 groups, time of the flush that leaves them).
fn run() -> (Duration, Duration) {
    let sa = Arc::new(SoftSa::reliable());
    let cfg = EngineConfig::new(Gid::link_local(1), mgid(usize::MAX >> 32));
    let e = Engine::builder(cfg, sa.clone()).build();
    e.up();
    while !e.carrier() {
        e.join_task();
        e.wait_for_work(Duration::from_millis(10));
    }
    let groups: Vec<Gid> = (0..GROUPS).map(mgid).collect();
    let target = e.stats().joins_ok + GROUPS as u64;
    let start = Instant::now();
    e.restart(&groups);
    loop {
        e.join_task();
        if e.stats().joins_ok >= target {
            break;
        }
        e.wait_for_work(Duration::from_millis(10));
    }
    e.publish();
    let joined = start.elapsed();
    assert_eq!(e.table().load().len(), GROUPS + 1);

    let start = Instant::now();
    let report = e.down();
    let flushed = start.elapsed();
    assert_eq!(report.left, GROUPS + 1);
    sa.assert_balanced();
    (joined, flushed)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let _ = run();
    let (mut joins, mut flushes) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (j, f) = run();
        joins.push(j);
        flushes.push(f);
    }
    let join = median(joins);
    let flush = median(flushes);
    println!("groups: {GROUPS}");
    println!("joins_per_s: {:.0}", GROUPS as f64 / join.as_secs_f64());
    println!("flush_ms: {:.1}", flush.as_secs_f64() * 1e3);
}
