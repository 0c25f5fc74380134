//! One lcore, one interface on the null provider in loopback mode, fed by
//! traffic sources: the whole software datapath with no transport behind it.
//! TX: source → ring → IPoIB header → neighbour or MGID lookup → post burst;
//! RX: poll burst → decapsulate → free; stats per burst. Shared by the
//! measurement program, the criterion bench and the allocation test.

#![allow(dead_code)]

use ipoib_dataplane::lcore::{
    FlowSpec, Iface, IfaceConfig, IfaceWiring, Lcore, NeighEntry, NeighTable, TrafficSource,
};
use ipoib_dataplane::mem::{HugepageMode, Mbuf, Mempool, MempoolConfig};
use ipoib_dataplane::provider::null::{NullAh, NullMode, NullProvider};
use ipoib_dataplane::provider::PortAttr;
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
        let pool = Mempool::new(MempoolConfig {
            name: format!("bench-{}", dest.name()),
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
        for &d in dsts {
            let (prod, cons) = spsc::channel::<Mbuf>(1024);
            lcore.add_source(TrafficSource::new(&flow(d), prod).expect("flow"));
            tx_in.push(cons);
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
                rx_out: None,
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
