//! The multicast service of the `verbs` provider: joins through rdma_cm.
//!
//! Each membership is its own rdma_cm id bound to the interface's address,
//! so a leave is exactly `rdma_leave_multicast` on the id that joined and
//! rdma_cm's books balance with ours. Full members are
//! `rdma_join_multicast`; send-only members are `rdma_join_multicast_ex`
//! with `RDMA_MC_JOIN_FLAG_SENDONLY_FULLMEMBER` (no IGMP report on RoCE).
//! Which group an IPoIB MGID is, and what its record holds, depends on the
//! port's link layer ([`link`]).
//!
//! Answers come asynchronously on rdma_cm's event channel. Nothing reads
//! it on its own thread: the control thread calls [`RdmaCmService::progress`]
//! when the channel's fd is readable (and a flush waiting for a join calls
//! it through [`MulticastService::progress`]). Each answer's callback runs
//! outside the service's lock, since the callback takes the engine's mutex.

mod attach;
mod backend;
pub mod link;
mod port_events;
pub mod route;
#[cfg(test)]
mod tests;

pub use attach::VerbsAttach;
pub use backend::{CmBackend, RdmaCmBackend};
pub use link::{LinkLayer, PathSource};
pub use port_events::{flush_level, PortEvents};
pub use route::{RdmaCmRoutes, RouteBackend, SaPathService};

use crate::igmp::IgmpDefaults;
use crate::mcast::{
    JoinCallback, JoinError, JoinParams, JoinState, McastRecord, Membership, MulticastService,
};
use rdma_sys::cm::{CmAddr, CmError, CmEvent, CmEventKind};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};

/// Counters of the service; `joins + sendonly_joins == leaves` once every
/// membership has been left, and `ids_created == ids_destroyed` once the
/// service is shut down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RdmaCmStats {
    pub joins: u64,
    pub sendonly_joins: u64,
    pub failed: u64,
    pub leaves: u64,
    pub cancels: u64,
    /// Memberships rdma_cm reported broken after joining.
    pub errors: u64,
    /// Events for no membership we hold (answers after a leave or a cancel).
    pub late_events: u64,
    pub ids_created: u64,
    pub ids_destroyed: u64,
}

impl RdmaCmStats {
    /// Memberships joined and not left.
    pub fn outstanding(&self) -> u64 {
        (self.joins + self.sendonly_joins).saturating_sub(self.leaves)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandleState {
    Pending,
    Joined,
    Cancelled,
}

struct Handle<I> {
    group: CmAddr,
    full: bool,
    params: JoinParams,
    state: HandleState,
    id: I,
    id_addr: usize,
    callback: Option<JoinCallback>,
}

struct State<I> {
    next: u64,
    handles: HashMap<u64, Handle<I>>,
    stats: RdmaCmStats,
}

/// A `MulticastService` over rdma_cm, for one interface's address.
pub struct RdmaCmService<B: CmBackend = RdmaCmBackend> {
    backend: B,
    link: LinkLayer,
    local: CmAddr,
    /// P_Key an InfiniBand group address carries.
    pkey: u16,
    defaults: IgmpDefaults,
    state: Mutex<State<B::Id>>,
    /// Held while events are read: one reader at a time keeps each id's
    /// answers in order.
    reading: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An answer to run once the service's lock is released.
type Answer = (JoinCallback, Result<McastRecord, JoinError>);

impl RdmaCmService<RdmaCmBackend> {
    /// A service joining from `local`: an address of the RDMA device's
    /// netdev on RoCE, the port's GID on InfiniBand.
    pub fn new(local: CmAddr, link: LinkLayer, defaults: IgmpDefaults) -> Result<Self, CmError> {
        Ok(Self::with_backend(
            RdmaCmBackend::new(local)?,
            local,
            link,
            defaults,
        ))
    }
}

impl<B: CmBackend> RdmaCmService<B> {
    pub fn with_backend(
        backend: B,
        local: CmAddr,
        link: LinkLayer,
        defaults: IgmpDefaults,
    ) -> Self {
        RdmaCmService {
            backend,
            link,
            local,
            pkey: defaults.pkey,
            defaults,
            state: Mutex::new(State {
                next: 0,
                handles: HashMap::new(),
                stats: RdmaCmStats::default(),
            }),
            reading: Mutex::new(()),
        }
    }

    pub fn stats(&self) -> RdmaCmStats {
        lock(&self.state).stats
    }

    /// The address joins are made from.
    pub fn local(&self) -> CmAddr {
        self.local
    }

    pub fn link(&self) -> LinkLayer {
        self.link
    }

    /// Whether this interface can join `mgid` at all.
    pub fn can_join(&self, mgid: ipoib_dataplane::wire::Gid) -> bool {
        link::cm_group(self.link, self.local, mgid, self.pkey).is_some()
    }

    /// The event channel's descriptor, for the control thread's poll.
    pub fn fd(&self) -> Option<RawFd> {
        self.backend.fd()
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Groups with a full membership, and with a send-only one.
    pub fn joined_groups(&self) -> (Vec<CmAddr>, Vec<CmAddr>) {
        let st = lock(&self.state);
        let mut full = Vec::new();
        let mut sendonly = Vec::new();
        for h in st.handles.values() {
            if h.state == HandleState::Joined {
                if h.full {
                    full.push(h.group);
                } else {
                    sendonly.push(h.group);
                }
            }
        }
        full.dedup();
        sendonly.dedup();
        (full, sendonly)
    }

    /// Reads every pending event and answers the joins they concern;
    /// returns how many events were read. Never blocks; another thread
    /// already reading makes this a no-op.
    pub fn progress(&self) -> usize {
        let Ok(_reading) = self.reading.try_lock() else {
            return 0;
        };
        let mut n = 0;
        loop {
            match self.backend.next_event() {
                Ok(Some(ev)) => {
                    n += 1;
                    self.on_event(ev);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "rdma_cm event channel");
                    break;
                }
            }
        }
        n
    }

    /// Joins still unanswered are answered `Shutdown` and their ids
    /// destroyed; joined memberships stay until left.
    pub fn shutdown(&self) {
        let callbacks: Vec<JoinCallback> = {
            let mut st = lock(&self.state);
            let pending: Vec<u64> = st
                .handles
                .iter()
                .filter(|(_, h)| h.state != HandleState::Joined)
                .map(|(k, _)| *k)
                .collect();
            let mut cbs = Vec::new();
            for k in pending {
                if let Some(h) = st.handles.remove(&k) {
                    st.stats.ids_destroyed += 1;
                    cbs.extend(h.callback);
                }
            }
            cbs
        };
        for cb in callbacks {
            cb(Err(JoinError::Shutdown));
        }
    }

    fn on_event(&self, ev: CmEvent) {
        let answer = {
            let mut st = lock(&self.state);
            match ev.kind {
                CmEventKind::MulticastJoin | CmEventKind::MulticastError => {
                    let ok = ev.kind == CmEventKind::MulticastJoin && ev.status == 0;
                    self.on_join_event(&mut st, ev.context, ok, &ev)
                }
                CmEventKind::AddrError | CmEventKind::RouteError => {
                    // Not an answer to a join, but it ends one on that id.
                    let key = st
                        .handles
                        .iter()
                        .find(|(_, h)| h.id_addr == ev.id)
                        .map(|(k, _)| *k);
                    tracing::warn!(kind = ?ev.kind, status = ev.status, "rdma_cm address error");
                    match key {
                        Some(k) => self.on_join_event(&mut st, k, false, &ev),
                        None => {
                            st.stats.late_events += 1;
                            None
                        }
                    }
                }
                CmEventKind::AddrChange | CmEventKind::DeviceRemoval => {
                    tracing::warn!(kind = ?ev.kind, "rdma_cm: the device or its address changed");
                    None
                }
                CmEventKind::AddrResolved | CmEventKind::RouteResolved | CmEventKind::Other(_) => {
                    tracing::debug!(kind = ?ev.kind, "rdma_cm: event ignored");
                    None
                }
            }
        };
        // Outside the service's lock: the callback takes the engine's mutex.
        if let Some((cb, result)) = answer {
            cb(result);
        }
    }

    fn on_join_event(
        &self,
        st: &mut State<B::Id>,
        key: u64,
        ok: bool,
        ev: &CmEvent,
    ) -> Option<Answer> {
        let Some(state) = st.handles.get(&key).map(|h| h.state) else {
            // Left, cancelled and answered, or never ours.
            st.stats.late_events += 1;
            return None;
        };
        match (state, ok) {
            (HandleState::Pending, true) => {
                let h = st.handles.get(&key)?;
                let Some(rec) =
                    link::join_record(self.link, h.group, &h.params, &self.defaults, ev)
                else {
                    tracing::warn!(group = %h.group, mlid = ev.mlid, "rdma_cm join answered without a multicast LID");
                    return self.fail(st, key, JoinError::Failed);
                };
                let h = st.handles.get_mut(&key)?;
                h.state = HandleState::Joined;
                let full = h.full;
                let cb = h.callback.take()?;
                if full {
                    st.stats.joins += 1;
                } else {
                    st.stats.sendonly_joins += 1;
                }
                Some((cb, Ok(rec)))
            }
            (HandleState::Pending, false) => {
                tracing::warn!(status = ev.status, kind = ?ev.kind, "rdma_cm join failed");
                let err = if ev.status == -libc::ENETRESET {
                    JoinError::Reset
                } else {
                    JoinError::Failed
                };
                self.fail(st, key, err)
            }
            (HandleState::Cancelled, joined) => {
                // Abandoned by the engine: a join that made it is left at once.
                if let Some(h) = st.handles.remove(&key) {
                    if joined {
                        let _ = self.backend.leave(&h.id, h.group);
                    }
                    st.stats.ids_destroyed += 1;
                }
                None
            }
            (HandleState::Joined, false) => {
                // The membership stays ours until the engine leaves it (a
                // port event flush rejoins); rdma_cm's leave then balances.
                st.stats.errors += 1;
                tracing::warn!(status = ev.status, "rdma_cm: a joined membership broke");
                None
            }
            (HandleState::Joined, true) => {
                st.stats.late_events += 1;
                None
            }
        }
    }

    /// A pending join that failed: its id is destroyed and its callback
    /// answers `err`.
    fn fail(&self, st: &mut State<B::Id>, key: u64, err: JoinError) -> Option<Answer> {
        let h = st.handles.remove(&key)?;
        st.stats.failed += 1;
        st.stats.ids_destroyed += 1;
        Some((h.callback?, Err(err)))
    }
}

impl<B: CmBackend> MulticastService for RdmaCmService<B> {
    fn join(&self, params: JoinParams, callback: JoinCallback) -> Result<Membership, JoinError> {
        let group = link::cm_group(self.link, self.local, params.mgid, self.pkey)
            .ok_or(JoinError::InvalidArgument)?;
        let full = params.join_state == JoinState::Full;
        // Held until the handle is in the table: an answer read by another
        // thread finds the join.
        let mut st = lock(&self.state);
        let id = self.backend.create_id().map_err(|e| {
            tracing::warn!(error = %e, "rdma_cm id");
            JoinError::Failed
        })?;
        st.stats.ids_created += 1;
        st.next += 1;
        let key = st.next;
        if let Err(e) = self.backend.join(&id, group, !full, key) {
            tracing::warn!(%group, error = %e, "rdma_cm join not sent");
            st.stats.failed += 1;
            st.stats.ids_destroyed += 1;
            return Err(JoinError::Failed);
        }
        let id_addr = self.backend.id_addr(&id);
        st.handles.insert(
            key,
            Handle {
                group,
                full,
                params,
                state: HandleState::Pending,
                id,
                id_addr,
                callback: Some(callback),
            },
        );
        Ok(Membership(key))
    }

    fn leave(&self, membership: Membership) {
        let mut st = lock(&self.state);
        match st.handles.get(&membership.0).map(|h| h.state) {
            Some(HandleState::Joined) => {
                if let Some(h) = st.handles.remove(&membership.0) {
                    if let Err(e) = self.backend.leave(&h.id, h.group) {
                        tracing::warn!(group = %h.group, error = %e, "rdma_cm leave");
                    }
                    st.stats.leaves += 1;
                    st.stats.ids_destroyed += 1;
                }
            }
            _ => tracing::warn!(%membership, "leave of a membership that is not joined"),
        }
    }

    fn cancel(&self, membership: Membership) {
        let mut st = lock(&self.state);
        st.stats.cancels += 1;
        match st.handles.get(&membership.0).map(|h| h.state) {
            Some(HandleState::Pending) => {
                // The id stays until its answer comes (then it is left if it
                // joined) or the service shuts down.
                if let Some(h) = st.handles.get_mut(&membership.0) {
                    h.state = HandleState::Cancelled;
                    h.callback = None;
                }
            }
            Some(HandleState::Joined) => {
                if let Some(h) = st.handles.remove(&membership.0) {
                    let _ = self.backend.leave(&h.id, h.group);
                    st.stats.leaves += 1;
                    st.stats.ids_destroyed += 1;
                }
            }
            _ => {}
        }
    }

    fn progress(&self) -> usize {
        RdmaCmService::progress(self)
    }

    fn driven(&self) -> bool {
        true
    }
}
