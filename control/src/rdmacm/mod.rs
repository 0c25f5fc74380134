//! The multicast service of the `verbs` provider: joins through rdma_cm.
//!
//! Each membership is its own rdma_cm id (UDP port space) bound to the
//! interface's address, so a leave is exactly `rdma_leave_multicast` on the
//! id that joined and rdma_cm's books balance with ours. Full members are
//! `rdma_join_multicast`; send-only members are `rdma_join_multicast_ex`
//! with `RDMA_MC_JOIN_FLAG_SENDONLY_FULLMEMBER` (no IGMP report on RoCE).
//!
//! On RoCE the group of an IPoIB MGID is the IPv4 group the rocev2
//! provider maps it to (`ff12:401b:PKEY::a.b.c.d` → 224.0.0.0 | low 28
//! bits), and rdma_cm's MGID for it is `::ffff:a.b.c.d`: a verbs host and a
//! rocev2 host meet in the same groups. The IPoIB QP keeps its own Q_Key
//! (the broadcast group's record, 0x0B1B); rdma_cm's UD Q_Key is its own.
//!
//! As an SA answers, the answers come asynchronously: a reader thread
//! takes rdma_cm's events from the channel and calls each join's callback
//! outside the service's lock (the callback takes the engine's mutex, which
//! the thread that called `join` holds).

mod attach;
mod port_events;

pub use attach::VerbsAttach;
pub use port_events::{flush_level, PortEventWatcher};

use crate::igmp::IgmpDefaults;
use crate::mcast::{
    JoinCallback, JoinError, JoinParams, JoinState, McastRecord, Membership, MulticastService,
};
use ipoib_dataplane::provider::rocev2::addr;
use ipoib_dataplane::provider::MLID_BASE;
use rdma_sys::cm::{CmError, CmEvent, CmEventKind, CmId, EventChannel};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Counters of the service; `joins + sendonly_joins == leaves` once every
/// membership has been left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RdmaCmStats {
    pub joins: u64,
    pub sendonly_joins: u64,
    pub failed: u64,
    pub leaves: u64,
    pub cancels: u64,
    /// Memberships rdma_cm reported broken after joining.
    pub errors: u64,
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

struct Handle {
    group: IpAddr,
    full: bool,
    params: JoinParams,
    state: HandleState,
    id: CmId,
    callback: Option<JoinCallback>,
}

#[derive(Default)]
struct State {
    next: u64,
    handles: HashMap<u64, Handle>,
    stats: RdmaCmStats,
}

struct Inner {
    channel: Arc<EventChannel>,
    local: IpAddr,
    defaults: IgmpDefaults,
    state: Mutex<State>,
}

/// A `MulticastService` over rdma_cm, for one interface's address.
pub struct RdmaCmService {
    inner: Arc<Inner>,
    stop: Arc<AtomicBool>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RdmaCmService {
    /// A service joining from `local` (an address of the RDMA device's netdev).
    pub fn new(local: IpAddr, defaults: IgmpDefaults) -> Result<Self, CmError> {
        let channel = EventChannel::new()?;
        // Binding once up front reports a wrong address now, not at the first join.
        drop(CmId::bound(&channel, local)?);
        let inner = Arc::new(Inner {
            channel,
            local,
            defaults,
            state: Mutex::new(State::default()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let inner = inner.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("rdmacm-events".into())
                .spawn(move || inner.read_events(&stop))
                .map_err(|e| {
                    CmError::Verbs(rdma_sys::VerbsError::new(
                        "rdma_cm reader thread",
                        e.raw_os_error().unwrap_or(libc::EAGAIN),
                    ))
                })?
        };
        Ok(RdmaCmService {
            inner,
            stop,
            reader: Mutex::new(Some(reader)),
        })
    }

    pub fn stats(&self) -> RdmaCmStats {
        lock(&self.inner.state).stats
    }

    /// The address joins are made from.
    pub fn local(&self) -> IpAddr {
        self.inner.local
    }

    /// Groups with a full membership, and with a send-only one.
    pub fn joined_groups(&self) -> (Vec<IpAddr>, Vec<IpAddr>) {
        let st = lock(&self.inner.state);
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
        full.sort();
        full.dedup();
        sendonly.sort();
        sendonly.dedup();
        (full, sendonly)
    }

    /// Stops the reader; joins still unanswered are answered `Shutdown`,
    /// and their ids destroyed.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.reader).take() {
            let _ = t.join();
        }
        let callbacks: Vec<JoinCallback> = {
            let mut st = lock(&self.inner.state);
            let pending: Vec<u64> = st
                .handles
                .iter()
                .filter(|(_, h)| h.state != HandleState::Joined)
                .map(|(k, _)| *k)
                .collect();
            pending
                .into_iter()
                .filter_map(|k| st.handles.remove(&k).and_then(|h| h.callback))
                .collect()
        };
        for cb in callbacks {
            cb(Err(JoinError::Shutdown));
        }
    }
}

impl Drop for RdmaCmService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A stand-in MLID for a RoCE group: stable, in the multicast range.
fn mlid_of(group: IpAddr) -> u16 {
    let low = match group {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => u128::from(v6) as u32,
    };
    MLID_BASE | (low as u16 & 0x3FFF)
}

impl Inner {
    fn read_events(&self, stop: &AtomicBool) {
        let fd = self.channel.fd();
        while !stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd. The timeout bounds how long a stop waits.
            let rc = unsafe { libc::poll(&mut pfd, 1, 50) };
            if rc <= 0 {
                continue;
            }
            loop {
                match self.channel.next_event() {
                    Ok(Some(ev)) => self.on_event(ev),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "rdma_cm event channel");
                        std::thread::sleep(Duration::from_millis(50));
                        break;
                    }
                }
            }
        }
    }

    fn record(&self, h: &Handle, ev: &CmEvent) -> McastRecord {
        let d = self.defaults;
        let (qkey, mtu, sl, rate, pkey) = match h.params.template {
            Some(t) => (t.qkey, t.mtu, t.sl, t.rate, t.pkey),
            None => (d.qkey, d.mtu, d.sl, d.rate, d.pkey),
        };
        McastRecord {
            mgid: h.params.mgid,
            mlid: if ev.mlid != 0 {
                ev.mlid
            } else {
                mlid_of(h.group)
            },
            qkey,
            mtu,
            sl,
            rate,
            pkey,
        }
    }

    fn on_event(&self, ev: CmEvent) {
        let key = ev.context;
        let answer = {
            let mut st = lock(&self.state);
            match ev.kind {
                CmEventKind::MulticastJoin | CmEventKind::MulticastError => {
                    let ok = ev.kind == CmEventKind::MulticastJoin && ev.status == 0;
                    self.on_join_event(&mut st, key, ok, &ev)
                }
                CmEventKind::AddrChange | CmEventKind::DeviceRemoval => {
                    tracing::warn!(kind = ?ev.kind, "rdma_cm: the device or its address changed");
                    None
                }
                CmEventKind::Other(k) => {
                    tracing::debug!(kind = k, "rdma_cm: event ignored");
                    None
                }
            }
        };
        // Outside the service's lock: the callback takes the engine's mutex.
        if let Some((cb, result)) = answer {
            cb(result);
        }
    }

    #[allow(clippy::type_complexity)]
    fn on_join_event(
        &self,
        st: &mut State,
        key: u64,
        ok: bool,
        ev: &CmEvent,
    ) -> Option<(JoinCallback, Result<McastRecord, JoinError>)> {
        let state = st.handles.get(&key)?.state;
        match (state, ok) {
            (HandleState::Pending, true) => {
                let h = st.handles.get_mut(&key)?;
                h.state = HandleState::Joined;
                let full = h.full;
                let rec = self.record(h, ev);
                let cb = h.callback.take()?;
                if full {
                    st.stats.joins += 1;
                } else {
                    st.stats.sendonly_joins += 1;
                }
                Some((cb, Ok(rec)))
            }
            (HandleState::Pending, false) => {
                let h = st.handles.remove(&key)?;
                st.stats.failed += 1;
                tracing::warn!(group = %h.group, status = ev.status, "rdma_cm join failed");
                let err = if ev.status == -libc::ENETRESET {
                    JoinError::Reset
                } else {
                    JoinError::Failed
                };
                Some((h.callback?, Err(err)))
            }
            (HandleState::Cancelled, joined) => {
                // Abandoned by the engine: a join that made it is left at once.
                if let Some(h) = st.handles.remove(&key) {
                    if joined {
                        let _ = h.id.leave(h.group);
                    }
                }
                None
            }
            (HandleState::Joined, false) => {
                st.stats.errors += 1;
                tracing::warn!(status = ev.status, "rdma_cm: a joined membership broke");
                None
            }
            (HandleState::Joined, true) => None,
        }
    }
}

impl MulticastService for RdmaCmService {
    fn join(&self, params: JoinParams, callback: JoinCallback) -> Result<Membership, JoinError> {
        let group = addr::ip_of(params.mgid);
        if !group.is_multicast() || group.is_ipv4() != self.inner.local.is_ipv4() {
            return Err(JoinError::InvalidArgument);
        }
        let full = params.join_state == JoinState::Full;
        // Held until the handle is in the table: the reader cannot see the
        // answer before it can find the join.
        let mut st = lock(&self.inner.state);
        st.next += 1;
        let key = st.next;
        let id = CmId::bound(&self.inner.channel, self.inner.local).map_err(|e| {
            tracing::warn!(error = %e, "rdma_cm id");
            JoinError::Failed
        })?;
        if let Err(e) = id.join(group, !full, key) {
            tracing::warn!(%group, error = %e, "rdma_cm join not sent");
            st.stats.failed += 1;
            return Err(JoinError::Failed);
        }
        st.handles.insert(
            key,
            Handle {
                group,
                full,
                params,
                state: HandleState::Pending,
                id,
                callback: Some(callback),
            },
        );
        Ok(Membership(key))
    }

    fn leave(&self, membership: Membership) {
        let mut st = lock(&self.inner.state);
        match st.handles.get(&membership.0).map(|h| h.state) {
            Some(HandleState::Joined) => {
                if let Some(h) = st.handles.remove(&membership.0) {
                    if let Err(e) = h.id.leave(h.group) {
                        tracing::warn!(group = %h.group, error = %e, "rdma_cm leave");
                    }
                    st.stats.leaves += 1;
                }
            }
            _ => tracing::warn!(%membership, "leave of a membership that is not joined"),
        }
    }

    fn cancel(&self, membership: Membership) {
        let mut st = lock(&self.inner.state);
        st.stats.cancels += 1;
        match st.handles.get(&membership.0).map(|h| h.state) {
            Some(HandleState::Pending) => {
                if let Some(h) = st.handles.get_mut(&membership.0) {
                    h.state = HandleState::Cancelled;
                    h.callback = None;
                }
            }
            Some(HandleState::Joined) => {
                if let Some(h) = st.handles.remove(&membership.0) {
                    let _ = h.id.leave(h.group);
                    st.stats.leaves += 1;
                }
            }
            _ => {}
        }
    }
}
