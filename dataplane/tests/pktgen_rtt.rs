//! Round-trip latency: the generator marks probes at the configured rate,
//! a sink counts each probe once as data and reflects it back, and the sink
//! on the sending side records round trips (and the peer's clock offset)
//! on its own clock; reflections that do not come back are counted.

use ipoib_dataplane::mem::{HugepageMode, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::pktgen::stamp::{FLAG_PEER_TIME, FLAG_PROBE, FLAG_REFLECTED, FLAG_WARMUP};
use ipoib_dataplane::pktgen::{clock, Generator, Sink, Stamp, StreamSpec, DEFAULT_WINDOW};
use ipoib_dataplane::ring::spsc;
use std::net::IpAddr;
use std::time::Duration;

fn pool(count: u32) -> &'static Mempool {
    Mempool::new(MempoolConfig {
        name: "pktgen-rtt".into(),
        count,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn spec(count: u64, probe_pps: Option<f64>) -> StreamSpec {
    let mut s = StreamSpec::single(2, ip("10.0.0.1"), ip("10.0.0.2"), 64);
    s.count = Some(count);
    s.probe_pps = probe_pps;
    s
}

/// Runs a generator to its end, `gap_ns` apart on the clock between bursts
/// (spun, not slept), returning every measured packet it produced and its
/// probe count.
fn generate(spec: &StreamSpec, pool: &'static Mempool, gap_ns: u64) -> (Vec<Mbuf>, u64) {
    let mut cache = pool.cache(32);
    let (tx, mut rx) = spsc::channel::<Mbuf>(1024);
    let mut g = Generator::new(spec, tx, pool.buf_size()).unwrap();
    let mut out = Vec::new();
    while !g.is_done() {
        let t = clock::now_ns();
        g.produce(&mut cache);
        while let Some(m) = rx.pop() {
            // Warm-up packets are freed at once (an unpaced warm-up would
            // hold the whole pool): never a probe.
            if flags(&m) & FLAG_WARMUP != 0 {
                assert_eq!(flags(&m) & FLAG_PROBE, 0, "a warm-up probe");
                continue;
            }
            out.push(m);
        }
        while clock::now_ns() < t + gap_ns {
            std::hint::spin_loop();
        }
    }
    (out, g.counters().snapshot().probes)
}

/// Probes at most every 100 us; bursts this far apart each carry one.
const PROBE_GAP: u64 = 101_000;

fn flags(m: &Mbuf) -> u16 {
    Stamp::from_ip(m.data()).unwrap().flags
}

#[test]
fn probes_follow_the_configured_rate_on_measured_packets_only() {
    let pool = pool(4096);
    let start = clock::now_ns();
    let mut s = spec(2000, Some(10_000.0));
    s.warmup = Duration::from_millis(2);
    s.burst = 4;
    let (pkts, probes) = generate(&s, pool, 0);
    let elapsed = clock::now_ns() - start;
    let marked: Vec<usize> = (0..pkts.len())
        .filter(|&i| flags(&pkts[i]) & FLAG_PROBE != 0)
        .collect();
    assert_eq!(
        marked.len() as u64,
        probes,
        "the counter matches the packets"
    );
    assert!(probes >= 1, "the first measured burst carries a probe");
    // One every 100 us at most (plus the first), never two in one burst.
    assert!(
        probes <= elapsed / 100_000 + 1,
        "{probes} probes in {elapsed} ns"
    );
    for w in marked.windows(2) {
        assert!(w[1] - w[0] >= 4, "two probes in one burst: {w:?}");
    }
    let (plain, none) = generate(&spec(500, None), pool, 0);
    assert_eq!(none, 0);
    assert!(plain.iter().all(|m| flags(m) & FLAG_PROBE == 0));
    assert!(StreamSpec {
        probe_pps: Some(1e6),
        ..spec(1, None)
    }
    .validate(2000)
    .is_err());
}

/// A probe is counted once as data where it arrives and goes back with its
/// send time untouched; the sender's side records the round trip on its
/// fake clock, keeps reflections out of its data, and estimates the
/// peer's clock offset from the smallest round trip.
#[test]
fn reflections_give_round_trips_and_the_peer_clock_offset() {
    let pool = pool(4096);
    let mut cache = pool.cache(32);
    let mut s = spec(40, Some(10_000.0));
    s.burst = 1;
    let (pkts, sent_probes) = generate(&s, pool, PROBE_GAP);
    assert!(sent_probes >= 3, "{sent_probes} probes");
    // The peer: its clock is 1 s ahead; each way takes 2.5 ms, the 3rd
    // probe's return takes 7.5 ms more (the minimum filters it out).
    const AHEAD: u64 = 1_000_000_000;
    const WAY: u64 = 2_500_000;
    let (mut to_b, b_rx) = spsc::channel::<Mbuf>(64);
    let (b_tx, mut back) = spsc::channel::<Mbuf>(64);
    let mut b = Sink::new(b_rx, 4, DEFAULT_WINDOW);
    b.reflect_to(b_tx);
    let (mut to_a, a_rx) = spsc::channel::<Mbuf>(64);
    let mut a = Sink::new(a_rx, 4, DEFAULT_WINDOW);
    let mut reflections = 0;
    let mut rtts = Vec::new();
    for m in pkts {
        let st = Stamp::from_ip(m.data()).unwrap();
        to_b.push(m).unwrap();
        b.poll_at(&mut cache, st.ts_ns + AHEAD + WAY);
        if let Some(r) = back.pop() {
            let rs = Stamp::from_ip(r.data()).unwrap();
            assert_eq!(
                (rs.seq, rs.ts_ns),
                (st.seq, st.ts_ns),
                "send time untouched"
            );
            assert_eq!(rs.flags, FLAG_REFLECTED | FLAG_PEER_TIME);
            // Addresses swapped: it goes back to the sender.
            assert_eq!(r.data()[16..20], [10, 0, 0, 1]);
            let extra = if reflections == 2 { 3 * WAY } else { 0 };
            let rtt = 2 * WAY + extra;
            rtts.push(rtt);
            to_a.push(r).unwrap();
            a.poll_at(&mut cache, st.ts_ns + rtt);
            reflections += 1;
        }
    }
    assert_eq!(reflections, sent_probes, "every probe came back once");
    let rb = b.result(2).unwrap();
    assert_eq!(
        (rb.rx_packets, rb.unique),
        (40, 40),
        "probes count once as data"
    );
    assert_eq!(rb.probes, sent_probes);
    assert_eq!(b.reflect_drops(), 0);
    assert!(a.results().is_empty(), "reflections are not data");
    let rtt = a.rtt(2).expect("round trips recorded");
    assert_eq!(rtt.reflections, sent_probes);
    let (lo, hi) = (*rtts.iter().min().unwrap(), *rtts.iter().max().unwrap());
    // hdrhistogram keeps 3 significant digits.
    assert!(
        rtt.latency.min.abs_diff(lo) <= lo / 500,
        "{:?}",
        rtt.latency
    );
    assert!(
        rtt.latency.max.abs_diff(hi) <= hi / 500,
        "{:?}",
        rtt.latency
    );
    assert!(rtt.latency.p50.abs_diff(2 * WAY) <= 2 * WAY / 500);
    assert_eq!(rtt.clock_offset_ns, Some(AHEAD as i64));
    assert_eq!(
        a.live()
            .reflections
            .load(std::sync::atomic::Ordering::Relaxed),
        sent_probes
    );
    assert_eq!(a.rtt(3), None, "no probes of another stream");
    drop((a, b, back, to_a, to_b, cache));
    assert_eq!(pool.available(), pool.capacity());
}

/// Reflections that cannot go (return ring full) are counted and their
/// buffers freed; a sink without a return ring only counts probes. The
/// sender's lost reflections are its probes minus what came back.
#[test]
fn reflections_that_cannot_go_are_counted_and_freed() {
    let pool = pool(4096);
    let mut cache = pool.cache(32);
    let mut s = spec(64, Some(10_000.0));
    s.burst = 1;
    let (pkts, probes) = generate(&s, pool, PROBE_GAP);
    assert!(probes >= 2, "{probes} probes");
    let (mut to_b, b_rx) = spsc::channel::<Mbuf>(128);
    let (b_tx, mut back) = spsc::channel::<Mbuf>(1);
    let mut b = Sink::new(b_rx, 4, DEFAULT_WINDOW);
    b.reflect_to(b_tx);
    for m in pkts {
        to_b.push(m).unwrap();
    }
    while b.poll(&mut cache) != 0 {}
    let kept = back.len() as u64;
    assert_eq!(kept, 1, "the return ring holds one");
    assert_eq!(b.reflect_drops(), probes - kept);
    assert_eq!(
        b.result(2).unwrap().reflect_drops,
        probes - kept,
        "per stream"
    );
    assert_eq!(b.result(2).unwrap().unique, 64);
    // The one reflection that went is lost on the way: nothing comes back.
    drop(back.pop());
    let (_to_a, a_rx) = spsc::channel::<Mbuf>(8);
    let a = Sink::new(a_rx, 4, DEFAULT_WINDOW);
    assert_eq!(a.rtt(2).map_or(0, |r| r.reflections), 0);
    // Without a return ring: counted, never reflected, nothing leaks.
    let (pkts, probes) = generate(&s, pool, PROBE_GAP);
    let (mut to_c, c_rx) = spsc::channel::<Mbuf>(128);
    let mut c = Sink::new(c_rx, 4, DEFAULT_WINDOW);
    for m in pkts {
        to_c.push(m).unwrap();
    }
    while c.poll(&mut cache) != 0 {}
    assert_eq!(c.result(2).unwrap().probes, probes);
    assert_eq!(c.reflect_drops(), 0);
    drop((b, c, back, to_b, to_c, cache));
    assert_eq!(pool.available(), pool.capacity());
}
