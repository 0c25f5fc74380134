//! The soft fabric behaves as a UD fabric: checks, drops by reason,
//! multicast replication, seeded injection, and no mbuf ever leaks.

use arrayvec::ArrayVec;
use ipoib_dataplane::mem::{HugepageMode, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::provider::fabric::{
    DropReason, Fabric, FabricConfig, FabricQp, Injection, PortSpec,
};
use ipoib_dataplane::provider::{AhAttr, Provider, RecvCompletion, SendWr, BURST, MCAST_QPN};
use ipoib_dataplane::wire::Gid;
use std::sync::Arc;

const QKEY: u32 = 0x0B1B;

fn pool(count: u32) -> &'static Mempool {
    Mempool::new(MempoolConfig {
        name: "t".into(),
        count,
        buf_size: 4352,
        hugepages: HugepageMode::Off,
    })
    .unwrap()
}

fn gid(port: u16) -> Gid {
    Gid::link_local(0x0002_c903_0000_0000 | u64::from(port))
}

fn spec(port: u16, pkey: u16) -> PortSpec {
    PortSpec {
        lid: port,
        gid: gid(port),
        qpn: 0x100 + u32::from(port),
        pkey,
        qkey: QKEY,
    }
}

fn fabric(specs: &[PortSpec], injection: Injection) -> Arc<Fabric> {
    Fabric::new(
        FabricConfig {
            ib_mtu: 2048,
            injection,
            rx_depth: 8192,
        },
        specs,
    )
    .unwrap()
}

fn packet(p: &'static Mempool, len: usize, seq: u32) -> Mbuf {
    let mut m = p.alloc().expect("pool has room");
    let d = m.append(len).unwrap();
    d.fill(0);
    d[..4].copy_from_slice(&seq.to_be_bytes());
    m
}

fn send(qp: &mut FabricQp, ah: <FabricQp as Provider>::Ah, qpn: u32, qkey: u32, m: Mbuf) -> usize {
    let mut b: ArrayVec<SendWr<_>, 1> = ArrayVec::new();
    b.push(SendWr {
        mbuf: m,
        ah,
        remote_qpn: qpn,
        remote_qkey: qkey,
    });
    qp.post_send(&mut b)
}

fn drain(qp: &mut FabricQp) -> Vec<RecvCompletion> {
    let mut all = Vec::new();
    loop {
        let mut b: ArrayVec<RecvCompletion, BURST> = ArrayVec::new();
        if qp.poll_recv(&mut b) == 0 {
            return all;
        }
        all.extend(b);
    }
}

#[test]
fn unicast_is_delivered_with_source_identity() {
    let p = pool(16);
    let f = fabric(&[spec(1, 0xffff), spec(2, 0xffff)], Injection::default());
    let (mut a, mut b) = (f.open(0).unwrap(), f.open(1).unwrap());
    let ah = a
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    assert_eq!(send(&mut a, ah, 0x102, QKEY, packet(p, 100, 7)), 1);
    let got = drain(&mut b);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].src_qpn, got[0].slid, got[0].sgid()),
        (0x101, 1, Some(gid(1)))
    );
    assert_eq!(&got[0].mbuf.data()[..4], &7u32.to_be_bytes());
    assert!(!got[0].multicast);
    drop(got);
    assert_eq!(p.available(), 16);
    // By GID as well as by LID; unknown destinations are errors, not panics.
    assert!(a
        .create_ah(&AhAttr {
            dlid: 0,
            dgid: Some(gid(2)),
            sl: 0
        })
        .is_ok());
    assert!(a
        .create_ah(&AhAttr {
            dlid: 9,
            dgid: None,
            sl: 0
        })
        .is_err());
    assert!(a
        .create_ah(&AhAttr {
            dlid: 0xc001,
            dgid: None,
            sl: 0
        })
        .is_err());
}

#[test]
fn wrong_qkey_wrong_pkey_oversize_and_wrong_qpn_are_dropped_and_counted() {
    let p = pool(64);
    // Port 3 is in another partition (0x8002); port 4 is a limited member of 0x7fff.
    let f = fabric(
        &[
            spec(1, 0xffff),
            spec(2, 0xffff),
            spec(3, 0x8002),
            spec(4, 0x7fff),
        ],
        Injection::default(),
    );
    let mut a = f.open(0).unwrap();
    let to2 = a
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    let to3 = a
        .create_ah(&AhAttr {
            dlid: 3,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    let to4 = a
        .create_ah(&AhAttr {
            dlid: 4,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    send(&mut a, to2, 0x102, 0x1234, packet(p, 64, 0));
    send(&mut a, to3, 0x103, QKEY, packet(p, 64, 0));
    send(&mut a, to2, 0x102, QKEY, packet(p, 2049, 0));
    send(&mut a, to2, 0x999, QKEY, packet(p, 64, 0));
    // Full member 0xffff talks to limited member 0x7fff: allowed.
    send(&mut a, to4, 0x104, QKEY, packet(p, 64, 0));
    // The largest message fits exactly.
    send(&mut a, to2, 0x102, QKEY, packet(p, 2048, 0));
    let c2 = f.counters(1).unwrap();
    assert_eq!(c2.drop_count(DropReason::QkeyMismatch), 1);
    assert_eq!(c2.drop_count(DropReason::NoSuchQp), 1);
    assert_eq!(
        f.counters(2).unwrap().drop_count(DropReason::PkeyMismatch),
        1
    );
    assert_eq!(f.counters(0).unwrap().drop_count(DropReason::Oversize), 1);
    assert_eq!(f.rx_pending(1), 1);
    assert_eq!(f.rx_pending(3), 1);
    let mut b = f.open(1).unwrap();
    assert_eq!(drain(&mut b)[0].mbuf.len(), 2048);
    drop(drain(&mut f.open(3).unwrap()));
    assert_eq!(p.available(), 64, "dropped messages return their mbufs");
}

#[test]
fn controlled_qkey_uses_the_senders_own() {
    let p = pool(4);
    let f = fabric(&[spec(1, 0xffff), spec(2, 0xffff)], Injection::default());
    let mut a = f.open(0).unwrap();
    let ah = a
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    send(&mut a, ah, 0x102, 0x8000_0000, packet(p, 64, 0));
    assert_eq!(f.rx_pending(1), 1);
}

#[test]
fn multicast_reaches_every_attached_qp_exactly_once_sender_included() {
    let p = pool(64);
    let f = fabric(
        &[
            spec(1, 0xffff),
            spec(2, 0xffff),
            spec(3, 0xffff),
            spec(4, 0xffff),
        ],
        Injection::default(),
    );
    let mgid = Gid::from_bytes([
        0xff, 0x12, 0x40, 0x1b, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x0f, 1, 1, 1,
    ]);
    for port in [0, 1, 2] {
        assert!(f.attach_mcast(port, mgid).unwrap());
    }
    assert!(!f.attach_mcast(1, mgid).unwrap(), "attach is idempotent");
    let mut a = f.open(0).unwrap();
    let ah = a
        .create_ah(&AhAttr {
            dlid: 0xc001,
            dgid: Some(mgid),
            sl: 0,
        })
        .unwrap();
    for seq in 0..10 {
        send(&mut a, ah, MCAST_QPN, QKEY, packet(p, 200, seq));
    }
    assert_eq!(
        p.available(),
        54,
        "one buffer per message, shared by the fan-out"
    );
    for port in [0usize, 1, 2] {
        let got = drain(&mut f.open(port).unwrap());
        let seqs: Vec<u32> = got
            .iter()
            .map(|c| u32::from_be_bytes(c.mbuf.data()[..4].try_into().unwrap()))
            .collect();
        assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "port {port}");
        assert!(got
            .iter()
            .all(|c| c.multicast && c.dgid() == Some(mgid) && c.src_qpn == 0x101));
    }
    assert_eq!(f.rx_pending(3), 0, "an unattached port gets nothing");
    assert_eq!(p.available(), 64);
    // After detach the group has no members: the send is counted as unroutable.
    for port in [0, 1, 2] {
        assert!(f.detach_mcast(port, mgid).unwrap());
    }
    send(&mut a, ah, MCAST_QPN, QKEY, packet(p, 200, 0));
    assert_eq!(f.counters(0).unwrap().drop_count(DropReason::NoRoute), 1);
    assert_eq!(p.available(), 64);
}

fn lossy_run(seed: u64) -> (Vec<u32>, u64) {
    let p = pool(2048);
    let f = fabric(
        &[spec(1, 0xffff), spec(2, 0xffff)],
        Injection {
            loss: 0.1,
            reorder: 0.1,
            seed,
        },
    );
    let mut a = f.open(0).unwrap();
    let ah = a
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    for seq in 0..1000 {
        send(&mut a, ah, 0x102, QKEY, packet(p, 64, seq));
    }
    drop(a);
    let got: Vec<u32> = drain(&mut f.open(1).unwrap())
        .iter()
        .map(|c| u32::from_be_bytes(c.mbuf.data()[..4].try_into().unwrap()))
        .collect();
    let lost = f.counters(0).unwrap().drop_count(DropReason::InjectedLoss);
    assert_eq!(p.available(), 2048, "no leak after injected drops");
    (got, lost)
}

#[test]
fn seeded_loss_and_reorder_are_exact_and_reproducible() {
    let (got, lost) = lossy_run(42);
    assert_eq!(
        got.len() as u64 + lost,
        1000,
        "every message is either delivered or counted lost"
    );
    assert!((50..150).contains(&lost), "about 10% lost, got {lost}");
    let mut sorted = got.clone();
    sorted.sort();
    assert_ne!(got, sorted, "some messages arrive out of order");
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "no duplicates");
    assert_eq!(lossy_run(42), (got.clone(), lost), "same seed, same run");
    assert_ne!(lossy_run(43).0, got, "another seed, another run");
}

#[test]
fn full_receive_queue_drops_and_counts() {
    let p = pool(64);
    let f = Fabric::new(
        FabricConfig {
            ib_mtu: 2048,
            injection: Injection::default(),
            rx_depth: 4,
        },
        &[spec(1, 0xffff), spec(2, 0xffff)],
    )
    .unwrap();
    let mut a = f.open(0).unwrap();
    let ah = a
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    for seq in 0..10 {
        send(&mut a, ah, 0x102, QKEY, packet(p, 64, seq));
    }
    assert_eq!(f.counters(1).unwrap().drop_count(DropReason::RxOverflow), 6);
    drop(f);
    drop(a);
    assert_eq!(p.available(), 64);
}

#[test]
fn bad_fabric_geometry_is_an_error() {
    assert!(Fabric::new(FabricConfig::default(), &[spec(1, 0xffff), spec(1, 0xffff)]).is_err());
    assert!(Fabric::new(
        FabricConfig::default(),
        &[PortSpec {
            lid: 0xc000,
            ..spec(1, 0xffff)
        }]
    )
    .is_err());
    assert!(Fabric::new(FabricConfig::default(), &[spec(1, 0xffff)])
        .unwrap()
        .open(5)
        .is_err());
}

/// A P_Key child's QP on its parent's port: `spec(port, ..)` with the QPN
/// of the n-th child.
fn child(port: u16, n: u32, pkey: u16) -> PortSpec {
    PortSpec {
        qpn: 0x100 + u32::from(port) + (n << 16),
        ..spec(port, pkey)
    }
}

#[test]
fn several_qps_on_one_port_are_reached_by_qpn_and_keep_their_partitions() {
    let p = pool(64);
    // Port 1: parent (0xFFFF) and child (0x8001); port 2 the same.
    let f = fabric(
        &[
            spec(1, 0xffff),
            child(1, 1, 0x8001),
            spec(2, 0xffff),
            child(2, 1, 0x8001),
        ],
        Injection::default(),
    );
    let mut qps: Vec<FabricQp> = (0..4).map(|i| f.open(i).unwrap()).collect();
    assert_eq!(f.port_by_lid(2), Some(2), "a LID names the port's first QP");
    assert_eq!(f.qp_on_port(2, 0x10102), Some(3));
    assert_eq!(f.qp_on_port(2, 0x10101), None);
    let to2 = qps[0]
        .create_ah(&AhAttr {
            dlid: 0,
            dgid: Some(gid(2)),
            sl: 0,
        })
        .unwrap();
    let to2_from_child = qps[1]
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    assert_eq!(to2, to2_from_child, "one address handle per port");

    // Each partition reaches its own QP on port 2, by QPN.
    send(&mut qps[0], to2, 0x102, QKEY, packet(p, 64, 1));
    send(&mut qps[1], to2, 0x10102, QKEY, packet(p, 64, 2));
    let (parent, kid) = (drain(&mut qps[2]), drain(&mut qps[3]));
    assert_eq!(parent.len(), 1);
    assert_eq!((parent[0].src_qpn, parent[0].slid), (0x101, 1));
    assert_eq!(&parent[0].mbuf.data()[..4], &1u32.to_be_bytes());
    assert_eq!(kid.len(), 1);
    assert_eq!((kid[0].src_qpn, kid[0].slid), (0x10101, 1));
    assert_eq!(&kid[0].mbuf.data()[..4], &2u32.to_be_bytes());
    drop((parent, kid));

    // Across partitions: dropped and counted at the receiving QP.
    send(&mut qps[1], to2, 0x102, QKEY, packet(p, 64, 3));
    send(&mut qps[0], to2, 0x10102, QKEY, packet(p, 64, 4));
    send(&mut qps[0], to2, 0x10102, QKEY, packet(p, 64, 5));
    assert!(drain(&mut qps[2]).is_empty() && drain(&mut qps[3]).is_empty());
    let mismatches = |i| f.counters(i).unwrap().drop_count(DropReason::PkeyMismatch);
    assert_eq!((mismatches(2), mismatches(3)), (1, 2));
    // A QPN no QP on the port has.
    send(&mut qps[0], to2, 0x20102, QKEY, packet(p, 64, 6));
    assert_eq!(f.counters(2).unwrap().drop_count(DropReason::NoSuchQp), 1);

    // Multicast goes to every attached QP; each checks its own P_Key.
    let mgid = ipoib_dataplane::wire::broadcast_mgid(0x8001, 2);
    assert_eq!(mgid.to_string(), "ff12:401b:8001::ffff:ffff");
    for i in 0..4 {
        f.attach_mcast(i, mgid).unwrap();
    }
    let mc = qps[3]
        .create_ah(&AhAttr {
            dlid: 0xc001,
            dgid: Some(mgid),
            sl: 0,
        })
        .unwrap();
    send(&mut qps[3], mc, MCAST_QPN, QKEY, packet(p, 64, 7));
    let got: Vec<usize> = (0..4).map(|i| drain(&mut qps[i]).len()).collect();
    assert_eq!(
        got,
        [0, 1, 0, 1],
        "the child QPs, the sender's own included"
    );
    assert_eq!((mismatches(0), mismatches(2)), (1, 2));
    drop(qps);
    drop(f);
    assert_eq!(p.available(), 64);
}

#[test]
fn qps_of_one_port_need_distinct_qpns_and_one_gid() {
    let two = |a: PortSpec, b: PortSpec| Fabric::new(FabricConfig::default(), &[a, b]);
    assert!(two(spec(1, 0xffff), child(1, 1, 0x8001)).is_ok());
    let err = two(spec(1, 0xffff), spec(1, 0x8001)).err().unwrap();
    assert!(err.contains("QPN 0x101 is used twice on LID 0x1"), "{err}");
    let other_gid = PortSpec {
        gid: gid(9),
        ..child(1, 1, 0x8001)
    };
    let err = two(spec(1, 0xffff), other_gid).err().unwrap();
    assert!(err.contains("different GIDs"), "{err}");
    let same_gid_other_lid = PortSpec {
        lid: 3,
        ..spec(1, 0xffff)
    };
    let err = two(spec(1, 0xffff), same_gid_other_lid).err().unwrap();
    assert!(err.contains("GID"), "{err}");
}
