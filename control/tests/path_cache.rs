//! Path cache and soft path service: answers from the fabric, query timeout
//! and failure, one address handle per path shared by its neighbours,
//! expiry and refresh, handle creation failure.

use ipoib_control::path::{
    Acquire, AhError, AhFactory, PathCache, PathConfig, PathError, PathEvent, PathRecord,
    PathService, QueryId, RecordedAh, RecordingAhFactory, SoftPathConfig, SoftPathService,
};
use ipoib_dataplane::provider::fabric::{Fabric, FabricConfig, PortSpec};
use ipoib_dataplane::provider::AhAttr;
use ipoib_dataplane::wire::Gid;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

fn gid(n: u8) -> Gid {
    Gid::link_local(0x0002_c903_0000_0000 | u64::from(n))
}

fn fabric() -> Arc<Fabric> {
    let specs: Vec<PortSpec> = (1..=3u8)
        .map(|n| PortSpec {
            lid: u16::from(n) * 10,
            gid: gid(n),
            qpn: 0x100 + u32::from(n),
            pkey: 0xffff,
            qkey: 0x0B1B,
        })
        .collect();
    Fabric::new(FabricConfig::default(), &specs).expect("fabric")
}

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn service(loss: f64, failure: f64) -> SoftPathService {
    SoftPathService::new(
        fabric(),
        SoftPathConfig {
            sl: 4,
            rate: 6,
            latency: ms(5),
            loss,
            failure,
            seed: 7,
        },
    )
}

fn record(n: u8, lid: u16) -> PathRecord {
    PathRecord {
        dgid: gid(n),
        dlid: lid,
        sl: 0,
        mtu: 2048,
        rate: 3,
    }
}

fn only_query(events: &[PathEvent<RecordedAh>]) -> QueryId {
    match events {
        [PathEvent::Query { id, .. }] => *id,
        other => panic!("expected one query, got {other:?}"),
    }
}

#[test]
fn soft_service_answers_lid_sl_mtu_rate_from_the_fabric() {
    let mut svc = service(0.0, 0.0);
    svc.query(QueryId(1), gid(1), gid(2), ms(0));
    svc.query(QueryId(2), gid(1), gid(9), ms(0));
    assert!(svc.poll(ms(4)).is_empty(), "answers take the latency");
    assert_eq!(svc.poll_timeout(), Some(ms(5)));
    let answers = svc.poll(ms(5));
    assert_eq!(
        answers,
        vec![
            (
                QueryId(1),
                Ok(PathRecord {
                    dgid: gid(2),
                    dlid: 20,
                    sl: 4,
                    mtu: 2048,
                    rate: 6,
                })
            ),
            (QueryId(2), Err(PathError::NoPath)),
        ]
    );
}

#[test]
fn seeded_faults_repeat_with_the_seed() {
    let run = || {
        let mut svc = service(0.3, 0.3);
        for i in 0..100 {
            svc.query(QueryId(i), gid(1), gid(2), ms(0));
        }
        svc.poll(ms(10))
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.len() < 100, "some queries are lost");
    assert!(a.iter().any(|x| x.1.is_err()), "some fail");
    assert!(a.iter().any(|x| x.1.is_ok()), "some succeed");
}

#[test]
fn unanswered_query_times_out_after_one_second_by_default() {
    let mut paths = PathCache::new(PathConfig::default(), RecordingAhFactory::new());
    let mut events = Vec::new();
    assert_eq!(
        paths.acquire(gid(2), ip(2), ms(0), &mut events),
        Acquire::Pending
    );
    let id = only_query(&events);
    assert_eq!(paths.poll_timeout(), Some(ms(1000)));
    assert!(paths.on_timer(ms(999)).is_empty());
    assert_eq!(
        paths.on_timer(ms(1000)),
        vec![PathEvent::Failed {
            dgid: gid(2),
            error: PathError::TimedOut,
        }]
    );
    assert_eq!(paths.stats().timeouts, 1);
    // The late answer is ignored.
    assert!(paths.on_answer(id, Ok(record(2, 20)), ms(1500)).is_empty());
    assert_eq!(paths.stats().stale_answers, 1);
    assert_eq!(paths.factory().live(), 0);

    // The next use asks again.
    let mut events = Vec::new();
    paths.acquire(gid(2), ip(2), ms(2000), &mut events);
    let id = only_query(&events);
    let events = paths.on_answer(id, Ok(record(2, 20)), ms(2001));
    assert!(matches!(events[..], [PathEvent::Ready { .. }]));
}

#[test]
fn failed_query_reports_failure() {
    let mut svc = service(0.0, 1.0);
    let mut paths = PathCache::new(PathConfig::default(), RecordingAhFactory::new());
    let mut events = Vec::new();
    paths.acquire(gid(2), ip(2), ms(0), &mut events);
    let id = only_query(&events);
    svc.query(id, gid(1), gid(2), ms(0));
    let answers = svc.poll(ms(5));
    assert_eq!(answers.len(), 1);
    let events = paths.on_answer(answers[0].0, answers[0].1, ms(5));
    assert_eq!(
        events,
        vec![PathEvent::Failed {
            dgid: gid(2),
            error: PathError::Failed,
        }]
    );
    assert_eq!(paths.stats().failures, 1);
}

#[test]
fn one_handle_per_path_shared_by_its_neighbours_released_by_the_last() {
    let mut paths = PathCache::new(PathConfig::default(), RecordingAhFactory::new());
    let mut events = Vec::new();
    paths.acquire(gid(2), ip(2), ms(0), &mut events);
    // A second neighbour on the same path while the query is in flight.
    paths.acquire(gid(2), ip(102), ms(0), &mut events);
    let id = only_query(&events);
    let events = paths.on_answer(id, Ok(record(2, 20)), ms(3));
    let ah = match events[..] {
        [PathEvent::Ready { ah, .. }] => ah,
        _ => panic!("expected Ready, got {events:?}"),
    };
    let mut events = Vec::new();
    assert_eq!(
        paths.acquire(gid(2), ip(103), ms(4), &mut events),
        Acquire::Ready(ah)
    );
    assert!(events.is_empty());
    assert_eq!(paths.factory().created.len(), 1);
    assert_eq!(paths.factory().created[0].dlid, 20);
    assert_eq!(paths.users(&gid(2)), 3);

    paths.release(gid(2), ip(2));
    paths.release(gid(2), ip(102));
    assert_eq!(paths.factory().live(), 1);
    paths.release(gid(2), ip(103));
    assert_eq!(paths.factory().live(), 0);
    assert_eq!(paths.factory().destroyed, vec![ah]);
    assert!(paths.is_empty());
    // Releasing again is harmless.
    paths.release(gid(2), ip(103));
    assert!(paths.factory().double_destroys.is_empty());
}

#[test]
fn records_are_refreshed_on_expiry_and_a_changed_path_gets_a_new_handle() {
    let cfg = PathConfig {
        query_timeout: ms(1000),
        expiry: ms(10_000),
    };
    let mut paths = PathCache::new(cfg, RecordingAhFactory::new());
    let mut events = Vec::new();
    paths.acquire(gid(2), ip(2), ms(0), &mut events);
    let id = only_query(&events);
    paths.on_answer(id, Ok(record(2, 20)), ms(1));
    let first = paths.ah(&gid(2)).expect("handle");

    assert!(paths.on_timer(ms(10_000)).is_empty());
    let id = only_query(&paths.on_timer(ms(10_001)));
    // Same path: the handle stays.
    assert!(paths
        .on_answer(id, Ok(record(2, 20)), ms(10_002))
        .is_empty());
    assert_eq!(paths.ah(&gid(2)), Some(first));

    // A refresh that fails keeps the handle in use and asks again soon.
    let id = only_query(&paths.on_timer(ms(20_003)));
    assert!(paths
        .on_answer(id, Err(PathError::Failed), ms(20_004))
        .is_empty());
    assert_eq!(paths.ah(&gid(2)), Some(first));
    let id = only_query(&paths.on_timer(ms(21_004)));

    // The port moved to another LID: new handle, old one destroyed.
    let events = paths.on_answer(id, Ok(record(2, 77)), ms(21_005));
    let second = paths.ah(&gid(2)).expect("handle");
    assert_ne!(first, second);
    assert_eq!(
        events,
        vec![PathEvent::Ready {
            dgid: gid(2),
            ah: second,
        }]
    );
    assert_eq!(paths.factory().destroyed, vec![first]);
    assert_eq!(paths.factory().attr(second).map(|a| a.dlid), Some(77));
}

#[test]
fn handle_creation_failure_fails_the_path_and_the_next_use_retries() {
    let mut factory = RecordingAhFactory::new();
    factory.fail_next = 1;
    let mut paths = PathCache::new(PathConfig::default(), factory);
    let mut events = Vec::new();
    paths.acquire(gid(3), ip(3), ms(0), &mut events);
    let id = only_query(&events);
    assert_eq!(
        paths.on_answer(id, Ok(record(3, 30)), ms(1)),
        vec![PathEvent::Failed {
            dgid: gid(3),
            error: PathError::AhCreate,
        }]
    );
    let mut events = Vec::new();
    assert_eq!(
        paths.acquire(gid(3), ip(3), ms(2), &mut events),
        Acquire::Pending
    );
    let id = only_query(&events);
    assert!(matches!(
        paths.on_answer(id, Ok(record(3, 30)), ms(3))[..],
        [PathEvent::Ready { .. }]
    ));
    assert_eq!(paths.stats().ah_failures, 1);
}

/// A factory whose log outlives the cache that owns it.
struct Shared(Rc<RefCell<RecordingAhFactory>>);

impl AhFactory for Shared {
    type Ah = RecordedAh;
    fn create_ah(&mut self, attr: &AhAttr) -> Result<RecordedAh, AhError> {
        self.0.borrow_mut().create_ah(attr)
    }
    fn destroy_ah(&mut self, ah: RecordedAh) {
        self.0.borrow_mut().destroy_ah(ah)
    }
}

#[test]
fn dropping_the_cache_destroys_its_handles() {
    let log = Rc::new(RefCell::new(RecordingAhFactory::new()));
    {
        let mut paths = PathCache::new(PathConfig::default(), Shared(Rc::clone(&log)));
        for n in [2, 3] {
            let mut events = Vec::new();
            paths.acquire(gid(n), ip(n), ms(0), &mut events);
            let id = only_query(&events);
            paths.on_answer(id, Ok(record(n, u16::from(n) * 10)), ms(1));
        }
        assert_eq!(log.borrow().live(), 2);
    }
    assert_eq!(log.borrow().live(), 0);
    assert_eq!(log.borrow().destroyed.len(), 2);
    assert!(log.borrow().double_destroys.is_empty());
}

#[test]
fn a_lookup_without_users_is_collected_with_its_handle() {
    let mut paths = PathCache::new(PathConfig::default(), RecordingAhFactory::new());
    let mut events = Vec::new();
    assert_eq!(paths.lookup(gid(2), ms(0), &mut events), Acquire::Pending);
    let id = only_query(&events);
    let events = paths.on_answer(id, Ok(record(2, 20)), ms(1));
    let ah = match events[..] {
        [PathEvent::Ready { ah, .. }] => ah,
        _ => panic!("expected Ready, got {events:?}"),
    };
    let mut events = Vec::new();
    assert_eq!(paths.lookup(gid(2), ms(2), &mut events), Acquire::Ready(ah));
    assert_eq!(
        paths.poll_timeout(),
        Some(Duration::ZERO),
        "collect at once"
    );
    assert!(paths.on_timer(ms(3)).is_empty());
    assert!(paths.is_empty());
    assert_eq!(paths.factory().destroyed, vec![ah]);

    // A path a neighbour acquired is not collected.
    let mut events = Vec::new();
    paths.lookup(gid(3), ms(4), &mut events);
    paths.acquire(gid(3), ip(3), ms(4), &mut events);
    let id = only_query(&events);
    paths.on_answer(id, Ok(record(3, 30)), ms(5));
    paths.on_timer(ms(6));
    assert!(paths.ah(&gid(3)).is_some());
}
