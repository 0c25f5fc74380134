//! Builds the hosts of one phase: interfaces with static neighbours and
//! multicast routes, one TX ring per stream, a generator per stream and a
//! sink per interface, on the lcores the configuration names.

use super::plan::PlannedStream;
use crate::wiring::fabric_qpn;
use ipoib_config::{Config, Interface};
use ipoib_dataplane::lcore::{Iface, IfaceConfig, IfaceWiring, Lcore, NeighEntry, NeighTable};
use ipoib_dataplane::mem::{Mbuf, Mempool};
use ipoib_dataplane::pktgen::{GenCounters, Generator, Replay, Sink, SinkLive, DEFAULT_WINDOW};
use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, FabricQp, Injection, PortSpec};
use ipoib_dataplane::provider::null::{NullMode, NullProvider};
use ipoib_dataplane::provider::rocev2::Rocev2Provider;
use ipoib_dataplane::provider::verbs::{VerbsDevice, VerbsProvider};
use ipoib_dataplane::provider::{AhAttr, PortAttr, Provider};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::IfaceStats;
use ipoib_dataplane::tables::{published, JoinRequestQueue, McastRoute, McastState, McastTable};
use ipoib_dataplane::wire::{mgid_for_ip, Gid};
use std::net::IpAddr;
use std::sync::Arc;

/// Link-local multicast scope, as the datapath's interfaces use.
const SCOPE: u8 = 2;

/// What pktgen needs of a provider beyond `Provider`: a way to put on the
/// wire anything it still holds back once the generators have stopped, so
/// the sinks count it (a provider that holds nothing keeps the default).
pub trait PktgenProvider: Provider + 'static {
    fn release_held(&mut self) {}
}

impl PktgenProvider for FabricQp {
    fn release_held(&mut self) {
        FabricQp::release_held(self)
    }
}
impl PktgenProvider for NullProvider {}
impl PktgenProvider for Rocev2Provider {}
impl PktgenProvider for VerbsProvider {
    /// Sends still queued in the device go out before the QP is torn down
    /// (which would flush them unsent).
    fn release_held(&mut self) {
        if !self.drain_sends(VERBS_DRAIN) {
            tracing::warn!(
                "verbs: {} send(s) not completed within {:?} of the stop",
                self.tx_outstanding(),
                VERBS_DRAIN
            );
        }
    }
}

/// Reflected probes waiting for their interface's TX burst: probes are a
/// few thousand a second at most.
const REFLECT_RING: usize = 256;

/// Longest wait for a verbs device to complete the sends posted before a stop.
const VERBS_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Receive buffer of each rocev2 socket: a whole test burst waits in the
/// kernel while a shared core runs something else, instead of dropping.
const ROCEV2_RCVBUF: usize = 32 << 20;

/// What the run loop and the report need of one interface.
pub struct Port {
    pub name: String,
    pub addrs: Vec<IpAddr>,
    pub groups: Vec<IpAddr>,
    pub stats: Arc<IfaceStats>,
    pub fabric_port: Option<usize>,
    pub sink: Arc<SinkLive>,
    /// The interface's QP as peers address it.
    pub qp: PortAttr,
}

pub struct Rig<P: Provider> {
    pub lcores: Vec<Lcore<P>>,
    pub ports: Vec<Port>,
    /// Per planned stream, in the same order.
    pub gens: Vec<Arc<GenCounters>>,
    pub fabric: Option<Arc<Fabric>>,
}

impl<P: Provider> Rig<P> {
    /// One line per interface: the QP number and GID a generator in another
    /// process addresses (its static neighbour entry).
    pub fn addresses(&self) -> String {
        let parts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("{} qpn {:#x} gid {}", p.name, p.qp.qpn, p.qp.gid))
            .collect();
        parts.join(", ")
    }
}

fn port_spec(i: &Interface) -> PortSpec {
    PortSpec {
        lid: i.port,
        gid: Gid::from(i.port_gid()),
        qpn: fabric_qpn(i),
        pkey: i.pkey,
        qkey: i.qkey,
    }
}

pub fn fabric_rig(
    cfg: &Config,
    pool: &'static Mempool,
    streams: &[PlannedStream],
    nstreams: usize,
) -> Result<Rig<FabricQp>, String> {
    let f = &cfg.provider.fabric;
    let specs: Vec<PortSpec> = cfg.interfaces.iter().map(port_spec).collect();
    let fabric = Fabric::new(
        FabricConfig {
            ib_mtu: f.ib_mtu,
            injection: Injection {
                loss: f.loss,
                reorder: f.reorder,
                seed: f.seed,
            },
            rx_depth: cfg.dataplane.rx_ring_size as usize,
        },
        &specs,
    )?;
    // Full members are attached up front: pktgen measures the datapath, not joins.
    for (port, i) in cfg.interfaces.iter().enumerate() {
        for g in &i.groups {
            let mgid = mgid_for_ip(*g, i.pkey, SCOPE)
                .map_err(|e| format!("{}: group {g}: {e}", i.name))?;
            fabric.attach_mcast(port, mgid).map_err(|e| e.to_string())?;
        }
    }
    let qps = (0..cfg.interfaces.len())
        .map(|i| fabric.open(i).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rig = rig(cfg, pool, qps, streams, nstreams)?;
    for (i, p) in rig.ports.iter_mut().enumerate() {
        p.fabric_port = Some(i);
    }
    rig.fabric = Some(fabric);
    Ok(rig)
}

pub fn null_rig(
    cfg: &Config,
    pool: &'static Mempool,
    streams: &[PlannedStream],
    nstreams: usize,
) -> Result<Rig<NullProvider>, String> {
    let cache = cfg.dataplane.mempool_cache as usize;
    let providers = cfg
        .interfaces
        .iter()
        .map(|i| {
            let s = port_spec(i);
            let port = PortAttr {
                lid: s.lid,
                gid: s.gid,
                qpn: s.qpn,
                pkey: s.pkey,
                qkey: s.qkey,
                max_msg: 4096,
            };
            NullProvider::new(port, NullMode::Sink, pool.cache(cache), 0)
        })
        .collect();
    rig(cfg, pool, providers, streams, nstreams)
}

/// One rocev2 QP per interface, bound to its `local_ip`, with its
/// full-member groups joined over IGMP (no SA: joins are the host's).
pub fn rocev2_rig(
    cfg: &Config,
    pool: &'static Mempool,
    streams: &[PlannedStream],
    nstreams: usize,
) -> Result<Rig<Rocev2Provider>, String> {
    let mut providers = Vec::new();
    for i in &cfg.interfaces {
        let p = crate::wiring::rocev2_provider(cfg, i, pool)?;
        if let Err(e) = p.set_recv_buffer(ROCEV2_RCVBUF) {
            tracing::warn!("{}: cannot size the receive buffer: {e}", i.name);
        }
        for g in &i.groups {
            let sock = p
                .mcast_socket()
                .ok_or_else(|| format!("{}: group {g}: no multicast socket", i.name))?;
            sock.join(*g)
                .map_err(|e| format!("{}: join {g}: {e}", i.name))?;
        }
        providers.push(p);
    }
    crate::wiring::steer_shared_addresses(&providers)?;
    rig(cfg, pool, providers, streams, nstreams)
}

/// One UD QP per interface on the configured RDMA device. Full-member
/// groups are not joined: a verbs sink measures unicast streams.
pub fn verbs_rig(
    cfg: &Config,
    pool: &'static Mempool,
    streams: &[PlannedStream],
    nstreams: usize,
) -> Result<Rig<VerbsProvider>, String> {
    let dev =
        VerbsDevice::open(&crate::wiring::verbs_config(cfg), pool).map_err(|e| e.to_string())?;
    // One QP per interface: pktgen runs each interface on one lcore.
    let providers = cfg
        .interfaces
        .iter()
        .map(|i| crate::wiring::verbs_qp(cfg, i, &dev, pool).map(|(p, _)| p))
        .collect::<Result<Vec<_>, _>>()?;
    rig(cfg, pool, providers, streams, nstreams)
}

/// Multicast groups an interface sends to: its groups, its send-only groups
/// and its streams' multicast destinations.
fn mcast_table(i: &Interface, idx: usize, streams: &[PlannedStream]) -> Result<McastTable, String> {
    let mut addrs: Vec<IpAddr> = i.groups.iter().chain(&i.sendonly).copied().collect();
    for s in streams.iter().filter(|s| s.iface == idx) {
        addrs.push(s.to);
        if let ipoib_dataplane::pktgen::Mode::Sequence(ts) = &s.spec.mode {
            addrs.extend(ts.iter().map(|t| t.dst));
        }
    }
    let mut entries = Vec::new();
    for (k, a) in addrs.into_iter().filter(|a| a.is_multicast()).enumerate() {
        let mgid =
            mgid_for_ip(a, i.pkey, SCOPE).map_err(|e| format!("{}: group {a}: {e}", i.name))?;
        let route = McastRoute {
            mgid,
            mlid: 0xC001 + k as u16,
            qkey: i.qkey,
            sl: 0,
            mtu: i.mtu + 4,
        };
        entries.push((mgid, McastState::Joined(route)));
    }
    Ok(McastTable::new(1, entries))
}

/// Addresses, QPNs and GIDs of the other interfaces in `idx`'s partition,
/// from their providers' QPs (`qps`, in interface order).
fn peers(cfg: &Config, qps: &[PortAttr], idx: usize) -> Vec<(IpAddr, u32, Gid)> {
    let me = &cfg.interfaces[idx];
    cfg.interfaces
        .iter()
        .zip(qps)
        .enumerate()
        .filter(|(k, (i, _))| *k != idx && (i.pkey & 0x7fff) == (me.pkey & 0x7fff))
        .flat_map(|(_, (i, qp))| {
            let (qpn, gid) = (qp.qpn, qp.gid);
            i.ipv4
                .iter()
                .map(|c| IpAddr::V4(c.addr))
                .chain(i.ipv6.iter().map(|c| IpAddr::V6(c.addr)))
                .map(move |a| (a, qpn, gid))
        })
        .collect()
}

fn rig<P: Provider>(
    cfg: &Config,
    pool: &'static Mempool,
    providers: Vec<P>,
    streams: &[PlannedStream],
    nstreams: usize,
) -> Result<Rig<P>, String> {
    let d = &cfg.dataplane;
    let mut lcores: Vec<Lcore<P>> = (0..d.lcores.len())
        .map(|id| Lcore::new(id, pool.cache(d.mempool_cache as usize)))
        .collect();
    let mut ports = Vec::new();
    let mut gens = vec![None; streams.len()];
    let qps: Vec<PortAttr> = providers.iter().map(|p| p.port()).collect();
    for (idx, (icfg, mut provider)) in cfg.interfaces.iter().zip(providers).enumerate() {
        let mut neigh = Vec::new();
        for n in &icfg.neighbours {
            let ah = provider
                .create_ah(&AhAttr {
                    dlid: 0,
                    dgid: Some(Gid::from(n.gid)),
                    sl: 0,
                })
                .map_err(|e| format!("interface {}: neighbour {}: {e}", icfg.name, n.ip))?;
            neigh.push((n.ip, NeighEntry { ah, qpn: n.qpn }));
        }
        // Every other host on the fabric, as ARP/ND would resolve it: pktgen
        // measures the datapath, so resolution is done before the start.
        for (ip, qpn, gid) in peers(cfg, &qps, idx) {
            if neigh.iter().any(|(a, _)| *a == ip) {
                continue;
            }
            let ah = provider
                .create_ah(&AhAttr {
                    dlid: 0,
                    dgid: Some(gid),
                    sl: 0,
                })
                .map_err(|e| format!("interface {}: neighbour {ip}: {e}", icfg.name))?;
            neigh.push((ip, NeighEntry { ah, qpn }));
        }
        let lcore = lcores
            .get_mut(icfg.lcore)
            .ok_or_else(|| format!("interface {}: no lcore {}", icfg.name, icfg.lcore))?;
        let mut tx_in = Vec::new();
        for (k, s) in streams.iter().enumerate().filter(|(_, s)| s.iface == idx) {
            let (prod, cons) = spsc::channel::<Mbuf>(d.tx_ring_size as usize);
            let named = |e: String| format!("stream {}: {e}", s.name);
            if let Some(r) = &s.replay {
                let cap = r.capture.as_ref().clone();
                let g = Replay::new(cap, r.recorded_timing, r.loops, prod, pool.buf_size())
                    .map_err(named)?;
                gens[k] = Some(g.counters());
                lcore.add_source(g);
            } else {
                let g = Generator::new(&s.spec, prod, pool.buf_size()).map_err(named)?;
                gens[k] = Some(g.counters());
                lcore.add_source(g);
            }
            tx_in.push(cons);
        }
        let (rx_out, rx) = spsc::channel::<Mbuf>(d.rx_ring_size as usize);
        let mut sink = Sink::new(rx, nstreams, DEFAULT_WINDOW);
        // Latency probes go back to their senders through this interface.
        let (reflect, reflect_in) = spsc::channel::<Mbuf>(REFLECT_RING);
        sink.reflect_to(reflect);
        tx_in.push(reflect_in);
        let live = sink.live();
        lcore.add_sink(sink);
        let stats = Arc::new(IfaceStats::default());
        lcore.add_iface(Iface::new(
            IfaceConfig {
                name: icfg.name.clone(),
                ifindex: idx as u16,
                mtu: icfg.mtu,
                pkey: icfg.pkey,
                scope: SCOPE,
            },
            provider,
            IfaceWiring {
                tx_in,
                rx_out: Some(rx_out),
                neigh: published(NeighTable::new(neigh)),
                mcast: published(mcast_table(icfg, idx, streams)?),
                join_requests: Arc::new(JoinRequestQueue::new(cfg.control.request_queue as usize)),
                stats: stats.clone(),
            },
        ));
        ports.push(Port {
            name: icfg.name.clone(),
            addrs: icfg
                .ipv4
                .iter()
                .map(|c| IpAddr::V4(c.addr))
                .chain(icfg.ipv6.iter().map(|c| IpAddr::V6(c.addr)))
                .collect(),
            groups: icfg.groups.clone(),
            stats,
            fabric_port: None,
            sink: live,
            qp: qps[idx],
        });
    }
    let gens = gens
        .into_iter()
        .map(|g| g.ok_or("a stream's interface is missing"))
        .collect::<Result<_, _>>()?;
    Ok(Rig {
        lcores,
        ports,
        gens,
        fabric: None,
    })
}
