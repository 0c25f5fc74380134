//! The neighbour cache of one interface, sans-IO: every event takes the time
//! and returns the actions it caused; nothing here blocks, sleeps or sends.

use super::action::{Action, DropReason};
use super::addr::{solicited_node, LocalLink, ALL_NODES};
use super::config::NeighConfig;
use super::entry::{Entry, NeighInfo, NeighState};
use super::stats::NeighStats;
use crate::mcast::FlushLevel;
use ipoib_dataplane::wire::{decode_mgid, Gid, HwAddr};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Neighbours of one interface, keyed by IP address. `T` is the datapath's
/// packet token.
pub struct NeighCache<T> {
    pub(super) cfg: NeighConfig,
    pub(super) link: LocalLink,
    /// Our configured addresses (the link-local one is implied).
    pub(super) addrs: Vec<IpAddr>,
    pub(super) up: bool,
    /// Ordered so that timers and flushes act in a reproducible order.
    pub(super) entries: BTreeMap<IpAddr, Entry<T>>,
    pub(super) stats: NeighStats,
    /// Bumped whenever the set of resolved addresses changes.
    pub(super) generation: u64,
}

impl<T> NeighCache<T> {
    /// A cache for a link that is down and has no addresses yet.
    pub fn new(cfg: NeighConfig, link: LocalLink) -> Self {
        NeighCache {
            cfg,
            link,
            addrs: Vec::new(),
            up: false,
            entries: BTreeMap::new(),
            stats: NeighStats::default(),
            generation: 0,
        }
    }

    pub fn config(&self) -> &NeighConfig {
        &self.cfg
    }
    pub fn link(&self) -> &LocalLink {
        &self.link
    }
    pub fn stats(&self) -> &NeighStats {
        &self.stats
    }
    pub fn is_up(&self) -> bool {
        self.up
    }
    /// Changes whenever an address is learned, changed or forgotten.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn get(&self, ip: IpAddr) -> Option<NeighInfo> {
        self.entries.get(&ip).map(|e| e.info(ip))
    }
    pub fn iter(&self) -> impl Iterator<Item = NeighInfo> + '_ {
        self.entries.iter().map(|(ip, e)| e.info(*ip))
    }
    /// Packets waiting in every queue.
    pub fn queued(&self) -> usize {
        self.entries.values().map(|e| e.queue.len()).sum()
    }

    /// Our own addresses, the IPv6 link-local one included.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(IpAddr::V6(self.link.link_local())).chain(self.addrs.iter().copied())
    }

    pub fn is_own(&self, ip: IpAddr) -> bool {
        self.addresses().any(|own| own == ip)
    }

    /// The MGIDs this interface must be a full member of for ARP and ND:
    /// the broadcast group, all-nodes, and the solicited-node group of each
    /// IPv6 address (joined through the multicast engine).
    pub fn multicast_groups(&self) -> Vec<Gid> {
        let mut groups = vec![self.link.broadcast().gid];
        let v6 = self.addresses().filter_map(|ip| match ip {
            IpAddr::V6(v6) => Some(solicited_node(v6)),
            IpAddr::V4(_) => None,
        });
        for group in std::iter::once(ALL_NODES).chain(v6) {
            if let Some(hw) = self.link.ipv6_group(group) {
                if !groups.contains(&hw.gid) {
                    groups.push(hw.gid);
                }
            }
        }
        groups
    }

    /// Interface up: announce every address.
    pub fn interface_up(&mut self, _now: Duration) -> Vec<Action<T>> {
        self.up = true;
        let mut actions = Vec::new();
        let own: Vec<IpAddr> = self.addresses().collect();
        for ip in own {
            self.announce(ip, &mut actions);
        }
        actions
    }

    /// Interface down: forget everything and hand back every queued packet.
    pub fn interface_down(&mut self, _now: Duration) -> Vec<Action<T>> {
        self.up = false;
        let mut actions = Vec::new();
        let all: Vec<IpAddr> = self.entries.keys().copied().collect();
        for ip in all {
            self.remove(ip, DropReason::Down, &mut actions);
        }
        actions
    }

    /// Adds one of our addresses; announced at once if the link is up.
    pub fn add_address(&mut self, ip: IpAddr, _now: Duration) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        if !self.is_own(ip) {
            self.addrs.push(ip);
        }
        // A neighbour entry for our own address would shadow it.
        self.remove(ip, DropReason::Unresolvable, &mut actions);
        if self.up {
            self.announce(ip, &mut actions);
        }
        actions
    }

    pub fn remove_address(&mut self, ip: IpAddr) {
        self.addrs.retain(|own| *own != ip);
    }

    /// Our hardware address changed (GID change, new QPN): flush what was
    /// learned and announce the new address.
    pub fn set_hwaddr(&mut self, hwaddr: HwAddr, now: Duration) -> Vec<Action<T>> {
        self.link.hwaddr = hwaddr;
        let mut actions = self.flush(FlushLevel::Light, now);
        if self.up {
            let own: Vec<IpAddr> = self.addresses().collect();
            for ip in own {
                self.announce(ip, &mut actions);
            }
        }
        actions
    }

    /// Port event or GID change: every learned address is dropped (and its
    /// address handle released); entries still resolving start over, keeping
    /// their packets. Every level flushes neighbours the same way; a heavy
    /// flush with a new broadcast MGID also moves the link to that MGID's
    /// partition, so requests go to the new broadcast group.
    pub fn flush(&mut self, level: FlushLevel, now: Duration) -> Vec<Action<T>> {
        if let FlushLevel::Heavy(Some(mgid)) = level {
            if let Some(decoded) = decode_mgid(&mgid) {
                self.link.pkey = decoded.pkey;
                self.link.scope = decoded.scope;
            }
        }
        let mut actions = Vec::new();
        let ips: Vec<IpAddr> = self.entries.keys().copied().collect();
        for ip in ips {
            let restart = matches!(
                self.entries.get(&ip).map(|e| e.state),
                Some(NeighState::Incomplete)
            );
            if restart {
                if let Some(e) = self.entries.get_mut(&ip) {
                    e.attempts = 0;
                }
                self.solicit(ip, now, &mut actions);
            } else {
                self.remove(ip, DropReason::Failed, &mut actions);
                self.stats.flushed += 1;
            }
        }
        actions
    }

    /// The lcore found no entry for `ip` and handed over `packet`.
    pub fn on_tx_miss(&mut self, ip: IpAddr, packet: T, now: Duration) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        if !self.up {
            self.stats.drop_down += 1;
            actions.push(Action::Dropped {
                ip,
                reason: DropReason::Down,
                packets: vec![packet],
            });
            return actions;
        }
        if !self.resolvable(ip) {
            self.stats.drop_unresolvable += 1;
            actions.push(Action::Dropped {
                ip,
                reason: DropReason::Unresolvable,
                packets: vec![packet],
            });
            return actions;
        }
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.cfg.max_entries {
            self.stats.drop_table_full += 1;
            actions.push(Action::Dropped {
                ip,
                reason: DropReason::TableFull,
                packets: vec![packet],
            });
            return actions;
        }
        let queue_len = self.cfg.queue_len;
        let entry = self
            .entries
            .entry(ip)
            .or_insert_with(|| Entry::incomplete(now));
        entry.last_used = now;
        match (entry.state, entry.hwaddr) {
            (NeighState::Reachable | NeighState::Stale, Some(hwaddr)) => {
                self.stats.released += 1;
                actions.push(Action::Resolved {
                    ip,
                    hwaddr,
                    packets: vec![packet],
                });
                return actions;
            }
            (NeighState::Failed, _) => {
                entry.state = NeighState::Incomplete;
                entry.hwaddr = None;
                entry.attempts = 0;
            }
            _ => {}
        }
        let start = entry.attempts == 0;
        if entry.queue.len() < queue_len {
            entry.queue.push_back(packet);
            self.stats.queued += 1;
        } else {
            self.stats.drop_queue_full += 1;
            actions.push(Action::Dropped {
                ip,
                reason: DropReason::QueueFull,
                packets: vec![packet],
            });
        }
        if start {
            self.solicit(ip, now, &mut actions);
        }
        actions
    }

    /// The datapath used the entry for `ip` (fed from its hit counters):
    /// keeps it from being collected, and re-confirms a stale one.
    pub fn touch(&mut self, ip: IpAddr, now: Duration) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        let Some(entry) = self.entries.get_mut(&ip) else {
            return actions;
        };
        entry.last_used = now;
        if entry.state == NeighState::Stale && now >= entry.deadline {
            entry.deadline = now.saturating_add(self.cfg.retry_base);
            if let Some(hwaddr) = entry.hwaddr {
                self.request(ip, Some(hwaddr), &mut actions);
            }
        }
        actions
    }

    /// Retransmissions, failures, ageing and garbage collection due by `now`.
    pub fn on_timer(&mut self, now: Duration) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        let ips: Vec<IpAddr> = self.entries.keys().copied().collect();
        for ip in ips {
            let Some(entry) = self.entries.get_mut(&ip) else {
                continue;
            };
            match entry.state {
                NeighState::Incomplete if now >= entry.deadline => {
                    if entry.attempts > self.cfg.retries {
                        self.fail(ip, now, &mut actions);
                    } else {
                        self.solicit(ip, now, &mut actions);
                    }
                }
                NeighState::Reachable
                    if now >= entry.confirmed.saturating_add(self.cfg.reachable_time) =>
                {
                    entry.state = NeighState::Stale;
                }
                _ => {}
            }
            let idle = self
                .entries
                .get(&ip)
                .filter(|e| e.state != NeighState::Incomplete)
                .is_some_and(|e| now >= e.last_used.saturating_add(self.cfg.gc_idle));
            if idle {
                self.remove(ip, DropReason::Failed, &mut actions);
                self.stats.gc_removed += 1;
            }
        }
        actions
    }

    /// When `on_timer` next has something to do.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.entries
            .values()
            .map(|e| match e.state {
                NeighState::Incomplete => e.deadline,
                NeighState::Reachable => e
                    .confirmed
                    .saturating_add(self.cfg.reachable_time)
                    .min(e.last_used.saturating_add(self.cfg.gc_idle)),
                NeighState::Stale | NeighState::Failed => {
                    e.last_used.saturating_add(self.cfg.gc_idle)
                }
            })
            .min()
    }

    /// Unicast neighbours only: not ours, not multicast, not unspecified.
    fn resolvable(&self, ip: IpAddr) -> bool {
        let special = match ip {
            IpAddr::V4(v4) => {
                v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.is_loopback()
            }
            IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast() || v6.is_loopback(),
        };
        !special && !self.is_own(ip)
    }

    /// Sends the next request of a resolution and schedules the one after.
    fn solicit(&mut self, ip: IpAddr, now: Duration, actions: &mut Vec<Action<T>>) {
        let Some(entry) = self.entries.get_mut(&ip) else {
            return;
        };
        entry.attempts = entry.attempts.saturating_add(1);
        // 1, 2, 4, … times the base after the 1st, 2nd, 3rd … request.
        let shift = entry.attempts.saturating_sub(1).min(16);
        let wait = self.cfg.retry_base.saturating_mul(1u32 << shift);
        entry.deadline = now.saturating_add(wait);
        self.request(ip, None, actions);
    }

    /// Resolution gave up: the entry fails and its packets are dropped.
    fn fail(&mut self, ip: IpAddr, now: Duration, actions: &mut Vec<Action<T>>) {
        let Some(entry) = self.entries.get_mut(&ip) else {
            return;
        };
        entry.state = NeighState::Failed;
        entry.hwaddr = None;
        entry.attempts = 0;
        // Collected `gc_idle` after failing unless a packet retries it.
        entry.last_used = now;
        self.stats.failed += 1;
        let packets: Vec<T> = entry.queue.drain(..).collect();
        if !packets.is_empty() {
            self.stats.drop_failed += packets.len() as u64;
            actions.push(Action::Dropped {
                ip,
                reason: DropReason::Failed,
                packets,
            });
        }
    }

    /// Removes an entry: `Forget` if it had an address, its packets dropped
    /// for `reason`.
    pub(super) fn remove(&mut self, ip: IpAddr, reason: DropReason, actions: &mut Vec<Action<T>>) {
        let Some(entry) = self.entries.remove(&ip) else {
            return;
        };
        if let Some(hwaddr) = entry.hwaddr {
            self.generation += 1;
            actions.push(Action::Forget { ip, hwaddr });
        }
        if !entry.queue.is_empty() {
            let n = entry.queue.len() as u64;
            match reason {
                DropReason::Down => self.stats.drop_down += n,
                DropReason::QueueFull => self.stats.drop_queue_full += n,
                DropReason::TableFull => self.stats.drop_table_full += n,
                DropReason::Unresolvable => self.stats.drop_unresolvable += n,
                DropReason::Failed | DropReason::NoPath => self.stats.drop_failed += n,
            }
            actions.push(Action::Dropped {
                ip,
                reason,
                packets: entry.queue.into_iter().collect(),
            });
        }
    }
}
