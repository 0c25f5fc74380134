//! The sink's accounting is exact: under the fabric's seeded loss and reorder
//! injection, reported loss equals the fabric's injected-loss counter and
//! duplicates/reorders match an independent model of the arrival order.

use ipoib_dataplane::lcore::{Iface, IfaceConfig, IfaceWiring, NeighEntry, NeighTable};
use ipoib_dataplane::mem::{HugepageMode, LcoreCache, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::pktgen::stamp::{END_REPORT_LEN, FLAG_END};
use ipoib_dataplane::pktgen::{
    end_report_fits, Generator, Rate, Rng, Sink, Stamp, StreamSpec, DEFAULT_WINDOW,
};
use ipoib_dataplane::provider::fabric::{
    DropReason, Fabric, FabricConfig, FabricQp, Injection, PortSpec,
};
use ipoib_dataplane::provider::{AhAttr, Provider};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::IfaceStats;
use ipoib_dataplane::tables::{published, JoinRequestQueue, McastTable};
use ipoib_dataplane::wire::Gid;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

fn pool(count: u32) -> &'static Mempool {
    Mempool::new(MempoolConfig {
        name: "pktgen".into(),
        count,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What an independent, obviously correct model says of an arrival order.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    unique: u64,
    duplicates: u64,
    reordered: u64,
}

fn model(arrivals: &[u64]) -> Expected {
    let mut seen = HashSet::new();
    let mut top: Option<u64> = None;
    let mut e = Expected {
        unique: 0,
        duplicates: 0,
        reordered: 0,
    };
    for &s in arrivals {
        if !seen.insert(s) {
            e.duplicates += 1;
            continue;
        }
        e.unique += 1;
        if top.is_some_and(|t| s < t) {
            e.reordered += 1;
        }
        top = top.max(Some(s));
    }
    e
}

fn iface(
    qp: FabricQp,
    ifindex: u16,
    tx_in: Vec<spsc::Consumer<Mbuf>>,
    rx_out: Option<spsc::Producer<Mbuf>>,
    neigh: Vec<(IpAddr, NeighEntry<<FabricQp as Provider>::Ah>)>,
) -> (Iface<FabricQp>, Arc<IfaceStats>) {
    let stats = Arc::new(IfaceStats::default());
    let i = Iface::new(
        IfaceConfig {
            name: format!("ib{ifindex}"),
            ifindex,
            mtu: 2044,
            pkey: 0xffff,
            scope: 2,
        },
        qp,
        IfaceWiring {
            tx_in,
            rx_out,
            neigh: published(NeighTable::new(neigh)),
            mcast: published(McastTable::default()),
            join_requests: Arc::new(JoinRequestQueue::new(16)),
            stats: stats.clone(),
        },
    );
    (i, stats)
}

fn run_over_fabric(loss: f64, reorder: f64, seed: u64, count: u64) {
    let pool = pool(8192);
    let specs: Vec<PortSpec> = (1..=2u16)
        .map(|p| PortSpec {
            lid: p,
            gid: Gid::link_local(u64::from(p)),
            qpn: 0x100 + u32::from(p),
            pkey: 0xffff,
            qkey: 0x0B1B,
        })
        .collect();
    let fabric = Fabric::new(
        FabricConfig {
            ib_mtu: 2048,
            injection: Injection {
                loss,
                reorder,
                seed,
            },
            rx_depth: 4096,
        },
        &specs,
    )
    .unwrap();
    let mut qa = fabric.open(0).unwrap();
    let ah = qa
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    let (gen_tx, a_in) = spsc::channel(1024);
    let (mut a, a_stats) = iface(
        qa,
        1,
        vec![a_in],
        None,
        vec![(ip("10.0.0.2"), NeighEntry { ah, qpn: 0x102 })],
    );
    let (b_out, mut tap) = spsc::channel(1024);
    let (mut b, b_stats) = iface(fabric.open(1).unwrap(), 2, vec![], Some(b_out), vec![]);
    let (mut to_sink, sink_rx) = spsc::channel(1024);

    let mut spec = StreamSpec::single(0, ip("10.0.0.1"), ip("10.0.0.2"), 200);
    spec.count = Some(count);
    let mut g = Generator::new(&spec, gen_tx, pool.buf_size()).unwrap();
    let mut sink = Sink::new(sink_rx, 1, DEFAULT_WINDOW);
    let mut cache: LcoreCache = pool.cache(256);
    let mut arrivals = Vec::new();
    let mut pass = |a: Option<&mut Iface<FabricQp>>,
                    b: &mut Iface<FabricQp>,
                    sink: &mut Sink,
                    cache: &mut LcoreCache| {
        let mut work = 0;
        if let Some(a) = a {
            work += a.tx_burst(cache);
        }
        work += b.rx_burst(cache);
        // The tap records the arrival order, then hands the packets on unchanged.
        while let Some(m) = tap.pop() {
            arrivals.push(Stamp::from_ip(m.data()).expect("stamped").seq);
            to_sink.push(m).expect("sink ring has room");
            work += 1;
            if to_sink.free_count() == 0 {
                work += sink.poll(cache);
            }
        }
        work + sink.poll(cache)
    };
    while !g.is_done() {
        g.produce(&mut cache);
        pass(Some(&mut a), &mut b, &mut sink, &mut cache);
    }
    while pass(Some(&mut a), &mut b, &mut sink, &mut cache) != 0 {}
    // A message held back by reorder injection leaves when its QP closes.
    a.drain(&mut cache);
    drop(a);
    while pass(None, &mut b, &mut sink, &mut cache) != 0 {}

    let sent = g.counters().snapshot().tx_packets;
    assert_eq!(sent, count);
    let fab = fabric.counters(0).unwrap();
    let injected = fab.drop_count(DropReason::InjectedLoss);
    let other_drops = fab.total_drops() - injected + fabric.counters(1).unwrap().total_drops();
    assert_eq!(other_drops, 0, "only injected losses on this path");
    assert_eq!(
        a_stats.snapshot().total_drops() + b_stats.snapshot().total_drops(),
        0
    );

    let r = sink.results().remove(0);
    assert_eq!(r.lost(sent), injected, "reported loss is the fabric's");
    assert_eq!(
        r.reordered, fab.injected_reorders,
        "reordered arrivals are the fabric's overtaken messages"
    );
    let want = model(&arrivals);
    assert_eq!(
        Expected {
            unique: r.unique,
            duplicates: r.duplicates,
            reordered: r.reordered,
        },
        want
    );
    assert_eq!(r.late, 0);
    assert_eq!(r.rx_packets, arrivals.len() as u64);
    if loss > 0.0 {
        assert!(injected > 0, "the seed injects some loss");
    }
    if reorder > 0.0 {
        assert!(r.reordered > 0, "the seed injects some reordering");
    }
    drop(b);
    drop(cache);
    drop(sink);
    drop(g);
    drop(fabric);
    assert_eq!(pool.available(), pool.capacity(), "no mbuf leaked");
}

#[test]
fn loss_equals_the_fabrics_injected_drops_and_reorders_are_exact() {
    run_over_fabric(0.05, 0.1, 42, 20_000);
}

#[test]
fn other_seeds_and_rates_are_exact_too() {
    run_over_fabric(0.3, 0.0, 7, 5_000);
    run_over_fabric(0.0, 0.5, 9, 5_000);
    run_over_fabric(0.0, 0.0, 1, 5_000);
}

/// Feeds the sink a shuffled, duplicated arrival order built from real
/// generated packets (duplicates share the buffer, as a multicast fan-out would).
#[test]
fn duplicates_and_reorders_match_the_model_for_random_orders() {
    let pool = pool(4096);
    let mut cache = pool.cache(64);
    for seed in 1..=20u64 {
        let n = 500u64;
        let (tx, mut rx) = spsc::channel::<Mbuf>(1024);
        let mut spec = StreamSpec::single(1, ip("fd00::1"), ip("ff12::1"), 100);
        spec.count = Some(n);
        let mut g = Generator::new(&spec, tx, pool.buf_size()).unwrap();
        while !g.is_done() {
            g.produce(&mut cache);
        }
        let mut pkts: Vec<Mbuf> = std::iter::from_fn(|| rx.pop()).collect();
        assert_eq!(pkts.len() as u64, n);
        let mut rng = Rng::new(seed);
        // Drop some, duplicate some, then swap neighbours at random distances.
        let mut order: Vec<Mbuf> = Vec::new();
        for mut m in pkts.drain(..) {
            match rng.next_u64() % 10 {
                0 => cache.free(m),
                1 => {
                    order.push(m.share());
                    order.push(m);
                }
                _ => order.push(m),
            }
        }
        for i in 0..order.len() {
            let j = i + (rng.next_u64() % 8) as usize;
            if j < order.len() && matches!(rng.next_u64() % 3, 0) {
                order.swap(i, j);
            }
        }
        let arrivals: Vec<u64> = order
            .iter()
            .map(|m| Stamp::from_ip(m.data()).unwrap().seq)
            .collect();
        let (mut to_sink, sink_rx) = spsc::channel::<Mbuf>(2048);
        for m in order {
            to_sink.push(m).unwrap();
        }
        let mut sink = Sink::new(sink_rx, 2, 64);
        while sink.poll(&mut cache) != 0 {}
        let r = sink.results().remove(0);
        assert_eq!(
            Expected {
                unique: r.unique,
                duplicates: r.duplicates,
                reordered: r.reordered,
            },
            model(&arrivals),
            "seed {seed}"
        );
        assert_eq!(r.lost(n), n - model(&arrivals).unique);
    }
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn foreign_and_unknown_packets_are_counted_apart() {
    let pool = pool(64);
    let mut cache = pool.cache(8);
    let (mut tx, rx) = spsc::channel::<Mbuf>(16);
    let bytes = ipoib_dataplane::lcore::build_udp_packet(&ipoib_dataplane::lcore::FlowSpec {
        src: ip("10.0.0.1"),
        dst: ip("10.0.0.2"),
        src_port: 1,
        dst_port: 2,
        size: 100,
        rate_pps: 0,
    })
    .unwrap();
    let mut m = pool.alloc().unwrap();
    m.append(bytes.len()).unwrap().copy_from_slice(&bytes);
    tx.push(m).unwrap();
    let (gtx, mut grx) = spsc::channel::<Mbuf>(16);
    let mut spec = StreamSpec::single(9, ip("10.0.0.1"), ip("10.0.0.2"), 64);
    spec.count = Some(1);
    let mut g = Generator::new(&spec, gtx, pool.buf_size()).unwrap();
    g.produce(&mut cache);
    tx.push(grx.pop().unwrap()).unwrap();
    let mut sink = Sink::new(rx, 2, 64);
    assert_eq!(sink.poll(&mut cache), 2);
    assert_eq!((sink.foreign(), sink.unknown_stream()), (1, 1));
    assert!(sink.results().is_empty());
}

/// A sink in another process learns what was sent from the stream's end
/// packets: with the last packets lost (which no sequence gap shows), its
/// loss is still exact, and end packets are counted apart from data.
#[test]
fn end_packets_make_a_lost_tail_count() {
    let pool = pool(512);
    let mut cache = pool.cache(32);
    let (gtx, mut grx) = spsc::channel::<Mbuf>(256);
    let mut spec = StreamSpec::single(0, ip("10.0.0.1"), ip("10.0.0.2"), 64);
    spec.count = Some(100);
    spec.burst = 10;
    spec.announce_end = 3;
    let mut g = Generator::new(&spec, gtx, pool.buf_size()).unwrap();
    let mut produced = Vec::new();
    while !g.is_done() {
        g.produce(&mut cache);
        while let Some(m) = grx.pop() {
            produced.push(m);
        }
    }
    assert_eq!(produced.len(), 103, "100 data packets, then 3 end copies");
    let snap = g.counters().snapshot();
    assert_eq!((snap.tx_packets, snap.end_packets), (100, 3));
    let (mut to_sink, rx) = spsc::channel::<Mbuf>(256);
    let mut sink = Sink::new(rx, 1, DEFAULT_WINDOW);
    for (i, m) in produced.into_iter().enumerate() {
        // Data packets 10 and 90..100 are lost, and one end copy.
        if i == 10 || (90..100).contains(&i) || i == 101 {
            drop(m);
            continue;
        }
        to_sink.push(m).unwrap();
    }
    while sink.poll(&mut cache) != 0 {}
    let r = sink.results().remove(0);
    assert_eq!(r.announced, Some(100));
    assert_eq!((r.unique, r.rx_packets, r.end_packets), (89, 89, 2));
    assert_eq!(r.lost_so_far(), 11, "the tail counts once the end is known");
    assert_eq!(r.max_seq, Some(89));
    // The end packets are the base size: no room for the sender's report.
    assert_eq!(r.sender, None);
    drop(sink);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

/// End packets with room for it carry the generator's own figures (bytes,
/// measured time, paced rate, warm-up), checksummed like any packet, so a
/// sink in another process reports the sender's rate.
#[test]
fn end_packets_carry_the_senders_figures() {
    let pool = pool(512);
    let mut cache = pool.cache(32);
    for (src, dst, size) in [("10.0.0.1", "10.0.0.2", 64), ("fd00::1", "fd00::2", 80)] {
        let (gtx, mut grx) = spsc::channel::<Mbuf>(256);
        let mut spec = StreamSpec::single(0, ip(src), ip(dst), size);
        spec.count = Some(50);
        spec.burst = 10;
        spec.rate = Rate::Pps(100_000.0);
        spec.announce_end = 2;
        spec.end_size = size + END_REPORT_LEN;
        assert!(end_report_fits(spec.base.src.is_ipv4(), spec.end_size));
        let mut g = Generator::new(&spec, gtx, pool.buf_size()).unwrap();
        let (mut to_sink, rx) = spsc::channel::<Mbuf>(256);
        let mut ends = 0;
        while !g.is_done() {
            g.produce(&mut cache);
            while let Some(m) = grx.pop() {
                let stamp = Stamp::from_ip(m.data()).unwrap();
                if stamp.flags & FLAG_END != 0 {
                    ends += 1;
                    assert_eq!(m.data().len(), spec.end_size);
                    assert!(udp_checksum_ok(m.data()), "end packet checksum ({src})");
                }
                to_sink.push(m).unwrap();
            }
        }
        assert_eq!(ends, 2);
        let snap = g.counters().snapshot();
        let mut sink = Sink::new(rx, 1, DEFAULT_WINDOW);
        while sink.poll(&mut cache) != 0 {}
        let r = sink.results().remove(0);
        let report = r.sender.expect("the end packet carried a report");
        assert_eq!(report.tx_bytes, snap.tx_bytes);
        assert_eq!(report.tx_bytes, 50 * size as u64);
        assert_eq!(
            report.duration_ns,
            snap.last_tx_ns - snap.measure_start_ns,
            "a count-limited stream: first to last burst"
        );
        assert_eq!(report.target_mpps, 100_000_000);
        assert_eq!(report.warmup_packets, 0);
        assert_eq!((r.announced, r.unique), (Some(50), 50));
    }
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

/// The UDP checksum of an IPv4 or IPv6 packet verifies (sums to 0xffff).
fn udp_checksum_ok(p: &[u8]) -> bool {
    let words = |b: &[u8]| -> u64 {
        b.chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum()
    };
    let (ip_len, addrs) = if p[0] >> 4 == 4 {
        (20, &p[12..20])
    } else {
        (40, &p[8..40])
    };
    let udp = &p[ip_len..];
    let mut s = words(addrs) + 17 + udp.len() as u64 + words(udp);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}
