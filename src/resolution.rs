//! Address resolution of one soft-fabric interface, run by the control
//! thread: the lcore's misses and ARP/ND frames come up, the resolver's
//! frames and released packets go down, and the neighbour table the lcore
//! reads is republished (static neighbours from the config merged in).

use ipoib_control::neigh::{LocalLink, NeighInfo, Output};
use ipoib_control::path::{AhError, SoftPathConfig};
use ipoib_control::stack::{IpStack, StackConfig};
use ipoib_control::{
    AhFactory, NeighCache, NeighConfig, PathCache, PathConfig, Resolver, SoftPathService,
};
use ipoib_dataplane::lcore::{CtrlChannels, CtrlDest, CtrlSend, NeighEntry, NeighTable};
use ipoib_dataplane::mem::{Mbuf, Mempool};
use ipoib_dataplane::provider::fabric::{Fabric, FabricAh};
use ipoib_dataplane::provider::{AhAttr, PortAttr};
use ipoib_dataplane::ring::spsc;
use ipoib_dataplane::tables::{published, Published, RequestQueue};
use ipoib_dataplane::wire::{Gid, HwAddr};
use std::net::IpAddr;
use std::sync::Arc;
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

type FabricResolver = Resolver<Mbuf, FabricAhFactory, SoftPathService>;

/// What the lcore side of resolution needs (hand to `Iface::with_control`).
pub struct LcoreSide {
    pub ctrl: CtrlChannels<FabricAh>,
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

pub struct HostResolver {
    pub name: String,
    /// The host's own IP stack: answers echo, sends pings.
    stack: IpStack,
    stack_tx: spsc::Producer<Mbuf>,
    ping: Option<PingPlan>,
    resolver: FabricResolver,
    requests: Arc<RequestQueue<(IpAddr, Mbuf)>>,
    from_lcore: spsc::Consumer<Mbuf>,
    to_lcore: spsc::Producer<CtrlSend<FabricAh>>,
    statics: Vec<(IpAddr, NeighEntry<FabricAh>)>,
    /// The table the lcore reads: static entries plus what was resolved.
    lcore_table: Published<NeighTable<FabricAh>>,
    /// Version of the resolver's table last merged.
    resolved_seen: u64,
    pool: &'static Mempool,
    /// Frames or packets dropped because the lcore's ring was full or the pool empty.
    pub dropped_down: u64,
}

/// Everything needed to build one interface's resolver.
pub struct ResolverSpec<'a> {
    pub name: &'a str,
    pub port: PortAttr,
    pub pkey: u16,
    pub addrs: Vec<IpAddr>,
    pub statics: Vec<(IpAddr, NeighEntry<FabricAh>)>,
    pub lcore_table: Published<NeighTable<FabricAh>>,
    pub queue_len: usize,
    pub request_queue: usize,
    pub ring: usize,
    pub stack_tx: spsc::Producer<Mbuf>,
    pub mtu: u16,
    pub prefixes: Vec<(IpAddr, u8)>,
}

impl HostResolver {
    pub fn new(
        fabric: &Arc<Fabric>,
        pool: &'static Mempool,
        spec: ResolverSpec<'_>,
        now: Duration,
    ) -> Result<(HostResolver, LcoreSide), String> {
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
        let paths = PathCache::new(
            PathConfig::default(),
            FabricAhFactory {
                fabric: fabric.clone(),
            },
        );
        let service = SoftPathService::new(fabric.clone(), SoftPathConfig::default());
        let resolver =
            Resolver::with_table(neigh, paths, service, published(NeighTable::default()));
        let requests = Arc::new(RequestQueue::new(spec.request_queue));
        let (up_tx, up_rx) = spsc::channel(spec.ring);
        let (down_tx, down_rx) = spsc::channel(spec.ring);
        let mut h = HostResolver {
            name: spec.name.to_string(),
            stack,
            stack_tx: spec.stack_tx,
            ping: None,
            resolver,
            requests: requests.clone(),
            from_lcore: up_rx,
            to_lcore: down_tx,
            statics: spec.statics,
            lcore_table: spec.lcore_table,
            resolved_seen: 0,
            pool,
            dropped_down: 0,
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
            },
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
    pub fn ping_results(&self) -> Vec<PingSummary> {
        self.ping
            .as_ref()
            .map(|p| p.results.clone())
            .unwrap_or_default()
    }

    /// Multicast groups resolution needs (broadcast, all-nodes, solicited-node).
    pub fn multicast_groups(&self) -> Vec<Gid> {
        self.resolver.neigh().multicast_groups()
    }

    /// One pass: misses, received frames, timers; then republish.
    pub fn step(&mut self, now: Duration) {
        let mut out = self.resolver.drain_requests(&self.requests, 1024, now);
        for _ in 0..1024 {
            let Some(m) = self.from_lcore.pop() else {
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
    }

    fn run_stack(&mut self, now: Duration) {
        if let Some(p) = self.ping.as_mut() {
            if p.next_seq < p.count && now >= p.next_at {
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
    pub fn touch_used(&mut self, now: Duration) {
        let used = self.lcore_table.load().take_used();
        let mut out = Vec::new();
        for ip in used {
            out.extend(self.resolver.touch(ip, now));
        }
        self.handle(out);
    }

    /// One line of what resolution did: requests, resolutions, and the fate
    /// of packets that arrived before their neighbour was known.
    pub fn resolution_line(&self) -> String {
        let n = self.resolver.neigh().stats();
        format!(
            "{}: {} resolved, {} failed; arp requests {} replies {} gratuitous {}, ns {} na {}; \
             packets queued {} then sent {}, dropped while resolving {}",
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
        )
    }

    pub fn neighbours(&self) -> Vec<NeighInfo> {
        self.resolver.neigh().iter().collect()
    }

    fn handle(&mut self, out: Vec<Output<Mbuf, FabricAh>>) {
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

    fn send_frame(&mut self, frame: &[u8], to: CtrlDest<FabricAh>) {
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

    fn send(&mut self, s: CtrlSend<FabricAh>) {
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
        let merged = NeighTable::new(resolved.iter().chain(self.statics.iter().copied()));
        self.lcore_table.store(Arc::new(merged));
    }
}
