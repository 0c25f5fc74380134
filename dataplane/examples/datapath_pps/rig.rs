//! One lcore, one interface on the null provider in loopback mode: the whole
//! software datapath with no transport behind it.
//! TX: ring → IPoIB header → neighbour or MGID lookup → post burst;
//! RX: poll burst → decapsulate → deliver; stats per burst.
//! Two ways to keep it busy (`Mode`): traffic sources that allocate, fill and
//! enqueue fresh packets (RX frees them), or a fixed set of packets forwarded
//! round and round (RX delivers into the very ring TX drains, as testpmd's io
//! forwarding: no harness stage in between). Shared by the measurement program, the criterion
//! bench and the allocation test.

#![allow(dead_code)]

use ipoib_dataplane::lcore::{
    build_udp_packet, FlowSpec, Iface, IfaceConfig, IfaceWiring, Lcore, NeighEntry, NeighTable,
    TrafficSource,
};
use ipoib_dataplane::mem::{HugepageMode, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::provider::null::{NullAh, NullMode, NullProvider};
use ipoib_dataplane::provider::{PortAttr, BURST};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::{IfaceStats, StatsSnapshot};
use ipoib_dataplane::tables::{
    published, JoinRequestQueue, McastRoute, McastState, McastTable, Published,
};
use ipoib_dataplane::wire::{mgid_for_ip, Gid};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

pub const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
pub const PKEY: u16 = 0xFFFF;
pub const QKEY: u32 = 0x0B1B;
pub const SCOPE: u8 = 2;
/// 64-byte IPv4/UDP packets, as the goal is stated.
pub const PACKET_SIZE: usize = 64;

/// Where the traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// To a static neighbour (hash-table lookup).
    Unicast,
    /// To a joined IPv4 group (MGID mapping + group lookup).
    Multicast,
    /// Two sources, one of each.
    Mixed,
}

impl Dest {
    pub fn parse(s: &str) -> Option<Dest> {
        match s {
            "unicast" => Some(Dest::Unicast),
            "multicast" => Some(Dest::Multicast),
            "mixed" => Some(Dest::Mixed),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dest::Unicast => "unicast",
            Dest::Multicast => "multicast",
            Dest::Mixed => "mixed",
        }
    }
}

/// What feeds the TX ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Traffic sources: alloc + 64-byte copy per packet, RX frees.
    Generate,
    /// Packets received go back to the TX ring: no alloc, free or copy.
    Forward,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "generate" => Some(Mode::Generate),
            "forward" => Some(Mode::Forward),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Generate => "generate",
            Mode::Forward => "forward",
        }
    }
}

/// Packets in flight in forward mode: two bursts.
const IN_FLIGHT: usize = 2 * BURST;

pub struct Rig {
    pub lcore: Lcore<NullProvider>,
    pub stats: Arc<IfaceStats>,
    pub pool: &'static Mempool,
    mcast: Published<McastTable>,
    requests: Arc<JoinRequestQueue>,
    generation: u64,
}

fn flow(dst: Ipv4Addr) -> FlowSpec {
    FlowSpec {
        src: IpAddr::V4(LOCAL),
        dst: IpAddr::V4(dst),
        src_port: 5000,
        dst_port: 5001,
        size: PACKET_SIZE,
        rate_pps: 0,
    }
}

pub fn group_route() -> McastRoute {
    let mgid = mgid_for_ip(IpAddr::V4(GROUP), PKEY, SCOPE).expect("multicast group");
    McastRoute {
        mgid,
        mlid: 0xC001,
        qkey: QKEY,
        sl: 0,
        mtu: 2048,
    }
}

impl Rig {
    pub fn new(dest: Dest) -> Rig {
        Rig::with_mode(dest, Mode::Generate)
    }

    pub fn with_mode(dest: Dest, mode: Mode) -> Rig {
        let pool = Mempool::new(MempoolConfig {
            name: format!("bench-{}-{}", dest.name(), mode.name()),
            count: 8192,
            buf_size: 2176,
            hugepages: HugepageMode::Auto,
        })
        .expect("mempool");
        let port = PortAttr {
            lid: 1,
            gid: Gid::link_local(0x0002_c903_0000_0001),
            qpn: 0x101,
            pkey: PKEY,
            qkey: QKEY,
            max_msg: 2048,
        };
        let provider = NullProvider::new(port, NullMode::Loopback, pool.cache(256), 256)
            .with_loopback_peer(0x102, 2);
        let neigh = published(NeighTable::new([(
            IpAddr::V4(PEER),
            NeighEntry {
                ah: NullAh { dlid: 2 },
                qpn: 0x102,
            },
        )]));
        let mcast = published(McastTable::default());
        let requests = Arc::new(JoinRequestQueue::new(64));
        let stats = Arc::new(IfaceStats::default());
        let mut lcore = Lcore::new(0, pool.cache(256));
        let dsts: &[Ipv4Addr] = match dest {
            Dest::Unicast => &[PEER],
            Dest::Multicast => &[GROUP],
            Dest::Mixed => &[PEER, GROUP],
        };
        let mut tx_in = Vec::new();
        let mut rx_out = None;
        match mode {
            Mode::Generate => {
                for &d in dsts {
                    let (prod, cons) = spsc::channel::<Mbuf>(1024);
                    lcore.add_source(TrafficSource::new(&flow(d), prod).expect("flow"));
                    tx_in.push(cons);
                }
            }
            Mode::Forward => {
                // One ring: RX is its producer, TX its consumer.
                let (mut ring, cons) = spsc::channel::<Mbuf>(1024);
                tx_in.push(cons);
                let templates: Vec<Vec<u8>> = dsts
                    .iter()
                    .map(|&d| build_udp_packet(&flow(d)).expect("flow"))
                    .collect();
                for i in 0..IN_FLIGHT {
                    let t = &templates[i % templates.len()];
                    let mut m = pool.alloc().expect("mbuf");
                    m.append(t.len()).expect("room").copy_from_slice(t);
                    ring.push(m).expect("ring room");
                }
                rx_out = Some(ring);
            }
        }
        let iface = Iface::new(
            IfaceConfig {
                name: "ib0".into(),
                ifindex: 0,
                mtu: 2044,
                pkey: PKEY,
                scope: SCOPE,
            },
            provider,
            IfaceWiring {
                tx_in,
                rx_out,
                neigh,
                mcast: mcast.clone(),
                join_requests: requests.clone(),
                stats: stats.clone(),
            },
        );
        lcore.add_iface(iface);
        Rig {
            lcore,
            stats,
            pool,
            mcast,
            requests,
            generation: 0,
        }
    }

    /// Plays the control plane: answers send-only join requests by publishing
    /// the group as joined.
    pub fn serve_joins(&mut self) {
        let mut any = false;
        while let Some(req) = self.requests.pop() {
            assert_eq!(req.mgid, group_route().mgid, "join for an unexpected group");
            any = true;
        }
        if any {
            self.generation += 1;
            let route = group_route();
            self.mcast.store(Arc::new(McastTable::new(
                self.generation,
                vec![(route.mgid, McastState::Joined(route))],
            )));
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Runs the lcore until at least `packets` more have been sent; returns
    /// how many were sent. Stats are read once per 64 passes only.
    #[inline(never)]
    pub fn run(&mut self, packets: u64) -> u64 {
        let start = self.stats.snapshot().tx_packets;
        loop {
            for _ in 0..64 {
                self.lcore.poll_once();
            }
            let sent = self.stats.snapshot().tx_packets - start;
            if sent >= packets {
                return sent;
            }
        }
    }

    /// Warm-up: joins the group, fills the caches, and reaches steady state.
    pub fn warm_up(&mut self, packets: u64) {
        for _ in 0..4 {
            self.lcore.poll_once();
            self.serve_joins();
        }
        self.run(packets);
        self.serve_joins();
    }
}
