//! From a validated configuration to running lcores: one mempool for the
//! process, one provider QP per interface, rings, neighbour tables, sources.

use crate::resolution::{HostResolver, LcoreSide, ResolverSpec, StaticNeighbour};
use ipoib_config::{Config, Hugepages, Interface};
use ipoib_control::igmp::{IgmpDefaults, IgmpService};
use ipoib_control::rdmacm::link::path_source;
use ipoib_control::rdmacm::{
    LinkLayer, PathSource, RdmaCmRoutes, RdmaCmService, SaPathService, VerbsAttach,
};
use ipoib_dataplane::capture::{self, Capture};
use ipoib_dataplane::lcore::{
    FlowSpec, Iface, IfaceConfig, IfaceWiring, Lcore, NeighEntry, NeighTable, RateControl,
    TrafficSource, TunPort, TunStats,
};
use ipoib_dataplane::mem::{HugepageMode, Mbuf, Mempool, MempoolConfig, HEADROOM};
use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, FabricQp, Injection, PortSpec};
use ipoib_dataplane::provider::null::{NullMode, NullProvider};
use ipoib_dataplane::provider::rocev2::{addr, steer_unicast, Rocev2Config, Rocev2Provider};
use ipoib_dataplane::provider::verbs::{VerbsConfig, VerbsDevice, VerbsProvider, VerbsQpConfig};
use ipoib_dataplane::provider::{AhAttr, PortAttr, Provider, ProviderXstats};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::stats::IfaceStats;
use ipoib_dataplane::tables::{published, JoinRequestQueue, McastTable, Published};
use ipoib_dataplane::tun::{TunDevice, TunSpec};
use ipoib_dataplane::wire::Gid;
use rdma_sys::cm::CmAddr;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// On the soft fabric (and rocev2), port P's UD QP number is 0x100 + P and
/// the n-th P_Key child's on that port 0x100 + P + n × 0x10000 (static
/// neighbours rely on it; P ≤ 0xBFFF and n ≤ 255 keep it in 24 bits).
pub fn fabric_qpn(i: &Interface) -> u32 {
    0x100 + u32::from(i.port) + (u32::from(i.child_index) << 16)
}

/// What the reporter and the control plane need of one interface.
pub struct HostInfo {
    pub name: String,
    pub port: PortAttr,
    pub fabric_port: Option<usize>,
    /// Per queue (one in all but a verbs interface with `queues`).
    pub stats: Vec<Arc<IfaceStats>>,
    /// The lcore index each queue runs on, as `stats`.
    pub queue_lcores: Vec<usize>,
    pub mcast: Published<McastTable>,
    pub join_requests: Arc<JoinRequestQueue>,
    pub groups: Vec<IpAddr>,
    /// The interface's kernel TUN device: its name and counters.
    pub tun: Option<(String, Arc<TunStats>)>,
    /// The provider's own counters, per queue (rocev2's).
    pub provider_xstats: Vec<Arc<ProviderXstats>>,
}

/// A host's neighbour table as the lcore reads it, its static entries, and
/// the TX ring of the host's own IP stack.
pub struct NeighWiring<A> {
    pub table: Published<NeighTable<A>>,
    pub statics: Vec<(IpAddr, NeighEntry<A>)>,
    pub stack_tx: Option<spsc::Producer<Mbuf>>,
}

pub struct Built<P: Provider> {
    pub pool: &'static Mempool,
    pub lcores: Vec<Lcore<P>>,
    pub hosts: Vec<HostInfo>,
    pub neigh: Vec<NeighWiring<P::Ah>>,
    pub fabric: Option<Arc<Fabric>>,
    /// Address resolution per host (fabric and rocev2), for the control thread.
    pub resolvers: Vec<HostResolver>,
    /// Multicast joins per host over IGMP (rocev2 only), in host order.
    pub igmp: Vec<Arc<IgmpService>>,
    /// Each `[[traffic]]` flow's rate, in configuration order (reload).
    pub rates: Vec<Option<RateControl>>,
    /// Packet capture of every interface (off until started).
    pub capture: Arc<Capture>,
    /// The device, and per host its rdma_cm joins and QP attach (verbs only).
    pub verbs: Option<VerbsWiring>,
}

/// What the control plane needs of a verbs run.
pub struct VerbsWiring {
    pub device: Arc<VerbsDevice>,
    /// Per host, in host order.
    pub mcast: Vec<(Arc<RdmaCmService>, Arc<VerbsAttach>)>,
}

fn hugepage_mode(h: Hugepages) -> HugepageMode {
    match h {
        Hugepages::Auto => HugepageMode::Auto,
        Hugepages::On => HugepageMode::On,
        Hugepages::Off => HugepageMode::Off,
    }
}

fn port_specs(cfg: &Config) -> Vec<PortSpec> {
    cfg.interfaces
        .iter()
        .map(|i| PortSpec {
            lid: i.port,
            gid: Gid::from(i.port_gid()),
            qpn: fabric_qpn(i),
            pkey: i.pkey,
            qkey: i.qkey,
        })
        .collect()
}

/// Builds hosts on the soft fabric.
pub fn build_fabric(cfg: &Config) -> Result<Built<FabricQp>, String> {
    let f = &cfg.provider.fabric;
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
        &port_specs(cfg),
    )?;
    let qps = (0..cfg.interfaces.len())
        .map(|i| fabric.open(i).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut built = build(cfg, qps)?;
    for (i, h) in built.hosts.iter_mut().enumerate() {
        h.fabric_port = Some(i);
    }
    // ARP/ND through the control thread for every interface.
    add_resolvers(cfg, &mut built, |pool, spec| {
        HostResolver::new(&fabric, pool, spec, Duration::ZERO)
    })?;
    built.fabric = Some(fabric);
    Ok(built)
}

/// Resolution for every interface, and its channels handed to the lcore.
fn add_resolvers<P: Provider>(
    cfg: &Config,
    built: &mut Built<P>,
    make: impl Fn(
        &'static Mempool,
        ResolverSpec<'_, P::Ah>,
    ) -> Result<(HostResolver, LcoreSide<P::Ah>), String>,
) -> Result<(), String> {
    for (i, icfg) in cfg.interfaces.iter().enumerate() {
        let nw = &mut built.neigh[i];
        let addrs = icfg
            .ipv4
            .iter()
            .map(|c| IpAddr::V4(c.addr))
            .chain(icfg.ipv6.iter().map(|c| IpAddr::V6(c.addr)))
            .collect();
        let (resolver, side) = make(
            built.pool,
            ResolverSpec {
                name: &icfg.name,
                port: built.hosts[i].port,
                pkey: icfg.pkey,
                addrs,
                statics: nw.statics.clone(),
                static_list: icfg
                    .neighbours
                    .iter()
                    .map(|n| StaticNeighbour {
                        ip: n.ip,
                        qpn: n.qpn,
                        gid: Gid::from(n.gid),
                    })
                    .collect(),
                lcore_table: nw.table.clone(),
                stack_tx: nw.stack_tx.take().ok_or("stack ring already taken")?,
                mtu: icfg.mtu,
                prefixes: icfg
                    .ipv4
                    .iter()
                    .map(|c| (IpAddr::V4(c.addr), c.prefix))
                    .chain(icfg.ipv6.iter().map(|c| (IpAddr::V6(c.addr), c.prefix)))
                    .collect(),
                queue_len: cfg.control.neigh_queue as usize,
                request_queue: cfg.control.request_queue as usize,
                ring: 1024,
                extra_queues: built.hosts[i].queue_lcores.len().saturating_sub(1),
            },
        )?;
        let lcores = built.hosts[i].queue_lcores.clone();
        let sides = std::iter::once(side.ctrl).chain(side.extra);
        for (lcore, ctrl) in lcores.into_iter().zip(sides) {
            let iface = built.lcores[lcore]
                .ifaces_mut()
                .iter_mut()
                .find(|f| f.config().name == icfg.name)
                .ok_or_else(|| format!("interface {} is not on lcore {lcore}", icfg.name))?;
            iface.set_control(ctrl);
        }
        built.resolvers.push(resolver);
    }
    Ok(())
}

/// Where IPv6 groups go on an IPv4 underlay (validated by the config).
fn v6_groups(cfg: &Config) -> Option<addr::V6GroupRange> {
    let c = cfg.provider.rocev2.ipv6_group_range?;
    addr::V6GroupRange::new(c.addr, c.prefix)
}

/// The rocev2 QP of one interface: bound to `local_ip`, numbered as on the
/// fabric (so static neighbours keep their numbers).
pub fn rocev2_provider(
    cfg: &Config,
    icfg: &Interface,
    pool: &'static Mempool,
) -> Result<Rocev2Provider, String> {
    rocev2_queue(cfg, icfg, pool, 0)
}

/// Queue `q` of an interface on rocev2: the same QPN and address as queue
/// 0 (SO_REUSEPORT: the kernel spreads senders over the queues' sockets by
/// hash); only queue 0 has a multicast socket, so a group packet arrives once.
pub fn rocev2_queue(
    cfg: &Config,
    icfg: &Interface,
    pool: &'static Mempool,
    q: u16,
) -> Result<Rocev2Provider, String> {
    let local = icfg.local_ip.ok_or_else(|| {
        format!(
            "interface {}: the rocev2 provider needs local_ip",
            icfg.name
        )
    })?;
    let r = &cfg.provider.rocev2;
    let mut rc = Rocev2Config::new(local, fabric_qpn(icfg));
    rc.port = r.port;
    rc.qkey = icfg.qkey;
    rc.pkey = icfg.pkey;
    rc.max_msg = r.ib_mtu;
    rc.multicast_loop = r.multicast_loop;
    rc.gso = r.gso;
    rc.gro = r.gro;
    rc.multicast = q == 0;
    rc.v6_groups = v6_groups(cfg);
    Rocev2Provider::new(rc, pool.cache(cfg.dataplane.mempool_cache as usize)).map_err(|e| {
        format!(
            "interface {}: rocev2 on {local} port {}: {e}",
            icfg.name, r.port
        )
    })
}

/// QPs on one local address (an interface and its P_Key children): the
/// kernel is told to deliver each one's unicast to its own QP's socket.
/// `providers` are in the order they were opened.
pub fn steer_shared_addresses(providers: &[Rocev2Provider]) -> Result<(), String> {
    steer_shared_addresses_of(&providers.iter().collect::<Vec<_>>())
}

/// As `steer_shared_addresses`, for QPs held elsewhere.
pub fn steer_shared_addresses_of(providers: &[&Rocev2Provider]) -> Result<(), String> {
    let mut locals: Vec<IpAddr> = providers.iter().map(|p| p.config().local).collect();
    locals.sort();
    locals.dedup();
    for local in locals {
        let qps: Vec<&Rocev2Provider> = providers
            .iter()
            .copied()
            .filter(|p| p.config().local == local)
            .collect();
        if qps.len() > 1 {
            steer_unicast(&qps).map_err(|e| {
                format!(
                    "rocev2: steering unicast on {local} to its {} QPs: {e}",
                    qps.len()
                )
            })?;
        }
    }
    Ok(())
}

/// Builds hosts on the rocev2 provider: real RoCEv2 UD over UDP, ARP/ND
/// without an SA, multicast joins as IGMP on each QP's multicast socket.
pub fn build_rocev2(cfg: &Config) -> Result<Built<Rocev2Provider>, String> {
    if let Some(i) = cfg.interfaces.iter().find(|i| i.queues > 1) {
        return Err(format!(
            "interface {}: queues = {}: the daemon runs one queue per interface on the rocev2 \
             provider (only `ipoibd pktgen` spreads over several there); set queues = 1, or \
             provider.kind = \"verbs\"",
            i.name, i.queues
        ));
    }
    let pool = make_pool(cfg)?;
    let providers = cfg
        .interfaces
        .iter()
        .map(|icfg| rocev2_provider(cfg, icfg, pool))
        .collect::<Result<Vec<_>, _>>()?;
    steer_shared_addresses(&providers)?;
    let mut igmp = Vec::with_capacity(providers.len());
    for (p, icfg) in providers.iter().zip(&cfg.interfaces) {
        let defaults = IgmpDefaults {
            qkey: icfg.qkey,
            mtu: icfg.mtu.saturating_add(4),
            pkey: icfg.pkey,
            v6_groups: v6_groups(cfg),
            ..IgmpDefaults::default()
        };
        let service = IgmpService::new(p.mcast_socket().into_iter().collect(), defaults)
            .map_err(|e| format!("interface {}: IGMP service: {e}", icfg.name))?;
        igmp.push(Arc::new(service));
    }
    let mut built = build_with_pool(cfg, providers, pool)?;
    for (h, icfg) in built.hosts.iter_mut().zip(&cfg.interfaces) {
        if let Some(ip) = icfg.local_ip {
            h.port.gid = addr::gid_of(ip);
        }
    }
    let ib_mtu = cfg.provider.rocev2.ib_mtu;
    add_resolvers(cfg, &mut built, |pool, spec| {
        HostResolver::rocev2(ib_mtu, pool, spec, Duration::ZERO)
    })?;
    built.igmp = igmp;
    Ok(built)
}

/// The interface's address on a verbs device: its GID's on RoCE (IPv4-mapped
/// or IPv6), which `local_ip`, when given, must match.
fn verbs_local_ip(icfg: &Interface, dev: &VerbsDevice) -> Result<IpAddr, String> {
    let gid = dev.gid();
    let from_gid = addr::ip_of(gid);
    let link_local = matches!(from_gid, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
    match icfg.local_ip {
        Some(ip) if dev.is_roce() && ip != from_gid => Err(format!(
            "interface {}: local_ip {ip} is not the address of GID index {} ({gid}) on {}",
            icfg.name,
            dev.config().gid_index,
            dev.name()
        )),
        Some(ip) => Ok(ip),
        None if dev.is_roce() && !link_local => Ok(from_gid),
        None => Err(format!(
            "interface {}: GID index {} of {} ({gid}) is not an IP address: set local_ip, \
             or provider.verbs.gid_index to the ::ffff:a.b.c.d entry",
            icfg.name,
            dev.config().gid_index,
            dev.name()
        )),
    }
}

/// Builds hosts on a real RDMA device through libibverbs: one UD QP per
/// interface on the configured port, ARP/ND without an SA, multicast joins
/// through rdma_cm and QP attaches.
pub fn build_verbs(cfg: &Config) -> Result<Built<VerbsProvider>, String> {
    let vc = verbs_config(cfg);
    // Before the pool: without RDMA, the one line that says what to do.
    VerbsDevice::probe(&vc).map_err(|e| e.to_string())?;
    let pool = make_pool(cfg)?;
    let dev = VerbsDevice::open(&vc, pool).map_err(|e| e.to_string())?;
    let ib_mtu = dev.max_msg();
    let mut providers = Vec::with_capacity(cfg.interfaces.len());
    let mut mcast = Vec::with_capacity(cfg.interfaces.len());
    for icfg in &cfg.interfaces {
        let (p, pkey) = verbs_qp(cfg, icfg, &dev, pool)?;
        let service = verbs_rdmacm(icfg, &dev)?;
        // Only the first queue is attached: its QPN is the hardware address
        // groups deliver to; the others receive what is sent to their QPN.
        let attach = VerbsAttach::new(vec![p.mcast_handle()]);
        mcast.push((Arc::new(service), Arc::new(attach)));
        providers.push(verbs_queues(cfg, icfg, &dev, pool, p, pkey)?);
    }
    let mut built = build_queues(cfg, providers, pool)?;
    let ahs = dev.ah_table();
    // Unicast paths: the SA's records on InfiniBand, the GID alone on RoCE.
    let link = LinkLayer::from_raw(dev.port_info().link_layer);
    add_resolvers(cfg, &mut built, |pool, spec| match path_source(link) {
        PathSource::Local => HostResolver::verbs(ib_mtu, ahs.clone(), pool, spec, Duration::ZERO),
        PathSource::SubnetAdministrator => {
            let routes = RdmaCmRoutes::new()
                .map_err(|e| format!("interface {}: rdma_cm paths: {e}", spec.name))?;
            let sa = SaPathService::new(routes, spec.pkey | 0x8000);
            HostResolver::verbs_ib(sa, ahs.clone(), pool, spec, Duration::ZERO)
        }
    })?;
    built.verbs = Some(VerbsWiring { device: dev, mcast });
    Ok(built)
}

/// The rdma_cm service an interface joins its groups through. RoCE:
/// rdma_cm binds to the interface's IP address; InfiniBand: to the port's
/// GID (AF_IB), and joins the IPoIB MGIDs themselves.
pub fn verbs_rdmacm(icfg: &Interface, dev: &VerbsDevice) -> Result<RdmaCmService, String> {
    let link = LinkLayer::from_raw(dev.port_info().link_layer);
    let local = match link {
        LinkLayer::Ethernet => CmAddr::Ip(verbs_local_ip(icfg, dev)?),
        LinkLayer::InfiniBand => CmAddr::Ib {
            gid: dev.gid().0,
            pkey: icfg.pkey | 0x8000,
        },
    };
    let defaults = IgmpDefaults {
        qkey: icfg.qkey,
        mtu: icfg.mtu.saturating_add(4),
        pkey: icfg.pkey,
        ..IgmpDefaults::default()
    };
    RdmaCmService::new(local, link, defaults)
        .map_err(|e| format!("interface {}: rdma_cm on {local}: {e}", icfg.name))
}

/// An interface's queues on a verbs device: `first` (from `verbs_qp`), then
/// one more UD QP with its own CQs per further queue, on the same P_Key.
pub fn verbs_queues(
    cfg: &Config,
    icfg: &Interface,
    dev: &Arc<VerbsDevice>,
    pool: &'static Mempool,
    first: VerbsProvider,
    pkey: Option<(u16, u16)>,
) -> Result<Vec<VerbsProvider>, String> {
    let mut queues = vec![first];
    for q in 1..icfg.queues {
        queues.push(
            VerbsProvider::new(
                dev,
                VerbsQpConfig {
                    qkey: icfg.qkey,
                    rx_depth: cfg.dataplane.rx_ring_size,
                    pkey,
                },
                pool.cache(cfg.dataplane.mempool_cache as usize),
            )
            .map_err(|e| format!("interface {} queue {q}: verbs: {e}", icfg.name))?,
        );
    }
    Ok(queues)
}

/// The device settings of `provider.verbs`.
pub fn verbs_config(cfg: &Config) -> VerbsConfig {
    let v = &cfg.provider.verbs;
    VerbsConfig {
        device: v.device.clone(),
        port: v.port,
        gid_index: v.gid_index,
        pkey_index: v.pkey_index,
    }
}

/// Checks an interface against the device's port (MTU, P_Key) and opens
/// its first UD QP; with it, the (P_Key index, P_Key) its queues use (a
/// child's own; `None`: the configured index).
pub fn verbs_qp(
    cfg: &Config,
    icfg: &Interface,
    dev: &Arc<VerbsDevice>,
    pool: &'static Mempool,
) -> Result<(VerbsProvider, Option<(u16, u16)>), String> {
    let v = &cfg.provider.verbs;
    let ib_mtu = dev.max_msg();
    if u32::from(icfg.mtu) + 4 > u32::from(ib_mtu) {
        return Err(format!(
            "interface {}: mtu {} does not fit port {} of {} (active MTU {ib_mtu}: at most {})",
            icfg.name,
            icfg.mtu,
            v.port,
            dev.name(),
            ib_mtu.saturating_sub(4)
        ));
    }
    // A child's QP uses its own P_Key's index; parents the configured one.
    let pkey = match icfg.parent {
        Some(_) => Some(
            dev.pkey_index_of(&icfg.name, icfg.pkey)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    if pkey.is_none() && icfg.pkey | 0x8000 != dev.pkey() | 0x8000 {
        return Err(format!(
            "interface {}: pkey {:#06x} is not the P_Key at index {} of {} port {} ({:#06x})",
            icfg.name,
            icfg.pkey,
            v.pkey_index,
            dev.name(),
            v.port,
            dev.pkey()
        ));
    }
    let p = VerbsProvider::new(
        dev,
        VerbsQpConfig {
            qkey: icfg.qkey,
            rx_depth: cfg.dataplane.rx_ring_size,
            pkey,
        },
        pool.cache(cfg.dataplane.mempool_cache as usize),
    )
    .map_err(|e| format!("interface {}: verbs: {e}", icfg.name))?;
    Ok((p, pkey))
}

/// The interface's TUN device, created with its addresses and MTU and up,
/// and the lcore's end of it: (port, ring the interface sends from, ring
/// the interface delivers received packets to).
fn open_tun(
    cfg: &Config,
    icfg: &Interface,
    name: &str,
    pool: &'static Mempool,
) -> Result<(TunPort, spsc::Consumer<Mbuf>, spsc::Producer<Mbuf>), String> {
    // A packet from the device is read whole into one buffer.
    let room = pool.buf_size().saturating_sub(HEADROOM);
    if usize::from(icfg.mtu) > room {
        return Err(format!(
            "interface {}: TUN device {name}: mtu {} exceeds a buffer's room for data ({room} B): \
             raise dataplane.buf_size to at least {}",
            icfg.name,
            icfg.mtu,
            usize::from(icfg.mtu) + HEADROOM
        ));
    }
    let addrs: Vec<(IpAddr, u8)> = icfg
        .ipv4
        .iter()
        .map(|c| (IpAddr::V4(c.addr), c.prefix))
        .chain(icfg.ipv6.iter().map(|c| (IpAddr::V6(c.addr), c.prefix)))
        .collect();
    let dev = TunDevice::create(&TunSpec {
        name,
        mtu: icfg.mtu,
        addrs: &addrs,
    })
    .map_err(|e| format!("interface {}: {e}", icfg.name))?;
    let d = &cfg.dataplane;
    let (to_iface, tx_ring) = spsc::channel::<Mbuf>(d.tx_ring_size as usize);
    let (rx_out, from_iface) = spsc::channel::<Mbuf>(d.rx_ring_size as usize);
    let port = TunPort::new(
        dev.into_fd(),
        to_iface,
        from_iface,
        Arc::new(TunStats::default()),
    );
    Ok((port, tx_ring, rx_out))
}

/// Builds hosts on the null provider (sink): the software path alone.
pub fn build_null(
    cfg: &Config,
    pool_for_sink: &'static Mempool,
) -> Result<Built<NullProvider>, String> {
    let providers = port_specs(cfg)
        .into_iter()
        .map(|s| {
            let port = PortAttr {
                lid: s.lid,
                gid: s.gid,
                qpn: s.qpn,
                pkey: s.pkey,
                qkey: s.qkey,
                max_msg: 4096,
            };
            NullProvider::new(
                port,
                NullMode::Sink,
                pool_for_sink.cache(cfg.dataplane.mempool_cache as usize),
                0,
            )
        })
        .collect();
    build_with_pool(cfg, providers, pool_for_sink)
}

/// The process-wide pool sized for `cfg`.
pub fn make_pool(cfg: &Config) -> Result<&'static Mempool, String> {
    let d = &cfg.dataplane;
    Mempool::new(MempoolConfig {
        name: "ipoib".into(),
        // Every queue keeps its own receive buffers posted.
        count: d.mempool_size.saturating_mul(
            cfg.interfaces
                .iter()
                .map(|i| u32::from(i.queues))
                .sum::<u32>()
                .max(1),
        ),
        buf_size: d.buf_size,
        hugepages: hugepage_mode(d.hugepages),
    })
    .map_err(|e| e.to_string())
}

fn build<P: Provider>(cfg: &Config, providers: Vec<P>) -> Result<Built<P>, String> {
    let pool = make_pool(cfg)?;
    build_with_pool(cfg, providers, pool)
}

fn build_with_pool<P: Provider>(
    cfg: &Config,
    providers: Vec<P>,
    pool: &'static Mempool,
) -> Result<Built<P>, String> {
    build_queues(cfg, providers.into_iter().map(|p| vec![p]).collect(), pool)
}

/// The lcore index of an interface's queue `q`: queues go round the lcores
/// from the interface's own.
pub fn queue_lcore(icfg: &Interface, q: usize, lcores: usize) -> usize {
    (icfg.lcore + q) % lcores.max(1)
}

/// As `build_with_pool`, with each interface's queues (its first, then one
/// per further lcore): the first is the interface (hardware address,
/// multicast attach, TUN, its own IP stack); flows are spread over all.
fn build_queues<P: Provider>(
    cfg: &Config,
    queues: Vec<Vec<P>>,
    pool: &'static Mempool,
) -> Result<Built<P>, String> {
    let d = &cfg.dataplane;
    let mut lcores: Vec<Lcore<P>> = (0..d.lcores.len())
        .map(|id| Lcore::new(id, pool.cache(d.mempool_cache as usize)))
        .collect();
    let mut hosts = Vec::new();
    let mut neigh_wiring = Vec::new();
    let mut rates = vec![None; cfg.traffic.len()];
    let mut taps = Vec::new();
    let n_lcores = lcores.len();
    for (idx, (icfg, queues)) in cfg.interfaces.iter().zip(queues).enumerate() {
        let mut queues = queues.into_iter();
        let mut provider = queues
            .next()
            .ok_or_else(|| format!("interface {}: no queue pair", icfg.name))?;
        let extra: Vec<P> = queues.collect();
        let nq = 1 + extra.len();
        let lcore_of = |q: usize| queue_lcore(icfg, q, n_lcores);
        let mut tx_in_q: Vec<Vec<spsc::Consumer<Mbuf>>> = (0..nq).map(|_| Vec::new()).collect();
        let mut entries = Vec::new();
        for n in &icfg.neighbours {
            let ah = provider
                .create_ah(&AhAttr {
                    dlid: 0,
                    dgid: Some(Gid::from(n.gid)),
                    sl: 0,
                })
                .map_err(|e| format!("interface {}: neighbour {}: {e}", icfg.name, n.ip))?;
            entries.push((n.ip, NeighEntry { ah, qpn: n.qpn }));
        }
        let neigh = published(NeighTable::new(entries.iter().copied()));
        let mcast = published(McastTable::default());
        let join_requests = Arc::new(JoinRequestQueue::new(cfg.control.request_queue as usize));
        let stats = Arc::new(IfaceStats::default());
        for (k, (t_idx, t)) in cfg
            .traffic
            .iter()
            .enumerate()
            .filter(|(_, t)| t.from == icfg.name)
            .enumerate()
        {
            let q = k % nq;
            let (prod, cons) = spsc::channel::<Mbuf>(d.tx_ring_size as usize);
            let src = icfg
                .ipv4
                .first()
                .map(|c| IpAddr::V4(c.addr))
                .filter(|_| t.to.is_ipv4())
                .or_else(|| {
                    icfg.ipv6
                        .first()
                        .map(|c| IpAddr::V6(c.addr))
                        .filter(|_| t.to.is_ipv6())
                })
                .ok_or_else(|| {
                    format!(
                        "traffic from {} to {}: the interface has no address of that family",
                        t.from, t.to
                    )
                })?;
            let flow = FlowSpec {
                src,
                dst: t.to,
                src_port: t.src_port,
                dst_port: t.dst_port,
                size: t.size as usize,
                rate_pps: t.rate_pps,
            };
            let source = TrafficSource::new(&flow, prod)?;
            rates[t_idx] = Some(source.rate_control());
            lcores[lcore_of(q)].add_source(source);
            tx_in_q[q].push(cons);
        }
        let mut tx_in = std::mem::take(&mut tx_in_q[0]);
        // The host's own IP stack (ping, ICMP errors) sends like any producer.
        let (stack_tx, stack_cons) = spsc::channel::<Mbuf>(256);
        tx_in.push(stack_cons);
        let (tun, rx_out) = match &icfg.tun {
            Some(t) => {
                let (port, tx_ring, rx_out) = open_tun(cfg, icfg, &t.name, pool)?;
                tx_in.push(tx_ring);
                let stats = port.stats().clone();
                lcores[icfg.lcore].add_tun(port);
                (Some((t.name.clone(), stats)), Some(rx_out))
            }
            None => (None, None),
        };
        let port = provider.port();
        let qpns: Vec<u32> = std::iter::once(port.qpn)
            .chain(extra.iter().map(|p| p.port().qpn))
            .collect();
        let provider_xstats: Vec<_> = std::iter::once(provider.xstats())
            .chain(extra.iter().map(|p| p.xstats()))
            .flatten()
            .collect();
        let neigh_for_control = neigh.clone();
        let mut iface = Iface::new(
            IfaceConfig {
                name: icfg.name.clone(),
                ifindex: idx as u16,
                mtu: icfg.mtu,
                pkey: icfg.pkey,
                scope: 2,
            },
            provider,
            IfaceWiring {
                tx_in,
                rx_out,
                neigh: neigh.clone(),
                mcast: mcast.clone(),
                join_requests: join_requests.clone(),
                stats: stats.clone(),
            },
        );
        let (tap, reader) = capture::tap(&icfg.name, port.qpn, port.gid, capture::DEFAULT_SLOTS);
        iface.set_capture(tap);
        taps.push(reader);
        // The kernel behind the TUN device answers echo for the addresses.
        iface.set_kernel_icmp(tun.is_some());
        iface.set_siblings(&qpns);
        lcores[icfg.lcore].add_iface(iface);
        let mut all_stats = vec![stats];
        let mut queue_lcores = vec![icfg.lcore];
        for (q, p) in extra.into_iter().enumerate().map(|(i, p)| (i + 1, p)) {
            let qstats = Arc::new(IfaceStats::default());
            let mut qi = Iface::new(
                IfaceConfig {
                    name: icfg.name.clone(),
                    ifindex: idx as u16,
                    mtu: icfg.mtu,
                    pkey: icfg.pkey,
                    scope: 2,
                },
                p,
                IfaceWiring {
                    tx_in: std::mem::take(&mut tx_in_q[q]),
                    rx_out: None,
                    neigh: neigh.clone(),
                    mcast: mcast.clone(),
                    join_requests: join_requests.clone(),
                    stats: qstats.clone(),
                },
            );
            qi.set_siblings(&qpns);
            lcores[lcore_of(q)].add_iface(qi);
            all_stats.push(qstats);
            queue_lcores.push(lcore_of(q));
        }
        neigh_wiring.push(NeighWiring {
            table: neigh_for_control,
            statics: entries,
            stack_tx: Some(stack_tx),
        });
        hosts.push(HostInfo {
            name: icfg.name.clone(),
            port,
            fabric_port: None,
            stats: all_stats,
            queue_lcores,
            mcast,
            join_requests,
            groups: icfg.groups.clone(),
            tun,
            provider_xstats,
        });
    }
    Ok(Built {
        pool,
        lcores,
        hosts,
        neigh: neigh_wiring,
        fabric: None,
        resolvers: Vec::new(),
        igmp: Vec::new(),
        rates,
        capture: Arc::new(Capture::new(taps)),
        verbs: None,
    })
}
