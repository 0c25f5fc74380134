//! Test doubles: a recording probe that can hold a thread at an engine
//! observation point, and a scripted SA that places answers exactly.
#![allow(dead_code)]

use ipoib_control::mcast::{GroupInfo, GroupTemplate};
use ipoib_control::{
    Engine, EngineConfig, JoinError, JoinParams, JoinResult, ManualClock, McastRecord, Membership,
    MulticastService, Probe, ProbeEvent,
};
use ipoib_dataplane::wire::Gid;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// A scripted wait that takes this long has deadlocked: fail instead of hanging.
pub const STUCK: Duration = Duration::from_secs(20);

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn gid(n: u8) -> Gid {
    let mut b = [0u8; 16];
    b[0] = 0xff;
    b[1] = 0x12;
    b[2] = 0x40;
    b[3] = 0x1b;
    b[15] = n;
    Gid(b)
}

pub const PORT: Gid = Gid([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

pub fn bcast() -> Gid {
    gid(0xff)
}

pub fn config() -> EngineConfig {
    EngineConfig::new(PORT, bcast())
}

pub fn record(mgid: Gid, mtu: u16) -> McastRecord {
    McastRecord {
        mgid,
        mlid: 0xC000 | u16::from(mgid.0[15]),
        qkey: 0x0B1B,
        mtu,
        sl: 0,
        rate: 3,
        pkey: 0xFFFF,
    }
}

type HoldRule = (
    Box<dyn Fn(&ProbeEvent) -> bool + Send + Sync>,
    Box<dyn Fn(&[ProbeEvent]) -> bool + Send + Sync>,
);

/// Records every probe event; can hold the emitting thread until a condition
/// on the history holds; snapshots a group's state when `done` completes.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<ProbeEvent>>,
    cv: Condvar,
    holds: Mutex<Vec<Arc<HoldRule>>>,
    engine: OnceLock<Engine>,
    at_completing: Mutex<Vec<(Gid, Option<GroupInfo>)>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Lets the recorder read group state when `done` is about to complete
    /// (the engine's mutex is free at that point).
    pub fn watch(&self, engine: &Engine) {
        let _ = self.engine.set(engine.clone());
    }
    pub fn events(&self) -> Vec<ProbeEvent> {
        lock(&self.events).clone()
    }
    pub fn at_completing(&self) -> Vec<(Gid, Option<GroupInfo>)> {
        lock(&self.at_completing).clone()
    }
    /// Holds any thread emitting an event matching `at` until `until` holds.
    pub fn hold(
        &self,
        at: impl Fn(&ProbeEvent) -> bool + Send + Sync + 'static,
        until: impl Fn(&[ProbeEvent]) -> bool + Send + Sync + 'static,
    ) {
        lock(&self.holds).push(Arc::new((Box::new(at), Box::new(until))));
    }
    /// Blocks until some recorded event matches.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&ProbeEvent) -> bool) -> ProbeEvent {
        let mut evs = lock(&self.events);
        loop {
            if let Some(e) = evs.iter().find(|e| pred(e)) {
                return *e;
            }
            let (g, t) = self
                .cv
                .wait_timeout(evs, STUCK)
                .unwrap_or_else(|e| e.into_inner());
            evs = g;
            assert!(
                !t.timed_out() || evs.iter().any(&pred),
                "stuck waiting for {what}; saw {:?}",
                *evs
            );
        }
    }
    /// Blocks until the recorded history satisfies `cond`.
    pub fn wait_until(&self, what: &str, cond: impl Fn(&[ProbeEvent]) -> bool) {
        let mut evs = lock(&self.events);
        while !cond(&evs) {
            let (g, t) = self
                .cv
                .wait_timeout(evs, STUCK)
                .unwrap_or_else(|e| e.into_inner());
            evs = g;
            assert!(
                !t.timed_out() || cond(&evs),
                "stuck waiting for {what}; saw {:?}",
                *evs
            );
        }
    }
    pub fn count(&self, pred: impl Fn(&ProbeEvent) -> bool) -> usize {
        lock(&self.events).iter().filter(|e| pred(e)).count()
    }
}

impl Probe for Recorder {
    fn on(&self, event: ProbeEvent) {
        if let (ProbeEvent::CompletingDone(g), Some(engine)) = (event, self.engine.get()) {
            let info = engine.group(g);
            lock(&self.at_completing).push((g, info));
        }
        let holds: Vec<Arc<HoldRule>> = lock(&self.holds)
            .iter()
            .filter(|h| (h.0)(&event))
            .cloned()
            .collect();
        let mut evs = lock(&self.events);
        evs.push(event);
        self.cv.notify_all();
        for h in holds {
            while !(h.1)(&evs) {
                let (g, t) = self
                    .cv
                    .wait_timeout(evs, STUCK)
                    .unwrap_or_else(|e| e.into_inner());
                evs = g;
                assert!(
                    !t.timed_out() || (h.1)(&evs),
                    "held at {event:?} forever; saw {:?}",
                    *evs
                );
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ledger {
    Pending,
    Joined,
    Failed,
    Left,
    Cancelled,
}

/// How the scripted SA treats one join.
pub enum Reply {
    /// Answer from a fresh thread.
    Answer(JoinResult),
    /// Start the callback on a fresh thread before `join` returns.
    Early(JoinResult),
    /// Keep the callback until the test calls [`ScriptedSa::deliver`].
    Hold,
    /// Never answer.
    NoAnswer,
    /// `join` itself fails.
    Refuse(JoinError),
}

type OnJoin = Box<dyn Fn(&Arc<ScriptedSa>, Membership, &JoinParams) -> Reply + Send + Sync>;
type RawJoin = Box<
    dyn Fn(&Arc<ScriptedSa>, Membership, JoinParams, ipoib_control::mcast::JoinCallback)
        + Send
        + Sync,
>;

/// A multicast service whose every answer is chosen by the test. It keeps the
/// same ledger as the soft SA: no leave without a successful join, no leave on
/// an invalid membership, every successful join left once.
pub struct ScriptedSa {
    me: OnceLock<std::sync::Weak<ScriptedSa>>,
    on_join: Mutex<Option<OnJoin>>,
    raw: Mutex<Option<RawJoin>>,
    ledger: Mutex<HashMap<u64, (Gid, Ledger)>>,
    next: Mutex<u64>,
    pub joins: Mutex<Vec<JoinParams>>,
    held: Mutex<Vec<(Gid, Membership, ipoib_control::mcast::JoinCallback)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    violations: Mutex<Vec<String>>,
    leaves: Mutex<Vec<Membership>>,
}

impl ScriptedSa {
    fn empty() -> Arc<Self> {
        let sa = Arc::new(ScriptedSa {
            me: OnceLock::new(),
            on_join: Mutex::new(None),
            raw: Mutex::new(None),
            ledger: Mutex::new(HashMap::new()),
            next: Mutex::new(1),
            joins: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            leaves: Mutex::new(Vec::new()),
        });
        let _ = sa.me.set(Arc::downgrade(&sa));
        sa
    }
    /// Every join handled by `on_join`.
    pub fn new(
        on_join: impl Fn(&Arc<ScriptedSa>, Membership, &JoinParams) -> Reply + Send + Sync + 'static,
    ) -> Arc<Self> {
        let sa = Self::empty();
        *lock(&sa.on_join) = Some(Box::new(on_join));
        sa
    }
    /// Full control: the script gets the callback itself.
    pub fn raw(
        f: impl Fn(&Arc<ScriptedSa>, Membership, JoinParams, ipoib_control::mcast::JoinCallback)
            + Send
            + Sync
            + 'static,
    ) -> Arc<Self> {
        let sa = Self::empty();
        *lock(&sa.raw) = Some(Box::new(f));
        sa
    }
    /// Every join succeeds with a record built from its params.
    pub fn reliable() -> Arc<Self> {
        Self::new(|_, _, p| Reply::Answer(Ok(ok_record(p))))
    }

    /// Records the SA's decision for a join (before the callback runs).
    pub fn decide(&self, m: Membership, result: &JoinResult) {
        let mut l = lock(&self.ledger);
        let e = l.get_mut(&m.0).expect("known membership");
        if e.1 == Ledger::Pending {
            e.1 = if result.is_ok() {
                Ledger::Joined
            } else {
                Ledger::Failed
            };
        }
    }
    /// Answers on a new thread.
    pub fn answer_async(
        &self,
        m: Membership,
        result: JoinResult,
        cb: ipoib_control::mcast::JoinCallback,
    ) {
        self.decide(m, &result);
        let t = std::thread::spawn(move || cb(result));
        lock(&self.threads).push(t);
    }
    /// Answers a held join on the calling thread.
    pub fn deliver(&self, mgid: Gid, result: JoinResult) {
        let (m, cb) = {
            let mut held = lock(&self.held);
            let i = held
                .iter()
                .position(|h| h.0 == mgid)
                .unwrap_or_else(|| panic!("no held join for {mgid}"));
            let (_, m, cb) = held.remove(i);
            (m, cb)
        };
        self.decide(m, &result);
        cb(result);
    }
    pub fn held(&self) -> Vec<Gid> {
        lock(&self.held).iter().map(|h| h.0).collect()
    }
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let t = std::thread::spawn(f);
        lock(&self.threads).push(t);
    }
    /// Waits for every answering thread (they finish once the engine's mutex is free).
    pub fn settle(&self) {
        loop {
            let ts: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
            if ts.is_empty() {
                return;
            }
            for t in ts {
                t.join().expect("answering thread panicked");
            }
        }
    }
    pub fn join_count(&self) -> usize {
        lock(&self.joins).len()
    }
    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }
    pub fn leaves(&self) -> Vec<Membership> {
        lock(&self.leaves).clone()
    }
    /// Successful joins not left.
    pub fn unbalanced(&self) -> usize {
        lock(&self.ledger)
            .values()
            .filter(|e| e.1 == Ledger::Joined)
            .count()
    }
    pub fn assert_balanced(&self) {
        assert_eq!(
            self.violations(),
            Vec::<String>::new(),
            "SA invariants broken"
        );
        assert_eq!(self.unbalanced(), 0, "memberships joined but never left");
    }
}

pub fn ok_record(p: &JoinParams) -> McastRecord {
    let t = p.template.unwrap_or(GroupTemplate {
        qkey: 0x0B1B,
        mtu: 2048,
        sl: 0,
        rate: 3,
        pkey: 0xFFFF,
    });
    McastRecord {
        mgid: p.mgid,
        mlid: 0xC000 | u16::from(p.mgid.0[15]),
        qkey: t.qkey,
        mtu: t.mtu,
        sl: t.sl,
        rate: t.rate,
        pkey: t.pkey,
    }
}

impl MulticastService for ScriptedSa {
    fn join(
        &self,
        params: JoinParams,
        cb: ipoib_control::mcast::JoinCallback,
    ) -> Result<Membership, JoinError> {
        let me = self.me.get().and_then(|w| w.upgrade()).expect("alive");
        lock(&self.joins).push(params);
        let m = {
            let mut n = lock(&self.next);
            *n += 1;
            Membership(*n)
        };
        if let Some(raw) = lock(&self.raw).as_ref() {
            lock(&self.ledger).insert(m.0, (params.mgid, Ledger::Pending));
            raw(&me, m, params, cb);
            return Ok(m);
        }
        let reply = (lock(&self.on_join).as_ref().expect("script"))(&me, m, &params);
        if let Reply::Refuse(e) = reply {
            return Err(e);
        }
        lock(&self.ledger).insert(m.0, (params.mgid, Ledger::Pending));
        match reply {
            Reply::Answer(r) => self.answer_async(m, r, cb),
            Reply::Early(r) => {
                self.decide(m, &r);
                let (tx, rx) = std::sync::mpsc::channel();
                self.spawn(move || {
                    tx.send(()).expect("join waits");
                    cb(r)
                });
                rx.recv().expect("callback thread started");
            }
            Reply::Hold => lock(&self.held).push((params.mgid, m, cb)),
            Reply::NoAnswer => drop(cb),
            Reply::Refuse(_) => unreachable!("handled above"),
        }
        Ok(m)
    }

    fn leave(&self, m: Membership) {
        lock(&self.leaves).push(m);
        let mut l = lock(&self.ledger);
        match l.get_mut(&m.0) {
            Some(e) if e.1 == Ledger::Joined => e.1 = Ledger::Left,
            Some(e) => {
                let what = format!("leave on {m} in state {:?}", e.1);
                lock(&self.violations).push(what);
            }
            None => lock(&self.violations).push(format!("leave on unknown {m}")),
        }
    }

    fn cancel(&self, m: Membership) {
        let mut l = lock(&self.ledger);
        match l.get_mut(&m.0) {
            Some(e) if e.1 == Ledger::Pending => e.1 = Ledger::Cancelled,
            Some(e) if e.1 == Ledger::Joined => e.1 = Ledger::Left,
            Some(e) if e.1 == Ledger::Failed => {}
            Some(e) => {
                let what = format!("cancel on {m} in state {:?}", e.1);
                lock(&self.violations).push(what);
            }
            None => lock(&self.violations).push(format!("cancel on unknown {m}")),
        }
        // A held callback for a cancelled join is never delivered.
        lock(&self.held).retain(|h| h.1 != m);
    }
}

/// An engine on a manual clock with a recorder.
pub fn engine(sa: Arc<dyn MulticastService>) -> (Engine, Arc<ManualClock>, Arc<Recorder>) {
    let clock = Arc::new(ManualClock::new());
    let rec = Recorder::new();
    let e = Engine::builder(config(), sa)
        .clock(clock.clone())
        .probe(rec.clone())
        .build();
    (e, clock, rec)
}

/// Runs join-task passes, letting the scripted SA's answers land, until `done`.
pub fn drive(e: &Engine, sa: &ScriptedSa, done: impl Fn(&Engine) -> bool) {
    for _ in 0..64 {
        e.join_task();
        sa.settle();
        if done(e) {
            return;
        }
    }
    panic!("engine did not get there; groups: {:?}", e.groups());
}
