//! The lcore's end of a TUN device, driven through a SOCK_SEQPACKET socket
//! pair (one packet per read or write, as a TUN descriptor with IFF_NO_PI):
//! packets from the host reach the interface's TX ring in mbufs with
//! headroom for the IPoIB header, received packets reach the host, discovery
//! from the host's kernel is filtered, a full ring leaves packets in the
//! device, the steady state allocates nothing, nothing leaks, and an lcore
//! carries packets from one host's device to another's over the soft fabric.

use ipoib_dataplane::lcore::{TunCounter, TunPort, TunStats};
use ipoib_dataplane::mem::{HugepageMode, Mbuf, Mempool, MempoolConfig, HEADROOM};
use ipoib_dataplane::ring::spsc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static MINE: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = MINE.try_with(|c| c.set(c.get() + 1));
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn pool() -> &'static Mempool {
    Mempool::new(MempoolConfig {
        name: "tun".into(),
        count: 1024,
        buf_size: 2176,
        hugepages: HugepageMode::Off,
    })
    .unwrap()
}

/// (the port's end, the host's end), both non-blocking.
fn pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors; the result is checked.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: two fresh descriptors nobody else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn send(fd: &OwnedFd, p: &[u8]) {
    // SAFETY: p is valid for its length.
    let n = unsafe { libc::write(fd.as_raw_fd(), p.as_ptr().cast(), p.len()) };
    assert_eq!(n, p.len() as isize);
}

fn recv(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut b = vec![0u8; 4096];
    // SAFETY: b is valid for its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
    (n >= 0).then(|| {
        b.truncate(n as usize);
        b
    })
}

/// An IPv4 packet of `len` bytes with a recognisable body.
fn v4(len: usize, tag: u8) -> Vec<u8> {
    let mut p = vec![tag; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[9] = 17;
    p
}

/// An IPv6 ICMPv6 packet of the given type.
fn icmp6(kind: u8) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x60;
    p[5] = 8;
    p[6] = 58;
    p[7] = 255;
    p[40] = kind;
    p
}

fn mbuf(pool: &'static Mempool, p: &[u8]) -> Mbuf {
    let mut m = pool.alloc().unwrap();
    m.append(p.len()).unwrap().copy_from_slice(p);
    m
}

#[test]
fn packets_cross_both_ways_in_bursts_and_nothing_leaks() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let (port_fd, host) = pair();
    let (to_iface, mut tx_ring) = spsc::channel::<Mbuf>(64);
    let (mut rx_ring, from_iface) = spsc::channel::<Mbuf>(64);
    let stats = Arc::new(TunStats::default());
    let mut port = TunPort::new(port_fd, to_iface, from_iface, stats.clone());

    // Nothing there: nothing moves, nothing counted.
    assert_eq!(port.poll(&mut cache), 0);
    assert!(stats.xstats().all(|(_, v)| v == 0));

    // Host → interface: IP packets whole, with the headroom intact; the
    // kernel's neighbour solicitation is filtered, its echo request is not.
    let sent = [v4(60, 1), icmp6(135), v4(1400, 2), icmp6(128)];
    for p in &sent {
        send(&host, p);
    }
    assert_eq!(port.poll(&mut cache), 3);
    for want in [&sent[0], &sent[2], &sent[3]] {
        let m = tx_ring.pop().expect("packet in the TX ring");
        assert_eq!(m.data(), want.as_slice());
        assert_eq!(m.headroom(), HEADROOM);
    }
    assert!(tx_ring.pop().is_none());
    assert_eq!(stats.get(TunCounter::RxPackets), 3);
    assert_eq!(stats.get(TunCounter::RxBytes), 60 + 1400 + 48);
    assert_eq!(stats.get(TunCounter::RxFilteredDrops), 1);

    // Interface → host: 40 received packets, in order, a burst per poll.
    for i in 0..40u8 {
        rx_ring
            .push(mbuf(pool, &v4(100 + usize::from(i), i)))
            .unwrap();
    }
    assert_eq!(port.poll(&mut cache), 32);
    assert_eq!(port.poll(&mut cache), 8);
    for i in 0..40u8 {
        assert_eq!(recv(&host).unwrap(), v4(100 + usize::from(i), i));
    }
    assert!(recv(&host).is_none());
    assert_eq!(stats.get(TunCounter::TxPackets), 40);

    // A TX ring with room for one: one packet read, the rest wait in the device.
    while tx_ring.len() < 63 {
        send(&host, &v4(40, 0));
        assert_eq!(port.read_burst(&mut cache), 1);
    }
    for i in 0..3 {
        send(&host, &v4(64, 10 + i));
    }
    assert_eq!(port.read_burst(&mut cache), 1);
    assert_eq!(stats.get(TunCounter::RxRingFullDrops), 0);
    while tx_ring.pop().is_some() {}
    assert_eq!(port.read_burst(&mut cache), 2);
    while tx_ring.pop().is_some() {}

    // The host end gone: writes fail, counted as drops, and freed.
    drop(host);
    rx_ring.push(mbuf(pool, &v4(64, 7))).unwrap();
    port.poll(&mut cache);
    assert_eq!(stats.get(TunCounter::TxErrorDrops), 1);

    rx_ring.push(mbuf(pool, &v4(64, 8))).unwrap();
    port.drain(&mut cache);
    drop(port);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn steady_state_allocates_nothing() {
    let pool = pool();
    let mut cache = pool.cache(64);
    let (port_fd, host) = pair();
    let (to_iface, mut tx_ring) = spsc::channel::<Mbuf>(64);
    let (mut rx_ring, from_iface) = spsc::channel::<Mbuf>(64);
    let mut port = TunPort::new(port_fd, to_iface, from_iface, Arc::default());
    let packet = v4(200, 3);
    let mut buf = [0u8; 512];
    let mut round = |count: bool| {
        COUNTING.with(|c| c.set(count));
        for _ in 0..16 {
            // SAFETY: valid buffers for their lengths.
            unsafe { libc::write(host.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        }
        port.poll(&mut cache);
        for _ in 0..16 {
            let m = tx_ring.pop().expect("read from the device");
            // Straight back the other way.
            rx_ring.push(m).unwrap();
        }
        port.poll(&mut cache);
        for _ in 0..16 {
            // SAFETY: valid buffers for their lengths.
            let n = unsafe { libc::read(host.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            assert_eq!(n, 200);
        }
        COUNTING.with(|c| c.set(false));
    };
    for _ in 0..10 {
        round(false);
    }
    MINE.with(|c| c.set(0));
    for _ in 0..1000 {
        round(true);
    }
    assert_eq!(MINE.with(Cell::get), 0, "allocations in the steady state");
    port.drain(&mut cache);
}

/// Two soft-fabric hosts on one lcore, each interface with a TUN port (a
/// socket pair standing in for the device): what host A's kernel writes
/// comes out of host B's device unchanged, both ways, through the lcore's
/// ordinary pass (TUN, then interfaces).
#[test]
fn an_lcore_carries_packets_from_one_device_to_the_other() {
    use ipoib_dataplane::lcore::{Iface, IfaceConfig, IfaceWiring, Lcore, NeighEntry, NeighTable};
    use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, FabricQp, Injection, PortSpec};
    use ipoib_dataplane::provider::{AhAttr, Provider};
    use ipoib_dataplane::stats::IfaceStats;
    use ipoib_dataplane::tables::{published, JoinRequestQueue, McastTable};
    use ipoib_dataplane::wire::Gid;

    let pool = pool();
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
            injection: Injection::default(),
            rx_depth: 256,
        },
        &specs,
    )
    .unwrap();
    let mut lcore: Lcore<FabricQp> = Lcore::new(0, pool.cache(32));
    let mut hosts = Vec::new();
    for p in 1..=2u16 {
        let mut qp = fabric.open(usize::from(p - 1)).unwrap();
        let o = 3 - p;
        let ah = qp
            .create_ah(&AhAttr {
                dlid: o,
                dgid: None,
                sl: 0,
            })
            .unwrap();
        let peer = format!("10.0.0.{o}").parse().unwrap();
        let neigh = NeighTable::new([(
            peer,
            NeighEntry {
                ah,
                qpn: 0x100 + u32::from(o),
            },
        )]);
        let (port_fd, host) = pair();
        let (to_iface, tx_in) = spsc::channel::<Mbuf>(64);
        let (rx_out, from_iface) = spsc::channel::<Mbuf>(64);
        let stats = Arc::new(TunStats::default());
        lcore.add_tun(TunPort::new(port_fd, to_iface, from_iface, stats.clone()));
        let mut iface = Iface::new(
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
                neigh: published(neigh),
                mcast: published(McastTable::default()),
                join_requests: Arc::new(JoinRequestQueue::new(16)),
                stats: Arc::new(IfaceStats::default()),
            },
        );
        iface.set_kernel_icmp(true);
        lcore.add_iface(iface);
        hosts.push((host, stats));
    }
    // An echo request from A's kernel, a datagram back from B's.
    let mut echo = v4(84, 0xab);
    echo[9] = 1;
    echo[12..16].copy_from_slice(&[10, 0, 0, 1]);
    echo[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let mut back = v4(1400, 0xcd);
    back[12..16].copy_from_slice(&[10, 0, 0, 2]);
    back[16..20].copy_from_slice(&[10, 0, 0, 1]);
    send(&hosts[0].0, &echo);
    send(&hosts[1].0, &back);
    let mut got = [None, None];
    for _ in 0..100 {
        lcore.poll_once();
        for (k, slot) in got.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = recv(&hosts[k].0);
            }
        }
        if got.iter().all(Option::is_some) {
            break;
        }
    }
    assert_eq!(got[1].as_deref(), Some(echo.as_slice()), "A's echo at B");
    assert_eq!(
        got[0].as_deref(),
        Some(back.as_slice()),
        "B's datagram at A"
    );
    for (_, s) in &hosts {
        assert_eq!(
            (s.get(TunCounter::RxPackets), s.get(TunCounter::TxPackets)),
            (1, 1)
        );
    }
    lcore.drain();
    drop(lcore);
    assert_eq!(pool.available(), pool.capacity());
}
