//! One test per rule of the seed ("IPoIB: fix MCAST_FLAG_BUSY usage").
#![cfg(not(feature = "shuttle"))]

mod common;

use common::*;
use ipoib_control::mcast::{GroupStatus, JoinState, LockSite};
use ipoib_control::{GroupFlags, JoinError, ProbeEvent};
use ipoib_dataplane::tables::JoinRequest;
use ipoib_dataplane::wire::Gid;
use std::collections::BTreeSet;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Events of one group, in order.
fn of(events: &[ProbeEvent], g: Gid) -> Vec<ProbeEvent> {
    events
        .iter()
        .copied()
        .filter(|e| e.mgid() == Some(g))
        .collect()
}

/// Rule 1: no JOIN_STARTED-like flag; BUSY means only "join in flight" and
/// whether a join completed is read from `mc`.
#[test]
fn rule1_no_join_started_flag() {
    let names: BTreeSet<&str> = GroupFlags::ALL.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        names,
        BTreeSet::from(["BUSY", "SENDONLY", "FOUND", "ATTACHED"])
    );
    let all = GroupFlags::ALL
        .iter()
        .fold(0u8, |acc, (f, _)| acc | f.bits());
    assert_eq!(all.count_ones(), 4, "flags must be distinct bits");

    let (a, f) = (gid(1), gid(2));
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == f {
            Reply::Answer(Err(JoinError::Failed))
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, _clock, _rec) = engine(sa.clone());
    e.up();
    e.restart(&[a, f]);
    drive(&e, &sa, |e| {
        e.group(a).is_some_and(|g| g.status == GroupStatus::Joined)
    });
    let joined = e.group(a).unwrap();
    let failed = e.group(f).unwrap();
    // A join that was started and answered leaves no flag behind: success is
    // "mc is a membership", failure is "mc is none".
    assert!(!joined.flags.contains(GroupFlags::BUSY) && joined.membership.is_some());
    assert!(!failed.flags.contains(GroupFlags::BUSY) && failed.membership.is_none());
    assert_eq!(failed.status, GroupStatus::Waiting);
    assert_eq!(failed.counters.joins_started, 1);
}

/// Rule 2: `done` is re-initialised before BUSY is set, on every join.
#[test]
fn rule2_done_initialised_before_busy() {
    let sa = ScriptedSa::new(|_, m, p| {
        // Fail every other join so groups go round several times.
        if m.0 % 2 == 0 && p.mgid != bcast() {
            Reply::Answer(Err(JoinError::Failed))
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, clock, rec) = engine(sa.clone());
    e.up();
    let groups: Vec<Gid> = (1..=6).map(gid).collect();
    e.restart(&groups);
    for _ in 0..6 {
        e.join_task();
        sa.settle();
        clock.advance(Duration::from_secs(20));
    }
    let events = rec.events();
    let mut busy_sets = 0;
    for g in groups.iter().copied().chain([bcast()]) {
        let evs = of(&events, g);
        for (i, ev) in evs.iter().enumerate() {
            if *ev == ProbeEvent::BusySet(g) {
                busy_sets += 1;
                assert!(
                    i > 0 && evs[i - 1] == ProbeEvent::DoneReinit(g),
                    "{g}: BUSY set without re-initialising done: {evs:?}"
                );
            }
        }
    }
    assert!(
        busy_sets >= 10,
        "expected several join rounds, saw {busy_sets}"
    );
}

/// Rule 3: BUSY is cleared before `done` is completed — on success, error,
/// reset, timeout, a join that could not start, and shutdown.
#[test]
fn rule3_busy_cleared_before_done_on_every_path() {
    let (ok, err, reset, timeout, refused, shutdown) =
        (gid(1), gid(2), gid(3), gid(4), gid(5), gid(6));
    let sa = ScriptedSa::new(move |_, _, p| match p.mgid {
        g if g == err => Reply::Answer(Err(JoinError::Failed)),
        g if g == reset => Reply::Answer(Err(JoinError::Reset)),
        g if g == timeout || g == shutdown => Reply::NoAnswer,
        g if g == refused => Reply::Refuse(JoinError::InvalidArgument),
        _ => Reply::Answer(Ok(ok_record(p))),
    });
    let (e, clock, rec) = engine(sa.clone());
    rec.watch(&e);
    e.up();
    drive(&e, &sa, |e| e.carrier());
    e.restart(&[ok, err, reset, timeout, refused]);
    e.join_task();
    sa.settle();
    // Timeout path: no answer within the join timeout.
    clock.advance(e.config().join_timeout);
    let r = e.join_task();
    assert!(r.timed_out >= 1);
    sa.settle();
    // Shutdown path: down() while a join has no answer; the flush waits,
    // the deadline passes, the join is abandoned.
    e.restart(&[ok, err, reset, timeout, refused, shutdown]);
    e.join_task();
    sa.settle();
    let downer = {
        let e = e.clone();
        std::thread::spawn(move || e.down())
    };
    rec.wait_for("flush to wait for the unanswered join", |ev| {
        *ev == ProbeEvent::FlushWaiting(shutdown)
    });
    clock.advance(e.config().join_timeout);
    downer.join().unwrap();

    let events = rec.events();
    for g in [bcast(), ok, err, reset, timeout, refused, shutdown] {
        let evs = of(&events, g);
        let mut busy = false;
        let mut completions = 0;
        for ev in &evs {
            match ev {
                ProbeEvent::BusySet(_) => busy = true,
                ProbeEvent::BusyCleared(_) => busy = false,
                ProbeEvent::CompletingDone(_) | ProbeEvent::DoneCompleted(_) => {
                    assert!(!busy, "{g}: done completed while BUSY: {evs:?}");
                    completions += 1;
                }
                _ => {}
            }
        }
        assert!(
            completions >= 2,
            "{g}: its path never completed done: {evs:?}"
        );
    }
    // Seen from outside as well: whenever `done` completes, BUSY is clear.
    let snaps = rec.at_completing();
    assert!(snaps.len() >= 7);
    for (g, info) in snaps {
        if let Some(info) = info {
            assert!(
                !info.flags.contains(GroupFlags::BUSY),
                "{g} BUSY when done completed"
            );
        }
    }
    for g in [timeout, shutdown] {
        assert!(
            rec.count(|ev| *ev == ProbeEvent::TimedOut(g)) >= 1,
            "{g} never timed out"
        );
    }
    sa.assert_balanced();
}

/// Rule 4: the mutex is held around `join` and taken first in the callback,
/// so the callback sees `mc` even when it starts before `join` returns.
#[test]
fn rule4_mutex_held_around_join_callback_sees_mc() {
    let slot: Arc<Mutex<Option<Arc<Recorder>>>> = Arc::default();
    let rec_slot = slot.clone();
    // The SA starts every callback before `join` returns, and returns only
    // once that callback has either finished or is waiting for the mutex.
    let sa = ScriptedSa::raw(move |sa, m, p, cb| {
        let rec = lock(&rec_slot).clone().expect("recorder");
        let result = Ok(ok_record(&p));
        sa.decide(m, &result);
        let before = rec.count(|ev| *ev == ProbeEvent::MutexContended(LockSite::Callback));
        sa.spawn(move || cb(result));
        let mgid = p.mgid;
        rec.wait_until("callback to wait for the mutex or finish", |evs| {
            evs.iter()
                .filter(|ev| **ev == ProbeEvent::MutexContended(LockSite::Callback))
                .count()
                > before
                || evs.contains(&ProbeEvent::DoneCompleted(mgid))
        });
    });
    let (e, _clock, rec) = engine(sa.clone());
    *lock(&slot) = Some(rec.clone());
    e.up();
    let groups: Vec<Gid> = (1..=8).map(gid).collect();
    e.restart(&groups);
    drive(&e, &sa, |e| {
        e.groups().iter().all(|g| g.status == GroupStatus::Joined)
    });
    let locked: Vec<bool> = rec
        .events()
        .iter()
        .filter_map(|ev| match ev {
            ProbeEvent::CallbackLocked { mc_valid, .. } => Some(*mc_valid),
            _ => None,
        })
        .collect();
    assert_eq!(locked.len(), 9);
    assert!(
        locked.iter().all(|v| *v),
        "a callback ran before mc was set: {locked:?}"
    );
    // Each callback really did start while `join` held the mutex.
    assert_eq!(
        rec.count(|ev| *ev == ProbeEvent::MutexContended(LockSite::Callback)),
        9
    );
    e.down();
    sa.assert_balanced();
}

/// Rule 4: on error the callback clears `mc` (before completing), so flush
/// never leaves a membership the SA already invalidated.
#[test]
fn rule4_error_callback_clears_mc() {
    let bad = gid(9);
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == bad {
            Reply::Early(Err(JoinError::Failed))
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, _clock, rec) = engine(sa.clone());
    rec.watch(&e);
    e.up();
    e.restart(&[bad]);
    drive(&e, &sa, |e| {
        e.group(bad).is_some_and(|g| g.counters.joins_failed == 1)
    });
    assert!(rec.events().contains(&ProbeEvent::CallbackLocked {
        mgid: bad,
        mc_valid: true
    }));
    let at_done: Vec<_> = rec
        .at_completing()
        .into_iter()
        .filter(|(g, _)| *g == bad)
        .collect();
    assert_eq!(at_done.len(), 1);
    let info = at_done[0].1.expect("group listed");
    assert_eq!(info.membership, None, "mc still set when done completed");
    let report = e.down();
    assert_eq!(report.left, 1, "only the broadcast membership is valid");
    sa.assert_balanced();
}

/// Rule 5: flush waits for every BUSY group's `done`, then leaves exactly the
/// groups whose `mc` is valid, then frees them.
#[test]
fn rule5_flush_waits_busy_then_leaves_valid_mc_only() {
    let (joined, failed, busy_ok, busy_err) = (gid(1), gid(2), gid(3), gid(4));
    let sa = ScriptedSa::new(move |_, _, p| match p.mgid {
        g if g == failed => Reply::Answer(Err(JoinError::Failed)),
        g if g == busy_ok || g == busy_err => Reply::Hold,
        _ => Reply::Answer(Ok(ok_record(p))),
    });
    let (e, _clock, rec) = engine(sa.clone());
    e.up();
    e.restart(&[joined, failed, busy_ok, busy_err]);
    drive(&e, &sa, |e| {
        e.group(joined)
            .is_some_and(|g| g.status == GroupStatus::Joined)
    });
    assert_eq!(sa.held().len(), 2);
    let downer = {
        let e = e.clone();
        std::thread::spawn(move || e.down())
    };
    rec.wait_for("flush waits for the first BUSY group", |ev| {
        *ev == ProbeEvent::FlushWaiting(busy_ok)
    });
    assert_eq!(
        rec.count(|ev| matches!(ev, ProbeEvent::Leave(..))),
        0,
        "left before waiting"
    );
    sa.deliver(busy_ok, Ok(record(busy_ok, 2048)));
    rec.wait_for("flush waits for the second BUSY group", |ev| {
        *ev == ProbeEvent::FlushWaiting(busy_err)
    });
    assert_eq!(
        rec.count(|ev| matches!(ev, ProbeEvent::Leave(..))),
        0,
        "left before waiting"
    );
    sa.deliver(busy_err, Err(JoinError::Failed));
    let report = downer.join().unwrap();

    let left: BTreeSet<Gid> = rec
        .events()
        .iter()
        .filter_map(|ev| match ev {
            ProbeEvent::Leave(g, _) => Some(*g),
            _ => None,
        })
        .collect();
    assert_eq!(left, BTreeSet::from([bcast(), joined, busy_ok]));
    assert_eq!((report.waited, report.left, report.removed), (2, 3, 5));
    assert!(e.groups().is_empty(), "flush frees the groups");
    assert!(e.table().load().is_empty());
    sa.assert_balanced();
}

/// Rule 6 (the seed's 7): send-only joins happen in the join task only; the
/// datapath pushes requests into a lock-free queue and never waits for the mutex.
#[test]
fn rule6_sendonly_joins_only_in_join_task() {
    let (s1, s2) = (gid(0x21), gid(0x22));
    let (pushed_tx, pushed_rx) = mpsc::channel::<()>();
    let pushed_rx = std::sync::Mutex::new(pushed_rx);
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == bcast() {
            // The join task holds the engine mutex here; the datapath must
            // still be able to queue requests.
            lock(&pushed_rx)
                .recv_timeout(STUCK)
                .expect("datapath pushed while the mutex was held");
        }
        Reply::Answer(Ok(ok_record(p)))
    });
    let (e, _clock, rec) = engine(sa.clone());
    e.up();
    let lcore = {
        let q = e.requests().clone();
        let rec = rec.clone();
        std::thread::spawn(move || {
            rec.wait_for("join task to call join", |ev| {
                *ev == ProbeEvent::JoinCalling(bcast())
            });
            for g in [s1, s2, s1] {
                assert!(q.push(JoinRequest {
                    mgid: g,
                    ifindex: 0
                }));
            }
            pushed_tx.send(()).unwrap();
        })
    };
    e.join_task();
    lcore.join().unwrap();
    sa.settle();
    // Queued, not joined: only the broadcast join has happened so far.
    assert_eq!(sa.join_count(), 1);
    drive(&e, &sa, |e| {
        e.groups().iter().all(|g| g.status == GroupStatus::Joined) && e.groups().len() == 3
    });
    let joins = lock(&sa.joins).clone();
    let sendonly: Vec<Gid> = joins
        .iter()
        .filter(|p| p.join_state == JoinState::SendOnly)
        .map(|p| p.mgid)
        .collect();
    assert_eq!(
        sendonly,
        vec![s1, s2],
        "one send-only join per MGID, after the broadcast"
    );
    let info = e.group(s1).unwrap();
    assert!(
        info.flags.contains(GroupFlags::SENDONLY) && !info.flags.contains(GroupFlags::ATTACHED)
    );
    assert_eq!(e.stats().join_requests, 3);
    e.down();
    sa.assert_balanced();
}
