//! The soft fabric's subnet administrator: answers multicast joins from its
//! own worker thread, keeps per-member reference counts, injects seeded
//! faults, and checks that its clients leave exactly what they joined.

use super::faults::FaultSpec;
use super::rng::SplitMix64;
use crate::mcast::{
    JoinCallback, JoinError, JoinParams, JoinResult, McastRecord, Membership, MulticastService,
};
use ipoib_dataplane::wire::Gid;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The SA's own settings: what the broadcast group is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftSaConfig {
    pub broadcast_mtu: u16,
    pub qkey: u32,
    pub sl: u8,
    pub rate: u8,
    pub pkey: u16,
    /// MTU the broadcast group gets after each restart fault, in turn.
    pub restart_mtus: [u16; 2],
}

impl Default for SoftSaConfig {
    fn default() -> Self {
        SoftSaConfig {
            broadcast_mtu: 2048,
            qkey: 0x0B1B,
            sl: 0,
            rate: 3,
            pkey: 0xFFFF,
            restart_mtus: [4096, 2048],
        }
    }
}

/// Counters of what the SA saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaStats {
    pub joins: u64,
    pub joined: u64,
    pub failed: u64,
    pub unanswered: u64,
    pub early: u64,
    pub leaves: u64,
    pub cancels: u64,
    pub restarts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandleState {
    /// Join sent, answer not decided yet.
    Pending,
    /// The SA will never answer this one.
    Unanswered,
    Joined,
    /// Answered with an error: the handle is invalid.
    Failed,
    Left,
    Cancelled,
}

struct Handle {
    mgid: Gid,
    port: Gid,
    epoch: u64,
    state: HandleState,
}

struct SaGroup {
    rec: McastRecord,
    /// Per port: how many memberships it holds.
    members: HashMap<Gid, u32>,
}

struct SaState {
    cfg: SoftSaConfig,
    faults: FaultSpec,
    rng: SplitMix64,
    epoch: u64,
    next_handle: u64,
    next_mlid: u16,
    broadcast_mtu: u16,
    groups: HashMap<Gid, SaGroup>,
    handles: HashMap<u64, Handle>,
    violations: Vec<String>,
    stats: SaStats,
}

/// Outcome decided at join time (so a seed fixes it), applied at answer time.
#[derive(Clone, Copy)]
enum Outcome {
    Ok(Option<crate::mcast::GroupTemplate>),
    Err(JoinError),
}

struct Job {
    due: Instant,
    seq: u64,
    handle: u64,
    outcome: Outcome,
    callback: JoinCallback,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    jobs: BinaryHeap<Reverse<Job>>,
    seq: u64,
    stop: bool,
}

struct Inner {
    state: Mutex<SaState>,
    queue: Mutex<Queue>,
    cv: Condvar,
}

/// The soft SA. Dropping it stops its worker thread.
pub struct SoftSa {
    inner: Arc<Inner>,
    worker: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SoftSa {
    pub fn new(cfg: SoftSaConfig, faults: FaultSpec, seed: u64) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(SaState {
                cfg,
                faults,
                rng: SplitMix64::new(seed),
                epoch: 0,
                next_handle: 1,
                next_mlid: 0xC000,
                broadcast_mtu: cfg.broadcast_mtu,
                groups: HashMap::new(),
                handles: HashMap::new(),
                violations: Vec::new(),
                stats: SaStats::default(),
            }),
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
        });
        let worker_inner = Arc::clone(&inner);
        let worker = std::thread::Builder::new()
            .name("soft-sa".into())
            .spawn(move || worker_inner.run())
            .expect("spawn soft SA worker");
        SoftSa {
            inner,
            worker: Some(worker),
        }
    }

    /// An SA with no faults.
    pub fn reliable() -> Self {
        Self::new(SoftSaConfig::default(), FaultSpec::none(), 0)
    }

    pub fn stats(&self) -> SaStats {
        lock(&self.inner.state).stats
    }
    /// Broken invariants, one sentence each.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.inner.state).violations.clone()
    }
    /// Successful joins not (yet) left: after a full flush this must be 0.
    pub fn unbalanced(&self) -> usize {
        lock(&self.inner.state)
            .handles
            .values()
            .filter(|h| h.state == HandleState::Joined)
            .count()
    }
    /// How many memberships `port` holds in `mgid` (since the last restart).
    pub fn member_refcount(&self, mgid: Gid, port: Gid) -> u32 {
        lock(&self.inner.state)
            .groups
            .get(&mgid)
            .and_then(|g| g.members.get(&port).copied())
            .unwrap_or(0)
    }
    /// The SA's current record of a group, if it exists.
    pub fn group_record(&self, mgid: Gid) -> Option<McastRecord> {
        lock(&self.inner.state).groups.get(&mgid).map(|g| g.rec)
    }
    /// Restarts the SA: it forgets every group and member (clients learn of it
    /// as a client re-register event) and may change the broadcast MTU.
    pub fn restart(&self, broadcast_mtu: Option<u16>) {
        let mut st = lock(&self.inner.state);
        st.restart(broadcast_mtu);
    }
    /// How many restarts happened (by call or by fault).
    pub fn restarts(&self) -> u64 {
        lock(&self.inner.state).stats.restarts
    }
    /// Panics with every broken invariant if any, or if memberships are left over.
    pub fn assert_balanced(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "SA invariants broken: {v:?}");
        assert_eq!(self.unbalanced(), 0, "memberships joined but never left");
    }
}

impl Drop for SoftSa {
    fn drop(&mut self) {
        lock(&self.inner.queue).stop = true;
        self.inner.cv.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl SaState {
    fn restart(&mut self, broadcast_mtu: Option<u16>) {
        self.epoch += 1;
        self.groups.clear();
        if let Some(mtu) = broadcast_mtu {
            self.broadcast_mtu = mtu;
        }
        self.stats.restarts += 1;
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Applies a decided outcome to a pending handle; None if the handle was cancelled.
    fn answer(&mut self, handle: u64, outcome: Outcome) -> Option<JoinResult> {
        let epoch = self.epoch;
        let h = self.handles.get(&handle)?;
        if h.state != HandleState::Pending {
            return None;
        }
        let (mgid, port) = (h.mgid, h.port);
        // A restart under the request resets it.
        let outcome = if h.epoch != epoch {
            Outcome::Err(JoinError::Reset)
        } else {
            outcome
        };
        let result = match outcome {
            Outcome::Ok(template) => {
                let rec = self.group_for(mgid, template);
                *self
                    .groups
                    .get_mut(&mgid)
                    .expect("group exists")
                    .members
                    .entry(port)
                    .or_insert(0) += 1;
                self.stats.joined += 1;
                Ok(rec)
            }
            Outcome::Err(e) => {
                self.stats.failed += 1;
                Err(e)
            }
        };
        let h = self.handles.get_mut(&handle).expect("handle exists");
        h.epoch = epoch;
        h.state = if result.is_ok() {
            HandleState::Joined
        } else {
            HandleState::Failed
        };
        Some(result)
    }

    fn group_for(
        &mut self,
        mgid: Gid,
        template: Option<crate::mcast::GroupTemplate>,
    ) -> McastRecord {
        if let Some(g) = self.groups.get(&mgid) {
            return g.rec;
        }
        let mlid = self.next_mlid;
        self.next_mlid = self.next_mlid.wrapping_add(1).max(0xC000);
        let rec = match template {
            Some(t) => McastRecord {
                mgid,
                mlid,
                qkey: t.qkey,
                mtu: t.mtu,
                sl: t.sl,
                rate: t.rate,
                pkey: t.pkey,
            },
            None => McastRecord {
                mgid,
                mlid,
                qkey: self.cfg.qkey,
                mtu: self.broadcast_mtu,
                sl: self.cfg.sl,
                rate: self.cfg.rate,
                pkey: self.cfg.pkey,
            },
        };
        self.groups.insert(
            mgid,
            SaGroup {
                rec,
                members: HashMap::new(),
            },
        );
        rec
    }

    /// Drops one reference of a joined handle (if the group survived restarts).
    fn release(&mut self, handle: u64) {
        let h = &self.handles[&handle];
        let (mgid, port, epoch) = (h.mgid, h.port, h.epoch);
        if epoch != self.epoch {
            return;
        }
        if let Some(g) = self.groups.get_mut(&mgid) {
            if let Some(n) = g.members.get_mut(&port) {
                *n -= 1;
                if *n == 0 {
                    g.members.remove(&port);
                }
            }
            if g.members.is_empty() {
                self.groups.remove(&mgid);
            }
        }
    }
}

impl Inner {
    fn run(&self) {
        loop {
            let job = {
                let mut q = lock(&self.queue);
                loop {
                    if q.stop {
                        return;
                    }
                    let now = Instant::now();
                    match q.jobs.peek() {
                        Some(Reverse(j)) if j.due <= now => break q.jobs.pop().expect("peeked").0,
                        Some(Reverse(j)) => {
                            let wait = j.due - now;
                            q = self
                                .cv
                                .wait_timeout(q, wait)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        None => q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner()),
                    }
                }
            };
            self.deliver(job);
        }
    }

    fn deliver(&self, job: Job) {
        let result = lock(&self.state).answer(job.handle, job.outcome);
        // Called without the SA's lock: the callback takes the client's mutex.
        if let Some(result) = result {
            (job.callback)(result);
        }
    }
}

impl MulticastService for SoftSa {
    fn join(&self, params: JoinParams, callback: JoinCallback) -> Result<Membership, JoinError> {
        let mut st = lock(&self.inner.state);
        st.stats.joins += 1;
        let f = st.faults;
        if st.rng.chance(f.restart) {
            let mtu = st.cfg.restart_mtus[(st.stats.restarts % 2) as usize];
            st.restart(Some(mtu));
        }
        let delay_ns = st
            .rng
            .range(f.delay.0.as_nanos() as u64, f.delay.1.as_nanos() as u64);
        let r = st.rng.next_f64();
        let outcome = if r < f.fail {
            Outcome::Err(JoinError::Failed)
        } else if r < f.fail + f.reset {
            Outcome::Err(JoinError::Reset)
        } else if r < f.fail + f.reset + f.einval {
            Outcome::Err(JoinError::InvalidArgument)
        } else {
            Outcome::Ok(params.template)
        };
        let noanswer = st.rng.chance(f.noanswer);
        let early = st.rng.chance(f.early);
        let handle = st.next_handle;
        st.next_handle += 1;
        let epoch = st.epoch;
        let state = if noanswer {
            HandleState::Unanswered
        } else {
            HandleState::Pending
        };
        st.handles.insert(
            handle,
            Handle {
                mgid: params.mgid,
                port: params.port_gid,
                epoch,
                state,
            },
        );
        if noanswer {
            st.stats.unanswered += 1;
            return Ok(Membership(handle));
        }
        if early {
            st.stats.early += 1;
            drop(st);
            // The callback starts on its own thread before `join` returns (it
            // cannot run on this one: it would wait for the caller's mutex).
            let (started_tx, started_rx) = mpsc::channel();
            let inner = Arc::clone(&self.inner);
            let job = Job {
                due: Instant::now(),
                seq: 0,
                handle,
                outcome,
                callback,
            };
            std::thread::spawn(move || {
                let result = lock(&inner.state).answer(job.handle, job.outcome);
                let _ = started_tx.send(());
                if let Some(result) = result {
                    (job.callback)(result);
                }
            });
            let _ = started_rx.recv();
            return Ok(Membership(handle));
        }
        drop(st);
        let mut q = lock(&self.inner.queue);
        q.seq += 1;
        let job = Job {
            due: Instant::now() + Duration::from_nanos(delay_ns),
            seq: q.seq,
            handle,
            outcome,
            callback,
        };
        q.jobs.push(Reverse(job));
        drop(q);
        self.inner.cv.notify_all();
        Ok(Membership(handle))
    }

    fn leave(&self, m: Membership) {
        let mut st = lock(&self.inner.state);
        st.stats.leaves += 1;
        let Some(state) = st.handles.get(&m.0).map(|h| h.state) else {
            st.violation(format!("leave on unknown membership {m}"));
            return;
        };
        match state {
            HandleState::Joined => {
                st.release(m.0);
                st.handles.get_mut(&m.0).expect("handle").state = HandleState::Left;
            }
            HandleState::Failed => {
                st.violation(format!("leave on invalid membership {m} (its join failed)"))
            }
            HandleState::Pending | HandleState::Unanswered => st.violation(format!(
                "leave on membership {m} whose join never succeeded"
            )),
            HandleState::Left | HandleState::Cancelled => {
                st.violation(format!("second leave on membership {m}"))
            }
        }
    }

    fn cancel(&self, m: Membership) {
        let mut st = lock(&self.inner.state);
        st.stats.cancels += 1;
        let Some(state) = st.handles.get(&m.0).map(|h| h.state) else {
            st.violation(format!("cancel of unknown membership {m}"));
            return;
        };
        match state {
            HandleState::Pending | HandleState::Unanswered => {
                st.handles.get_mut(&m.0).expect("handle").state = HandleState::Cancelled
            }
            HandleState::Joined => {
                st.release(m.0);
                st.handles.get_mut(&m.0).expect("handle").state = HandleState::Left;
            }
            HandleState::Failed => {}
            HandleState::Left | HandleState::Cancelled => {
                st.violation(format!("cancel after leave on {m}"))
            }
        }
    }
}
