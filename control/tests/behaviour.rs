//! Join order, backoff, send-only handling, restart diff, GC, timeouts and
//! the soft SA's own invariant checks.
#![cfg(not(feature = "shuttle"))]

mod common;

use common::*;
use ipoib_control::mcast::{GroupStatus, GroupTemplate, JoinCallback, JoinState};
use ipoib_control::{
    Engine, FaultSpec, GroupFlags, JoinError, JoinParams, Membership, MulticastService, ProbeEvent,
    RecordingAttach, SoftSa, SoftSaConfig,
};
use ipoib_dataplane::tables::{JoinRequest, McastState};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn broadcast_gates_carrier_and_every_other_join() {
    let fail_bcast = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = fail_bcast.clone();
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == bcast() && flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Answer(Err(JoinError::Failed))
        } else {
            Reply::Answer(Ok(McastRecord_with_mtu(p)))
        }
    });
    let (e, clock, _rec) = engine(sa.clone());
    e.up();
    e.restart(&[gid(1), gid(2)]);
    for _ in 0..3 {
        e.join_task();
        sa.settle();
        clock.advance(Duration::from_secs(30));
    }
    assert!(!e.carrier());
    assert!(
        lock(&sa.joins).iter().all(|p| p.mgid == bcast()),
        "joined others before the broadcast group"
    );
    fail_bcast.store(false, std::sync::atomic::Ordering::SeqCst);
    e.requests().push(JoinRequest {
        mgid: gid(0x21),
        ifindex: 0,
    });
    drive(&e, &sa, |e| {
        e.groups().iter().all(|g| g.status == GroupStatus::Joined) && e.groups().len() == 4
    });
    assert!(e.carrier());
    let joins = lock(&sa.joins).clone();
    let after: Vec<_> = joins
        .iter()
        .skip_while(|p| p.mgid == bcast())
        .map(|p| (p.mgid, p.join_state))
        .collect();
    // Full members first, then the send-only request.
    assert_eq!(
        after,
        vec![
            (gid(1), JoinState::Full),
            (gid(2), JoinState::Full),
            (gid(0x21), JoinState::SendOnly)
        ]
    );
    // Others copy Q_Key, MTU, SL and rate from the broadcast record.
    let t = joins
        .iter()
        .find(|p| p.mgid == gid(1))
        .unwrap()
        .template
        .unwrap();
    assert_eq!(
        t,
        GroupTemplate {
            qkey: 0x1234,
            mtu: 4096,
            sl: 5,
            rate: 6,
            pkey: 0x8001
        }
    );
    assert!(joins
        .iter()
        .filter(|p| p.mgid == bcast())
        .all(|p| p.template.is_none()));
    e.down();
    sa.assert_balanced();
}

#[allow(non_snake_case)]
fn McastRecord_with_mtu(p: &JoinParams) -> ipoib_control::McastRecord {
    let mut r = ok_record(p);
    if p.mgid == bcast() {
        (r.qkey, r.mtu, r.sl, r.rate, r.pkey) = (0x1234, 4096, 5, 6, 0x8001);
    }
    r
}

#[test]
fn failures_back_off_1_2_4_8_16_seconds_capped() {
    let g = gid(1);
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == g {
            Reply::Answer(Err(JoinError::Failed))
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, clock, _rec) = engine(sa.clone());
    e.up();
    e.restart(&[g]);
    drive(&e, &sa, |e| e.carrier());
    let mut delays = Vec::new();
    for _ in 0..6 {
        // Run until the group's join has failed once more.
        let before = e.group(g).unwrap().counters.joins_failed;
        e.join_task();
        sa.settle();
        assert_eq!(e.group(g).unwrap().counters.joins_failed, before + 1);
        let now = clock.now_for_test();
        let next = e.join_task().next_wakeup.expect("a retry is scheduled");
        delays.push((next - now).as_secs());
        // Nothing happens before the delay is over.
        clock.advance(next - now - Duration::from_millis(1));
        assert_eq!(e.join_task().started, 0);
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(delays, vec![1, 2, 4, 8, 16, 16]);
    e.down();
    sa.assert_balanced();
}

trait NowForTest {
    fn now_for_test(&self) -> Duration;
}
impl NowForTest for ipoib_control::ManualClock {
    fn now_for_test(&self) -> Duration {
        ipoib_control::Clock::now(self)
    }
}

#[test]
fn reset_status_is_retried_at_once_without_penalty() {
    let g = gid(1);
    let resets = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let r2 = resets.clone();
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == g && r2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
            Reply::Answer(Err(JoinError::Reset))
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, _clock, _rec) = engine(sa.clone());
    e.up();
    e.restart(&[g]);
    // No clock advance at all: resets are retried immediately.
    drive(&e, &sa, |e| {
        e.group(g).is_some_and(|i| i.status == GroupStatus::Joined)
    });
    let info = e.group(g).unwrap();
    assert_eq!(info.counters.joins_started, 4);
    assert_eq!(info.counters.joins_failed, 0);
    assert_eq!(info.backoff, Duration::from_secs(1));
    assert_eq!(e.stats().joins_reset, 3);
    e.down();
    sa.assert_balanced();
}

#[test]
fn sendonly_gets_one_retry_then_is_published_failed() {
    let s = gid(0x21);
    let sa = ScriptedSa::new(move |_, _, p| {
        if p.mgid == s {
            Reply::Answer(Err(JoinError::Failed))
        } else {
            Reply::Answer(Ok(ok_record(p)))
        }
    });
    let (e, clock, _rec) = engine(sa.clone());
    e.up();
    drive(&e, &sa, |e| e.carrier());
    e.requests().push(JoinRequest {
        mgid: s,
        ifindex: 0,
    });
    e.join_task();
    sa.settle();
    assert_eq!(e.group(s).unwrap().status, GroupStatus::Waiting);
    assert_eq!(
        e.table().load().lookup(&s),
        None,
        "pending: lcores keep queueing"
    );
    clock.advance(Duration::from_secs(1));
    e.join_task();
    sa.settle();
    e.join_task();
    assert_eq!(e.group(s).unwrap().status, GroupStatus::Failed);
    assert_eq!(e.table().load().lookup(&s), Some(&McastState::Failed));
    // No third attempt, however long we wait.
    clock.advance(Duration::from_secs(30));
    e.join_task();
    sa.settle();
    assert_eq!(lock(&sa.joins).iter().filter(|p| p.mgid == s).count(), 2);
    assert_eq!(e.stats().sendonly_failed, 1);
    // New traffic for it re-arms the group: queued again, joined again.
    e.requests().push(JoinRequest {
        mgid: s,
        ifindex: 0,
    });
    e.join_task();
    sa.settle();
    assert_eq!(e.stats().sendonly_rearmed, 1);
    assert_eq!(lock(&sa.joins).iter().filter(|p| p.mgid == s).count(), 3);
    assert_eq!(e.group(s).unwrap().status, GroupStatus::Waiting);
    e.down();
    sa.assert_balanced();
}

#[test]
fn restart_diff_leaves_removed_keeps_sendonly_and_promotes_it() {
    let (a, b, s) = (gid(1), gid(2), gid(0x21));
    let sa = ScriptedSa::reliable();
    let attach = Arc::new(RecordingAttach::new());
    let clock = Arc::new(ipoib_control::ManualClock::new());
    let e = Engine::builder(config(), sa.clone())
        .attach(attach.clone())
        .clock(clock.clone())
        .build();
    e.up();
    e.restart(&[a, b]);
    e.requests().push(JoinRequest {
        mgid: s,
        ifindex: 0,
    });
    let joined = |n: usize| {
        move |e: &Engine| {
            e.groups().len() == n && e.groups().iter().all(|g| g.status == GroupStatus::Joined)
        }
    };
    drive(&e, &sa, joined(4));
    assert_eq!(
        attach.attached(),
        vec![gid(1), gid(2), bcast()]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert!(
        !attach.attached().contains(&s),
        "send-only groups are not attached"
    );

    // `a` no longer wanted: left and detached; the send-only group stays.
    let r = e.restart(&[b]);
    assert_eq!((r.removed.left, r.added, r.promoted), (1, 0, 0));
    assert!(e.group(a).is_none() && e.group(s).is_some());
    assert!(!attach.attached().contains(&a));

    // The host joins `s`: the send-only membership is replaced by a full one.
    let r = e.restart(&[b, s]);
    assert_eq!((r.removed.left, r.promoted), (1, 1));
    drive(&e, &sa, joined(3));
    let info = e.group(s).unwrap();
    assert!(
        !info.flags.contains(GroupFlags::SENDONLY) && info.flags.contains(GroupFlags::ATTACHED)
    );
    let last = lock(&sa.joins).last().copied().unwrap();
    assert_eq!((last.mgid, last.join_state), (s, JoinState::Full));
    e.down();
    assert!(attach.attached().is_empty());
    sa.assert_balanced();
}

#[test]
fn idle_sendonly_groups_are_collected() {
    let (s1, s2) = (gid(0x21), gid(0x22));
    let sa = ScriptedSa::reliable();
    let (e, clock, _rec) = engine(sa.clone());
    e.up();
    drive(&e, &sa, |e| e.carrier());
    for s in [s1, s2] {
        e.requests().push(JoinRequest {
            mgid: s,
            ifindex: 0,
        });
    }
    drive(&e, &sa, |e| {
        e.groups()
            .iter()
            .filter(|g| g.status == GroupStatus::Joined)
            .count()
            == 3
    });
    let idle = e.config().sendonly_idle;
    clock.advance(idle / 2);
    e.touch_sendonly(s2);
    clock.advance(idle / 2);
    let r = e.join_task();
    assert_eq!(r.collected, 1);
    assert!(e.group(s1).is_none() && e.group(s2).is_some());
    assert_eq!(sa.leaves().len(), 1);
    assert_eq!(e.stats().sendonly_collected, 1);
    e.down();
    sa.assert_balanced();
}

#[test]
fn soft_sa_noanswer_times_out_and_stop_never_hangs() {
    let sa = Arc::new(SoftSa::new(
        SoftSaConfig::default(),
        FaultSpec::parse("noanswer=1").unwrap(),
        3,
    ));
    let (e, clock, rec) = engine(sa.clone());
    e.up();
    assert_eq!(e.join_task().started, 1);
    clock.advance(e.config().join_timeout);
    let r = e.join_task();
    assert_eq!(r.timed_out, 1);
    assert_eq!(e.groups()[0].status, GroupStatus::Waiting);
    assert_eq!(sa.stats().cancels, 1);
    // Again, and stop while that join is unanswered: the flush waits until
    // the join deadline, then abandons it.
    clock.advance(Duration::from_secs(1));
    assert_eq!(e.join_task().started, 1);
    let stopper = {
        let e = e.clone();
        std::thread::spawn(move || e.down())
    };
    rec.wait_for("stop to wait", |ev| {
        *ev == ProbeEvent::FlushWaiting(bcast())
    });
    clock.advance(e.config().join_timeout);
    let report = stopper.join().unwrap();
    assert_eq!((report.waited, report.timed_out, report.left), (1, 1, 0));
    assert_eq!(sa.stats().cancels, 2);
    sa.assert_balanced();
}

#[test]
fn soft_sa_early_callbacks_and_refcounts() {
    let sa = Arc::new(SoftSa::new(
        SoftSaConfig::default(),
        FaultSpec::parse("early=1").unwrap(),
        4,
    ));
    let (e, _clock, rec) = engine(sa.clone());
    e.up();
    e.restart(&[gid(1), gid(2)]);
    for _ in 0..100 {
        e.join_task();
        if e.groups().iter().all(|g| g.status == GroupStatus::Joined) {
            break;
        }
        e.wait_for_work(Duration::from_millis(50));
    }
    assert!(e.groups().iter().all(|g| g.status == GroupStatus::Joined));
    assert_eq!(sa.stats().early, 3);
    assert_eq!(
        rec.count(|ev| matches!(
            ev,
            ProbeEvent::CallbackLocked {
                mc_valid: false,
                ..
            }
        )),
        0
    );
    assert_eq!(sa.member_refcount(gid(1), PORT), 1);
    e.down();
    assert_eq!(sa.member_refcount(gid(1), PORT), 0);
    sa.assert_balanced();
}

/// The soft SA's checker itself catches the bugs it exists for.
#[test]
fn soft_sa_flags_bad_leaves_and_unbalanced_joins() {
    let sa = SoftSa::new(
        SoftSaConfig::default(),
        FaultSpec::parse("fail=1").unwrap(),
        5,
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let cb: JoinCallback = Box::new(move |r| tx.send(r).unwrap());
    let p = JoinParams {
        mgid: gid(1),
        port_gid: PORT,
        join_state: JoinState::Full,
        template: None,
    };
    let m = sa.join(p, cb).unwrap();
    assert_eq!(rx.recv_timeout(STUCK).unwrap(), Err(JoinError::Failed));
    sa.leave(m);
    sa.leave(Membership(999));
    let v = sa.violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains("invalid membership"), "{v:?}");

    let ok = SoftSa::reliable();
    let (tx, rx) = std::sync::mpsc::channel();
    let m = ok.join(p, Box::new(move |r| tx.send(r).unwrap())).unwrap();
    assert!(rx.recv_timeout(STUCK).unwrap().is_ok());
    assert_eq!(ok.unbalanced(), 1);
    assert_eq!(ok.member_refcount(gid(1), PORT), 1);
    ok.leave(m);
    ok.leave(m);
    assert_eq!(ok.unbalanced(), 0);
    assert!(ok.violations()[0].contains("second leave"));
}

#[test]
fn soft_sa_faults_are_reproducible_per_seed() {
    let outcomes = |seed| {
        let sa = SoftSa::new(
            SoftSaConfig::default(),
            FaultSpec::parse("fail=0.3,reset=0.2,einval=0.1").unwrap(),
            seed,
        );
        (0..40u8)
            .map(|n| {
                let (tx, rx) = std::sync::mpsc::channel();
                let p = JoinParams {
                    mgid: gid(n),
                    port_gid: PORT,
                    join_state: JoinState::Full,
                    template: None,
                };
                sa.join(p, Box::new(move |r| tx.send(r).unwrap())).unwrap();
                rx.recv_timeout(STUCK).unwrap().err()
            })
            .collect::<Vec<_>>()
    };
    let a = outcomes(11);
    assert_eq!(a, outcomes(11));
    assert_ne!(a, outcomes(12));
    assert!(a.iter().any(Option::is_none) && a.iter().any(Option::is_some));
}

#[test]
fn heavy_flush_moves_to_the_new_broadcast_group() {
    let (old, new) = (bcast(), gid(0xfe));
    let sa = ScriptedSa::reliable();
    let (e, _clock, _rec) = engine(sa.clone());
    e.up();
    e.restart(&[gid(1)]);
    drive(&e, &sa, |e| {
        e.groups().iter().all(|g| g.status == GroupStatus::Joined) && e.groups().len() == 2
    });
    let report = e.flush(ipoib_control::FlushLevel::Heavy(Some(new)));
    assert_eq!(report.left, 2);
    assert!(
        !e.carrier(),
        "carrier drops until the new broadcast group is joined"
    );
    drive(&e, &sa, |e| {
        e.carrier() && e.groups().iter().all(|g| g.status == GroupStatus::Joined)
    });
    let groups = e.groups();
    assert_eq!(groups[0].mgid, new);
    assert!(groups[0].broadcast);
    assert!(e.group(old).is_none() && e.group(gid(1)).is_some());
    e.down();
    sa.assert_balanced();
}

/// The daemon's wiring: a join thread on real time against the soft SA; a
/// send-only request from an lcore is picked up without anyone calling in.
#[test]
fn join_thread_joins_broadcast_full_and_sendonly_groups() {
    let sa = Arc::new(SoftSa::reliable());
    let e = Engine::builder(config(), sa.clone()).build();
    e.up();
    e.restart(&[gid(1)]);
    let t = ipoib_control::JoinThread::spawn(e.clone(), Duration::from_millis(2));
    e.requests().push(JoinRequest {
        mgid: gid(0x21),
        ifindex: 0,
    });
    let mut joined = false;
    for _ in 0..500 {
        let table = e.table().load();
        if table.len() == 3
            && table
                .iter()
                .all(|(_, s)| matches!(s, McastState::Joined(_)))
        {
            joined = true;
            break;
        }
        e.wait_for_work(Duration::from_millis(10));
    }
    t.stop();
    assert!(joined, "{}", ipoib_control::GroupsTable(&e.groups()));
    assert!(e.carrier());
    let shown = ipoib_control::GroupsTable(&e.groups()).to_string();
    assert!(
        shown.contains("SENDONLY") && shown.contains("(bcast)"),
        "{shown}"
    );
    e.down();
    sa.assert_balanced();
}
