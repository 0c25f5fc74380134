//! The two races of the seed, replayed deterministically: the scripted SA
//! places its callback at the exact interleaving points the seed describes.
//! Built with `--cfg broken_engine` (mutex dropped around `join`, `mc` stored
//! after it returns) both tests fail: see tests/broken_engine.sh.
#![cfg(not(feature = "shuttle"))]

mod common;

use common::*;
use ipoib_control::mcast::LockSite;
use ipoib_control::{JoinError, ProbeEvent};
use std::sync::{mpsc, Arc, Mutex};

/// Seed race 1: the SA allocates the member and runs the callback while the
/// join is still inside `ib_sa_join_multicast`; `ifconfig down` comes in
/// during the callback. The old code left the member joined forever.
#[test]
fn race1_callback_before_join_returns_then_flush_leaves_member() {
    let b = bcast();
    let (down_tx, down_rx) = mpsc::channel::<()>();
    let rec_slot: Arc<Mutex<Option<Arc<Recorder>>>> = Arc::default();
    let slot = rec_slot.clone();
    let sa = ScriptedSa::raw(move |sa, m, params, cb| {
        let rec = lock(&slot).clone().expect("recorder");
        // Thread 1 (join task): the SA allocates the member and calls back.
        let result = Ok(ok_record(&params));
        sa.decide(m, &result);
        sa.spawn(move || cb(result));
        rec.wait_for("callback to run or wait for the mutex", |e| {
            matches!(
                e,
                ProbeEvent::MutexContended(LockSite::Callback) | ProbeEvent::DoneCompleted(_)
            )
        });
        // Thread 2: ifconfig down, while the callback is in progress.
        down_tx.send(()).expect("down thread");
        rec.wait_for("flush to finish or wait for the mutex", |e| {
            matches!(
                e,
                ProbeEvent::MutexContended(LockSite::Flush) | ProbeEvent::FlushDone
            )
        });
        // Only now does join return its membership.
    });
    let (e, _clock, rec) = engine(sa.clone());
    *lock(&rec_slot) = Some(rec.clone());
    e.up();
    let downer = {
        let e = e.clone();
        std::thread::spawn(move || {
            down_rx.recv().expect("script signals down");
            e.down()
        })
    };
    let report = e.join_task();
    assert_eq!(report.started, 1);
    let flushed = downer.join().expect("down returns");
    sa.settle();

    sa.assert_balanced();
    assert_eq!(
        flushed.left, 1,
        "flush must leave the member the SA allocated"
    );
    assert_eq!(
        rec.count(|e| matches!(e, ProbeEvent::Leave(g, _) if *g == b)),
        1
    );
    // The callback always found `mc` set.
    assert_eq!(
        rec.count(|e| matches!(
            e,
            ProbeEvent::CallbackLocked {
                mc_valid: false,
                ..
            }
        )),
        0
    );
    assert!(e.groups().is_empty());
}

/// Seed race 2: `ifconfig down` starts waiting while the join is in flight;
/// the callback fails the join before `join` returned and set `mc`. The old
/// code then left an invalid membership (and hung in the kernel).
#[test]
fn race2_error_callback_before_join_returns_then_flush_skips_invalid_mc() {
    let b = bcast();
    let (down_tx, down_rx) = mpsc::channel::<()>();
    let rec_slot: Arc<Mutex<Option<Arc<Recorder>>>> = Arc::default();
    let slot = rec_slot.clone();
    let sa = ScriptedSa::raw(move |sa, m, _params, cb| {
        let rec = lock(&slot).clone().expect("recorder");
        // Thread 3: ifconfig down; it starts waiting for the join.
        down_tx.send(()).expect("down thread");
        rec.wait_for("flush to wait for the join or for the mutex", |e| {
            matches!(
                e,
                ProbeEvent::MutexContended(LockSite::Flush) | ProbeEvent::FlushWaiting(_)
            )
        });
        // Thread 2: join_complete with an error, before join returned.
        let result = Err(JoinError::Failed);
        sa.decide(m, &result);
        sa.spawn(move || cb(result));
        rec.wait_for("callback to reach complete() or wait for the mutex", |e| {
            matches!(
                e,
                ProbeEvent::MutexContended(LockSite::Callback) | ProbeEvent::CompletingDone(_)
            )
        });
        // Thread 1 returns from join (and the old code stores `mc` now).
    });
    let (e, _clock, rec) = engine(sa.clone());
    *lock(&rec_slot) = Some(rec.clone());
    // The seed's order: "return from ib_sa_join_multicast and set mcast->mc",
    // then "complete": a callback about to complete waits for `mc` to be set.
    rec.hold(
        move |ev| *ev == ProbeEvent::CompletingDone(b),
        move |evs| {
            evs.iter()
                .any(|ev| matches!(ev, ProbeEvent::McSet(g, _) if *g == b))
        },
    );
    e.up();
    let downer = {
        let e = e.clone();
        std::thread::spawn(move || {
            down_rx.recv().expect("script signals down");
            e.down()
        })
    };
    e.join_task();
    let flushed = downer.join().expect("down returns");
    sa.settle();

    sa.assert_balanced();
    assert_eq!(flushed.left, 0, "a failed join has nothing to leave");
    assert!(
        sa.leaves().is_empty(),
        "leave on an invalid membership: {:?}",
        sa.leaves()
    );
    assert!(e.groups().is_empty());
}
