//! The steady-state datapath allocates nothing: a counting global allocator
//! watches a million packets and more after warm-up, through the null
//! provider in loopback mode and through the soft fabric between two ports
//! (unicast, and multicast to a joined group), TX and RX with stats.

#[path = "../examples/datapath_pps/rig.rs"]
mod rig;

use ipoib_dataplane::lcore::{
    FlowSpec, Iface, IfaceConfig, IfaceWiring, Lcore, NeighEntry, NeighTable, TrafficSource,
};
use ipoib_dataplane::mem::{HugepageMode, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, FabricQp, PortSpec};
use ipoib_dataplane::provider::{AhAttr, Provider};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::{DpDrop, IfaceStats, StatsSnapshot};
use ipoib_dataplane::tables::{published, JoinRequestQueue, McastState, McastTable, Published};
use ipoib_dataplane::wire::Gid;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts allocations made by threads that switched counting on.
struct Counting;

/// Allocations counted, all threads (the one-time check that counting works).
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Per thread, so tests running in parallel and the harness do not count.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static MINE: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        let _ = MINE.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = MINE.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (MINE.with(Cell::get) - before, r)
}

const STEADY_PACKETS: u64 = 1_000_000;

#[test]
fn the_counter_sees_allocations() {
    let (n, v) = allocations_in(|| std::hint::black_box(Box::new(7u64)));
    assert_eq!(*v, 7);
    assert!(n >= 1, "a Box allocation went uncounted");
    let (n, _) = allocations_in(|| std::hint::black_box(Vec::<u8>::with_capacity(1)).reserve(4096));
    assert!(n >= 1, "a realloc went uncounted");
    let (n, ()) = allocations_in(|| ());
    assert_eq!(n, 0, "nothing was allocated, yet the counter moved");
    assert!(ALLOCATIONS.load(Ordering::Relaxed) >= 2);
}

#[test]
fn null_loopback_datapath_allocates_nothing() {
    for dest in [rig::Dest::Unicast, rig::Dest::Multicast, rig::Dest::Mixed] {
        let mut r = rig::Rig::new(dest);
        r.warm_up(100_000);
        let before = r.snapshot();
        let (n, sent) = allocations_in(|| r.run(STEADY_PACKETS));
        let after = r.snapshot();
        assert_eq!(n, 0, "{dest:?}: {n} allocations over {sent} packets");
        assert!(sent >= STEADY_PACKETS);
        // The receive side ran too: every looped packet was decapsulated.
        assert!(
            after.rx_packets - before.rx_packets + 512 >= sent,
            "{dest:?}: RX did not keep up"
        );
        assert_eq!(
            after.total_drops(),
            before.total_drops(),
            "{dest:?}: drops in steady state"
        );
        if dest != rig::Dest::Unicast {
            assert!(
                after.tx_mcast_packets > before.tx_mcast_packets,
                "{dest:?}: no multicast sent"
            );
        }
    }
}

struct Host {
    stats: Arc<IfaceStats>,
    mcast: Published<McastTable>,
    requests: Arc<JoinRequestQueue>,
}

impl Host {
    /// Plays the control plane: a send-only join request is answered by
    /// publishing a new generation with the group joined (the lcore learns a
    /// group's state from a new generation).
    fn serve_joins(&self) {
        let mut asked = false;
        while let Some(req) = self.requests.pop() {
            assert_eq!(req.mgid, rig::group_route().mgid);
            asked = true;
        }
        if asked {
            let route = rig::group_route();
            let generation = self.mcast.load().generation + 1;
            self.mcast.store(Arc::new(McastTable::new(
                generation,
                vec![(route.mgid, McastState::Joined(route))],
            )));
        }
    }
}

fn port_spec(lid: u16) -> PortSpec {
    PortSpec {
        lid,
        gid: Gid::link_local(0x0002_c903_0000_0000 | lid as u64),
        qpn: 0x100 + lid as u32,
        pkey: 0xFFFF,
        qkey: 0x0B1B,
    }
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

/// Two ports on the soft fabric, both on one lcore: port 0 sends unicast to
/// port 1 and to a group both are attached to (so it gets its own copy back
/// and drops it, as IPoIB does); port 1 receives both.
fn fabric_pair(pool: &'static Mempool) -> (Lcore<FabricQp>, Vec<Host>, Arc<Fabric>) {
    let specs = [port_spec(1), port_spec(2)];
    let fabric = Fabric::new(
        FabricConfig {
            rx_depth: 1024,
            ..FabricConfig::default()
        },
        &specs,
    )
    .expect("fabric");
    let route = rig::group_route();
    let mut lcore = Lcore::new(0, pool.cache(256));
    let mut hosts = Vec::new();
    for me in 0..2usize {
        let peer = 1 - me;
        fabric.attach_mcast(me, route.mgid).expect("attach");
        let mut qp = fabric.open(me).expect("open");
        let ah = qp
            .create_ah(&AhAttr {
                dlid: 0,
                dgid: Some(specs[peer].gid),
                sl: 0,
            })
            .expect("ah");
        let neigh = published(NeighTable::new([(
            IpAddr::V4(ip(peer as u8 + 1)),
            NeighEntry {
                ah,
                qpn: specs[peer].qpn,
            },
        )]));
        let mcast = published(McastTable::new(
            1,
            vec![(route.mgid, McastState::Joined(route))],
        ));
        let stats = Arc::new(IfaceStats::default());
        let requests = Arc::new(JoinRequestQueue::new(16));
        // Only port 0 sends, so no receive queue gets more than a burst per pass.
        let dsts = if me == 0 {
            vec![ip(peer as u8 + 1), rig::GROUP]
        } else {
            vec![]
        };
        let mut tx_in = Vec::new();
        for d in dsts {
            let (prod, cons) = spsc::channel::<Mbuf>(1024);
            let flow = FlowSpec {
                src: IpAddr::V4(ip(me as u8 + 1)),
                dst: IpAddr::V4(d),
                src_port: 7000,
                dst_port: 7001,
                size: rig::PACKET_SIZE,
                rate_pps: 0,
            };
            lcore.add_source(TrafficSource::new(&flow, prod).expect("flow"));
            tx_in.push(cons);
        }
        lcore.add_iface(Iface::new(
            IfaceConfig {
                name: format!("ib{me}"),
                ifindex: me as u16,
                mtu: 2044,
                pkey: 0xFFFF,
                scope: rig::SCOPE,
            },
            qp,
            IfaceWiring {
                tx_in,
                rx_out: None,
                neigh,
                mcast: mcast.clone(),
                join_requests: requests.clone(),
                stats: stats.clone(),
            },
        ));
        hosts.push(Host {
            stats,
            mcast,
            requests,
        });
    }
    (lcore, hosts, fabric)
}

fn total(hosts: &[Host]) -> StatsSnapshot {
    let mut s = StatsSnapshot::default();
    for h in hosts {
        s += h.stats.snapshot();
    }
    s
}

fn run_fabric(lcore: &mut Lcore<FabricQp>, hosts: &[Host], packets: u64) -> u64 {
    let start = total(hosts).tx_packets;
    loop {
        for _ in 0..64 {
            lcore.poll_once();
        }
        let sent = total(hosts).tx_packets - start;
        if sent >= packets {
            return sent;
        }
    }
}

#[test]
fn fabric_unicast_and_joined_multicast_allocate_nothing() {
    let pool = Mempool::new(MempoolConfig {
        name: "alloc-fabric".into(),
        count: 8192,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .expect("pool");
    let (mut lcore, hosts, fabric) = fabric_pair(pool);
    for _ in 0..4 {
        lcore.poll_once();
        hosts.iter().for_each(Host::serve_joins);
    }
    run_fabric(&mut lcore, &hosts, 100_000);
    let before = total(&hosts);
    let (n, sent) = allocations_in(|| run_fabric(&mut lcore, &hosts, STEADY_PACKETS));
    let after = total(&hosts);
    assert_eq!(n, 0, "{n} allocations over {sent} packets on the fabric");
    assert!(sent >= STEADY_PACKETS);
    let d = |r: DpDrop| after.drop_count(r) - before.drop_count(r);
    assert!(
        after.tx_mcast_packets - before.tx_mcast_packets > sent / 8,
        "multicast did not flow: {} of {sent}",
        after.tx_mcast_packets - before.tx_mcast_packets
    );
    assert!(
        after.rx_mcast_packets > before.rx_mcast_packets,
        "the peer received no multicast"
    );
    assert!(
        d(DpDrop::RxSelfLoop) > 0,
        "the sender's own multicast copy did not come back"
    );
    assert_eq!(
        after.total_drops() - before.total_drops(),
        d(DpDrop::RxSelfLoop),
        "unexpected drops"
    );
    for p in 0..2 {
        let c = fabric.counters(p).expect("port");
        assert_eq!(c.total_drops(), 0, "fabric port {p} dropped: {c:?}");
    }
    // Stop: drain everything and check that no mbuf leaked.
    lcore.drain();
    drop(lcore);
    drop(fabric);
    assert_eq!(pool.available(), pool.capacity(), "mbufs leaked");
}

/// With a capture running, the lcore still allocates nothing: frames are
/// copied into the taps' preallocated slots (the writer thread, not counted
/// here, drains them), and every frame sent or received is either captured
/// or a counted capture drop.
#[test]
fn capture_on_allocates_nothing_on_the_lcore() {
    use ipoib_dataplane::capture::{tap, Capture, MAX_SNAPLEN};
    let pool = Mempool::new(MempoolConfig {
        name: "alloc-capture".into(),
        count: 8192,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .expect("pool");
    let (mut lcore, hosts, fabric) = fabric_pair(pool);
    let readers = lcore
        .ifaces_mut()
        .iter_mut()
        .enumerate()
        .map(|(i, iface)| {
            let port = iface.port();
            let (t, reader) = tap(&format!("ib{i}"), port.qpn, port.gid, 256);
            iface.set_capture(t);
            reader
        })
        .collect();
    let capture = Capture::new(readers);
    // The records go nowhere: the copy and the accounting are what count.
    capture
        .start(std::path::Path::new("/dev/null"), None, MAX_SNAPLEN)
        .expect("capture starts");
    for _ in 0..4 {
        lcore.poll_once();
        hosts.iter().for_each(Host::serve_joins);
    }
    run_fabric(&mut lcore, &hosts, 100_000);
    let seen = |i: usize| {
        let c = &capture.counters()[i];
        c.captured + c.drops
    };
    let (tx0, rx1) = (hosts[0].stats.snapshot(), hosts[1].stats.snapshot());
    let (seen0, seen1) = (seen(0), seen(1));
    let (n, sent) = allocations_in(|| run_fabric(&mut lcore, &hosts, STEADY_PACKETS / 4));
    assert_eq!(n, 0, "{n} allocations over {sent} packets with capture on");
    let (tx0_after, rx1_after) = (hosts[0].stats.snapshot(), hosts[1].stats.snapshot());
    // ib0 only sends (its own multicast copies are not captured), ib1 only
    // receives; nothing was refused by the fabric.
    assert_eq!(seen(0) - seen0, tx0_after.tx_packets - tx0.tx_packets);
    assert_eq!(seen(1) - seen1, rx1_after.rx_packets - rx1.rx_packets);
    assert!(capture.counters()[0].captured > 0);
    let done = capture.stop().expect("capture stops");
    assert!(done.written > 0 && done.error.is_none(), "{done:?}");
    lcore.drain();
    drop(lcore);
    drop(fabric);
    assert_eq!(pool.available(), pool.capacity(), "mbufs leaked");
}
