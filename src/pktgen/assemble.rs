//! Builds the hosts of one phase: interfaces with static neighbours and
//! multicast routes, one TX ring per stream, a generator per stream and a
//! sink per interface queue, on the lcores the configuration names. An
//! interface with `queues = N` runs N queues on N lcores; each stream is
//! sent whole by one queue (round robin), so its packets keep their order.

use super::plan::PlannedStream;
use crate::wiring::fabric_qpn;
use ipoib_config::{Config, Interface};
use ipoib_control::rdmacm::VerbsAttach;
use ipoib_dataplane::lcore::{Iface, IfaceConfig, IfaceWiring, Lcore, NeighEntry, NeighTable};
use ipoib_dataplane::mem::{Mbuf, Mempool};
use ipoib_dataplane::pktgen::{GenCounters, Generator, Replay, Sink, SinkLive, DEFAULT_WINDOW};
use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, FabricQp, Injection, PortSpec};
use ipoib_dataplane::provider::null::{NullMode, NullProvider};
use ipoib_dataplane::provider::rocev2::Rocev2Provider;
use ipoib_dataplane::provider::verbs::{VerbsDevice, VerbsProvider};
use ipoib_dataplane::provider::{AhAttr, PortAttr, Provider};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::{IfaceStats, StatsSnapshot};
use ipoib_dataplane::tables::{
    published, JoinRequestQueue, McastRoute, McastState, McastTable, Published,
};
use ipoib_dataplane::wire::{mgid_for_ip, Gid};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
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

/// One queue of an interface: its lcore, counters and sink.
pub struct PortQueue {
    pub lcore: usize,
    pub stats: Arc<IfaceStats>,
    pub sink: Arc<SinkLive>,
}

/// What the run loop and the report need of one interface.
pub struct Port {
    pub name: String,
    pub addrs: Vec<IpAddr>,
    pub groups: Vec<IpAddr>,
    /// Queue 0 first (the interface's address and multicast attach).
    pub queues: Vec<PortQueue>,
    pub fabric_port: Option<usize>,
    /// The interface's QP (queue 0's) as peers address it.
    pub qp: PortAttr,
    /// The multicast routes its queues send with, and where they ask for
    /// send-only joins (filled by the control plane on verbs).
    pub mcast: Published<McastTable>,
    pub join_requests: Arc<JoinRequestQueue>,
}

impl Port {
    /// The interface's counters: every queue's added up.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut total = StatsSnapshot::default();
        for q in &self.queues {
            total += q.stats.snapshot();
        }
        total
    }

    /// Streams seen and ended, added over the queues' sinks.
    pub fn streams_seen_ended(&self) -> (u64, u64) {
        self.queues.iter().fold((0, 0), |(s, e), q| {
            (
                s + q.sink.streams_seen.load(Ordering::Relaxed),
                e + q.sink.streams_ended.load(Ordering::Relaxed),
            )
        })
    }

    /// Probe reflections received, added over the queues' sinks.
    pub fn reflections(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.sink.reflections.load(Ordering::Relaxed))
            .sum()
    }

    /// The highest round-trip p99 and maximum among the queues' sinks (ns).
    pub fn rtt_p99_ns(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.sink.rtt_p99_ns.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
    pub fn rtt_max_ns(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.sink.rtt_max_ns.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// The highest latency p99 among the queues' sinks (ns).
    pub fn latency_p99_ns(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.sink.latency_p99_ns.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

pub struct Rig<P: Provider> {
    pub lcores: Vec<Lcore<P>>,
    pub ports: Vec<Port>,
    /// Per planned stream, in the same order.
    pub gens: Vec<Arc<GenCounters>>,
    pub fabric: Option<Arc<Fabric>>,
    /// Multicast memberships held through the phase (verbs), left at its end.
    pub joins: Option<super::joins::Joins>,
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
    let mut rig = rig(cfg, pool, one_queue(qps), streams, nstreams, true)?;
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
    rig(cfg, pool, one_queue(providers), streams, nstreams, true)
}

/// Each interface's providers as its only queue.
fn one_queue<P>(providers: Vec<P>) -> Vec<Vec<P>> {
    providers.into_iter().map(|p| vec![p]).collect()
}

/// One rocev2 QP per interface queue, bound to its `local_ip`, with its
/// full-member groups joined over IGMP on queue 0 (no SA: joins are the
/// host's). A queue shares queue 0's QPN and address: the kernel picks
/// the queue of each sender (source address and port) by hash.
pub fn rocev2_rig(
    cfg: &Config,
    pool: &'static Mempool,
    streams: &[PlannedStream],
    nstreams: usize,
) -> Result<Rig<Rocev2Provider>, String> {
    let mut queues = Vec::new();
    for i in &cfg.interfaces {
        if i.queues > 1 {
            if let Some(o) = cfg
                .interfaces
                .iter()
                .find(|o| o.name != i.name && o.local_ip == i.local_ip)
            {
                // Their QPN steering program and the queues' shared QPN
                // cannot both pick the socket.
                return Err(format!(
                    "interface {}: queues = {} on rocev2 needs a local_ip of its own, \
                     but {} has {} too",
                    i.name,
                    i.queues,
                    o.name,
                    i.local_ip.map_or("none".to_string(), |a| a.to_string())
                ));
            }
        }
        let mut qs = Vec::new();
        for q in 0..i.queues {
            let p = crate::wiring::rocev2_queue(cfg, i, pool, q)?;
            if let Err(e) = p.set_recv_buffer(ROCEV2_RCVBUF) {
                tracing::warn!("{}: cannot size the receive buffer: {e}", i.name);
            }
            qs.push(p);
        }
        for g in &i.groups {
            let sock = qs[0]
                .mcast_socket()
                .ok_or_else(|| format!("{}: group {g}: no multicast socket", i.name))?;
            sock.join(*g)
                .map_err(|e| format!("{}: join {g}: {e}", i.name))?;
        }
        queues.push(qs);
    }
    let firsts: Vec<&Rocev2Provider> = queues.iter().map(|q| &q[0]).collect();
    crate::wiring::steer_shared_addresses_of(&firsts)?;
    rig(cfg, pool, queues, streams, nstreams, true)
}

/// One UD QP per interface queue on the configured RDMA device. When any
/// multicast is configured or sent to, each interface joins its
/// full-member groups, and send-only the groups its streams send to,
/// through rdma_cm before anything is sent; queue 0 is attached to the
/// groups. The memberships are left at the end of the phase.
pub fn verbs_rig(
    cfg: &Config,
    pool: &'static Mempool,
    streams: &[PlannedStream],
    nstreams: usize,
) -> Result<Rig<VerbsProvider>, String> {
    let dev =
        VerbsDevice::open(&crate::wiring::verbs_config(cfg), pool).map_err(|e| e.to_string())?;
    // Unicast alone needs no rdma_cm (nor the broadcast group).
    let multicast = cfg.interfaces.iter().any(|i| !i.groups.is_empty())
        || streams.iter().any(|s| s.to.is_multicast())
        || streams.iter().any(|s| match &s.spec.mode {
            ipoib_dataplane::pktgen::Mode::Sequence(ts) => ts.iter().any(|t| t.dst.is_multicast()),
            _ => false,
        });
    let mut queues = Vec::new();
    let mut mcast = Vec::new();
    for i in &cfg.interfaces {
        let (p, pkey) = crate::wiring::verbs_qp(cfg, i, &dev, pool)?;
        if multicast {
            let service = crate::wiring::verbs_rdmacm(i, &dev)?;
            mcast.push((
                Arc::new(service),
                Arc::new(VerbsAttach::new(vec![p.mcast_handle()])),
            ));
        }
        queues.push(crate::wiring::verbs_queues(cfg, i, &dev, pool, p, pkey)?);
    }
    let mut rig = rig(cfg, pool, queues, streams, nstreams, false)?;
    if multicast {
        rig.joins = Some(super::joins::Joins::start(cfg, mcast, &rig.ports, streams)?);
    }
    Ok(rig)
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

/// The lcores of a phase: each interface's queues (queue 0 first) on the
/// lcores `queue_lcore` names, a sink per queue, and each stream on one
/// queue of its interface. `static_mcast`: every multicast destination is
/// routed up front (the fabric, rocev2, null); otherwise the control plane
/// publishes the routes of the groups it joined (verbs).
fn rig<P: Provider>(
    cfg: &Config,
    pool: &'static Mempool,
    queues: Vec<Vec<P>>,
    streams: &[PlannedStream],
    nstreams: usize,
    static_mcast: bool,
) -> Result<Rig<P>, String> {
    let d = &cfg.dataplane;
    let mut lcores: Vec<Lcore<P>> = (0..d.lcores.len())
        .map(|id| Lcore::new(id, pool.cache(d.mempool_cache as usize)))
        .collect();
    let n_lcores = lcores.len();
    let mut ports = Vec::new();
    let mut gens = vec![None; streams.len()];
    let qps: Vec<PortAttr> = queues
        .iter()
        .map(|q| {
            q.first()
                .map(|p| p.port())
                .ok_or("an interface has no queue")
        })
        .collect::<Result<_, _>>()?;
    for (idx, (icfg, queues)) in cfg.interfaces.iter().zip(queues).enumerate() {
        let mut queues = queues;
        let nq = queues.len();
        let provider = &mut queues[0];
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
        let neigh = published(NeighTable::new(neigh));
        let mcast = published(if static_mcast {
            mcast_table(icfg, idx, streams)?
        } else {
            McastTable::default()
        });
        let join_requests = Arc::new(JoinRequestQueue::new(cfg.control.request_queue as usize));
        let siblings: Vec<u32> = queues.iter().map(|p| p.port().qpn).collect();
        // Each stream whole on one queue, round robin over the queues.
        let mut tx_in: Vec<Vec<_>> = (0..nq).map(|_| Vec::new()).collect();
        let mine = streams.iter().enumerate().filter(|(_, s)| s.iface == idx);
        for (j, (k, s)) in mine.enumerate() {
            let q = j % nq;
            let lcore = lcores
                .get_mut(crate::wiring::queue_lcore(icfg, q, n_lcores))
                .ok_or_else(|| format!("interface {}: no lcore {}", icfg.name, icfg.lcore))?;
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
            tx_in[q].push(cons);
        }
        let mut port_queues = Vec::new();
        for (q, (provider, tx_in)) in queues.into_iter().zip(tx_in).enumerate() {
            let lc = crate::wiring::queue_lcore(icfg, q, n_lcores);
            let lcore = lcores
                .get_mut(lc)
                .ok_or_else(|| format!("interface {}: no lcore {}", icfg.name, icfg.lcore))?;
            let (rx_out, rx) = spsc::channel::<Mbuf>(d.rx_ring_size as usize);
            let mut sink = Sink::new(rx, nstreams, DEFAULT_WINDOW);
            // Latency probes go back to their senders through this queue.
            let (reflect, reflect_in) = spsc::channel::<Mbuf>(REFLECT_RING);
            sink.reflect_to(reflect);
            let mut tx_in = tx_in;
            tx_in.push(reflect_in);
            let live = sink.live();
            lcore.add_sink(sink);
            let stats = Arc::new(IfaceStats::default());
            let mut iface = Iface::new(
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
                    neigh: neigh.clone(),
                    mcast: mcast.clone(),
                    join_requests: join_requests.clone(),
                    stats: stats.clone(),
                },
            );
            if nq > 1 {
                // A sibling queue's looped-back multicast is our own.
                iface.set_siblings(&siblings);
            }
            lcore.add_iface(iface);
            port_queues.push(PortQueue {
                lcore: lc,
                stats,
                sink: live,
            });
        }
        ports.push(Port {
            name: icfg.name.clone(),
            addrs: icfg
                .ipv4
                .iter()
                .map(|c| IpAddr::V4(c.addr))
                .chain(icfg.ipv6.iter().map(|c| IpAddr::V6(c.addr)))
                .collect(),
            groups: icfg.groups.clone(),
            queues: port_queues,
            fabric_port: None,
            qp: qps[idx],
            mcast,
            join_requests,
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
        joins: None,
    })
}
