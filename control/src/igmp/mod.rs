//! The multicast service of the `rocev2` provider: joins are IP multicast
//! memberships on the QPs' multicast sockets, so the kernel speaks IGMP
//! (MLD for IPv6) for us.
//!
//! - A full-member join is `IP_ADD_MEMBERSHIP` on every QP's socket (the
//!   kernel sends a membership report); its leave drops it again.
//! - A send-only join touches no socket and sends no IGMP: sending to a
//!   group needs no membership (as rdma_cm's send-only full member on RoCE).
//!
//! Like an SA, the service answers asynchronously: a worker thread performs
//! the join and calls the callback, never the thread that called `join`
//! (the callback takes the engine's mutex, which that thread holds).
//! A join is decided under the service's lock and the callback runs after
//! it is released, so a `leave` or `cancel` from inside the callback cannot
//! deadlock.

use crate::mcast::{
    JoinCallback, JoinError, JoinParams, JoinState, McastAttach, McastRecord, Membership,
    MulticastService,
};
use ipoib_dataplane::provider::rocev2::addr::{self, V6GroupRange};
use ipoib_dataplane::provider::rocev2::McastSocket;
use ipoib_dataplane::provider::MLID_BASE;
use ipoib_dataplane::wire::Gid;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// What a group's record says when the broadcast group's template is not
/// there to copy (the broadcast join itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgmpDefaults {
    pub qkey: u32,
    /// IB link MTU of the group (IPoIB MTU + 4).
    pub mtu: u16,
    pub pkey: u16,
    pub sl: u8,
    pub rate: u8,
    /// On an IPv4 underlay, the range IPv6 groups map into (as the QPs send).
    pub v6_groups: Option<V6GroupRange>,
}

impl Default for IgmpDefaults {
    /// The IPoIB Q_Key, a 2048-byte MTU, the default P_Key, 10 Gb/s.
    fn default() -> Self {
        IgmpDefaults {
            qkey: 0x0B1B,
            mtu: 2048,
            pkey: 0xFFFF,
            sl: 0,
            rate: 3,
            v6_groups: None,
        }
    }
}

/// Counters of the service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgmpStats {
    pub joins: u64,
    pub sendonly_joins: u64,
    pub failed: u64,
    pub leaves: u64,
    pub cancels: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandleState {
    Pending,
    Joined,
    Left,
    Cancelled,
}

#[derive(Debug)]
struct Handle {
    group: IpAddr,
    full: bool,
    state: HandleState,
}

#[derive(Default)]
struct State {
    next: u64,
    handles: HashMap<u64, Handle>,
    /// Full memberships per group: the socket joins on the first, leaves on the last.
    full_refs: HashMap<IpAddr, usize>,
    stats: IgmpStats,
}

struct Inner {
    sockets: Vec<McastSocket>,
    defaults: IgmpDefaults,
    state: Mutex<State>,
}

struct Job {
    handle: u64,
    params: JoinParams,
    callback: JoinCallback,
}

/// A `MulticastService` over the rocev2 QPs' multicast sockets.
pub struct IgmpService {
    inner: Arc<Inner>,
    jobs: Mutex<Option<Sender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl IgmpService {
    /// A service that joins on every socket in `sockets` (one per lcore QP).
    pub fn new(sockets: Vec<McastSocket>, defaults: IgmpDefaults) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            sockets,
            defaults,
            state: Mutex::new(State::default()),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let worker_inner = Arc::clone(&inner);
        let worker = std::thread::Builder::new()
            .name("igmp-join".into())
            .spawn(move || {
                for job in rx {
                    let result = worker_inner.answer(job.handle, &job.params);
                    // Outside the service's lock: the callback takes the engine's mutex.
                    if let Some(result) = result {
                        (job.callback)(result);
                    }
                }
            })?;
        Ok(IgmpService {
            inner,
            jobs: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
        })
    }

    pub fn stats(&self) -> IgmpStats {
        lock(&self.inner.state).stats
    }

    /// The IP group `mgid` is joined as on these sockets' underlay.
    pub fn group_of(&self, mgid: Gid) -> IpAddr {
        match self.inner.sockets.first() {
            Some(s) => addr::underlay_ip(mgid, s.local(), self.inner.defaults.v6_groups),
            None => addr::ip_of(mgid),
        }
    }

    /// Whether a host at `local` can join `mgid`: its IP group must be of
    /// `local`'s family (IPv6 groups on an IPv4 underlay need a range).
    pub fn can_join(&self, mgid: Gid, local: IpAddr) -> bool {
        addr::underlay_ip(mgid, local, self.inner.defaults.v6_groups).is_ipv4() == local.is_ipv4()
    }

    /// Groups with at least one full membership through this service.
    pub fn joined_groups(&self) -> Vec<IpAddr> {
        let st = lock(&self.inner.state);
        let mut v: Vec<IpAddr> = st.full_refs.keys().copied().collect();
        v.sort();
        v
    }

    /// Stops the worker; joins not yet answered are answered `Shutdown`.
    pub fn shutdown(&self) {
        drop(lock(&self.jobs).take());
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

impl Drop for IgmpService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    /// Decides a pending join; `None` when it was cancelled meanwhile.
    fn answer(&self, handle: u64, params: &JoinParams) -> Option<Result<McastRecord, JoinError>> {
        let mut st = lock(&self.state);
        let h = st.handles.get(&handle)?;
        if h.state != HandleState::Pending {
            // Cancelled while queued: forget it, no callback.
            st.handles.remove(&handle);
            return None;
        }
        let (group, full) = (h.group, h.full);
        let joined = if full {
            self.add_full(&mut st, group)
        } else {
            Ok(())
        };
        let h = st.handles.get_mut(&handle)?;
        match joined {
            Ok(()) => {
                h.state = HandleState::Joined;
                if full {
                    st.stats.joins += 1;
                } else {
                    st.stats.sendonly_joins += 1;
                }
                Some(Ok(self.record(params, group)))
            }
            Err(e) => {
                // A failed join is never left: nothing to remember.
                st.handles.remove(&handle);
                st.stats.failed += 1;
                tracing::warn!(%group, error = %e, "multicast membership failed");
                Some(Err(JoinError::Failed))
            }
        }
    }

    /// The group's record: the broadcast group's template when there is one.
    fn record(&self, params: &JoinParams, group: IpAddr) -> McastRecord {
        let d = self.defaults;
        let (qkey, mtu, sl, rate, pkey) = match params.template {
            Some(t) => (t.qkey, t.mtu, t.sl, t.rate, t.pkey),
            None => (d.qkey, d.mtu, d.sl, d.rate, d.pkey),
        };
        McastRecord {
            mgid: params.mgid,
            mlid: mlid_of(group),
            qkey,
            mtu,
            sl,
            rate,
            pkey,
        }
    }

    /// Joins `group` on every socket on its first full membership; on a
    /// failure the sockets already joined leave again.
    fn add_full(&self, st: &mut State, group: IpAddr) -> std::io::Result<()> {
        if let Some(n) = st.full_refs.get_mut(&group) {
            *n += 1;
            return Ok(());
        }
        for (i, s) in self.sockets.iter().enumerate() {
            if let Err(e) = s.join(group) {
                for s in &self.sockets[..i] {
                    let _ = s.leave(group);
                }
                return Err(e);
            }
        }
        st.full_refs.insert(group, 1);
        Ok(())
    }

    fn release(&self, st: &mut State, handle: u64) {
        let Some(h) = st.handles.get_mut(&handle) else {
            return;
        };
        let (group, full) = (h.group, h.full);
        h.state = HandleState::Left;
        if !full {
            return;
        }
        let last = match st.full_refs.get_mut(&group) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if last {
            st.full_refs.remove(&group);
            for s in &self.sockets {
                if let Err(e) = s.leave(group) {
                    tracing::warn!(%group, error = %e, "multicast leave failed");
                }
            }
        }
    }
}

/// A stand-in MLID for a group (RoCE has none): stable, in the multicast range.
fn mlid_of(group: IpAddr) -> u16 {
    let low = match group {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => u128::from(v6) as u32,
    };
    MLID_BASE | (low as u16 & 0x3FFF)
}

impl MulticastService for IgmpService {
    fn join(&self, params: JoinParams, callback: JoinCallback) -> Result<Membership, JoinError> {
        let group = self.group_of(params.mgid);
        if !group.is_multicast() {
            return Err(JoinError::InvalidArgument);
        }
        let full = params.join_state == JoinState::Full;
        let handle = {
            let mut st = lock(&self.inner.state);
            st.next += 1;
            let handle = st.next;
            st.handles.insert(
                handle,
                Handle {
                    group,
                    full,
                    state: HandleState::Pending,
                },
            );
            handle
        };
        let jobs = lock(&self.jobs);
        let sent = jobs.as_ref().is_some_and(|tx| {
            tx.send(Job {
                handle,
                params,
                callback,
            })
            .is_ok()
        });
        if !sent {
            lock(&self.inner.state).handles.remove(&handle);
            return Err(JoinError::Shutdown);
        }
        Ok(Membership(handle))
    }

    fn leave(&self, membership: Membership) {
        let mut st = lock(&self.inner.state);
        let joined = st
            .handles
            .get(&membership.0)
            .is_some_and(|h| h.state == HandleState::Joined);
        if joined {
            st.stats.leaves += 1;
            self.inner.release(&mut st, membership.0);
        } else {
            tracing::warn!(%membership, "leave of a membership that is not joined");
        }
        st.handles.remove(&membership.0);
    }

    fn cancel(&self, membership: Membership) {
        let mut st = lock(&self.inner.state);
        st.stats.cancels += 1;
        let state = st.handles.get(&membership.0).map(|h| h.state);
        match state {
            Some(HandleState::Pending) => {
                if let Some(h) = st.handles.get_mut(&membership.0) {
                    h.state = HandleState::Cancelled;
                }
            }
            Some(HandleState::Joined) => {
                self.inner.release(&mut st, membership.0);
                st.handles.remove(&membership.0);
            }
            _ => {
                st.handles.remove(&membership.0);
            }
        }
    }
}

/// Attaching a QP to a group is the socket membership itself: nothing more to do.
#[derive(Debug, Default, Clone, Copy)]
pub struct SocketAttach;

impl McastAttach for SocketAttach {
    fn attach(&self, _mgid: Gid, _mlid: u16) -> bool {
        true
    }
    fn detach(&self, _mgid: Gid, _mlid: u16) {}
}

#[cfg(test)]
mod tests;
