//! The neighbour cache joined to the path cache: resolved neighbours get
//! the shared address handle of their path, packets wait (bounded) until
//! it exists, and the lcores' `NeighTable` is republished whenever the set
//! of usable (IP, handle, QPN) triples changes.

use super::action::{Action, DropReason, Transmit};
use super::cache::NeighCache;
use crate::mcast::FlushLevel;
use crate::path::{Acquire, AhFactory, PathCache, PathEvent, PathService};
use ipoib_dataplane::lcore::{NeighEntry, NeighTable};
use ipoib_dataplane::tables::{published, Published, RequestQueue};
use ipoib_dataplane::wire::{Gid, HwAddr};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the owner of a resolver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Output<T, A> {
    /// Post this ARP/ND frame to the multicast group `dest.gid` (the
    /// broadcast or a solicited-node group).
    Multicast(Transmit),
    /// Post this ARP/ND frame (a reply or a probe) with this handle and QPN.
    Unicast {
        entry: NeighEntry<A>,
        frame: Vec<u8>,
    },
    /// Send these packets to `ip` with this handle and QPN.
    Send {
        ip: IpAddr,
        entry: NeighEntry<A>,
        packets: Vec<T>,
    },
    /// Free these packets; already counted.
    Drop {
        ip: IpAddr,
        reason: DropReason,
        packets: Vec<T>,
    },
}

/// Counters of the resolver itself (the caches keep their own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolverStats {
    /// Packets handed out with a handle.
    pub sent: u64,
    /// Packets dropped because their path failed.
    pub drop_no_path: u64,
    /// Packets dropped because too many waited for one path.
    pub drop_path_queue_full: u64,
    /// Tables published.
    pub published: u64,
    /// Answers the path service gave for queries.
    pub path_answers: u64,
    /// Unicast ARP/ND frames dropped: no path, or too many waiting.
    pub drop_frames: u64,
}

/// Address resolution of one interface, sans-IO.
pub struct Resolver<T, F: AhFactory, S: PathService> {
    neigh: NeighCache<T>,
    paths: PathCache<F>,
    service: S,
    /// Resolved neighbours whose path has no handle yet, with their packets.
    waiting: BTreeMap<IpAddr, (HwAddr, Vec<T>)>,
    /// Unicast ARP/ND frames (QPN, frame) waiting for their path's handle.
    frames: BTreeMap<Gid, Vec<(u32, Vec<u8>)>>,
    table: Published<NeighTable<F::Ah>>,
    /// (neighbour, path) generations of the last published table.
    seen: Option<(u64, u64)>,
    stats: ResolverStats,
}

/// Most rounds of service answers handled within one event.
const MAX_ANSWER_ROUNDS: usize = 8;
/// Unicast ARP/ND frames held per path while its handle is created.
const FRAMES_PER_PATH: usize = 8;

impl<T, F: AhFactory, S: PathService> Resolver<T, F, S> {
    pub fn new(neigh: NeighCache<T>, paths: PathCache<F>, service: S) -> Self {
        Self::with_table(neigh, paths, service, published(NeighTable::default()))
    }

    /// Publishes into an existing table (the one the lcores already read).
    pub fn with_table(
        neigh: NeighCache<T>,
        paths: PathCache<F>,
        service: S,
        table: Published<NeighTable<F::Ah>>,
    ) -> Self {
        Resolver {
            neigh,
            paths,
            service,
            waiting: BTreeMap::new(),
            frames: BTreeMap::new(),
            table,
            seen: None,
            stats: ResolverStats::default(),
        }
    }

    pub fn neigh(&self) -> &NeighCache<T> {
        &self.neigh
    }
    pub fn paths(&self) -> &PathCache<F> {
        &self.paths
    }
    pub fn paths_mut(&mut self) -> &mut PathCache<F> {
        &mut self.paths
    }
    pub fn service(&self) -> &S {
        &self.service
    }
    pub fn service_mut(&mut self) -> &mut S {
        &mut self.service
    }
    pub fn stats(&self) -> &ResolverStats {
        &self.stats
    }
    /// The table lcores read.
    pub fn table(&self) -> Published<NeighTable<F::Ah>> {
        Arc::clone(&self.table)
    }
    /// Packets held anywhere: neighbour queues and path waits.
    pub fn queued(&self) -> usize {
        self.neigh.queued() + self.waiting.values().map(|w| w.1.len()).sum::<usize>()
    }

    pub fn interface_up(&mut self, now: Duration) -> Vec<Output<T, F::Ah>> {
        let actions = self.neigh.interface_up(now);
        self.finish(actions, now)
    }

    pub fn interface_down(&mut self, now: Duration) -> Vec<Output<T, F::Ah>> {
        let actions = self.neigh.interface_down(now);
        let dropped: usize = std::mem::take(&mut self.frames)
            .values()
            .map(Vec::len)
            .sum();
        self.stats.drop_frames += dropped as u64;
        self.finish(actions, now)
    }

    pub fn add_address(&mut self, ip: IpAddr, now: Duration) -> Vec<Output<T, F::Ah>> {
        let actions = self.neigh.add_address(ip, now);
        self.finish(actions, now)
    }

    /// Our GID (or QPN) changed: neighbours are flushed, paths re-queried,
    /// the new address announced.
    pub fn set_hwaddr(&mut self, hwaddr: HwAddr, now: Duration) -> Vec<Output<T, F::Ah>> {
        let actions = self.neigh.set_hwaddr(hwaddr, now);
        let mut out = self.finish(actions, now);
        let events = self.paths.invalidate(now);
        self.path_events(events, now, &mut out);
        self.settle(now, &mut out);
        out
    }

    pub fn flush(&mut self, level: FlushLevel, now: Duration) -> Vec<Output<T, F::Ah>> {
        let actions = self.neigh.flush(level, now);
        let mut out = self.finish(actions, now);
        let events = self.paths.invalidate(now);
        self.path_events(events, now, &mut out);
        self.settle(now, &mut out);
        out
    }

    /// An lcore's resolution request: no table entry for `ip`.
    pub fn tx_miss(&mut self, ip: IpAddr, packet: T, now: Duration) -> Vec<Output<T, F::Ah>> {
        let actions = self.neigh.on_tx_miss(ip, packet, now);
        self.finish(actions, now)
    }

    /// Handles up to `max` resolution requests the lcores pushed: each is
    /// the destination they missed and the packet they could not send.
    pub fn drain_requests(
        &mut self,
        requests: &RequestQueue<(IpAddr, T)>,
        max: usize,
        now: Duration,
    ) -> Vec<Output<T, F::Ah>> {
        let mut actions = Vec::new();
        for _ in 0..max {
            let Some((ip, packet)) = requests.pop() else {
                break;
            };
            actions.extend(self.neigh.on_tx_miss(ip, packet, now));
        }
        self.finish(actions, now)
    }

    /// An ARP or ND frame the lcore passed up.
    pub fn rx_frame(&mut self, frame: &[u8], now: Duration) -> Vec<Output<T, F::Ah>> {
        let actions = self.neigh.on_frame(frame, now);
        self.finish(actions, now)
    }

    /// The datapath used `ip` (from its hit counters).
    pub fn touch(&mut self, ip: IpAddr, now: Duration) -> Vec<Output<T, F::Ah>> {
        let actions = self.neigh.touch(ip, now);
        self.finish(actions, now)
    }

    /// Timers of both caches and the service's answers due by `now`.
    pub fn poll(&mut self, now: Duration) -> Vec<Output<T, F::Ah>> {
        let mut out = Vec::new();
        self.settle(now, &mut out);
        let events = self.paths.on_timer(now);
        self.path_events(events, now, &mut out);
        let actions = self.neigh.on_timer(now);
        self.neigh_actions(actions, now, &mut out);
        self.settle(now, &mut out);
        self.publish();
        out
    }

    /// When `poll` next has something to do.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [
            self.neigh.poll_timeout(),
            self.paths.poll_timeout(),
            self.service.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Publishes a new table if a neighbour or handle changed since the
    /// last one. Returns whether it did.
    pub fn publish(&mut self) -> bool {
        let key = (self.neigh.generation(), self.paths.generation());
        if self.seen == Some(key) {
            return false;
        }
        self.seen = Some(key);
        let paths = &self.paths;
        let entries = self.neigh.iter().filter_map(|n| {
            let hw = n.hwaddr?;
            let ah = paths.ah(&hw.gid)?;
            Some((n.ip, NeighEntry { ah, qpn: hw.qpn }))
        });
        self.table.store(Arc::new(NeighTable::new(entries)));
        self.stats.published += 1;
        true
    }

    fn finish(&mut self, actions: Vec<Action<T>>, now: Duration) -> Vec<Output<T, F::Ah>> {
        let mut out = Vec::new();
        self.neigh_actions(actions, now, &mut out);
        self.settle(now, &mut out);
        self.publish();
        out
    }

    /// Feeds answers the service already has to the path cache.
    fn settle(&mut self, now: Duration, out: &mut Vec<Output<T, F::Ah>>) {
        for _ in 0..MAX_ANSWER_ROUNDS {
            let answers = self.service.poll(now);
            if answers.is_empty() {
                return;
            }
            for (id, result) in answers {
                self.stats.path_answers += 1;
                let events = self.paths.on_answer(id, result, now);
                self.path_events(events, now, out);
            }
        }
    }

    fn neigh_actions(
        &mut self,
        actions: Vec<Action<T>>,
        now: Duration,
        out: &mut Vec<Output<T, F::Ah>>,
    ) {
        // Packets of a neighbour forgotten and re-learned in one batch (an
        // address change) carry over to the new address.
        let mut orphans: BTreeMap<IpAddr, Vec<T>> = BTreeMap::new();
        for action in actions {
            if let Some(transmit) = action.transmit() {
                if transmit.dest.is_multicast() {
                    out.push(Output::<T, F::Ah>::Multicast(transmit));
                } else {
                    self.unicast_frame(transmit, now, out);
                }
                continue;
            }
            match action {
                Action::Resolved {
                    ip,
                    hwaddr,
                    mut packets,
                } => {
                    if let Some(mut carried) = orphans.remove(&ip) {
                        carried.append(&mut packets);
                        packets = carried;
                    }
                    self.resolved(ip, hwaddr, packets, now, out);
                }
                Action::Forget { ip, hwaddr } => {
                    self.paths.release(hwaddr.gid, ip);
                    if let Some((_, packets)) = self.waiting.remove(&ip) {
                        orphans.entry(ip).or_default().extend(packets);
                    }
                }
                Action::Dropped {
                    ip,
                    reason,
                    packets,
                } => out.push(Output::<T, F::Ah>::Drop {
                    ip,
                    reason,
                    packets,
                }),
                _ => {}
            }
        }
        for (ip, packets) in orphans {
            self.drop_no_path(ip, packets, out);
        }
    }

    /// Sends a unicast frame with its path's handle, or holds it until
    /// the handle exists.
    fn unicast_frame(
        &mut self,
        transmit: Transmit,
        now: Duration,
        out: &mut Vec<Output<T, F::Ah>>,
    ) {
        let dest = transmit.dest;
        let mut events = Vec::new();
        match self.paths.lookup(dest.gid, now, &mut events) {
            Acquire::Ready(ah) => out.push(Output::Unicast {
                entry: NeighEntry { ah, qpn: dest.qpn },
                frame: transmit.frame,
            }),
            Acquire::Pending => {
                let held = self.frames.entry(dest.gid).or_default();
                if held.len() < FRAMES_PER_PATH {
                    held.push((dest.qpn, transmit.frame));
                } else {
                    self.stats.drop_frames += 1;
                }
            }
        }
        self.path_events(events, now, out);
    }

    fn resolved(
        &mut self,
        ip: IpAddr,
        hwaddr: HwAddr,
        packets: Vec<T>,
        now: Duration,
        out: &mut Vec<Output<T, F::Ah>>,
    ) {
        let mut events = Vec::new();
        match self.paths.acquire(hwaddr.gid, ip, now, &mut events) {
            Acquire::Ready(ah) => self.send(
                ip,
                NeighEntry {
                    ah,
                    qpn: hwaddr.qpn,
                },
                packets,
                out,
            ),
            Acquire::Pending => self.hold(ip, hwaddr, packets, out),
        }
        self.path_events(events, now, out);
    }

    /// Keeps packets until the path is ready, at most `queue_len` per neighbour.
    fn hold(
        &mut self,
        ip: IpAddr,
        hwaddr: HwAddr,
        packets: Vec<T>,
        out: &mut Vec<Output<T, F::Ah>>,
    ) {
        let bound = self.neigh.config().queue_len;
        let slot = self.waiting.entry(ip).or_insert((hwaddr, Vec::new()));
        slot.0 = hwaddr;
        let mut overflow = Vec::new();
        for packet in packets {
            if slot.1.len() < bound {
                slot.1.push(packet);
            } else {
                overflow.push(packet);
            }
        }
        if !overflow.is_empty() {
            self.stats.drop_path_queue_full += overflow.len() as u64;
            out.push(Output::<T, F::Ah>::Drop {
                ip,
                reason: DropReason::QueueFull,
                packets: overflow,
            });
        }
    }

    fn path_events(
        &mut self,
        events: Vec<PathEvent<F::Ah>>,
        now: Duration,
        out: &mut Vec<Output<T, F::Ah>>,
    ) {
        let sgid = self.neigh.link().hwaddr.gid;
        for event in events {
            match event {
                PathEvent::Query { id, dgid } => self.service.query(id, sgid, dgid, now),
                PathEvent::Ready { dgid, ah } => {
                    for (qpn, frame) in self.frames.remove(&dgid).unwrap_or_default() {
                        out.push(Output::Unicast {
                            entry: NeighEntry { ah, qpn },
                            frame,
                        });
                    }
                    for (ip, (hw, packets)) in self.take_waiting(dgid) {
                        self.send(ip, NeighEntry { ah, qpn: hw.qpn }, packets, out);
                    }
                }
                PathEvent::Failed { dgid, .. } => {
                    let frames = self.frames.remove(&dgid).map_or(0, |f| f.len());
                    self.stats.drop_frames += frames as u64;
                    for (ip, (_, packets)) in self.take_waiting(dgid) {
                        self.drop_no_path(ip, packets, out);
                    }
                }
            }
        }
    }

    fn take_waiting(&mut self, dgid: Gid) -> Vec<(IpAddr, (HwAddr, Vec<T>))> {
        let ips: Vec<IpAddr> = self
            .waiting
            .iter()
            .filter(|(_, (hw, _))| hw.gid == dgid)
            .map(|(ip, _)| *ip)
            .collect();
        ips.into_iter()
            .filter_map(|ip| self.waiting.remove(&ip).map(|w| (ip, w)))
            .collect()
    }

    fn send(
        &mut self,
        ip: IpAddr,
        entry: NeighEntry<F::Ah>,
        packets: Vec<T>,
        out: &mut Vec<Output<T, F::Ah>>,
    ) {
        if packets.is_empty() {
            return;
        }
        self.stats.sent += packets.len() as u64;
        out.push(Output::Send { ip, entry, packets });
    }

    fn drop_no_path(&mut self, ip: IpAddr, packets: Vec<T>, out: &mut Vec<Output<T, F::Ah>>) {
        if packets.is_empty() {
            return;
        }
        self.stats.drop_no_path += packets.len() as u64;
        out.push(Output::<T, F::Ah>::Drop {
            ip,
            reason: DropReason::NoPath,
            packets,
        });
    }
}
