//! Address resolution of one interface, run by the control thread: the
//! lcore's misses and ARP/ND frames come up, the resolver's frames and
//! released packets go down, and the neighbour table the lcore reads is
//! republished (static neighbours from the config merged in). The soft
//! fabric resolves paths through its SA; RoCEv2 has no SA, so a path is the
//! destination GID itself (`LocalPathService`).

use ipoib_control::neigh::{LocalLink, NeighInfo, NeighState, Output};
use ipoib_control::path::{
    AhError, PathInfo, PathRecord, PathResult, PathStats, QueryId, SoftPathConfig,
};
use ipoib_control::rdmacm::SaPathService;
use ipoib_control::stack::{IpStack, StackConfig};
use ipoib_control::{
    AhFactory, NeighCache, NeighConfig, PathCache, PathConfig, PathService, Resolver,
    SoftPathService,
};
use ipoib_dataplane::lcore::{CtrlChannels, CtrlDest, CtrlSend, NeighEntry, NeighTable};
use ipoib_dataplane::mem::{Mbuf, Mempool};
use ipoib_dataplane::provider::fabric::{Fabric, FabricAh};
use ipoib_dataplane::provider::rocev2::{addr, Rocev2Ah};
use ipoib_dataplane::provider::verbs::{AhTable, VerbsAh};
use ipoib_dataplane::provider::{AhAttr, PortAttr};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::tables::{published, Published, RequestQueue};
use ipoib_dataplane::wire::{Gid, HwAddr};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// ARP, or ICMPv6 neighbour/router discovery (types 133–137), after the
/// 4-byte IPoIB header: the resolver's; other ICMP is the IP stack's.
fn is_resolution_frame(frame: &[u8]) -> bool {
    match frame.get(..2) {
        Some([0x08, 0x06]) => true,
        Some([0x86, 0xdd]) => {
            frame.get(4 + 6) == Some(&58)
                && frame.get(4 + 40).is_some_and(|t| (133..=137).contains(t))
        }
        _ => false,
    }
}

/// Address handles on the soft fabric: a resolved destination port.
pub struct FabricAhFactory {
    fabric: Arc<Fabric>,
}

impl AhFactory for FabricAhFactory {
    type Ah = FabricAh;
    fn create_ah(&mut self, attr: &AhAttr) -> Result<FabricAh, AhError> {
        let port = match attr.dgid {
            Some(gid) => self.fabric.port_by_gid(&gid),
            None => self.fabric.port_by_lid(attr.dlid),
        };
        port.map(|p| FabricAh::Unicast { port: p as u32 })
            .ok_or_else(|| {
                AhError(format!(
                    "no port with LID {:#x} / GID {:?} on the fabric",
                    attr.dlid, attr.dgid
                ))
            })
    }
    fn destroy_ah(&mut self, _ah: FabricAh) {}
}

/// The destination GIDs a `LocalPathService` has answered for, indexed by
/// the LID it gave each (index + 1): a path record's address handle
/// attributes carry only the LID, so the RoCE factory looks the GID up here.
#[derive(Clone, Default)]
pub struct LocalPaths(Arc<Mutex<Vec<Gid>>>);

impl LocalPaths {
    /// Unicast LIDs end at 0xBFFF; beyond that many destinations, no path.
    const MAX: usize = 0xBFFF;

    fn lid_for(&self, gid: Gid) -> Option<u16> {
        let mut gids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let index = match gids.iter().position(|g| *g == gid) {
            Some(i) => i,
            None if gids.len() < Self::MAX => {
                gids.push(gid);
                gids.len() - 1
            }
            None => return None,
        };
        u16::try_from(index + 1).ok()
    }

    fn gid_for(&self, lid: u16) -> Option<Gid> {
        let gids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        gids.get(usize::from(lid).checked_sub(1)?).copied()
    }
}

/// Path queries where there is no SA (RoCE): every destination is directly
/// reachable, so each query is answered at the next poll.
pub struct LocalPathService {
    paths: LocalPaths,
    mtu: u16,
    pending: Vec<(QueryId, PathResult)>,
}

impl LocalPathService {
    pub fn new(paths: LocalPaths, mtu: u16) -> Self {
        LocalPathService {
            paths,
            mtu,
            pending: Vec::new(),
        }
    }
}

impl PathService for LocalPathService {
    fn query(&mut self, id: QueryId, _sgid: Gid, dgid: Gid, _now: Duration) {
        let answer = self
            .paths
            .lid_for(dgid)
            .map(|dlid| PathRecord {
                dgid,
                dlid,
                sl: 0,
                mtu: self.mtu,
                rate: 3,
            })
            .ok_or(ipoib_control::path::PathError::NoPath);
        self.pending.push((id, answer));
    }

    fn poll(&mut self, _now: Duration) -> Vec<(QueryId, PathResult)> {
        std::mem::take(&mut self.pending)
    }

    fn poll_timeout(&self) -> Option<Duration> {
        (!self.pending.is_empty()).then_some(Duration::ZERO)
    }
}

/// Address handles on RoCEv2: the destination's IP address, from its GID.
pub struct RoceAhFactory {
    paths: LocalPaths,
}

impl AhFactory for RoceAhFactory {
    type Ah = Rocev2Ah;
    fn create_ah(&mut self, attr: &AhAttr) -> Result<Rocev2Ah, AhError> {
        let gid = attr
            .dgid
            .or_else(|| self.paths.gid_for(attr.dlid))
            .ok_or_else(|| AhError(format!("no destination GID for LID {:#x}", attr.dlid)))?;
        let dst = addr::ip_of(gid);
        Ok(Rocev2Ah {
            dst,
            multicast: dst.is_multicast(),
        })
    }
    fn destroy_ah(&mut self, _ah: Rocev2Ah) {}
}

/// Address handles on a verbs device, from its shared table. On RoCE
/// paths are local (no SA): the LID a `LocalPathService` gave maps back to
/// the destination GID. On InfiniBand (`paths` is `None`) a path is the
/// SA's record: its DLID and SL go into the handle as they are. Handles
/// live as long as the device (a published table may still hold one), so
/// nothing is destroyed here.
pub struct VerbsAhFactory {
    paths: Option<LocalPaths>,
    ahs: Arc<AhTable>,
}

impl AhFactory for VerbsAhFactory {
    type Ah = VerbsAh;
    fn create_ah(&mut self, attr: &AhAttr) -> Result<VerbsAh, AhError> {
        let Some(paths) = &self.paths else {
            return self.ahs.get(attr).map_err(|e| AhError(e.to_string()));
        };
        let gid = attr
            .dgid
            .or_else(|| paths.gid_for(attr.dlid))
            .ok_or_else(|| AhError(format!("no destination GID for LID {:#x}", attr.dlid)))?;
        self.ahs
            .get(&AhAttr {
                dlid: 0,
                dgid: Some(gid),
                sl: attr.sl,
            })
            .map_err(|e| AhError(e.to_string()))
    }
    fn destroy_ah(&mut self, _ah: VerbsAh) {}
}

/// What the lcore side of resolution needs (hand to `Iface::with_control`).
pub struct LcoreSide<A = FabricAh> {
    pub ctrl: CtrlChannels<A>,
    /// One per queue of the interface beyond the first.
    pub extra: Vec<CtrlChannels<A>>,
}

/// Round trips of one ping target.
#[derive(Debug, Clone, PartialEq)]
pub struct PingSummary {
    pub from: String,
    pub to: IpAddr,
    pub sent: u16,
    pub rtts: Vec<Duration>,
}

impl PingSummary {
    /// `min/avg/max` of the round trips, if any came back.
    pub fn min_avg_max(&self) -> Option<(Duration, Duration, Duration)> {
        let min = *self.rtts.iter().min()?;
        let max = *self.rtts.iter().max()?;
        let avg = self.rtts.iter().sum::<Duration>() / self.rtts.len() as u32;
        Some((min, avg, max))
    }
}

/// Echo requests from this host's stack: `count` to each target, `interval` apart.
struct PingPlan {
    targets: Vec<IpAddr>,
    count: u16,
    interval: Duration,
    next_at: Duration,
    next_seq: u16,
    /// (target, seq) → send time.
    inflight: Vec<(IpAddr, u16, Duration)>,
    results: Vec<PingSummary>,
}

/// One interface's resolution, over either provider's address handles.
struct Core<F: AhFactory, S: PathService> {
    name: String,
    /// The host's own IP stack: answers echo, sends pings.
    stack: IpStack,
    stack_tx: spsc::Producer<Mbuf>,
    ping: Option<PingPlan>,
    resolver: Resolver<Mbuf, F, S>,
    requests: Arc<RequestQueue<(IpAddr, Mbuf)>>,
    from_lcore: spsc::Consumer<Mbuf>,
    to_lcore: spsc::Producer<CtrlSend<F::Ah>>,
    /// The interface's other queues: what they pass up is read like the
    /// first's; what control sends goes through the first queue only.
    from_queues: Vec<spsc::Consumer<Mbuf>>,
    _to_queues: Vec<spsc::Producer<CtrlSend<F::Ah>>>,
    statics: Vec<(IpAddr, NeighEntry<F::Ah>)>,
    /// The static neighbours as configured, for `ipoibctl neigh`.
    static_list: Vec<StaticNeighbour>,
    /// The table the lcore reads: static entries plus what was resolved.
    lcore_table: Published<NeighTable<F::Ah>>,
    /// Version of the resolver's table last merged.
    resolved_seen: u64,
    pool: &'static Mempool,
    /// Frames or packets dropped because the lcore's ring was full or the pool empty.
    dropped_down: u64,
    /// Neighbour states last logged, by address; compared every
    /// `NEIGH_LOG_EVERY` to log each change once.
    logged_states: Vec<(IpAddr, NeighState)>,
    next_state_check: Duration,
}

/// How long a ping round waits for its targets to be resolved.
const PING_RESOLVE_WAIT: Duration = Duration::from_secs(2);

/// How often neighbour states are compared with the last logged ones.
const NEIGH_LOG_EVERY: Duration = Duration::from_millis(100);

/// Everything needed to build one interface's resolver.
pub struct ResolverSpec<'a, A = FabricAh> {
    pub name: &'a str,
    pub port: PortAttr,
    pub pkey: u16,
    pub addrs: Vec<IpAddr>,
    pub statics: Vec<(IpAddr, NeighEntry<A>)>,
    /// The same static neighbours as configured (shown by `ipoibctl neigh`).
    pub static_list: Vec<StaticNeighbour>,
    pub lcore_table: Published<NeighTable<A>>,
    pub queue_len: usize,
    pub request_queue: usize,
    pub ring: usize,
    pub stack_tx: spsc::Producer<Mbuf>,
    pub mtu: u16,
    pub prefixes: Vec<(IpAddr, u8)>,
    /// Queues of the interface beyond the first (verbs `queues`).
    pub extra_queues: usize,
}

impl<F, S> Core<F, S>
where
    F: AhFactory,
    F::Ah: Copy,
    S: PathService,
{
    fn new(
        factory: F,
        service: S,
        pool: &'static Mempool,
        spec: ResolverSpec<'_, F::Ah>,
        now: Duration,
    ) -> Result<(Self, LcoreSide<F::Ah>), String> {
        let stack = IpStack::new(
            &StackConfig {
                addrs: spec.prefixes.clone(),
                mtu: usize::from(spec.mtu),
                seed: u64::from(spec.port.qpn),
                ..StackConfig::default()
            },
            now,
        )
        .map_err(|e| format!("{}: IP stack: {e}", spec.name))?;
        let link = LocalLink {
            hwaddr: HwAddr::new(0, spec.port.qpn, spec.port.gid),
            pkey: spec.pkey,
            scope: 2,
        };
        let neigh = NeighCache::new(
            NeighConfig {
                queue_len: spec.queue_len,
                ..NeighConfig::default()
            },
            link,
        );
        let paths = PathCache::new(PathConfig::default(), factory);
        let resolver =
            Resolver::with_table(neigh, paths, service, published(NeighTable::default()));
        let requests = Arc::new(RequestQueue::new(spec.request_queue));
        let (up_tx, up_rx) = spsc::channel(spec.ring);
        let (down_tx, down_rx) = spsc::channel(spec.ring);
        let mut from_queues = Vec::new();
        let mut to_queues = Vec::new();
        let mut extra = Vec::new();
        for _ in 0..spec.extra_queues {
            let (up, from) = spsc::channel(spec.ring);
            let (to, down) = spsc::channel(spec.ring);
            from_queues.push(from);
            to_queues.push(to);
            extra.push(CtrlChannels {
                resolve: requests.clone(),
                to_control: up,
                from_control: down,
            });
        }
        let mut h = Core {
            name: spec.name.to_string(),
            stack,
            stack_tx: spec.stack_tx,
            ping: None,
            resolver,
            requests: requests.clone(),
            from_lcore: up_rx,
            to_lcore: down_tx,
            from_queues,
            _to_queues: to_queues,
            statics: spec.statics,
            static_list: spec.static_list,
            lcore_table: spec.lcore_table,
            resolved_seen: 0,
            pool,
            dropped_down: 0,
            logged_states: Vec::new(),
            next_state_check: Duration::ZERO,
        };
        let mut out = Vec::new();
        for ip in spec.addrs {
            out.extend(h.resolver.add_address(ip, now));
        }
        out.extend(h.resolver.interface_up(now));
        h.handle(out);
        h.republish();
        Ok((
            h,
            LcoreSide {
                ctrl: CtrlChannels {
                    resolve: requests,
                    to_control: up_tx,
                    from_control: down_rx,
                },
                extra,
            },
        ))
    }

    /// Pings each target `count` times, `interval` apart, from `start` on.
    fn plan_pings(
        &mut self,
        targets: Vec<IpAddr>,
        count: u16,
        interval: Duration,
        start: Duration,
    ) {
        self.ping = Some(PingPlan {
            results: targets
                .iter()
                .map(|&to| PingSummary {
                    from: self.name.clone(),
                    to,
                    sent: 0,
                    rtts: Vec::new(),
                })
                .collect(),
            targets,
            count,
            interval,
            next_at: start,
            next_seq: 0,
            inflight: Vec::new(),
        });
    }

    /// What the pings saw so far.
    fn ping_results(&self) -> Vec<PingSummary> {
        self.ping
            .as_ref()
            .map(|p| p.results.clone())
            .unwrap_or_default()
    }

    /// Multicast groups resolution needs (broadcast, all-nodes, solicited-node).
    fn multicast_groups(&self) -> Vec<Gid> {
        self.resolver.neigh().multicast_groups()
    }

    /// One pass: misses, received frames, timers; then republish.
    fn step(&mut self, now: Duration) {
        let mut out = self.resolver.drain_requests(&self.requests, 1024, now);
        for _ in 0..1024 {
            let Some(m) = self
                .from_lcore
                .pop()
                .or_else(|| self.from_queues.iter_mut().find_map(|q| q.pop()))
            else {
                break;
            };
            let frame = m.data();
            if is_resolution_frame(frame) {
                out.extend(self.resolver.rx_frame(frame, now));
            } else if frame.len() > 4 {
                // ICMP for the host: its IP stack answers or takes the reply.
                self.stack.receive(frame[4..].to_vec());
            }
        }
        out.extend(self.resolver.poll(now));
        self.handle(out);
        self.republish();
        self.run_stack(now);
        if now >= self.next_state_check {
            self.next_state_check = now + NEIGH_LOG_EVERY;
            self.log_state_changes();
        }
    }

    /// One log line per neighbour whose state changed (or that appeared or
    /// went away) since the last look.
    fn log_state_changes(&mut self) {
        let mut now: Vec<(IpAddr, NeighState)> = self
            .resolver
            .neigh()
            .iter()
            .map(|n| (n.ip, n.state))
            .collect();
        now.sort_by_key(|(ip, _)| *ip);
        if now == self.logged_states {
            return;
        }
        let name = |s: Option<NeighState>| match s {
            Some(s) => format!("{s:?}").to_lowercase(),
            None => "none".into(),
        };
        let before = |ip: IpAddr| {
            self.logged_states
                .binary_search_by_key(&ip, |(i, _)| *i)
                .ok()
                .map(|i| self.logged_states[i].1)
        };
        for &(ip, state) in &now {
            let was = before(ip);
            if was != Some(state) {
                tracing::info!(
                    event = "neighbour",
                    interface = %self.name,
                    %ip,
                    state = %name(Some(state)),
                    was = %name(was),
                    "neighbour state"
                );
            }
        }
        for &(ip, state) in &self.logged_states {
            if now.binary_search_by_key(&ip, |(i, _)| *i).is_err() {
                tracing::info!(
                    event = "neighbour",
                    interface = %self.name,
                    %ip,
                    state = "none",
                    was = %name(Some(state)),
                    "neighbour state"
                );
            }
        }
        self.logged_states = now;
    }

    fn run_stack(&mut self, now: Duration) {
        if let Some(p) = self.ping.as_mut() {
            // After the first round (which starts resolution), a round waits
            // up to PING_RESOLVE_WAIT for its targets' neighbours: while one
            // resolves, the few packets queued for it are mostly a flow's
            // and a ping among them is likely dropped.
            let due = p.next_seq < p.count && now >= p.next_at;
            let held = due && p.next_seq > 0 && now < p.next_at + PING_RESOLVE_WAIT && {
                let table = self.lcore_table.load();
                !p.targets
                    .iter()
                    .all(|&t| t.is_multicast() || table.lookup(t).is_some())
            };
            if due && !held {
                for (i, &to) in p.targets.iter().enumerate() {
                    if self
                        .stack
                        .ping(to, p.next_seq, b"ipoib-dataplane ping")
                        .is_ok()
                    {
                        p.inflight.push((to, p.next_seq, now));
                        p.results[i].sent += 1;
                    }
                }
                p.next_seq += 1;
                p.next_at = now + p.interval;
            }
        }
        self.stack.poll(now);
        for packet in self.stack.take_transmitted() {
            let sent = self.pool.alloc().and_then(|mut m| {
                m.append(packet.len())?.copy_from_slice(&packet);
                Some(m)
            });
            match sent.map(|m| self.stack_tx.push(m)) {
                Some(Ok(())) => {}
                _ => self.dropped_down += 1,
            }
        }
        if let Some(p) = self.ping.as_mut() {
            for r in self.stack.echo_replies() {
                if let Some(k) = p
                    .inflight
                    .iter()
                    .position(|f| f.0 == r.from && f.1 == r.seq)
                {
                    let (to, _, at) = p.inflight.swap_remove(k);
                    if let Some(s) = p.results.iter_mut().find(|s| s.to == to) {
                        s.rtts.push(now.saturating_sub(at));
                    }
                }
            }
        }
    }

    /// Tells the resolver which neighbours the lcore used since the last call
    /// (the table's accessed bits), so busy entries are not collected.
    fn touch_used(&mut self, now: Duration) {
        let used = self.lcore_table.load().take_used();
        let mut out = Vec::new();
        for ip in used {
            out.extend(self.resolver.touch(ip, now));
        }
        self.handle(out);
    }

    /// One line of what resolution did: requests, resolutions, and the fate
    /// of packets that arrived before their neighbour was known.
    fn resolution_line(&self) -> String {
        let n = self.resolver.neigh().stats();
        format!(
            "{}: {} resolved, {} failed; arp requests {} replies {} gratuitous {}, ns {} na {}; \
             packets queued {} then sent {}, dropped while resolving {}; \
             frames not handed to the lcore (ring or pool full) {}",
            self.name,
            n.resolved,
            n.failed,
            n.arp_requests_sent,
            n.arp_replies_sent,
            n.gratuitous_sent,
            n.ns_sent,
            n.na_sent,
            n.queued,
            n.released,
            n.drop_queue_full + n.drop_failed + self.resolver.stats().drop_path_queue_full,
            self.dropped_down,
        )
    }

    fn neighbours(&self) -> Vec<NeighInfo> {
        self.resolver.neigh().iter().collect()
    }

    fn handle(&mut self, out: Vec<Output<Mbuf, F::Ah>>) {
        for o in out {
            match o {
                Output::Multicast(t) => self.send_frame(&t.frame, CtrlDest::Multicast(t.dest.gid)),
                Output::Unicast { entry, frame } => {
                    self.send_frame(&frame, CtrlDest::Unicast(entry))
                }
                Output::Send { entry, packets, .. } => {
                    for mbuf in packets {
                        self.send(CtrlSend {
                            mbuf,
                            to: CtrlDest::Unicast(entry),
                        });
                    }
                }
                // Counted by the resolver; the mbufs go back to their pool.
                Output::Drop { packets, .. } => drop(packets),
            }
        }
    }

    fn send_frame(&mut self, frame: &[u8], to: CtrlDest<F::Ah>) {
        let Some(mut m) = self.pool.alloc() else {
            self.dropped_down += 1;
            return;
        };
        match m.append(frame.len()) {
            Some(d) => d.copy_from_slice(frame),
            None => {
                self.dropped_down += 1;
                return;
            }
        }
        self.send(CtrlSend { mbuf: m, to });
    }

    fn send(&mut self, s: CtrlSend<F::Ah>) {
        if self.to_lcore.push(s).is_err() {
            self.dropped_down += 1;
        }
    }

    /// Publishes static ∪ resolved to the lcore when the resolved set changed.
    fn republish(&mut self) {
        let resolved = self.resolver.table().load_full();
        if self.resolved_seen == resolved.version() {
            return;
        }
        self.resolved_seen = resolved.version();
        self.publish_merged();
    }

    fn publish_merged(&mut self) {
        let resolved = self.resolver.table().load_full();
        let merged = NeighTable::new(resolved.iter().chain(self.statics.iter().copied()));
        self.lcore_table.store(Arc::new(merged));
    }

    /// Replaces the static neighbours (configuration reload): every address
    /// handle is made first, so a bad entry changes nothing.
    fn set_statics(&mut self, list: &[StaticNeighbour]) -> Result<(), String> {
        let mut statics = Vec::with_capacity(list.len());
        for n in list {
            let attr = AhAttr {
                dlid: 0,
                dgid: Some(n.gid),
                sl: 0,
            };
            let ah = self
                .resolver
                .paths_mut()
                .factory_mut()
                .create_ah(&attr)
                .map_err(|e| format!("{}: neighbour {}: {}", self.name, n.ip, e.0))?;
            statics.push((n.ip, NeighEntry { ah, qpn: n.qpn }));
        }
        // Static handles are plain values on these providers: nothing to destroy.
        self.statics = statics;
        self.static_list = list.to_vec();
        self.publish_merged();
        tracing::info!(
            interface = %self.name,
            statics = self.statics.len(),
            "neighbour statics replaced"
        );
        Ok(())
    }
}

/// A static neighbour as the configuration gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticNeighbour {
    pub ip: IpAddr,
    pub qpn: u32,
    pub gid: Gid,
}

/// What the control thread does with one interface's resolution, whatever
/// its provider's address handles are.
trait Resolve: Send {
    fn plan_pings(&mut self, targets: Vec<IpAddr>, count: u16, interval: Duration, start: Duration);
    fn ping_results(&self) -> Vec<PingSummary>;
    fn multicast_groups(&self) -> Vec<Gid>;
    fn step(&mut self, now: Duration);
    fn touch_used(&mut self, now: Duration);
    fn resolution_line(&self) -> String;
    fn neighbours(&self) -> Vec<NeighInfo>;
    fn static_neighbours(&self) -> Vec<StaticNeighbour>;
    fn dropped_down(&self) -> u64;
    fn set_statics(&mut self, list: &[StaticNeighbour]) -> Result<(), String>;
    fn paths(&self) -> (Vec<PathInfo>, PathStats);
}

impl<F, S> Resolve for Core<F, S>
where
    F: AhFactory + Send,
    F::Ah: Copy + Send + Sync,
    S: PathService + Send,
{
    fn plan_pings(
        &mut self,
        targets: Vec<IpAddr>,
        count: u16,
        interval: Duration,
        start: Duration,
    ) {
        Core::plan_pings(self, targets, count, interval, start)
    }
    fn ping_results(&self) -> Vec<PingSummary> {
        Core::ping_results(self)
    }
    fn multicast_groups(&self) -> Vec<Gid> {
        Core::multicast_groups(self)
    }
    fn step(&mut self, now: Duration) {
        Core::step(self, now)
    }
    fn touch_used(&mut self, now: Duration) {
        Core::touch_used(self, now)
    }
    fn resolution_line(&self) -> String {
        Core::resolution_line(self)
    }
    fn neighbours(&self) -> Vec<NeighInfo> {
        Core::neighbours(self)
    }
    fn static_neighbours(&self) -> Vec<StaticNeighbour> {
        self.static_list.clone()
    }
    fn dropped_down(&self) -> u64 {
        self.dropped_down
    }
    fn set_statics(&mut self, list: &[StaticNeighbour]) -> Result<(), String> {
        Core::set_statics(self, list)
    }
    fn paths(&self) -> (Vec<PathInfo>, PathStats) {
        let p = self.resolver.paths();
        (p.paths(), *p.stats())
    }
}

/// One interface's address resolution and IP stack, on the control thread.
pub struct HostResolver {
    pub name: String,
    core: Box<dyn Resolve>,
}

impl HostResolver {
    /// Resolution on the soft fabric: paths from its SA.
    pub fn new(
        fabric: &Arc<Fabric>,
        pool: &'static Mempool,
        spec: ResolverSpec<'_>,
        now: Duration,
    ) -> Result<(HostResolver, LcoreSide), String> {
        let factory = FabricAhFactory {
            fabric: fabric.clone(),
        };
        let service = SoftPathService::new(fabric.clone(), SoftPathConfig::default());
        Self::with(factory, service, pool, spec, now)
    }

    /// Resolution on RoCEv2: no SA, a neighbour's GID is its IP address.
    pub fn rocev2(
        ib_mtu: u16,
        pool: &'static Mempool,
        spec: ResolverSpec<'_, Rocev2Ah>,
        now: Duration,
    ) -> Result<(HostResolver, LcoreSide<Rocev2Ah>), String> {
        let paths = LocalPaths::default();
        let service = LocalPathService::new(paths.clone(), ib_mtu);
        Self::with(RoceAhFactory { paths }, service, pool, spec, now)
    }

    /// Resolution on a verbs device: paths from the GID (no SA), address
    /// handles from the device's table.
    pub fn verbs(
        ib_mtu: u16,
        ahs: Arc<AhTable>,
        pool: &'static Mempool,
        spec: ResolverSpec<'_, VerbsAh>,
        now: Duration,
    ) -> Result<(HostResolver, LcoreSide<VerbsAh>), String> {
        let paths = LocalPaths::default();
        let service = LocalPathService::new(paths.clone(), ib_mtu);
        let factory = VerbsAhFactory {
            paths: Some(paths),
            ahs,
        };
        Self::with(factory, service, pool, spec, now)
    }

    /// Resolution on a verbs device's InfiniBand port: path records from
    /// the SA through rdma_cm (DLID, SL, MTU, rate), LID-routed handles.
    pub fn verbs_ib(
        routes: SaPathService,
        ahs: Arc<AhTable>,
        pool: &'static Mempool,
        spec: ResolverSpec<'_, VerbsAh>,
        now: Duration,
    ) -> Result<(HostResolver, LcoreSide<VerbsAh>), String> {
        let factory = VerbsAhFactory { paths: None, ahs };
        Self::with(factory, routes, pool, spec, now)
    }

    fn with<F, S>(
        factory: F,
        service: S,
        pool: &'static Mempool,
        spec: ResolverSpec<'_, F::Ah>,
        now: Duration,
    ) -> Result<(HostResolver, LcoreSide<F::Ah>), String>
    where
        F: AhFactory + Send + 'static,
        F::Ah: Copy + Send + Sync + 'static,
        S: PathService + Send + 'static,
    {
        let name = spec.name.to_string();
        let (core, side) = Core::new(factory, service, pool, spec, now)?;
        Ok((
            HostResolver {
                name,
                core: Box::new(core),
            },
            side,
        ))
    }

    /// Pings each target `count` times, `interval` apart, from `start` on.
    pub fn plan_pings(
        &mut self,
        targets: Vec<IpAddr>,
        count: u16,
        interval: Duration,
        start: Duration,
    ) {
        self.core.plan_pings(targets, count, interval, start)
    }

    /// What the pings saw so far.
    pub fn ping_results(&self) -> Vec<PingSummary> {
        self.core.ping_results()
    }

    /// Multicast groups resolution needs (broadcast, all-nodes, solicited-node).
    pub fn multicast_groups(&self) -> Vec<Gid> {
        self.core.multicast_groups()
    }

    /// One pass: misses, received frames, timers; then republish.
    pub fn step(&mut self, now: Duration) {
        self.core.step(now)
    }

    /// Tells the resolver which neighbours the lcore used since the last call.
    pub fn touch_used(&mut self, now: Duration) {
        self.core.touch_used(now)
    }

    /// One line of what resolution did.
    pub fn resolution_line(&self) -> String {
        self.core.resolution_line()
    }

    pub fn neighbours(&self) -> Vec<NeighInfo> {
        self.core.neighbours()
    }

    /// The static neighbours in force (configuration, then reloads).
    pub fn static_neighbours(&self) -> Vec<StaticNeighbour> {
        self.core.static_neighbours()
    }

    /// Frames or packets dropped because the lcore's ring was full or the pool empty.
    pub fn dropped_down(&self) -> u64 {
        self.core.dropped_down()
    }

    /// The path cache: every path and the cache's counters.
    pub fn paths(&self) -> (Vec<PathInfo>, PathStats) {
        self.core.paths()
    }

    /// Replaces the static neighbours merged into the lcore's table.
    pub fn set_statics(&mut self, list: &[StaticNeighbour]) -> Result<(), String> {
        self.core.set_statics(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn local_paths_answer_at_once_and_map_back_to_the_address() {
        let paths = LocalPaths::default();
        let mut service = LocalPathService::new(paths.clone(), 1024);
        let mut factory = RoceAhFactory { paths };
        let peer = IpAddr::V4(Ipv4Addr::new(192, 168, 7, 2));
        let now = Duration::from_secs(1);
        service.query(QueryId(1), Gid::default(), addr::gid_of(peer), now);
        assert_eq!(service.poll_timeout(), Some(Duration::ZERO));
        let answers = service.poll(now);
        let [(id, Ok(record))] = answers.as_slice() else {
            panic!("one answer expected, got {answers:?}");
        };
        assert_eq!((*id, record.mtu), (QueryId(1), 1024));
        let ah = factory.create_ah(&record.ah_attr()).unwrap();
        assert_eq!(
            ah,
            Rocev2Ah {
                dst: peer,
                multicast: false
            }
        );
        assert!(service.poll(now).is_empty());
        assert!(factory
            .create_ah(&AhAttr {
                dlid: 99,
                dgid: None,
                sl: 0
            })
            .is_err());
    }
}
