//! Two soft hosts on the soft fabric, each with a smoltcp stack above and a
//! resolver beside its UD queue pair: the first packets to a peer wait for
//! ARP/ND and the path, then leave; ICMP echo and UDP go both ways, IPv4
//! and IPv6, with nothing dropped on the fabric.

use arrayvec::ArrayVec;
use ipoib_control::neigh::{
    parse_frame, Inbound, LocalLink, NeighCache, NeighConfig, Output, Resolver,
};
use ipoib_control::path::{
    PathCache, PathConfig, ProviderAhFactory, SoftPathConfig, SoftPathService,
};
use ipoib_control::stack::{IpStack, StackConfig};
use ipoib_dataplane::mem::{HugepageMode, Mempool, MempoolConfig};
use ipoib_dataplane::provider::fabric::{Fabric, FabricAh, FabricConfig, FabricQp, PortSpec};
use ipoib_dataplane::provider::{Provider, RecvCompletion, SendWr, BURST, MCAST_QPN};
use ipoib_dataplane::wire::{EtherType, Gid, HwAddr, IpoibPacket, IpoibRepr};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const QKEY: u32 = 0x0B1B;
const GUID_BASE: u64 = 0x0002_c903_0000_0000;

type HostResolver = Resolver<Vec<u8>, ProviderAhFactory<FabricQp>, SoftPathService>;

fn pool() -> &'static Mempool {
    Mempool::new(MempoolConfig {
        name: "neigh-fabric".into(),
        count: 1024,
        buf_size: 4352,
        hugepages: HugepageMode::Off,
    })
    .expect("pool")
}

fn ip4(n: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n))
}

fn ip6(n: u8) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)))
}

fn spec(n: u8) -> PortSpec {
    PortSpec {
        lid: u16::from(n),
        gid: Gid::link_local(GUID_BASE | u64::from(n)),
        qpn: 0x100 + u32::from(n),
        pkey: 0xffff,
        qkey: QKEY,
    }
}

/// Where an IP packet goes: the destination address of its header.
fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

struct Host {
    qp: FabricQp,
    pool: &'static Mempool,
    stack: IpStack,
    resolver: HostResolver,
    /// IP packets the stack sent that missed the published table.
    misses: usize,
    /// IP packets that left through a published entry.
    hits: usize,
}

impl Host {
    fn new(fabric: &Arc<Fabric>, n: u8, pool: &'static Mempool) -> Host {
        let port = usize::from(n) - 1;
        let qp = fabric.open(port).expect("qp");
        let attr = qp.port();
        let link = LocalLink {
            hwaddr: HwAddr::new(0, attr.qpn, attr.gid),
            pkey: attr.pkey,
            scope: 2,
        };
        let mut resolver = Resolver::new(
            NeighCache::new(NeighConfig::default(), link),
            PathCache::new(
                PathConfig::default(),
                ProviderAhFactory::new(fabric.open(port).expect("qp")),
            ),
            SoftPathService::new(Arc::clone(fabric), SoftPathConfig::default()),
        );
        // Addresses first (nothing is sent while down), then the groups the
        // multicast engine would join, then up: the announcements find
        // every group attached.
        let mut out = resolver.add_address(ip4(n), Duration::ZERO);
        out.extend(resolver.add_address(ip6(n), Duration::ZERO));
        assert!(out.is_empty());
        for mgid in resolver.neigh().multicast_groups() {
            fabric.attach_mcast(port, mgid).expect("attach");
        }
        let stack = IpStack::new(
            &StackConfig {
                addrs: vec![(ip4(n), 24), (ip6(n), 64)],
                seed: u64::from(n),
                echo_ident: 0x100 + u16::from(n),
                ..StackConfig::default()
            },
            Duration::ZERO,
        )
        .expect("stack");
        let mut host = Host {
            qp,
            pool,
            stack,
            resolver,
            misses: 0,
            hits: 0,
        };
        let out = host.resolver.interface_up(Duration::ZERO);
        host.handle(out);
        host
    }

    fn post(&mut self, ah: FabricAh, qpn: u32, frame: &[u8]) {
        let Some(mut mbuf) = self.pool.alloc() else {
            panic!("pool exhausted");
        };
        let Some(data) = mbuf.append(frame.len()) else {
            panic!("frame larger than a buffer");
        };
        data.copy_from_slice(frame);
        let mut burst: ArrayVec<SendWr<FabricAh>, 1> = ArrayVec::new();
        burst.push(SendWr {
            mbuf,
            ah,
            remote_qpn: qpn,
            remote_qkey: QKEY,
        });
        assert_eq!(self.qp.post_send(&mut burst), 1);
    }

    /// IPoIB header in front of an IP packet.
    fn encapsulate(packet: &[u8]) -> Vec<u8> {
        let ethertype = if packet.first().map(|b| b >> 4) == Some(6) {
            EtherType::Ipv6
        } else {
            EtherType::Ipv4
        };
        let mut frame = vec![0u8; 4 + packet.len()];
        let mut ipoib = IpoibPacket::new_unchecked(&mut frame[..]);
        IpoibRepr { ethertype }.emit(&mut ipoib).expect("header");
        ipoib.payload_mut().copy_from_slice(packet);
        frame
    }

    fn handle(&mut self, out: Vec<Output<Vec<u8>, FabricAh>>) {
        for o in out {
            match o {
                Output::Multicast(t) => self.post(
                    FabricAh::Multicast { mgid: t.dest.gid },
                    MCAST_QPN,
                    &t.frame,
                ),
                Output::Unicast { entry, frame } => self.post(entry.ah, entry.qpn, &frame),
                Output::Send { entry, packets, .. } => {
                    for p in packets {
                        self.post(entry.ah, entry.qpn, &Self::encapsulate(&p));
                    }
                }
                Output::Drop { ip, reason, .. } => panic!("dropped a packet to {ip}: {reason:?}"),
            }
        }
    }

    /// One round: receive, run the stack, send what it produced, timers.
    fn step(&mut self, now: Duration) {
        loop {
            let mut burst: ArrayVec<RecvCompletion, BURST> = ArrayVec::new();
            if self.qp.poll_recv(&mut burst) == 0 {
                break;
            }
            for c in burst {
                let data = c.mbuf.data();
                let Ok(ipoib) = IpoibPacket::new_checked(data) else {
                    continue;
                };
                match (ipoib.ethertype(), parse_frame(data)) {
                    (_, Ok(Inbound::Arp(_) | Inbound::Nd(_))) => {
                        let out = self.resolver.rx_frame(data, now);
                        self.handle(out);
                    }
                    (EtherType::Ipv4 | EtherType::Ipv6, _) => {
                        self.stack.receive(ipoib.payload().to_vec());
                    }
                    _ => {}
                }
            }
        }
        self.stack.poll(now);
        for packet in self.stack.take_transmitted() {
            let Some(dst) = destination(&packet) else {
                continue;
            };
            let hit = self.resolver.table().load().lookup(dst).copied();
            match hit {
                Some(entry) => {
                    self.hits += 1;
                    self.post(entry.ah, entry.qpn, &Self::encapsulate(&packet));
                }
                None => {
                    self.misses += 1;
                    let out = self.resolver.tx_miss(dst, packet, now);
                    self.handle(out);
                }
            }
        }
        let out = self.resolver.poll(now);
        self.handle(out);
    }
}

struct Pair {
    fabric: Arc<Fabric>,
    hosts: [Host; 2],
    now: Duration,
}

impl Pair {
    fn new() -> Pair {
        let fabric = Fabric::new(FabricConfig::default(), &[spec(1), spec(2)]).expect("fabric");
        let pool = pool();
        let hosts = [Host::new(&fabric, 1, pool), Host::new(&fabric, 2, pool)];
        Pair {
            fabric,
            hosts,
            now: Duration::ZERO,
        }
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += Duration::from_millis(1);
            for h in &mut self.hosts {
                h.step(self.now);
            }
        }
    }

    fn no_fabric_drops(&self) {
        for port in 0..2 {
            let drops = self.fabric.counters(port).map(|c| c.total_drops());
            assert_eq!(drops, Some(0), "drops at port {port}");
        }
    }
}

#[test]
fn echo_over_the_fabric_first_packets_wait_then_everything_hits_the_table() {
    let mut pair = Pair::new();
    let mut rtts = Vec::new();
    for (seq, dst) in [(1u16, ip4(2)), (2, ip6(2)), (3, ip4(2)), (4, ip6(2))] {
        let sent_at = pair.now;
        pair.hosts[0]
            .stack
            .ping(dst, seq, b"over the fabric")
            .expect("ping");
        let mut reply = None;
        for _ in 0..50 {
            pair.run(1);
            if let Some(r) = pair.hosts[0].stack.echo_replies().pop() {
                reply = Some(r);
                break;
            }
        }
        let reply = reply.unwrap_or_else(|| panic!("no echo reply from {dst}"));
        assert_eq!((reply.from, reply.seq), (dst, seq));
        rtts.push(pair.now - sent_at);
    }
    // The first ping of each family waited for resolution; repeats did not.
    assert!(rtts[0] > rtts[2], "{rtts:?}");
    assert!(rtts[1] > rtts[3], "{rtts:?}");
    let a = &pair.hosts[0];
    assert_eq!(a.misses, 2, "one miss per family");
    assert_eq!(a.hits, 2);
    let table = a.resolver.table().load_full();
    for ip in [ip4(2), ip6(2)] {
        let entry = table.lookup(ip).copied().expect("published");
        assert_eq!(entry.qpn, spec(2).qpn);
        assert_eq!(entry.ah, FabricAh::Unicast { port: 1 });
    }
    // Both addresses of host 2 share the path's one handle.
    assert_eq!(a.resolver.paths().stats().ah_created, 1);
    // Host 2 answered through entries of its own.
    let b_table = pair.hosts[1].resolver.table().load_full();
    assert!(b_table.lookup(ip4(1)).is_some());
    assert!(b_table.lookup(ip6(1)).is_some());
    pair.no_fabric_drops();
}

#[test]
fn udp_both_ways_over_the_fabric_ipv4_and_ipv6() {
    let mut pair = Pair::new();
    pair.hosts[0].stack.udp_bind(4000).expect("bind");
    pair.hosts[1].stack.udp_bind(4001).expect("bind");
    for dst in [ip4(2), ip6(2)] {
        let to = SocketAddr::new(dst, 4001);
        pair.hosts[0]
            .stack
            .udp_send(4000, to, b"ping")
            .expect("send");
        pair.run(20);
        let (from, data) = pair.hosts[1].stack.udp_recv(4001).expect("at host 2");
        assert_eq!(data, b"ping");
        pair.hosts[1]
            .stack
            .udp_send(4001, from, b"pong")
            .expect("send back");
        pair.run(20);
        let (from, data) = pair.hosts[0].stack.udp_recv(4000).expect("at host 1");
        assert_eq!((from, data.as_slice()), (to, &b"pong"[..]));
    }
    pair.no_fabric_drops();
}
