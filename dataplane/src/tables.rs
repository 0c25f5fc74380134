//! The two channels between the datapath and the control plane.
//!
//! Out: lcores push send-only join requests (and later resolution requests)
//! into bounded lock-free queues; a full queue is a counted drop, never a wait.
//! In: the control thread publishes immutable snapshots of the multicast and
//! neighbour tables; lcores load the current snapshot once per burst and never
//! lock.

use crate::wire::Gid;
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Asks the join task for a send-only membership of `mgid` on interface `ifindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JoinRequest {
    pub mgid: Gid,
    pub ifindex: u16,
}

/// Bounded MPMC queue from lcores to the join task. `push` never blocks.
pub struct RequestQueue<T> {
    q: ArrayQueue<T>,
    overflow: AtomicU64,
}

impl<T> RequestQueue<T> {
    pub fn new(capacity: usize) -> Self {
        RequestQueue {
            q: ArrayQueue::new(capacity.max(1)),
            overflow: AtomicU64::new(0),
        }
    }
    /// Datapath side: returns false (and counts) when the queue is full.
    pub fn push(&self, req: T) -> bool {
        match self.q.push(req) {
            Ok(()) => true,
            Err(_) => {
                self.overflow.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
    /// Control side.
    pub fn pop(&self) -> Option<T> {
        self.q.pop()
    }
    pub fn len(&self) -> usize {
        self.q.len()
    }
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
    pub fn overflows(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }
}

pub type JoinRequestQueue = RequestQueue<JoinRequest>;

/// What a joined group looks like to the datapath: enough to build a UD send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McastRoute {
    pub mgid: Gid,
    pub mlid: u16,
    pub qkey: u32,
    pub sl: u8,
    /// Datagram MTU of the group (IPoIB MTU + 4).
    pub mtu: u16,
}

/// State of one group as published to the lcores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McastState {
    /// Joined: packets go out with this route.
    Joined(McastRoute),
    /// The join failed for good (send-only after its retry): lcores drop the
    /// packets they queued for it and count them.
    Failed,
}

/// Immutable multicast table for one interface, sorted by MGID for binary search.
#[derive(Debug, Clone, Default)]
pub struct McastTable {
    /// Bumped on every publish so lcores notice changes cheaply.
    pub generation: u64,
    entries: Vec<(Gid, McastState)>,
}

impl McastTable {
    pub fn new(generation: u64, mut entries: Vec<(Gid, McastState)>) -> Self {
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by(|a, b| a.0 == b.0);
        McastTable {
            generation,
            entries,
        }
    }
    pub fn lookup(&self, mgid: &Gid) -> Option<&McastState> {
        self.entries
            .binary_search_by(|e| e.0.cmp(mgid))
            .ok()
            .map(|i| &self.entries[i].1)
    }
    pub fn iter(&self) -> impl Iterator<Item = &(Gid, McastState)> {
        self.entries.iter()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A pointer the control thread swaps and lcores read without locking.
pub type Published<T> = Arc<ArcSwap<T>>;

/// An lcore's reader of a published value: `load` costs one pointer compare
/// while the value is unchanged.
pub type SnapshotReader<T> = arc_swap::Cache<Published<T>, Arc<T>>;

pub fn published<T>(initial: T) -> Published<T> {
    Arc::new(ArcSwap::from_pointee(initial))
}
