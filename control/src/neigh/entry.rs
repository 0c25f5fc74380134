//! One neighbour: its state, its address once known, and the packets that
//! wait for it.

use ipoib_dataplane::wire::HwAddr;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

/// Neighbour states, as the kernel's NUD states reduced to what IPoIB needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighState {
    /// Resolution in progress: packets queue, requests are retransmitted.
    Incomplete,
    /// Address known and recently confirmed.
    Reachable,
    /// Address known but not confirmed for `reachable_time`: still used,
    /// re-confirmed with a unicast request when next touched.
    Stale,
    /// Resolution gave up; the next packet starts it again.
    Failed,
}

/// A read-only view of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighInfo {
    pub ip: IpAddr,
    pub state: NeighState,
    pub hwaddr: Option<HwAddr>,
    pub queued: usize,
    pub last_used: Duration,
}

pub(super) struct Entry<T> {
    pub(super) state: NeighState,
    /// Some exactly when the state is Reachable or Stale.
    pub(super) hwaddr: Option<HwAddr>,
    pub(super) queue: VecDeque<T>,
    /// Requests sent in the current resolution.
    pub(super) attempts: u32,
    /// Incomplete: when to retransmit or fail. Stale: earliest next probe.
    pub(super) deadline: Duration,
    pub(super) confirmed: Duration,
    pub(super) last_used: Duration,
}

impl<T> Entry<T> {
    pub(super) fn incomplete(now: Duration) -> Self {
        Entry {
            state: NeighState::Incomplete,
            hwaddr: None,
            queue: VecDeque::new(),
            attempts: 0,
            deadline: now,
            confirmed: now,
            last_used: now,
        }
    }

    pub(super) fn resolved(hwaddr: HwAddr, confirmed: bool, now: Duration) -> Self {
        Entry {
            state: if confirmed {
                NeighState::Reachable
            } else {
                NeighState::Stale
            },
            hwaddr: Some(hwaddr),
            queue: VecDeque::new(),
            attempts: 0,
            deadline: now,
            confirmed: now,
            last_used: now,
        }
    }

    pub(super) fn info(&self, ip: IpAddr) -> NeighInfo {
        NeighInfo {
            ip,
            state: self.state,
            hwaddr: self.hwaddr,
            queued: self.queue.len(),
            last_used: self.last_used,
        }
    }
}
