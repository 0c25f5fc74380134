//! Model checking with shuttle: join task, SA callbacks (including ones that
//! start before `join` returns), the lcores' send-only enqueue, and interface
//! down or a port-event flush, under randomised and PCT schedules. Every
//! schedule checks the seed's rules online and the SA's ledger at the end.
//!
//! `cargo test -p ipoib-control --features shuttle --test model_shuttle --release`
#![cfg(feature = "shuttle")]

use ipoib_control::mcast::JoinCallback;
use ipoib_control::sync::{lock, thread, Arc, Mutex};
use ipoib_control::{
    Engine, EngineConfig, FlushLevel, JoinError, JoinParams, ManualClock, McastRecord, Membership,
    MulticastService, Probe, ProbeEvent,
};
use ipoib_dataplane::tables::JoinRequest;
use ipoib_dataplane::wire::Gid;
use shuttle::rand::{thread_rng, Rng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

const RANDOM_SCHEDULES: usize = 10_000;
const PCT_SCHEDULES: usize = 10_000;

fn gid(n: u8) -> Gid {
    Gid([0xff, 0x12, 0x40, 0x1b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Joined,
    Failed,
    Left,
}

/// An SA whose answers (and whether they come early) are chosen by the
/// scheduler's random source; it keeps the join/leave ledger.
#[derive(Default)]
struct ModelSa {
    ledger: Mutex<HashMap<u64, Entry>>,
    next: Mutex<u64>,
    callbacks: Mutex<Vec<thread::JoinHandle<()>>>,
    violations: Mutex<Vec<String>>,
}

impl MulticastService for ModelSa {
    fn join(&self, p: JoinParams, cb: JoinCallback) -> Result<Membership, JoinError> {
        let choice = thread_rng().gen_range(0..8u32);
        if choice == 0 {
            return Err(JoinError::InvalidArgument);
        }
        let m = {
            let mut n = lock(&self.next);
            *n += 1;
            Membership(*n)
        };
        let result = match choice {
            1 => Err(JoinError::Failed),
            2 => Err(JoinError::Reset),
            _ => Ok(McastRecord {
                mgid: p.mgid,
                mlid: 0xC000,
                qkey: 0x0B1B,
                mtu: 2048,
                sl: 0,
                rate: 3,
                pkey: 0xFFFF,
            }),
        };
        lock(&self.ledger).insert(
            m.0,
            if result.is_ok() {
                Entry::Joined
            } else {
                Entry::Failed
            },
        );
        // The callback runs on its own thread, possibly before join returns.
        let h = thread::spawn(move || cb(result));
        lock(&self.callbacks).push(h);
        Ok(m)
    }
    fn leave(&self, m: Membership) {
        let mut l = lock(&self.ledger);
        match l.get(&m.0).copied() {
            Some(Entry::Joined) => {
                l.insert(m.0, Entry::Left);
            }
            other => lock(&self.violations).push(format!("leave on {m} in state {other:?}")),
        }
    }
    fn cancel(&self, m: Membership) {
        let mut l = lock(&self.ledger);
        match l.get(&m.0).copied() {
            Some(Entry::Joined) => {
                l.insert(m.0, Entry::Left);
            }
            Some(Entry::Failed) => {}
            other => lock(&self.violations).push(format!("cancel on {m} in state {other:?}")),
        }
    }
}

/// Per MGID (a group may be freed and re-created under the same MGID).
#[derive(Default)]
struct GroupRules {
    /// `done` re-initialised and BUSY not yet set since.
    reinit: bool,
    /// BUSY clears not yet followed by their `done` completion.
    cleared_not_completed: u32,
}

/// Checks the seed's ordering rules as events happen.
#[derive(Default)]
struct RuleChecker {
    per_group: Mutex<HashMap<Gid, GroupRules>>,
}

impl Probe for RuleChecker {
    fn on(&self, ev: ProbeEvent) {
        let mut st = lock(&self.per_group);
        match ev {
            ProbeEvent::DoneReinit(g) => st.entry(g).or_default().reinit = true,
            ProbeEvent::BusySet(g) => {
                let e = st.entry(g).or_default();
                assert!(
                    e.reinit,
                    "rule 2: BUSY set on {g} before done was re-initialised"
                );
                e.reinit = false;
            }
            ProbeEvent::BusyCleared(g) => st.entry(g).or_default().cleared_not_completed += 1,
            ProbeEvent::CompletingDone(g) => {
                let e = st.entry(g).or_default();
                assert!(
                    e.cleared_not_completed > 0,
                    "rule 3: done of {g} completed before BUSY was cleared"
                );
                e.cleared_not_completed -= 1;
            }
            ProbeEvent::CallbackLocked { mgid, mc_valid } => {
                assert!(mc_valid, "rule 4: callback for {mgid} found mc unset");
            }
            _ => {}
        }
    }
}

fn model(flush_instead_of_down: bool, runs: &AtomicUsize) {
    let sa = Arc::new(ModelSa::default());
    let clock = Arc::new(ManualClock::new());
    let probe = Arc::new(RuleChecker::default());
    let cfg = EngineConfig::new(gid(0xaa), gid(0xff));
    let e = Engine::builder(cfg, sa.clone())
        .clock(clock)
        .probe(probe)
        .build();
    e.up();
    e.restart(&[gid(1)]);

    let join_task = {
        let e = e.clone();
        thread::spawn(move || {
            for _ in 0..3 {
                e.join_task();
            }
        })
    };
    let lcore = {
        let q = e.requests().clone();
        thread::spawn(move || {
            for n in [0x21, 0x22] {
                q.push(JoinRequest {
                    mgid: gid(n),
                    ifindex: 0,
                });
            }
        })
    };
    let port_event = {
        let e = e.clone();
        thread::spawn(move || {
            if flush_instead_of_down {
                e.flush(FlushLevel::Normal);
            } else {
                e.down();
            }
        })
    };
    join_task.join().unwrap();
    lcore.join().unwrap();
    port_event.join().unwrap();
    // Whatever is still in flight is answered before the final stop.
    e.down();
    loop {
        let hs: Vec<_> = lock(&sa.callbacks).drain(..).collect();
        if hs.is_empty() {
            break;
        }
        for h in hs {
            h.join().unwrap();
        }
    }
    assert!(e.is_idle(), "a join is still BUSY after stop");
    assert!(!e.carrier(), "carrier on after stop");
    assert!(e.groups().is_empty());
    let v = lock(&sa.violations).clone();
    assert!(v.is_empty(), "SA invariants broken: {v:?}");
    let unbalanced = lock(&sa.ledger)
        .values()
        .filter(|s| **s == Entry::Joined)
        .count();
    assert_eq!(unbalanced, 0, "joined but never left");
    runs.fetch_add(1, Ordering::Relaxed);
}

/// Every schedule ran to its final checks.
fn explore(name: &str, schedules: usize, check: impl Fn(&'static AtomicUsize)) {
    let runs: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    check(runs);
    assert_eq!(
        runs.load(Ordering::Relaxed),
        schedules,
        "{name}: schedules checked"
    );
}

#[test]
fn model_join_callback_enqueue_down_random() {
    explore("down/random", RANDOM_SCHEDULES, |runs| {
        shuttle::check_random(move || model(false, runs), RANDOM_SCHEDULES)
    });
}

#[test]
fn model_join_callback_enqueue_flush_random() {
    explore("flush/random", RANDOM_SCHEDULES, |runs| {
        shuttle::check_random(move || model(true, runs), RANDOM_SCHEDULES)
    });
}

#[test]
fn model_join_callback_enqueue_down_pct() {
    explore("down/pct", PCT_SCHEDULES, |runs| {
        shuttle::check_pct(move || model(false, runs), PCT_SCHEDULES, 3)
    });
}

#[test]
fn model_join_callback_enqueue_flush_pct() {
    explore("flush/pct", PCT_SCHEDULES, |runs| {
        shuttle::check_pct(move || model(true, runs), PCT_SCHEDULES, 3)
    });
}
