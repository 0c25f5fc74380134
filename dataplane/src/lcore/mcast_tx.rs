//! The lcore's side of multicast sends. A group found `Joined` in the
//! published table is sent to at once; a group not in it gets its packets
//! queued here (64 per group, then counted drops) and one send-only join
//! request pushed to the control plane. The lcore never joins inline and
//! never takes the control mutex.

use crate::mem::{LcoreCache, Mbuf};
use crate::stats::{BurstCounts, DpDrop};
use crate::tables::{
    JoinRequest, JoinRequestQueue, McastRoute, McastState, McastTable, Published, SnapshotReader,
};
use crate::wire::Gid;
use std::collections::VecDeque;
use std::sync::Arc;

/// Packets a group may hold while its join is in flight (as the kernel's
/// IPOIB_MAX_MCAST_QUEUE).
pub const PENDING_PER_GROUP: usize = 64;

struct GroupTx<A> {
    mgid: Gid,
    /// Route and handle once the group is joined.
    joined: Option<(A, McastRoute)>,
    pending: VecDeque<Mbuf>,
    /// A join request is waiting in the queue or in flight.
    requested: bool,
    failed: bool,
}

pub struct McastTx<A> {
    ifindex: u16,
    table: SnapshotReader<McastTable>,
    generation: u64,
    groups: Vec<GroupTx<A>>,
    /// Index of the group last classified: flows repeat it.
    last: usize,
    requests: Arc<JoinRequestQueue>,
}

impl<A: Copy> McastTx<A> {
    pub fn new(
        ifindex: u16,
        table: Published<McastTable>,
        requests: Arc<JoinRequestQueue>,
    ) -> Self {
        McastTx {
            ifindex,
            table: arc_swap::Cache::new(table),
            generation: u64::MAX,
            groups: Vec::new(),
            last: 0,
            requests,
        }
    }

    /// Called once per burst: picks up a newly published table. Returns true
    /// when some group has packets ready to go out (see `drain_ready`).
    /// Without groups there is nothing to pick up (a group's first packet
    /// reads the table itself), and unicast bursts skip the table load.
    #[inline(always)]
    pub fn refresh(
        &mut self,
        make_ah: impl FnMut(&McastRoute) -> Option<A>,
        cache: &mut LcoreCache,
        counts: &mut BurstCounts,
    ) -> bool {
        !self.groups.is_empty() && self.refresh_groups(make_ah, cache, counts)
    }

    #[inline(never)]
    fn refresh_groups(
        &mut self,
        mut make_ah: impl FnMut(&McastRoute) -> Option<A>,
        cache: &mut LcoreCache,
        counts: &mut BurstCounts,
    ) -> bool {
        let table = self.table.load();
        if table.generation == self.generation {
            return false;
        }
        self.generation = table.generation;
        let mut ready = false;
        for g in &mut self.groups {
            match table.lookup(&g.mgid) {
                Some(McastState::Joined(route)) => {
                    if g.joined.map(|(_, r)| r) != Some(*route) {
                        g.joined = make_ah(route).map(|ah| (ah, *route));
                    }
                    g.requested = false;
                    g.failed = false;
                    ready |= !g.pending.is_empty();
                }
                Some(McastState::Failed) => {
                    g.joined = None;
                    g.requested = false;
                    g.failed = true;
                    for m in g.pending.drain(..) {
                        counts.drop(DpDrop::TxMcastJoinFailed);
                        cache.free(m);
                    }
                }
                None => {
                    // Left or garbage-collected: ask again on the next packet.
                    g.joined = None;
                    g.failed = false;
                }
            }
        }
        ready
    }

    /// Returns the packet with its handle and route when the group is joined;
    /// otherwise queues or drops (and counts) it and returns `None`.
    #[inline]
    pub fn classify(
        &mut self,
        mgid: Gid,
        m: Mbuf,
        cache: &mut LcoreCache,
        counts: &mut BurstCounts,
    ) -> Option<(A, McastRoute, Mbuf)> {
        let i = match self.groups.iter().position(|g| g.mgid == mgid) {
            Some(i) => i,
            None => {
                // First packet for this group here. If the control plane has
                // already joined it (a full-member group), queue the packet and
                // make the next `refresh` pick the route up; no request needed.
                let known = self.table.load().lookup(&mgid).copied();
                let (requested, failed) = match known {
                    Some(McastState::Joined(_)) => {
                        self.generation = u64::MAX;
                        (true, false)
                    }
                    Some(McastState::Failed) => (false, true),
                    None => (false, false),
                };
                self.groups.push(GroupTx {
                    mgid,
                    joined: None,
                    pending: VecDeque::with_capacity(PENDING_PER_GROUP),
                    requested,
                    failed,
                });
                self.groups.len() - 1
            }
        };
        self.last = i;
        let g = &mut self.groups[i];
        if let Some((ah, route)) = g.joined {
            return Some((ah, route, m));
        }
        if g.failed {
            counts.drop(DpDrop::TxMcastJoinFailed);
            cache.free(m);
            return None;
        }
        if g.pending.len() == PENDING_PER_GROUP {
            counts.drop(DpDrop::TxMcastQueueFull);
            cache.free(m);
        } else {
            g.pending.push_back(m);
        }
        if !g.requested {
            if self.requests.push(JoinRequest {
                mgid,
                ifindex: self.ifindex,
            }) {
                g.requested = true;
            } else {
                counts.drop(DpDrop::TxJoinRequestOverflow);
            }
        }
        None
    }

    /// As `classify`, for the send path: the handle and Q_Key only, and the
    /// group classified last is tried first (no search, no route copy).
    #[inline(always)]
    pub(crate) fn classify_send(
        &mut self,
        mgid: Gid,
        m: Mbuf,
        cache: &mut LcoreCache,
        counts: &mut BurstCounts,
    ) -> Option<(A, u32, Mbuf)> {
        if let Some(GroupTx {
            mgid: g,
            joined: Some((ah, route)),
            ..
        }) = self.groups.get(self.last)
        {
            if *g == mgid {
                return Some((*ah, route.qkey, m));
            }
        }
        self.classify_other(mgid, m, cache, counts)
    }

    /// The handle and Q_Key of `mgid` when it is the group classified last
    /// and joined: what `classify_send` would return for it, found once per
    /// run of packets instead of per packet.
    #[inline]
    pub(crate) fn joined_last(&self, mgid: Gid) -> Option<(A, u32)> {
        match self.groups.get(self.last) {
            Some(GroupTx {
                mgid: g,
                joined: Some((ah, route)),
                ..
            }) if *g == mgid => Some((*ah, route.qkey)),
            _ => None,
        }
    }

    /// `classify_send` for a group other than the last one.
    #[inline(never)]
    fn classify_other(
        &mut self,
        mgid: Gid,
        m: Mbuf,
        cache: &mut LcoreCache,
        counts: &mut BurstCounts,
    ) -> Option<(A, u32, Mbuf)> {
        self.classify(mgid, m, cache, counts)
            .map(|(ah, route, m)| (ah, route.qkey, m))
    }

    /// Moves up to `max` pending packets of joined groups to `out`.
    pub fn drain_ready(&mut self, max: usize, mut out: impl FnMut(A, McastRoute, Mbuf)) -> usize {
        let mut n = 0;
        for g in &mut self.groups {
            let Some((ah, route)) = g.joined else {
                continue;
            };
            while n < max {
                match g.pending.pop_front() {
                    Some(m) => {
                        out(ah, route, m);
                        n += 1;
                    }
                    None => break,
                }
            }
        }
        n
    }

    /// Packets still waiting for joins.
    pub fn pending(&self) -> usize {
        self.groups.iter().map(|g| g.pending.len()).sum()
    }

    /// Frees every pending packet (interface stop).
    pub fn clear(&mut self, cache: &mut LcoreCache) {
        for g in &mut self.groups {
            for m in g.pending.drain(..) {
                cache.free(m);
            }
        }
    }
}
