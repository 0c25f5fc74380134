//! pcap replay sends the recorded IP packets byte for byte, in order, at
//! their recorded spacing or as fast as possible, and through the fabric.

use ipoib_dataplane::capture::pcap::{PcapWriter, Timestamp, LINKTYPE_IPOIB, LINKTYPE_RAW};
use ipoib_dataplane::lcore::{build_udp_packet, FlowSpec};
use ipoib_dataplane::lcore::{Iface, IfaceConfig, IfaceWiring, NeighEntry, NeighTable};
use ipoib_dataplane::mem::{HugepageMode, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::pktgen::{read_capture, Replay};
use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, PortSpec};
use ipoib_dataplane::provider::{AhAttr, Provider};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::IfaceStats;
use ipoib_dataplane::tables::{published, JoinRequestQueue, McastTable};
use ipoib_dataplane::wire::{Gid, HwAddr};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pool() -> &'static Mempool {
    Mempool::new(MempoolConfig {
        name: "replay".into(),
        count: 1024,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .unwrap()
}

/// Distinct IPv4 and IPv6 packets of several sizes.
fn packets() -> Vec<Vec<u8>> {
    (0..40u16)
        .map(|i| {
            let (src, dst): (IpAddr, IpAddr) = if i % 3 == 0 {
                ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
            } else {
                ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
            };
            build_udp_packet(&FlowSpec {
                src,
                dst,
                src_port: 1000 + i,
                dst_port: 7,
                size: 60 + usize::from(i) * 37,
                rate_pps: 0,
            })
            .unwrap()
        })
        .collect()
}

const GAP_NS: u32 = 50_000;

/// An IPoIB capture of `pkts`, 50 µs apart, with an ARP frame in the middle.
fn ipoib_capture(pkts: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_IPOIB).unwrap();
    let dest = HwAddr::from_array(&[0; 20]);
    for (i, p) in pkts.iter().enumerate() {
        let ts = Timestamp {
            secs: 100,
            nanos: i as u32 * GAP_NS,
        };
        let et: u16 = if p[0] >> 4 == 4 { 0x0800 } else { 0x86DD };
        let mut frame = et.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(p);
        w.write_ipoib(ts, &dest, &frame).unwrap();
        if i == 10 {
            w.write_ipoib(ts, &dest, &[0x08, 0x06, 0, 0, 0, 32])
                .unwrap();
        }
    }
    w.into_inner()
}

#[test]
fn an_ipoib_capture_reads_back_its_ip_packets_and_times() {
    let pkts = packets();
    let cap = read_capture(&ipoib_capture(&pkts)[..]).unwrap();
    assert_eq!(cap.skipped, 1, "the ARP frame");
    let got: Vec<_> = cap.packets.iter().map(|p| p.ip.clone()).collect();
    assert_eq!(got, pkts);
    let times: Vec<_> = cap.packets.iter().map(|p| p.at_ns).collect();
    let want: Vec<_> = (0..pkts.len() as u64)
        .map(|i| i * u64::from(GAP_NS))
        .collect();
    assert_eq!(times, want);
}

#[test]
fn raw_ip_captures_and_bad_files_are_handled() {
    let pkts = packets();
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_RAW).unwrap();
    for p in &pkts {
        w.write_record(Timestamp::default(), p).unwrap();
    }
    let cap = read_capture(&w.into_inner()[..]).unwrap();
    assert_eq!(cap.packets.len(), pkts.len());
    assert!(read_capture(&b"not a pcap file at all, no"[..]).is_err());
    let eth = PcapWriter::new(Vec::new(), 1).unwrap().into_inner();
    assert!(read_capture(&eth[..]).unwrap_err().contains("link type 1"));
}

#[test]
fn fast_replay_sends_every_pass_byte_for_byte() {
    let pool = pool();
    let mut cache = pool.cache(64);
    let pkts = packets();
    let cap = read_capture(&ipoib_capture(&pkts)[..]).unwrap();
    let (tx, mut rx) = spsc::channel::<Mbuf>(64);
    let mut r = Replay::new(cap, false, 3, tx, pool.buf_size()).unwrap();
    let mut got = Vec::new();
    while !r.is_done() {
        r.produce(&mut cache);
        while let Some(m) = rx.pop() {
            got.push(m.data().to_vec());
            cache.free(m);
        }
    }
    let want: Vec<_> = pkts.iter().cycle().take(3 * pkts.len()).cloned().collect();
    assert_eq!(got, want);
    assert_eq!(r.counters().snapshot().tx_packets, want.len() as u64);
}

#[test]
fn recorded_timing_is_honoured() {
    let pool = pool();
    let mut cache = pool.cache(64);
    let pkts = packets();
    let cap = read_capture(&ipoib_capture(&pkts)[..]).unwrap();
    let (tx, mut rx) = spsc::channel::<Mbuf>(64);
    let mut r = Replay::new(cap, true, 1, tx, pool.buf_size()).unwrap();
    let start = Instant::now();
    let mut arrivals = Vec::new();
    while !r.is_done() {
        r.produce(&mut cache);
        while let Some(m) = rx.pop() {
            arrivals.push((start.elapsed(), m.data().to_vec()));
            cache.free(m);
        }
    }
    assert_eq!(arrivals.len(), pkts.len());
    // Never early: packet i leaves no sooner than i gaps after the first.
    for (i, (t, bytes)) in arrivals.iter().enumerate() {
        assert_eq!(bytes, &pkts[i]);
        assert!(
            *t + Duration::from_micros(5) >= Duration::from_nanos(i as u64 * u64::from(GAP_NS))
        );
    }
}

#[test]
fn replay_through_the_fabric_arrives_unchanged() {
    let pool = pool();
    let mut cache = pool.cache(64);
    let specs: Vec<PortSpec> = (1..=2u16)
        .map(|p| PortSpec {
            lid: p,
            gid: Gid::link_local(u64::from(p)),
            qpn: 0x100 + u32::from(p),
            pkey: 0xffff,
            qkey: 0x0B1B,
        })
        .collect();
    let fabric = Fabric::new(FabricConfig::default(), &specs).unwrap();
    let mut qa = fabric.open(0).unwrap();
    let ah = qa
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    let neigh = vec![
        ("10.0.0.2".parse().unwrap(), NeighEntry { ah, qpn: 0x102 }),
        ("fd00::2".parse().unwrap(), NeighEntry { ah, qpn: 0x102 }),
    ];
    let wiring = |tx_in, rx_out, neigh: Vec<_>| IfaceWiring {
        tx_in,
        rx_out,
        neigh: published(NeighTable::new(neigh)),
        mcast: published(McastTable::default()),
        join_requests: Arc::new(JoinRequestQueue::new(16)),
        stats: Arc::new(IfaceStats::default()),
    };
    let cfg = |i: u16| IfaceConfig {
        name: format!("ib{i}"),
        ifindex: i,
        mtu: 2044,
        pkey: 0xffff,
        scope: 2,
    };
    let (tx, a_in) = spsc::channel(256);
    let (b_out, mut b_rx) = spsc::channel(256);
    let mut a = Iface::new(cfg(1), qa, wiring(vec![a_in], None, neigh));
    let mut b = Iface::new(
        cfg(2),
        fabric.open(1).unwrap(),
        wiring(vec![], Some(b_out), vec![]),
    );
    let pkts = packets();
    let cap = read_capture(&ipoib_capture(&pkts)[..]).unwrap();
    let mut r = Replay::new(cap, false, 1, tx, pool.buf_size()).unwrap();
    let mut got = Vec::new();
    for _ in 0..1000 {
        r.produce(&mut cache);
        a.tx_burst(&mut cache);
        b.rx_burst(&mut cache);
        while let Some(m) = b_rx.pop() {
            got.push(m.data().to_vec());
            cache.free(m);
        }
        if r.is_done() && got.len() == pkts.len() {
            break;
        }
    }
    assert_eq!(got, pkts);
}
