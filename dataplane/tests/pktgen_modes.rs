//! Each generator mode produces exactly the configured packets: fields,
//! checksums, stamps and counts, checked on the packets and in the sink.

use ipoib_dataplane::mem::{HugepageMode, LcoreCache, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::pktgen::{
    FieldRange, Generator, Mode, Ranges, Sink, Stamp, StreamSpec, Template, DEFAULT_WINDOW,
};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::wire::{Ipv4Packet, UdpPacket};
use std::net::{IpAddr, Ipv6Addr};

fn pool() -> &'static Mempool {
    Mempool::new(MempoolConfig {
        name: "pktgen".into(),
        count: 2048,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Parses a generated packet back, checking both checksums.
fn parse(d: &[u8]) -> (Template, Stamp) {
    let (src, dst, udp) = if d[0] >> 4 == 4 {
        let p = Ipv4Packet::new_checked(d).unwrap();
        assert!(p.verify_checksum(), "IPv4 header checksum");
        assert_eq!(usize::from(p.total_len()), d.len());
        (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()), &d[20..])
    } else {
        let s: [u8; 16] = d[8..24].try_into().unwrap();
        let t: [u8; 16] = d[24..40].try_into().unwrap();
        assert_eq!(usize::from(u16::from_be_bytes([d[4], d[5]])), d.len() - 40);
        (
            IpAddr::V6(Ipv6Addr::from(s)),
            IpAddr::V6(Ipv6Addr::from(t)),
            &d[40..],
        )
    };
    let u = UdpPacket::new_checked(udp).unwrap();
    let ok = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => u.verify_checksum_v4(s, t),
        (IpAddr::V6(s), IpAddr::V6(t)) => u.verify_checksum_v6(s, t),
        _ => false,
    };
    assert!(ok, "UDP checksum of {src} -> {dst} size {}", d.len());
    let stamp = Stamp::from_ip(d).expect("stamp");
    (
        Template {
            src,
            dst,
            src_port: u.src_port(),
            dst_port: u.dst_port(),
            size: d.len(),
        },
        stamp,
    )
}

/// Runs `spec` (which must have a count) to completion; returns every packet's fields.
fn generate(spec: &StreamSpec) -> Vec<(Template, Stamp)> {
    let pool = pool();
    let mut cache: LcoreCache = pool.cache(64);
    let (tx, mut rx) = spsc::channel::<Mbuf>(256);
    let mut g = Generator::new(spec, tx, pool.buf_size()).unwrap();
    let mut out = Vec::new();
    let mut spins = 0;
    while !g.is_done() {
        g.produce(&mut cache);
        while let Some(m) = rx.pop() {
            out.push(parse(m.data()));
            cache.free(m);
        }
        spins += 1;
        assert!(spins < 1_000_000, "generator never finished");
    }
    drop(cache);
    assert_eq!(pool.available(), pool.capacity(), "no mbuf leaked");
    out
}

fn spec(mode: Mode, count: u64) -> StreamSpec {
    let mut s = StreamSpec::single(3, ip("10.0.0.1"), ip("10.0.0.2"), 100);
    s.mode = mode;
    s.count = Some(count);
    s
}

#[test]
fn single_mode_sends_the_count_with_consecutive_sequence_numbers() {
    let pkts = generate(&spec(Mode::Single, 1000));
    assert_eq!(pkts.len(), 1000);
    for (i, (t, s)) in pkts.iter().enumerate() {
        assert_eq!(*t, spec(Mode::Single, 1).base);
        assert_eq!((s.stream, s.seq, s.flags), (3, i as u64, 0));
    }
}

#[test]
fn range_mode_steps_every_field_and_wraps_around() {
    let r = Ranges {
        src: None,
        dst: Some(FieldRange::new(0x0a00_0002, 0x0a00_0004, 1).unwrap()),
        src_port: Some(FieldRange::new(1000, 1010, 5).unwrap()),
        dst_port: None,
        size: Some(FieldRange::new(60, 100, 20).unwrap()),
    };
    let pkts = generate(&spec(Mode::Range(r), 10));
    let dsts: Vec<_> = pkts.iter().map(|(t, _)| t.dst.to_string()).collect();
    let ends: Vec<u8> = dsts
        .iter()
        .map(|d| d.rsplit('.').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ends, [2, 3, 4, 2, 3, 4, 2, 3, 4, 2]);
    let sports: Vec<_> = pkts.iter().map(|(t, _)| t.src_port).collect();
    assert_eq!(
        sports,
        [1000, 1005, 1010, 1000, 1005, 1010, 1000, 1005, 1010, 1000]
    );
    let sizes: Vec<_> = pkts.iter().map(|(t, _)| t.size).collect();
    assert_eq!(sizes, [60, 80, 100, 60, 80, 100, 60, 80, 100, 60]);
    assert!(pkts.iter().all(|(t, _)| t.dst_port == 9000));
}

#[test]
fn range_wraps_at_the_top_of_the_field() {
    let r = Ranges {
        dst_port: Some(FieldRange::new(65534, 65535, 1).unwrap()),
        ..Ranges::default()
    };
    let ports: Vec<_> = generate(&spec(Mode::Range(r), 5))
        .iter()
        .map(|(t, _)| t.dst_port)
        .collect();
    assert_eq!(ports, [65534, 65535, 65534, 65535, 65534]);
}

#[test]
fn random_mode_is_reproducible_from_its_seed_and_stays_on_the_grid() {
    let ranges = Ranges {
        src_port: Some(FieldRange::new(2000, 2100, 10).unwrap()),
        size: Some(FieldRange::new(64, 1024, 2).unwrap()),
        ..Ranges::default()
    };
    let run = |seed| {
        generate(&spec(
            Mode::Random {
                seed,
                ranges: ranges.clone(),
            },
            500,
        ))
        .into_iter()
        .map(|(t, _)| t)
        .collect::<Vec<_>>()
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a, b, "same seed, same packets");
    assert_ne!(a, c, "another seed, other packets");
    for t in &a {
        assert!((2000..=2100).contains(&t.src_port) && t.src_port % 10 == 0);
        assert!((64..=1024).contains(&t.size) && t.size % 2 == 0);
    }
    let distinct: std::collections::HashSet<_> = a.iter().map(|t| t.src_port).collect();
    assert_eq!(distinct.len(), 11, "every port on the grid is drawn");
}

#[test]
fn sequence_mode_cycles_its_templates_in_ipv4_and_ipv6() {
    let ts = vec![
        Template {
            src: ip("10.0.0.1"),
            dst: ip("10.0.0.2"),
            src_port: 1,
            dst_port: 2,
            size: 64,
        },
        Template {
            src: ip("fd00::1"),
            dst: ip("ff12::42"),
            src_port: 3,
            dst_port: 4,
            size: 1500,
        },
        Template {
            src: ip("10.0.0.1"),
            dst: ip("239.1.1.1"),
            src_port: 5,
            dst_port: 6,
            size: 53,
        },
    ];
    let pkts = generate(&spec(Mode::Sequence(ts.clone()), 7));
    let got: Vec<_> = pkts.iter().map(|(t, _)| *t).collect();
    let want: Vec<_> = (0..7).map(|i| ts[i % 3]).collect();
    assert_eq!(got, want);
}

#[test]
fn bad_specs_are_rejected_not_panicked_on() {
    let pool = pool();
    let mk = |s: &StreamSpec| Generator::new(s, spsc::channel(8).0, pool.buf_size()).err();
    let mut s = spec(Mode::Single, 1);
    s.base.size = 51; // below IPv4 + UDP + stamp
    assert!(mk(&s).unwrap().contains("size"));
    s.base.size = 3000; // above the buffer
    assert!(mk(&s).is_some());
    let s = spec(Mode::Sequence(vec![]), 1);
    assert!(mk(&s).unwrap().contains("template"));
    let mut s = spec(Mode::Single, 1);
    s.base.dst = ip("fd00::2");
    assert!(mk(&s).unwrap().contains("famil"));
    assert!(FieldRange::new(5, 4, 1).is_err() && FieldRange::new(1, 4, 0).is_err());
}

#[test]
fn the_sink_counts_every_mode_exactly() {
    let pool = pool();
    let mut cache = pool.cache(64);
    let (tx, rx) = spsc::channel::<Mbuf>(256);
    let s = spec(
        Mode::Random {
            seed: 1,
            ranges: Ranges {
                size: Some(FieldRange::new(60, 1400, 1).unwrap()),
                ..Ranges::default()
            },
        },
        10_000,
    );
    let mut g = Generator::new(&s, tx, pool.buf_size()).unwrap();
    let mut sink = Sink::new(rx, 4, DEFAULT_WINDOW);
    while !g.is_done() {
        g.produce(&mut cache);
        sink.poll(&mut cache);
    }
    while sink.poll(&mut cache) != 0 {}
    let r = &sink.results()[0];
    let sent = g.counters().snapshot();
    assert_eq!(sent.tx_packets, 10_000);
    assert_eq!((r.stream, r.rx_packets, r.unique), (3, 10_000, 10_000));
    assert_eq!(
        (r.lost(sent.tx_packets), r.duplicates, r.reordered),
        (0, 0, 0)
    );
    assert_eq!(r.rx_bytes, sent.tx_bytes);
    assert_eq!(r.latency.count, 10_000);
    assert!(r.latency.min <= r.latency.p50 && r.latency.p50 <= r.latency.p999);
    assert!(r.latency.p999 <= r.latency.max);
}

#[test]
fn warmup_packets_are_flagged_and_left_out_of_the_results() {
    let pool = pool();
    let mut cache = pool.cache(64);
    let (tx, rx) = spsc::channel::<Mbuf>(256);
    let mut s = spec(Mode::Single, 300);
    s.warmup = std::time::Duration::from_millis(3);
    s.rate = ipoib_dataplane::pktgen::Rate::Pps(100_000.0);
    let mut g = Generator::new(&s, tx, pool.buf_size()).unwrap();
    let mut sink = Sink::new(rx, 4, DEFAULT_WINDOW);
    while !g.is_done() {
        g.produce(&mut cache);
        sink.poll(&mut cache);
    }
    while sink.poll(&mut cache) != 0 {}
    let c = g.counters().snapshot();
    let r = &sink.results()[0];
    assert!(
        c.warmup_packets > 0,
        "3 ms at 100 kpps sends some warm-up packets"
    );
    assert_eq!(r.warmup_packets, c.warmup_packets);
    assert_eq!(
        (c.tx_packets, r.unique, r.lost(c.tx_packets)),
        (300, 300, 0)
    );
    assert_eq!(r.latency.count, 300);
}

#[test]
fn paced_streams_never_run_ahead_of_their_rate() {
    let pool = pool();
    let mut cache = pool.cache(64);
    let (tx, mut rx) = spsc::channel::<Mbuf>(256);
    let mut s = spec(Mode::Single, 20_000);
    // 1 Mpps of 100-byte packets, given as a bit rate.
    s.rate = ipoib_dataplane::pktgen::Rate::Bps(800e6);
    let mut g = Generator::new(&s, tx, pool.buf_size()).unwrap();
    let start = std::time::Instant::now();
    while !g.is_done() {
        g.produce(&mut cache);
        while let Some(m) = rx.pop() {
            cache.free(m);
        }
    }
    // The last packet is due at 19.999 ms; the pacer never sends early.
    assert!(start.elapsed() >= std::time::Duration::from_micros(19_990));
    assert_eq!(g.counters().snapshot().tx_packets, 20_000);
}

/// A generator that falls behind during warm-up (its lcore busy elsewhere)
/// does not make up for it after: measurement is paced from its own start,
/// so no measured packet leaves before its time and the measured rate holds.
#[test]
fn measurement_is_paced_from_its_start_after_a_late_warmup() {
    let pool = pool();
    let mut cache = pool.cache(64);
    let (tx, mut rx) = spsc::channel::<Mbuf>(256);
    // 100 ms of measurement at 20 kpps: longer than the lcore is away, and
    // slow enough that the generator keeps up.
    let mut s = spec(Mode::Single, 2_000);
    s.warmup = std::time::Duration::from_millis(2);
    s.rate = ipoib_dataplane::pktgen::Rate::Pps(20_000.0);
    let mut g = Generator::new(&s, tx, pool.buf_size()).unwrap();
    g.produce(&mut cache);
    // The lcore is away for the whole warm-up and 1 ms more.
    let away = std::time::Instant::now();
    while away.elapsed() < std::time::Duration::from_millis(3) {
        std::hint::spin_loop();
    }
    let mut measured = Vec::new();
    while !g.is_done() {
        g.produce(&mut cache);
        while let Some(m) = rx.pop() {
            let st = parse(m.data()).1;
            if st.flags == 0 {
                measured.push(st);
            }
            cache.free(m);
        }
    }
    let c = g.counters().snapshot();
    assert_eq!(measured.len(), 2_000);
    assert!(c.warmup_packets < 40, "the warm-up fell behind");
    // Packet k is due k * 50 us after measurement starts; 1 us of slack
    // for the float rounding of the schedule.
    for st in &measured {
        let due = c.measure_start_ns + st.seq * 50_000;
        assert!(
            st.ts_ns + 1_000 >= due,
            "measured packet {} left {} ns early",
            st.seq,
            due - st.ts_ns
        );
    }
}
