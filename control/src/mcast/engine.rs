//! The engine: all multicast state behind one mutex (the seed's mcast_mutex),
//! and the join callback that the service calls from its own thread.

use super::attach::{McastAttach, RecordingAttach};
use super::completion::Completion;
use super::group::{Group, GroupFlags};
use super::probe::{LockSite, NoProbe, Probe, ProbeEvent};
use super::service::{JoinCallback, JoinError, JoinResult, McastRecord, MulticastService};
use crate::clock::{Clock, SystemClock};
use crate::sync::{lock, Arc, Condvar, Mutex, MutexGuard};
use ipoib_dataplane::tables::{published, JoinRequestQueue, McastTable, Published};
use ipoib_dataplane::wire::Gid;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::TryLockError;
use std::time::Duration;

/// Static settings of one interface's engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Interface whose join requests this engine serves.
    pub ifindex: u16,
    pub port_gid: Gid,
    pub broadcast_mgid: Gid,
    /// A join with no answer by then is abandoned and retried with backoff.
    pub join_timeout: Duration,
    /// Send-only groups unused for this long are left and freed.
    pub sendonly_idle: Duration,
}

impl EngineConfig {
    pub fn new(port_gid: Gid, broadcast_mgid: Gid) -> Self {
        EngineConfig {
            ifindex: 0,
            port_gid,
            broadcast_mgid,
            join_timeout: Duration::from_secs(5),
            sendonly_idle: Duration::from_secs(60),
        }
    }
}

/// Engine-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Send-only join requests taken from the datapath's queue.
    pub join_requests: u64,
    /// Requests for another interface, ignored.
    pub requests_other_if: u64,
    /// Requests the datapath could not queue (queue full).
    pub request_overflows: u64,
    pub joins_started: u64,
    pub joins_ok: u64,
    pub joins_failed: u64,
    pub joins_reset: u64,
    pub joins_timed_out: u64,
    /// `join` itself returned an error.
    pub joins_not_started: u64,
    pub stale_callbacks: u64,
    pub leaves: u64,
    pub sendonly_failed: u64,
    /// Failed send-only groups tried again because traffic asked for them.
    pub sendonly_rearmed: u64,
    pub sendonly_promoted: u64,
    pub sendonly_collected: u64,
    pub flushes: u64,
    pub publishes: u64,
}

impl std::fmt::Display for EngineStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "join_requests={} request_overflows={} joins_started={} joins_ok={} joins_failed={} \
             joins_reset={} joins_timed_out={} joins_not_started={} stale_callbacks={} leaves={} \
             sendonly_failed={} sendonly_rearmed={} sendonly_promoted={} sendonly_collected={} \
             flushes={} publishes={}",
            self.join_requests,
            self.request_overflows,
            self.joins_started,
            self.joins_ok,
            self.joins_failed,
            self.joins_reset,
            self.joins_timed_out,
            self.joins_not_started,
            self.stale_callbacks,
            self.leaves,
            self.sendonly_failed,
            self.sendonly_rearmed,
            self.sendonly_promoted,
            self.sendonly_collected,
            self.flushes,
            self.publishes
        )
    }
}

/// Everything the mutex guards.
pub(crate) struct State {
    /// Every group not yet freed, listed or being removed, by key.
    pub groups: BTreeMap<u64, Group>,
    /// Listed groups only.
    pub by_mgid: HashMap<Gid, u64>,
    pub broadcast: Option<u64>,
    pub broadcast_mgid: Gid,
    pub admin_up: bool,
    pub carrier: bool,
    /// Full-member groups the host wants (restart task input).
    pub desired: BTreeSet<Gid>,
    pub next_key: u64,
    pub next_attempt: u64,
    /// The published table is out of date.
    pub dirty: bool,
    pub generation: u64,
    pub stats: EngineStats,
}

impl State {
    pub fn add_group(&mut self, mgid: Gid, sendonly: bool, now: Duration) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.groups.insert(key, Group::new(mgid, sendonly, now));
        self.by_mgid.insert(mgid, key);
        key
    }
    /// Takes a group off the list: no join starts on it any more.
    pub fn unlist(&mut self, key: u64) {
        if let Some(g) = self.groups.get_mut(&key) {
            if g.listed {
                g.listed = false;
                if self.by_mgid.get(&g.mgid) == Some(&key) {
                    self.by_mgid.remove(&g.mgid);
                }
                if self.broadcast == Some(key) {
                    self.broadcast = None;
                }
                self.dirty = true;
            }
        }
    }
    pub fn broadcast_joined(&self) -> Option<&Group> {
        self.broadcast
            .and_then(|k| self.groups.get(&k))
            .filter(|g| g.joined())
    }
}

/// Completions to fire once the mutex is released: (group, done, generation).
pub(crate) type Pending = Vec<(Gid, Arc<Completion>, u64)>;

/// Wakes the thread that runs the join task.
#[derive(Default)]
pub(crate) struct Kick {
    set: Mutex<bool>,
    cv: Condvar,
}

pub(crate) struct Shared {
    /// The interface's name, in log lines.
    pub name: String,
    pub state: Mutex<State>,
    pub config: EngineConfig,
    pub service: Arc<dyn MulticastService>,
    pub attach: Arc<dyn McastAttach>,
    pub clock: Arc<dyn Clock>,
    pub probe: Arc<dyn Probe>,
    pub requests: Arc<JoinRequestQueue>,
    pub table: Published<McastTable>,
    pub kick: Kick,
}

/// The multicast join engine of one interface. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

/// Builds an [`Engine`]; everything but the service has a default.
pub struct EngineBuilder {
    config: EngineConfig,
    service: Arc<dyn MulticastService>,
    attach: Option<Arc<dyn McastAttach>>,
    clock: Option<Arc<dyn Clock>>,
    probe: Option<Arc<dyn Probe>>,
    requests: Option<Arc<JoinRequestQueue>>,
    table: Option<Published<McastTable>>,
    name: Option<String>,
}

impl EngineBuilder {
    /// The interface's name in log lines (default `if<ifindex>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    pub fn attach(mut self, attach: Arc<dyn McastAttach>) -> Self {
        self.attach = Some(attach);
        self
    }
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    pub fn probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probe = Some(probe);
        self
    }
    /// The queue the lcores push send-only join requests into.
    pub fn requests(mut self, requests: Arc<JoinRequestQueue>) -> Self {
        self.requests = Some(requests);
        self
    }
    /// Where the multicast table is published for the lcores.
    pub fn table(mut self, table: Published<McastTable>) -> Self {
        self.table = Some(table);
        self
    }
    pub fn build(self) -> Engine {
        let state = State {
            groups: BTreeMap::new(),
            by_mgid: HashMap::new(),
            broadcast: None,
            broadcast_mgid: self.config.broadcast_mgid,
            admin_up: false,
            carrier: false,
            desired: BTreeSet::new(),
            next_key: 1,
            next_attempt: 1,
            dirty: false,
            generation: 0,
            stats: EngineStats::default(),
        };
        Engine {
            shared: Arc::new(Shared {
                name: self
                    .name
                    .unwrap_or_else(|| format!("if{}", self.config.ifindex)),
                state: Mutex::new(state),
                config: self.config,
                service: self.service,
                attach: self
                    .attach
                    .unwrap_or_else(|| Arc::new(RecordingAttach::new())),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
                probe: self.probe.unwrap_or_else(|| Arc::new(NoProbe)),
                requests: self
                    .requests
                    .unwrap_or_else(|| Arc::new(JoinRequestQueue::new(1024))),
                table: self
                    .table
                    .unwrap_or_else(|| published(McastTable::default())),
                kick: Kick::default(),
            }),
        }
    }
}

impl Engine {
    pub fn builder(config: EngineConfig, service: Arc<dyn MulticastService>) -> EngineBuilder {
        EngineBuilder {
            config,
            service,
            attach: None,
            clock: None,
            probe: None,
            requests: None,
            table: None,
            name: None,
        }
    }
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }
    /// The queue lcores push send-only join requests into.
    pub fn requests(&self) -> &Arc<JoinRequestQueue> {
        &self.shared.requests
    }
    /// The multicast table the lcores read.
    pub fn table(&self) -> &Published<McastTable> {
        &self.shared.table
    }
    /// Carrier follows the broadcast group: on once it is joined while up.
    pub fn carrier(&self) -> bool {
        self.shared.lock(LockSite::Other).carrier
    }
    pub fn is_up(&self) -> bool {
        self.shared.lock(LockSite::Other).admin_up
    }
    pub fn stats(&self) -> EngineStats {
        let mut s = self.shared.lock(LockSite::Other).stats;
        s.request_overflows = self.shared.requests.overflows();
        s
    }
    /// The engine's clock.
    pub fn now(&self) -> Duration {
        self.shared.clock.now()
    }
    /// True when no join is in flight.
    pub fn is_idle(&self) -> bool {
        self.shared
            .lock(LockSite::Other)
            .groups
            .values()
            .all(|g| !g.busy())
    }
    /// Waits (real time, at most `timeout`) until a callback or a queue
    /// needs the join task; returns whether it was kicked.
    pub fn wait_for_work(&self, timeout: Duration) -> bool {
        let k = &self.shared.kick;
        let set = lock(&k.set);
        let (mut set, _) =
            k.cv.wait_timeout_while(set, timeout, |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *set, false)
    }
}

impl Shared {
    /// Takes the mutex, telling the probe when someone else holds it.
    pub fn lock(&self, site: LockSite) -> MutexGuard<'_, State> {
        match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.probe.on(ProbeEvent::MutexContended(site));
                lock(&self.state)
            }
        }
    }

    pub fn kick(&self) {
        *lock(&self.kick.set) = true;
        self.kick.cv.notify_all();
    }

    /// Completes `done`s after the mutex was released (BUSY is already clear).
    pub fn fire(&self, pending: Pending) {
        for (mgid, done, generation) in pending {
            self.probe.on(ProbeEvent::CompletingDone(mgid));
            if done.complete(generation) {
                self.probe.on(ProbeEvent::DoneCompleted(mgid));
            } else {
                self.probe.on(ProbeEvent::StaleCompletion(mgid));
            }
        }
    }

    pub fn callback(self: &Arc<Self>, key: u64, mgid: Gid, token: u64) -> JoinCallback {
        let shared = Arc::clone(self);
        Box::new(move |result| shared.join_complete(key, mgid, token, result))
    }

    /// The join callback. Takes the mutex first, so `join` has returned and
    /// `mc` is set by the time it looks (rule 4); on error it clears `mc`,
    /// then BUSY, then completes `done` (rules 3 and 4).
    fn join_complete(&self, key: u64, mgid: Gid, token: u64, result: JoinResult) {
        self.probe.on(ProbeEvent::CallbackEntered(mgid));
        let mut st = self.lock(LockSite::Callback);
        let now = self.clock.now();
        let current = st
            .groups
            .get(&key)
            .is_some_and(|g| g.attempt == token && g.busy());
        if !current {
            st.stats.stale_callbacks += 1;
            drop(st);
            self.probe.on(ProbeEvent::StaleCallback(mgid));
            return;
        }
        let mc_valid = st.groups[&key].mc.is_some();
        self.probe.on(ProbeEvent::CallbackLocked { mgid, mc_valid });
        match result {
            Ok(rec) => self.join_succeeded(&mut st, key, rec, now),
            Err(e) => self.join_failed(&mut st, key, e, now),
        }
        let done = self.clear_busy(&mut st, key);
        drop(st);
        self.kick();
        self.fire(done);
    }

    /// Carrier on or off, with one log line when it changes.
    pub fn set_carrier(&self, st: &mut State, on: bool) {
        if st.carrier != on {
            st.carrier = on;
            tracing::info!(
                event = "carrier",
                interface = %self.name,
                carrier = if on { "up" } else { "down" },
                "carrier {}",
                if on { "up" } else { "down" }
            );
        }
    }

    pub fn clear_busy(&self, st: &mut State, key: u64) -> Pending {
        let Some(g) = st.groups.get_mut(&key) else {
            return Vec::new();
        };
        g.flags.remove(GroupFlags::BUSY);
        self.probe.on(ProbeEvent::BusyCleared(g.mgid));
        vec![(g.mgid, Arc::clone(&g.done), g.done.generation())]
    }

    fn join_succeeded(&self, st: &mut State, key: u64, rec: McastRecord, now: Duration) {
        let is_broadcast = st.broadcast == Some(key);
        let admin_up = st.admin_up;
        st.stats.joins_ok += 1;
        st.dirty = true;
        let Some(g) = st.groups.get_mut(&key) else {
            return;
        };
        g.rec = Some(rec);
        g.backoff.reset();
        g.failures = 0;
        g.delay_until = now;
        g.counters.joins_ok += 1;
        tracing::info!(
            event = "join",
            interface = %self.name,
            mgid = %g.mgid,
            sendonly = g.sendonly(),
            mlid = rec.mlid,
            "multicast group joined"
        );
        // A group flush took off the list keeps its membership (flush leaves
        // it) but is not attached and does not raise carrier.
        if !g.listed {
            return;
        }
        if !g.sendonly()
            && !g.flags.contains(GroupFlags::ATTACHED)
            && self.attach.attach(g.mgid, rec.mlid)
        {
            g.flags.insert(GroupFlags::ATTACHED);
        }
        if is_broadcast && admin_up {
            self.set_carrier(st, true);
        }
    }

    /// Error path: `mc` is cleared here, under the mutex, before `done` completes.
    pub fn join_failed(&self, st: &mut State, key: u64, err: JoinError, now: Duration) {
        match err {
            JoinError::Reset => st.stats.joins_reset += 1,
            JoinError::TimedOut => st.stats.joins_timed_out += 1,
            _ => st.stats.joins_failed += 1,
        }
        let Some(g) = st.groups.get_mut(&key) else {
            return;
        };
        g.mc = None;
        g.rec = None;
        tracing::warn!(
            event = "join_failed",
            interface = %self.name,
            mgid = %g.mgid,
            error = ?err,
            "multicast join failed"
        );
        if err == JoinError::Reset {
            // The SA was reset under us: retry at once, no penalty.
            g.delay_until = now;
            return;
        }
        g.counters.joins_failed += 1;
        g.delay_until = now + g.backoff.next_delay();
        if g.sendonly() {
            g.failures += 1;
            if g.failures >= 2 {
                // One retry only: the datapath drops what it queued. A later
                // request re-arms the group, no sooner than the backoff allows.
                g.failed = true;
                st.stats.sendonly_failed += 1;
                st.dirty = true;
            }
        }
    }

    /// Abandons a join that had no answer by its deadline. Returns the
    /// completion to fire once unlocked, or nothing if it was answered meanwhile.
    pub fn expire_join(&self, st: &mut State, key: u64, now: Duration) -> Pending {
        let timeout = self.config.join_timeout;
        let Some(g) = st.groups.get_mut(&key) else {
            return Vec::new();
        };
        if !g.busy() || now < g.join_started + timeout {
            return Vec::new();
        }
        self.probe.on(ProbeEvent::TimedOut(g.mgid));
        g.attempt = 0;
        if let Some(m) = g.mc.take() {
            self.service.cancel(m);
        }
        self.join_failed(st, key, JoinError::TimedOut, now);
        self.clear_busy(st, key)
    }
}
