//! The IPoIB datapath of an interface: encapsulation, neighbour and multicast
//! routing, the pending queue of unjoined groups, self-loop drops, and no leak.

use arrayvec::ArrayVec;
use ipoib_dataplane::lcore::{
    build_udp_packet, FlowSpec, Iface, IfaceConfig, IfaceWiring, NeighEntry, NeighTable,
    PENDING_PER_GROUP,
};
use ipoib_dataplane::mem::{HugepageMode, LcoreCache, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::provider::fabric::{
    Fabric, FabricAh, FabricConfig, FabricQp, Injection, PortSpec,
};
use ipoib_dataplane::provider::{
    AhAttr, PortAttr, Provider, ProviderError, RecvCompletion, SendWr,
};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::{DpDrop, IfaceStats};
use ipoib_dataplane::tables::{
    published, JoinRequestQueue, McastRoute, McastState, McastTable, Published,
};
use ipoib_dataplane::wire::{mgid_for_ip, Gid};
use std::net::IpAddr;
use std::sync::Arc;

struct Host {
    iface: Iface<FabricQp>,
    tx: spsc::Producer<Mbuf>,
    rx: spsc::Consumer<Mbuf>,
    stats: Arc<IfaceStats>,
    mcast: Published<McastTable>,
    requests: Arc<JoinRequestQueue>,
    ip: IpAddr,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn setup(n: u16) -> (&'static Mempool, Arc<Fabric>, Vec<Host>) {
    let pool = Mempool::new(MempoolConfig {
        name: "t".into(),
        count: 4096,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .unwrap();
    let specs: Vec<PortSpec> = (1..=n)
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
            injection: Injection::default(),
            rx_depth: 1024,
        },
        &specs,
    )
    .unwrap();
    let mut hosts = Vec::new();
    for p in 1..=n {
        let mut qp = fabric.open(usize::from(p - 1)).unwrap();
        let neigh: Vec<_> = (1..=n)
            .filter(|&o| o != p)
            .map(|o| {
                let ah = qp
                    .create_ah(&AhAttr {
                        dlid: o,
                        dgid: None,
                        sl: 0,
                    })
                    .unwrap();
                (
                    ip(&format!("10.0.0.{o}")),
                    NeighEntry {
                        ah,
                        qpn: 0x100 + u32::from(o),
                    },
                )
            })
            .collect();
        let (tx, tx_in) = spsc::channel(256);
        let (rx_out, rx) = spsc::channel(256);
        let stats = Arc::new(IfaceStats::default());
        let mcast = published(McastTable::default());
        let requests = Arc::new(JoinRequestQueue::new(16));
        let iface = Iface::new(
            IfaceConfig {
                name: format!("ib{p}"),
                ifindex: p,
                mtu: 2044,
                pkey: 0xffff,
                scope: 2,
            },
            qp,
            IfaceWiring {
                tx_in: vec![tx_in],
                rx_out: Some(rx_out),
                neigh: published(NeighTable::new(neigh)),
                mcast: mcast.clone(),
                join_requests: requests.clone(),
                stats: stats.clone(),
            },
        );
        hosts.push(Host {
            iface,
            tx,
            rx,
            stats,
            mcast,
            requests,
            ip: ip(&format!("10.0.0.{p}")),
        });
    }
    (pool, fabric, hosts)
}

fn udp(pool: &'static Mempool, src: IpAddr, dst: IpAddr, size: usize) -> Mbuf {
    let bytes = build_udp_packet(&FlowSpec {
        src,
        dst,
        src_port: 1,
        dst_port: 2,
        size,
        rate_pps: 0,
    })
    .unwrap();
    let mut m = pool.alloc().unwrap();
    m.append(bytes.len()).unwrap().copy_from_slice(&bytes);
    m
}

fn pump(hosts: &mut [Host], cache: &mut LcoreCache) {
    for _ in 0..4 {
        for h in hosts.iter_mut() {
            h.iface.tx_burst(cache);
            h.iface.rx_burst(cache);
        }
    }
}

#[test]
fn unicast_is_encapsulated_routed_and_decapsulated() {
    let (pool, _f, mut hosts) = setup(2);
    let mut cache = pool.cache(32);
    let sent = udp(pool, hosts[0].ip, hosts[1].ip, 64);
    let expect = sent.data().to_vec();
    hosts[0].tx.push(sent).unwrap();
    pump(&mut hosts, &mut cache);
    let got = hosts[1].rx.pop().expect("delivered");
    assert_eq!(
        got.data(),
        &expect[..],
        "the receiver sees the IP packet, header stripped"
    );
    let s0 = hosts[0].stats.snapshot();
    assert_eq!(
        (s0.tx_packets, s0.tx_bytes),
        (1, 68),
        "IPoIB header counted on the wire"
    );
    assert_eq!(hosts[1].stats.snapshot().rx_packets, 1);
    drop(got);
    drop(cache);
    drop(hosts);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn unknown_neighbour_too_big_and_garbage_are_dropped_and_counted() {
    let (pool, _f, mut hosts) = setup(2);
    let mut cache = pool.cache(32);
    let src = hosts[0].ip;
    hosts[0]
        .tx
        .push(udp(pool, src, ip("10.0.0.99"), 64))
        .unwrap();
    hosts[0]
        .tx
        .push(udp(pool, src, ip("10.0.0.2"), 2045))
        .unwrap();
    let mut junk = pool.alloc().unwrap();
    junk.append(10).unwrap().fill(0x12);
    hosts[0].tx.push(junk).unwrap();
    pump(&mut hosts, &mut cache);
    let s = hosts[0].stats.snapshot();
    assert_eq!(s.drop_count(DpDrop::TxNoNeighbour), 1);
    assert_eq!(s.drop_count(DpDrop::TxTooBig), 1);
    assert_eq!(s.drop_count(DpDrop::TxMalformed), 1);
    assert_eq!(s.tx_packets, 0);
    drop(cache);
    drop(hosts);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn multicast_waits_for_the_join_then_goes_out_and_own_copy_is_dropped() {
    let (pool, fabric, mut hosts) = setup(3);
    let mut cache = pool.cache(32);
    let group = ip("239.1.1.1");
    let mgid = mgid_for_ip(group, 0xffff, 2).unwrap();
    let src = hosts[0].ip;
    for _ in 0..5 {
        hosts[0].tx.push(udp(pool, src, group, 100)).unwrap();
    }
    pump(&mut hosts, &mut cache);
    // Not joined: queued, and exactly one send-only join request went to control.
    assert_eq!(hosts[0].iface.mcast_pending(), 5);
    assert_eq!(
        hosts[0].requests.pop().map(|r| (r.mgid, r.ifindex)),
        Some((mgid, 1))
    );
    assert!(hosts[0].requests.pop().is_none());
    // The control plane joins: every host attached, the table published.
    for port in 0..3 {
        fabric.attach_mcast(port, mgid).unwrap();
    }
    let route = McastRoute {
        mgid,
        mlid: 0xc001,
        qkey: 0x0B1B,
        sl: 0,
        mtu: 2048,
    };
    hosts[0].mcast.store(Arc::new(McastTable::new(
        1,
        vec![(mgid, McastState::Joined(route))],
    )));
    pump(&mut hosts, &mut cache);
    assert_eq!(hosts[0].iface.mcast_pending(), 0);
    for h in &mut hosts[1..] {
        let mut n = 0;
        while let Some(m) = h.rx.pop() {
            assert_eq!(&m.data()[16..20], &[239, 1, 1, 1]);
            n += 1;
        }
        assert_eq!(n, 5);
        assert_eq!(h.stats.snapshot().rx_mcast_packets, 5);
    }
    // The sender's own QP got its copies too (as on hardware) and dropped them.
    assert_eq!(hosts[0].stats.snapshot().drop_count(DpDrop::RxSelfLoop), 5);
    assert!(hosts[0].rx.pop().is_none());
    assert_eq!(hosts[0].stats.snapshot().tx_mcast_packets, 5);
    drop(cache);
    drop(hosts);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn pending_queue_is_bounded_and_a_failed_join_drops_it() {
    let (pool, _f, mut hosts) = setup(2);
    let mut cache = pool.cache(32);
    let group = ip("239.9.9.9");
    let mgid = mgid_for_ip(group, 0xffff, 2).unwrap();
    let src = hosts[0].ip;
    for _ in 0..(PENDING_PER_GROUP + 6) {
        while hosts[0].tx.push(udp(pool, src, group, 64)).is_err() {
            hosts[0].iface.tx_burst(&mut cache);
        }
    }
    pump(&mut hosts, &mut cache);
    assert_eq!(hosts[0].iface.mcast_pending(), PENDING_PER_GROUP);
    assert_eq!(
        hosts[0]
            .stats
            .snapshot()
            .drop_count(DpDrop::TxMcastQueueFull),
        6
    );
    hosts[0].mcast.store(Arc::new(McastTable::new(
        1,
        vec![(mgid, McastState::Failed)],
    )));
    pump(&mut hosts, &mut cache);
    assert_eq!(hosts[0].iface.mcast_pending(), 0);
    assert_eq!(
        hosts[0]
            .stats
            .snapshot()
            .drop_count(DpDrop::TxMcastJoinFailed),
        PENDING_PER_GROUP as u64
    );
    drop(cache);
    drop(hosts);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn group_joined_before_the_first_packet_is_sent_without_a_request() {
    let (pool, fabric, mut hosts) = setup(2);
    let mut cache = pool.cache(32);
    let group = ip("239.1.1.1");
    let mgid = mgid_for_ip(group, 0xffff, 2).unwrap();
    fabric.attach_mcast(1, mgid).unwrap();
    let route = McastRoute {
        mgid,
        mlid: 0xc001,
        qkey: 0x0B1B,
        sl: 0,
        mtu: 2048,
    };
    hosts[0].mcast.store(Arc::new(McastTable::new(
        1,
        vec![(mgid, McastState::Joined(route))],
    )));
    pump(&mut hosts, &mut cache);
    let src = hosts[0].ip;
    for _ in 0..3 {
        hosts[0].tx.push(udp(pool, src, group, 100)).unwrap();
    }
    pump(&mut hosts, &mut cache);
    assert!(
        hosts[0].requests.pop().is_none(),
        "a joined group needs no send-only join"
    );
    let mut n = 0;
    while hosts[1].rx.pop().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(hosts[0].stats.snapshot().total_drops(), 0);
}

#[test]
fn control_channels_carry_misses_arp_up_and_frames_down() {
    use ipoib_dataplane::lcore::{CtrlChannels, CtrlDest, CtrlSend};
    use ipoib_dataplane::tables::RequestQueue;
    let (pool, _f, mut hosts) = setup(2);
    let mut cache = pool.cache(32);
    let resolve = Arc::new(RequestQueue::new(64));
    let (up_tx, mut up_rx) = spsc::channel(64);
    let (mut down_tx, down_rx) = spsc::channel(64);
    let mut h0 = hosts.remove(0);
    h0.iface = h0.iface.with_control(CtrlChannels {
        resolve: resolve.clone(),
        to_control: up_tx,
        from_control: down_rx,
    });
    hosts.insert(0, h0);
    // Misses for an unknown neighbour go up with their IPoIB header; only the
    // first few of a flow do, the rest are dropped here and counted.
    let src = hosts[0].ip;
    for _ in 0..6 {
        hosts[0]
            .tx
            .push(udp(pool, src, ip("10.0.0.9"), 64))
            .unwrap();
    }
    pump(&mut hosts, &mut cache);
    let mut up = Vec::new();
    while let Some((dst, m)) = resolve.pop() {
        assert_eq!(dst, ip("10.0.0.9"));
        assert_eq!(&m.data()[..4], &[0x08, 0x00, 0, 0]);
        up.push(m);
    }
    assert_eq!(up.len(), 4);
    assert_eq!(
        hosts[0].stats.snapshot().drop_count(DpDrop::TxNoNeighbour),
        2
    );
    // What control sends down goes out: here a released packet to host 1.
    let peer = hosts[0]
        .iface
        .provider_mut()
        .create_ah(&AhAttr {
            dlid: 2,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    let entry = NeighEntry {
        ah: peer,
        qpn: 0x102,
    };
    down_tx
        .push(CtrlSend {
            mbuf: up.pop().unwrap(),
            to: CtrlDest::Unicast(entry),
        })
        .unwrap();
    pump(&mut hosts, &mut cache);
    assert!(hosts[1].rx.pop().is_some(), "the released packet arrived");
    // An ARP frame arriving at host 0 goes up whole, not to the application.
    let mut arp = pool.alloc().unwrap();
    arp.append(4 + 48)
        .unwrap()
        .copy_from_slice(&[[0x08, 0x06, 0, 0].as_slice(), &[0u8; 48]].concat());
    let mut b: arrayvec::ArrayVec<_, 1> = arrayvec::ArrayVec::new();
    b.push(ipoib_dataplane::provider::SendWr {
        mbuf: arp,
        ah: peer,
        remote_qpn: 0x101,
        remote_qkey: 0x0B1B,
    });
    // Host 1 sends it to host 0.
    let back = hosts[1]
        .iface
        .provider_mut()
        .create_ah(&AhAttr {
            dlid: 1,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    b[0].ah = back;
    hosts[1].iface.provider_mut().post_send(&mut b);
    pump(&mut hosts, &mut cache);
    let frame = up_rx.pop().expect("ARP went to control");
    assert_eq!(&frame.data()[..2], &[0x08, 0x06]);
    assert!(hosts[0].rx.pop().is_none());
    drop((frame, up));
    drop(cache);
    drop(hosts);
    drop(down_tx);
    assert_eq!(pool.available(), pool.capacity());
}

/// Host 1 posts `frame` (IPoIB header included) straight to host 0's QP.
fn post_to_host0(hosts: &mut [Host], pool: &'static Mempool, frame: &[u8]) {
    let mut m = pool.alloc().unwrap();
    m.append(frame.len()).unwrap().copy_from_slice(frame);
    let ah = hosts[1]
        .iface
        .provider_mut()
        .create_ah(&AhAttr {
            dlid: 1,
            dgid: None,
            sl: 0,
        })
        .unwrap();
    let mut b: arrayvec::ArrayVec<_, 1> = arrayvec::ArrayVec::new();
    b.push(ipoib_dataplane::provider::SendWr {
        mbuf: m,
        ah,
        remote_qpn: 0x101,
        remote_qkey: 0x0B1B,
    });
    assert_eq!(hosts[1].iface.provider_mut().post_send(&mut b), 1);
}

/// IPv4 ICMP echo, ICMPv6 echo and an ICMPv6 neighbour solicitation, each
/// with its IPoIB header (checksums do not matter to the classifier).
fn icmp_frames() -> [Vec<u8>; 3] {
    let mut v4 = vec![0x08, 0x00, 0, 0, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0];
    v4.extend([10, 0, 0, 2, 10, 0, 0, 1]);
    v4.extend([8, 0, 0, 0, 0, 1, 0, 1]);
    let v6 = |icmp_type: u8| {
        let mut f = vec![0x86, 0xdd, 0, 0, 0x60, 0, 0, 0, 0, 8, 58, 255];
        f.extend(ip6("fd00::2"));
        f.extend(ip6("fd00::1"));
        f.extend([icmp_type, 0, 0, 0, 0, 0, 0, 0]);
        f
    };
    [v4, v6(128), v6(135)]
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

#[test]
fn with_a_kernel_behind_tun_echo_goes_to_the_application_and_nd_to_control() {
    use ipoib_dataplane::lcore::CtrlChannels;
    use ipoib_dataplane::tables::RequestQueue;
    for kernel_icmp in [false, true] {
        let (pool, _f, mut hosts) = setup(2);
        let mut cache = pool.cache(32);
        let (up_tx, mut up_rx) = spsc::channel(64);
        let (down_tx, down_rx) = spsc::channel(64);
        hosts[0].iface.set_control(CtrlChannels {
            resolve: Arc::new(RequestQueue::new(64)),
            to_control: up_tx,
            from_control: down_rx,
        });
        hosts[0].iface.set_kernel_icmp(kernel_icmp);
        for f in icmp_frames() {
            post_to_host0(&mut hosts, pool, &f);
        }
        pump(&mut hosts, &mut cache);
        let mut up = Vec::new();
        while let Some(m) = up_rx.pop() {
            // Whole frames, IPoIB header included: the byte after the IP header.
            let d = m.data();
            up.push(if d[0] == 0x08 { d[4 + 20] } else { d[4 + 40] });
        }
        let mut app = Vec::new();
        while let Some(m) = hosts[0].rx.pop() {
            // Header stripped.
            let d = m.data();
            app.push(if d[0] >> 4 == 4 { d[20] } else { d[40] });
        }
        if kernel_icmp {
            assert_eq!((up, app), (vec![135], vec![8, 128]));
        } else {
            assert_eq!((up, app), (vec![8, 128, 135], vec![]));
        }
        assert_eq!(hosts[0].stats.snapshot().total_drops(), 0);
        drop(cache);
        drop(hosts);
        drop(down_tx);
        assert_eq!(pool.available(), pool.capacity());
    }
}

/// A fabric QP that reports one more port's LID as its own: the fabric
/// gives every port its own LID, while an interface's queues share one.
struct SharedLid {
    qp: FabricQp,
    lid: u16,
    sibling_lid: u16,
}

impl Provider for SharedLid {
    type Ah = FabricAh;
    fn port(&self) -> PortAttr {
        PortAttr {
            lid: self.lid,
            ..self.qp.port()
        }
    }
    fn create_ah(&mut self, attr: &AhAttr) -> Result<FabricAh, ProviderError> {
        self.qp.create_ah(attr)
    }
    fn post_send<const N: usize>(&mut self, wrs: &mut ArrayVec<SendWr<FabricAh>, N>) -> usize {
        self.qp.post_send(wrs)
    }
    fn poll_recv<const N: usize>(&mut self, out: &mut ArrayVec<RecvCompletion, N>) -> usize {
        let before = out.len();
        let n = self.qp.poll_recv(out);
        for c in &mut out[before..] {
            if c.slid == self.sibling_lid {
                c.slid = self.lid;
            }
        }
        n
    }
    fn reap(&mut self, cache: &mut LcoreCache) {
        self.qp.reap(cache)
    }
}

#[test]
fn a_sibling_queues_multicast_looped_back_is_our_own() {
    // Hosts 1 and 2 of the fabric stand for two queues of one interface
    // (QPNs 0x101 and 0x102 on LID 1); the first is attached to the group.
    let (pool, fabric, mut hosts) = setup(3);
    let mut cache = pool.cache(32);
    let group = ip("239.1.1.2");
    let mgid = mgid_for_ip(group, 0xffff, 2).unwrap();
    fabric.attach_mcast(0, mgid).unwrap();
    fabric.attach_mcast(2, mgid).unwrap();
    let route = McastRoute {
        mgid,
        mlid: 0xc002,
        qkey: 0x0B1B,
        sl: 0,
        mtu: 2048,
    };
    let table = Arc::new(McastTable::new(1, vec![(mgid, McastState::Joined(route))]));
    hosts[1].mcast.store(table.clone());
    // The first queue, rebuilt over a QP that shares its LID with the second.
    let first = hosts.remove(0);
    drop(first);
    let qp = SharedLid {
        qp: fabric.open(0).unwrap(),
        lid: 1,
        sibling_lid: 2,
    };
    let (_tx, tx_in) = spsc::channel::<Mbuf>(16);
    let (rx_out, mut rx) = spsc::channel::<Mbuf>(256);
    let stats = Arc::new(IfaceStats::default());
    let mut q0 = Iface::new(
        IfaceConfig {
            name: "ib1".into(),
            ifindex: 1,
            mtu: 2044,
            pkey: 0xffff,
            scope: 2,
        },
        qp,
        IfaceWiring {
            tx_in: vec![tx_in],
            rx_out: Some(rx_out),
            neigh: published(NeighTable::new(Vec::new())),
            mcast: published((*table).clone()),
            join_requests: Arc::new(JoinRequestQueue::new(16)),
            stats: stats.clone(),
        },
    );
    q0.set_siblings(&[0x101, 0x102]);
    let src = hosts[0].ip;
    let mut send = |hosts: &mut Vec<Host>, q0: &mut Iface<SharedLid>, n: usize| {
        for _ in 0..n {
            hosts[0].tx.push(udp(pool, src, group, 100)).unwrap();
        }
        for _ in 0..4 {
            pump(hosts, &mut cache);
            q0.rx_burst(&mut cache);
        }
    };
    send(&mut hosts, &mut q0, 4);
    // The peer gets them; the first queue drops them as its own.
    let mut peer = 0;
    while hosts[1].rx.pop().is_some() {
        peer += 1;
    }
    assert_eq!(peer, 4);
    assert!(rx.pop().is_none());
    assert_eq!(stats.snapshot().drop_count(DpDrop::RxSelfLoop), 4);
    // Without siblings the same copies would be taken for a peer's.
    q0.set_siblings(&[]);
    send(&mut hosts, &mut q0, 3);
    let mut delivered = 0;
    while rx.pop().is_some() {
        delivered += 1;
    }
    assert_eq!(delivered, 3);
    while hosts[1].rx.pop().is_some() {}
    drop(cache);
    drop(q0);
    drop(hosts);
    assert_eq!(pool.available(), pool.capacity());
}
