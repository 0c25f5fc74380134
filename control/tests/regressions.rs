//! Scenarios from later kernel fixes to ipoib_multicast.c.
#![cfg(not(feature = "shuttle"))]

mod common;

use common::*;
use ipoib_control::mcast::GroupStatus;
use ipoib_control::{Engine, FaultSpec, FlushLevel, JoinError, ProbeEvent, SoftSa, SoftSaConfig};
use ipoib_dataplane::tables::{JoinRequest, JoinRequestQueue, McastState};
use std::sync::Arc;
use std::time::Duration;

/// The join task must not spin (or start joins) while a flush waits for it.
#[test]
fn join_task_does_not_spin_against_a_waiting_flush() {
    let g = gid(1);
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == g {
            Reply::Hold
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, clock, rec) = engine(sa.clone());
    e.up();
    e.restart(&[g]);
    drive(&e, &sa, |_| sa.held() == vec![g]);
    // First a port event flush while up, then interface down.
    for (round, level) in [Some(FlushLevel::Normal), None].into_iter().enumerate() {
        let flusher = {
            let e = e.clone();
            std::thread::spawn(move || match level {
                None => e.down(),
                Some(l) => e.flush(l),
            })
        };
        rec.wait_until("flush to wait for the held join", |evs| {
            evs.iter()
                .filter(|ev| **ev == ProbeEvent::FlushWaiting(g))
                .count()
                > round
        });
        let joins_before = sa.join_count();
        for _ in 0..100 {
            let r = e.join_task();
            assert_eq!(r.started, 0, "join started during flush");
            // No immediate wake-up: at most the waited-for join's deadline.
            let now = ipoib_control::Clock::now(&*clock);
            assert!(
                r.next_wakeup.is_none_or(|t| t > now),
                "join task would spin: {r:?}"
            );
        }
        assert_eq!(sa.join_count(), joins_before);
        sa.deliver(g, Ok(record(g, 2048)));
        flusher.join().unwrap();
        if level.is_some() {
            // Still up after a port event: it rejoins, broadcast first.
            drive(&e, &sa, |_| sa.held() == vec![g]);
            let joins = lock(&sa.joins).clone();
            assert_eq!(joins[joins.len() - 2].mgid, bcast());
            assert_eq!(joins[joins.len() - 1].mgid, g);
        }
    }
    sa.assert_balanced();
}

/// Stopping the interface while a send-only join fails with EINVAL: BUSY
/// still clears, `done` completes, the stop returns, nothing is left.
#[test]
fn stop_while_join_fails_with_invalid_argument() {
    let s = gid(0x31);
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == s {
            Reply::Hold
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, _clock, rec) = engine(sa.clone());
    e.up();
    drive(&e, &sa, |e| e.carrier());
    e.requests().push(JoinRequest {
        mgid: s,
        ifindex: 0,
    });
    e.join_task();
    assert_eq!(sa.held(), vec![s]);
    let stopper = {
        let e = e.clone();
        std::thread::spawn(move || e.down())
    };
    rec.wait_for("stop to wait for the send-only join", |ev| {
        *ev == ProbeEvent::FlushWaiting(s)
    });
    sa.deliver(s, Err(JoinError::InvalidArgument));
    let report = stopper.join().unwrap();
    assert_eq!(report.left, 1, "only the broadcast group");
    let evs = rec.events();
    let cleared = evs
        .iter()
        .position(|ev| *ev == ProbeEvent::BusyCleared(s))
        .expect("BUSY cleared");
    let done = evs
        .iter()
        .position(|ev| *ev == ProbeEvent::DoneCompleted(s))
        .expect("done completed");
    assert!(cleared < done);
    sa.assert_balanced();
}

/// `join` itself refusing with EINVAL (nothing sent) must not leave BUSY set.
#[test]
fn join_refused_with_invalid_argument_clears_busy() {
    let s = gid(0x32);
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == s {
            Reply::Refuse(JoinError::InvalidArgument)
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, _clock, _rec) = engine(sa.clone());
    e.up();
    drive(&e, &sa, |e| e.carrier());
    e.requests().push(JoinRequest {
        mgid: s,
        ifindex: 0,
    });
    e.join_task();
    let info = e.group(s).unwrap();
    assert_eq!(info.status, GroupStatus::Waiting);
    assert!(e.is_idle());
    assert_eq!(e.stats().joins_not_started, 1);
    e.down();
    sa.assert_balanced();
}

/// The broadcast join completing while the interface stops must not turn
/// carrier on (the kernel's carrier_on_task racing ipoib_stop).
#[test]
fn carrier_on_racing_stop_stays_off() {
    let sa = ScriptedSa::new(|_, _, p| {
        if p.mgid == bcast() {
            Reply::Hold
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, _clock, rec) = engine(sa.clone());
    e.up();
    e.join_task();
    let stopper = {
        let e = e.clone();
        std::thread::spawn(move || e.down())
    };
    rec.wait_for("stop to wait for the broadcast join", |ev| {
        *ev == ProbeEvent::FlushWaiting(bcast())
    });
    sa.deliver(bcast(), Ok(record(bcast(), 2048)));
    let report = stopper.join().unwrap();
    assert!(!e.carrier(), "carrier on after stop");
    assert_eq!(report.left, 1, "the late membership is still left");
    assert!(e.table().load().is_empty());
    // And once up again, carrier follows the broadcast join.
    let sa2 = ScriptedSa::reliable();
    let (e2, _c, _r) = engine(sa2.clone());
    e2.up();
    drive(&e2, &sa2, |e| e.carrier());
    e2.down();
    assert!(!e2.carrier());
    sa.assert_balanced();
    sa2.assert_balanced();
}

/// A full request queue is a counted drop; the lcore never blocks.
#[test]
fn request_queue_overflow_is_counted() {
    let sa = ScriptedSa::reliable();
    let q = Arc::new(JoinRequestQueue::new(4));
    let e = Engine::builder(config(), sa.clone())
        .requests(q.clone())
        .clock(Arc::new(ipoib_control::ManualClock::new()))
        .build();
    e.up();
    drive(&e, &sa, |e| e.carrier());
    let accepted = (1..=10u8)
        .filter(|n| {
            q.push(JoinRequest {
                mgid: gid(0x40 + n),
                ifindex: 0,
            })
        })
        .count();
    assert_eq!(accepted, 4);
    assert_eq!(e.stats().request_overflows, 6);
    drive(&e, &sa, |e| {
        e.groups().len() == 5 && e.groups().iter().all(|g| g.status == GroupStatus::Joined)
    });
    assert_eq!(e.stats().join_requests, 4);
    e.down();
    sa.assert_balanced();
}

/// An SA restart that changes the broadcast MTU: after the client
/// re-register flush every group is rejoined with the new MTU.
#[test]
fn sa_restart_changing_mtu_rejoins_everything_with_new_mtu() {
    let sa = Arc::new(SoftSa::new(SoftSaConfig::default(), FaultSpec::none(), 1));
    let e = Engine::builder(config(), sa.clone()).build();
    let groups = [gid(1), gid(2), gid(3)];
    e.up();
    e.restart(&groups);
    let all_joined = |e: &Engine| {
        e.groups().len() == 4 && e.groups().iter().all(|g| g.status == GroupStatus::Joined)
    };
    let route_mtus = |e: &Engine| -> Vec<u16> {
        e.table()
            .load()
            .iter()
            .filter_map(|(_, s)| match s {
                McastState::Joined(r) => Some(r.mtu),
                McastState::Failed => None,
            })
            .collect()
    };
    settle_real(&e, all_joined);
    assert_eq!(route_mtus(&e), vec![2048; 4]);
    assert_eq!(sa.member_refcount(gid(1), PORT), 1);

    sa.restart(Some(4096));
    assert_eq!(
        sa.member_refcount(gid(1), PORT),
        0,
        "the SA forgot its members"
    );
    e.flush(FlushLevel::Light);
    settle_real(&e, all_joined);
    assert_eq!(route_mtus(&e), vec![4096; 4]);
    assert_eq!(sa.member_refcount(gid(1), PORT), 1);
    assert_eq!(
        sa.group_record(gid(2)).unwrap().mtu,
        4096,
        "others copy the broadcast MTU"
    );
    e.down();
    sa.assert_balanced();
}

/// Drives an engine on a real SA thread until `done` (bounded, condvar waits only).
fn settle_real(e: &Engine, done: impl Fn(&Engine) -> bool) {
    for _ in 0..200 {
        e.join_task();
        if done(e) {
            e.publish();
            return;
        }
        e.wait_for_work(Duration::from_millis(50));
    }
    panic!("did not settle: {:?}", e.groups());
}

/// A callback that cleared BUSY and released the mutex, but has not yet
/// completed `done` when the join task starts the next join on the same
/// group, must not complete the new join's `done`: a flush would stop
/// waiting and leave a membership whose answer is still to come (found by
/// the shuttle model).
#[test]
fn late_completion_does_not_complete_the_next_join() {
    let b = bcast();
    let sa = ScriptedSa::new(move |_, m, p| {
        if m.0 == 2 {
            Reply::Answer(Err(JoinError::Reset))
        } else {
            let _ = p;
            Reply::Hold
        }
    });
    let (e, _clock, rec) = engine(sa.clone());
    // The first callback stops between releasing the mutex and completing
    // `done` until the second join has set BUSY.
    rec.hold(
        move |ev| *ev == ProbeEvent::CompletingDone(b),
        move |evs| {
            evs.iter()
                .filter(|ev| **ev == ProbeEvent::BusySet(b))
                .count()
                >= 2
        },
    );
    e.up();
    assert_eq!(e.join_task().started, 1);
    rec.wait_for("first callback to clear BUSY", |ev| {
        *ev == ProbeEvent::BusyCleared(b)
    });
    assert_eq!(e.join_task().started, 1, "reset is retried at once");
    sa.settle();
    assert_eq!(sa.held(), vec![b]);
    let info = e.group(b).unwrap();
    assert!(info.flags.contains(ipoib_control::GroupFlags::BUSY));
    assert!(
        !info.done_complete,
        "the first join's completion completed the second join"
    );
    assert_eq!(rec.count(|ev| *ev == ProbeEvent::StaleCompletion(b)), 1);

    let stopper = {
        let e = e.clone();
        std::thread::spawn(move || e.down())
    };
    rec.wait_for("stop to wait for the second join", |ev| {
        *ev == ProbeEvent::FlushWaiting(b)
    });
    sa.deliver(b, Err(JoinError::Failed));
    let report = stopper.join().unwrap();
    assert_eq!(report.left, 0);
    sa.assert_balanced();
}

/// The join task times out a join while a flush has taken every group off
/// the list (no broadcast group to join): the timed-out join's `done` must
/// still be completed, or the waiting flush never returns.
#[test]
fn join_timed_out_by_the_join_task_mid_flush_still_completes() {
    let g = gid(1);
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == g {
            Reply::NoAnswer
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, clock, rec) = engine(sa.clone());
    e.up();
    e.restart(&[g]);
    drive(&e, &sa, |e| {
        e.group(g).is_some_and(|i| i.status == GroupStatus::Joining)
    });
    // The flush starts waiting, then lets the join task time the join out first.
    rec.hold(
        move |ev| *ev == ProbeEvent::FlushWaiting(g),
        move |evs| evs.contains(&ProbeEvent::TimedOut(g)),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let e = e.clone();
        std::thread::spawn(move || tx.send(e.flush(FlushLevel::Normal)).unwrap());
    }
    rec.wait_for("flush to wait", |ev| *ev == ProbeEvent::FlushWaiting(g));
    clock.advance(e.config().join_timeout);
    assert_eq!(e.join_task().timed_out, 1);
    let report = rx
        .recv_timeout(STUCK)
        .expect("flush hung on a join the join task timed out");
    assert_eq!((report.waited, report.left), (1, 1));
    drive(&e, &sa, |e| e.carrier());
    e.down();
    sa.assert_balanced();
}
