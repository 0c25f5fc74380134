//! The rdma_cm bookkeeping driven by a fake event source: joins, leaves,
//! send-only flags, error events, late answers, id destruction, and a
//! flush that reads the answers it waits for (no RDMA needed).

use super::link::{cm_group, cm_local, join_record, path_source, roce_mlid};
use super::*;
use crate::mcast::{Engine, EngineConfig, GroupTemplate, JoinResult};
use ipoib_dataplane::wire::{mgid_for_ip, Gid};
use rdma_sys::VerbsError;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Join {
        id: usize,
        group: CmAddr,
        send_only: bool,
        context: u64,
    },
    Leave {
        id: usize,
        group: CmAddr,
    },
}

struct FakeId {
    n: usize,
    destroyed: Arc<AtomicU64>,
}

impl Drop for FakeId {
    fn drop(&mut self) {
        self.destroyed.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Fake {
    next_id: AtomicUsize,
    created: AtomicU64,
    destroyed: Arc<AtomicU64>,
    calls: Mutex<Vec<Call>>,
    events: Mutex<VecDeque<CmEvent>>,
    /// errno the next `rdma_join_multicast` fails with (0: none).
    join_errno: AtomicUsize,
}

impl CmBackend for Arc<Fake> {
    type Id = FakeId;
    fn create_id(&self) -> Result<FakeId, VerbsError> {
        self.created.fetch_add(1, Ordering::SeqCst);
        Ok(FakeId {
            n: self.next_id.fetch_add(1, Ordering::SeqCst) + 1,
            destroyed: self.destroyed.clone(),
        })
    }
    fn id_addr(&self, id: &FakeId) -> usize {
        id.n
    }
    fn join(
        &self,
        id: &FakeId,
        group: CmAddr,
        send_only: bool,
        context: u64,
    ) -> Result<(), VerbsError> {
        let errno = self.join_errno.swap(0, Ordering::SeqCst);
        if errno != 0 {
            return Err(VerbsError::new("rdma_join_multicast", errno as i32));
        }
        lock(&self.calls).push(Call::Join {
            id: id.n,
            group,
            send_only,
            context,
        });
        Ok(())
    }
    fn leave(&self, id: &FakeId, group: CmAddr) -> Result<(), VerbsError> {
        lock(&self.calls).push(Call::Leave { id: id.n, group });
        Ok(())
    }
    fn next_event(&self) -> Result<Option<CmEvent>, VerbsError> {
        Ok(lock(&self.events).pop_front())
    }
    fn fd(&self) -> Option<RawFd> {
        None
    }
}

impl Fake {
    fn joins(&self) -> Vec<(usize, CmAddr, bool, u64)> {
        lock(&self.calls)
            .iter()
            .filter_map(|c| match *c {
                Call::Join {
                    id,
                    group,
                    send_only,
                    context,
                } => Some((id, group, send_only, context)),
                Call::Leave { .. } => None,
            })
            .collect()
    }
    fn leaves(&self) -> Vec<(usize, CmAddr)> {
        lock(&self.calls)
            .iter()
            .filter_map(|c| match *c {
                Call::Leave { id, group } => Some((id, group)),
                Call::Join { .. } => None,
            })
            .collect()
    }
    /// Queues the answer to the join of `context` on id `id`.
    fn answer(&self, kind: CmEventKind, status: i32, id: usize, context: u64, mlid: u16, sl: u8) {
        lock(&self.events).push_back(CmEvent {
            kind,
            status,
            id,
            context,
            mgid: [0; 16],
            mlid,
            sl,
            qkey: 0x0123_4567,
            qpn: 0xFF_FFFF,
        });
    }
    fn ids_alive(&self) -> u64 {
        self.created.load(Ordering::SeqCst) - self.destroyed.load(Ordering::SeqCst)
    }
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 50, 0, 2));

fn roce() -> (Arc<Fake>, RdmaCmService<Arc<Fake>>) {
    let fake = Arc::new(Fake::default());
    let s = RdmaCmService::with_backend(
        fake.clone(),
        CmAddr::Ip(LOCAL),
        LinkLayer::Ethernet,
        IgmpDefaults::default(),
    );
    (fake, s)
}

fn mgid(ip: &str) -> Gid {
    mgid_for_ip(ip.parse().unwrap(), 0xFFFF, 2).unwrap()
}

fn params(mgid: Gid, state: JoinState) -> JoinParams {
    JoinParams {
        mgid,
        port_gid: Gid([0xfe; 16]),
        join_state: state,
        template: None,
    }
}

type Answers = Arc<Mutex<Vec<JoinResult>>>;

fn recorder() -> (Answers, impl Fn() -> JoinCallback) {
    let answers: Answers = Arc::default();
    let a = answers.clone();
    (answers, move || {
        let a = a.clone();
        Box::new(move |r| lock(&a).push(r))
    })
}

#[test]
fn full_and_send_only_joins_use_their_flags_and_balance_with_leaves() {
    let (fake, s) = roce();
    let (answers, cb) = recorder();
    let full = s
        .join(params(mgid("239.1.2.3"), JoinState::Full), cb())
        .unwrap();
    let so = s
        .join(params(mgid("239.1.2.4"), JoinState::SendOnly), cb())
        .unwrap();
    let joins = fake.joins();
    assert_eq!(joins.len(), 2);
    let g3 = CmAddr::Ip("239.1.2.3".parse().unwrap());
    let g4 = CmAddr::Ip("239.1.2.4".parse().unwrap());
    assert_eq!((joins[0].1, joins[0].2), (g3, false));
    assert_eq!((joins[1].1, joins[1].2), (g4, true));
    assert_ne!(joins[0].0, joins[1].0, "one id per membership");
    // Nothing is answered before the events are read.
    assert!(lock(&answers).is_empty());
    fake.answer(CmEventKind::MulticastJoin, 0, joins[0].0, joins[0].3, 0, 0);
    fake.answer(CmEventKind::MulticastJoin, 0, joins[1].0, joins[1].3, 0, 0);
    assert_eq!(s.progress(), 2);
    let got = lock(&answers).clone();
    assert_eq!(got.len(), 2);
    let rec = got[0].unwrap();
    assert_eq!(rec.mgid, mgid("239.1.2.3"));
    assert_eq!(rec.qkey, 0x0B1B, "IPoIB's Q_Key, not rdma_cm's");
    assert_eq!(rec.mlid, roce_mlid(g3));
    let st = s.stats();
    assert_eq!((st.joins, st.sendonly_joins, st.outstanding()), (1, 1, 2));
    assert_eq!(s.joined_groups(), (vec![g3], vec![g4]));
    s.leave(full);
    s.leave(so);
    assert_eq!(fake.leaves(), vec![(joins[0].0, g3), (joins[1].0, g4)]);
    let st = s.stats();
    assert_eq!((st.leaves, st.outstanding()), (2, 0));
    assert_eq!(st.ids_created, st.ids_destroyed);
    assert_eq!(fake.ids_alive(), 0, "every id destroyed");
}

#[test]
fn error_events_fail_the_join_and_destroy_its_id() {
    let (fake, s) = roce();
    let (answers, cb) = recorder();
    s.join(params(mgid("239.1.1.1"), JoinState::Full), cb())
        .unwrap();
    s.join(params(mgid("239.1.1.2"), JoinState::Full), cb())
        .unwrap();
    s.join(params(mgid("239.1.1.3"), JoinState::Full), cb())
        .unwrap();
    let j = fake.joins();
    fake.answer(
        CmEventKind::MulticastError,
        -libc::ENETRESET,
        j[0].0,
        j[0].3,
        0,
        0,
    );
    fake.answer(
        CmEventKind::MulticastError,
        -libc::EINVAL,
        j[1].0,
        j[1].3,
        0,
        0,
    );
    // ADDR_ERROR carries no join context: it is found by its id.
    fake.answer(
        CmEventKind::AddrError,
        -libc::EHOSTUNREACH,
        j[2].0,
        0xdead,
        0,
        0,
    );
    s.progress();
    assert_eq!(
        *lock(&answers),
        vec![
            Err(JoinError::Reset),
            Err(JoinError::Failed),
            Err(JoinError::Failed)
        ]
    );
    let st = s.stats();
    assert_eq!((st.failed, st.joins, st.outstanding()), (3, 0, 0));
    assert!(
        fake.leaves().is_empty(),
        "no leave of a membership never joined"
    );
    assert_eq!(fake.ids_alive(), 0);
    assert_eq!(st.ids_created, st.ids_destroyed);
}

#[test]
fn a_join_not_sent_has_no_callback_and_no_id_left() {
    let (fake, s) = roce();
    let (answers, cb) = recorder();
    fake.join_errno
        .store(libc::ENODEV as usize, Ordering::SeqCst);
    let r = s.join(params(mgid("239.1.1.1"), JoinState::Full), cb());
    assert_eq!(r, Err(JoinError::Failed));
    assert_eq!(s.progress(), 0);
    assert!(lock(&answers).is_empty());
    assert_eq!(fake.ids_alive(), 0);
    // A group this interface cannot join is refused before any id exists.
    let r = s.join(params(mgid("ff02::1"), JoinState::Full), cb());
    assert_eq!(r, Err(JoinError::InvalidArgument));
    assert_eq!(fake.created.load(Ordering::SeqCst), 1);
}

#[test]
fn late_events_after_a_leave_or_a_cancel_change_nothing() {
    let (fake, s) = roce();
    let (answers, cb) = recorder();
    let m = s
        .join(params(mgid("239.1.1.1"), JoinState::Full), cb())
        .unwrap();
    let j = fake.joins()[0];
    fake.answer(CmEventKind::MulticastJoin, 0, j.0, j.3, 0, 0);
    s.progress();
    s.leave(m);
    // A duplicate answer and an error for the membership just left.
    fake.answer(CmEventKind::MulticastJoin, 0, j.0, j.3, 0, 0);
    fake.answer(
        CmEventKind::MulticastError,
        -libc::ENETRESET,
        j.0,
        j.3,
        0,
        0,
    );
    s.progress();
    assert_eq!(lock(&answers).len(), 1, "one answer per join");
    let st = s.stats();
    assert_eq!(
        (st.joins, st.leaves, st.errors, st.late_events),
        (1, 1, 0, 2)
    );
    // A second leave of the same membership is refused, not sent.
    s.leave(m);
    assert_eq!(fake.leaves().len(), 1);

    // Cancelled while pending: a success that comes later is left at once,
    // and its callback never runs.
    let m2 = s
        .join(params(mgid("239.1.1.2"), JoinState::SendOnly), cb())
        .unwrap();
    let j2 = fake.joins()[1];
    s.cancel(m2);
    assert_eq!(fake.ids_alive(), 1, "the id waits for its answer");
    fake.answer(CmEventKind::MulticastJoin, 0, j2.0, j2.3, 0, 0);
    s.progress();
    assert_eq!(lock(&answers).len(), 1);
    assert_eq!(fake.leaves().last(), Some(&(j2.0, j2.1)));
    assert_eq!(fake.ids_alive(), 0);
    let st = s.stats();
    assert_eq!((st.cancels, st.sendonly_joins, st.outstanding()), (1, 0, 0));
}

#[test]
fn a_broken_membership_is_counted_and_still_left_once() {
    let (fake, s) = roce();
    let (_answers, cb) = recorder();
    let m = s
        .join(params(mgid("239.1.1.1"), JoinState::Full), cb())
        .unwrap();
    let j = fake.joins()[0];
    fake.answer(CmEventKind::MulticastJoin, 0, j.0, j.3, 0, 0);
    fake.answer(
        CmEventKind::MulticastError,
        -libc::ENETRESET,
        j.0,
        j.3,
        0,
        0,
    );
    s.progress();
    assert_eq!(s.stats().errors, 1);
    s.leave(m);
    assert_eq!(fake.leaves().len(), 1);
    assert_eq!(s.stats().outstanding(), 0);
    assert_eq!(fake.ids_alive(), 0);
}

#[test]
fn shutdown_answers_unanswered_joins_and_destroys_their_ids() {
    let (fake, s) = roce();
    let (answers, cb) = recorder();
    s.join(params(mgid("239.1.1.1"), JoinState::Full), cb())
        .unwrap();
    let cancelled = s
        .join(params(mgid("239.1.1.2"), JoinState::Full), cb())
        .unwrap();
    s.cancel(cancelled);
    s.shutdown();
    assert_eq!(*lock(&answers), vec![Err(JoinError::Shutdown)]);
    assert_eq!(fake.ids_alive(), 0);
    let st = s.stats();
    assert_eq!(st.ids_created, st.ids_destroyed);
    assert!(fake.leaves().is_empty());
}

#[test]
fn a_flush_reads_the_answers_it_waits_for() {
    // The engine's down() waits for the broadcast join in flight; nothing
    // else reads the channel, so the wait itself must.
    let fake = Arc::new(Fake::default());
    let s = Arc::new(RdmaCmService::with_backend(
        fake.clone(),
        CmAddr::Ip(LOCAL),
        LinkLayer::Ethernet,
        IgmpDefaults::default(),
    ));
    let bcast = mgid("239.255.255.255");
    let engine = Engine::builder(EngineConfig::new(Gid([0xfe; 16]), bcast), s.clone()).build();
    engine.up();
    engine.join_task();
    let j = fake.joins();
    assert_eq!(j.len(), 1, "broadcast first");
    fake.answer(CmEventKind::MulticastJoin, 0, j[0].0, j[0].3, 0, 0);
    let r = engine.down();
    assert_eq!((r.waited, r.left, r.timed_out), (1, 1, 0));
    let st = s.stats();
    assert_eq!((st.joins, st.leaves, st.outstanding()), (1, 1, 0));
    assert_eq!(fake.ids_alive(), 0);
}

#[test]
fn the_control_thread_pass_answers_joins_through_the_engine() {
    let fake = Arc::new(Fake::default());
    let s = Arc::new(RdmaCmService::with_backend(
        fake.clone(),
        CmAddr::Ip(LOCAL),
        LinkLayer::Ethernet,
        IgmpDefaults::default(),
    ));
    let bcast = mgid("239.255.255.255");
    let engine = Engine::builder(EngineConfig::new(Gid([0xfe; 16]), bcast), s.clone()).build();
    engine.up();
    engine.restart(&[mgid("239.9.9.9")]);
    // What the control thread does each pass: read the channel, run the
    // join task; the fake SA answers each join sent, one pass later.
    let mut answered = std::collections::HashSet::new();
    let mut carrier_at = None;
    for pass in 0..10 {
        s.progress();
        engine.join_task();
        for (id, _, _, ctx) in fake.joins() {
            if answered.insert(ctx) {
                fake.answer(CmEventKind::MulticastJoin, 0, id, ctx, 0, 0);
            }
        }
        if engine.carrier() && carrier_at.is_none() {
            carrier_at = Some(pass);
        }
    }
    assert!(carrier_at.is_some(), "carrier once broadcast is joined");
    assert_eq!(s.stats().joins, 2, "broadcast, then the group");
    assert_eq!(engine.down().left, 2);
    assert_eq!(s.stats().outstanding(), 0);
    assert_eq!(fake.ids_alive(), 0);
}

// InfiniBand: the group is the IPoIB MGID itself, the record's MLID and SL
// come from the join's answer, unicast paths from the SA.

fn ib() -> (Arc<Fake>, RdmaCmService<Arc<Fake>>) {
    let fake = Arc::new(Fake::default());
    let port = Gid([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 2, 0xc9, 3, 0, 0, 0, 1]);
    let local = cm_local(LinkLayer::InfiniBand, None, port, 0x8001).unwrap();
    let defaults = IgmpDefaults {
        pkey: 0x8001,
        ..IgmpDefaults::default()
    };
    let s = RdmaCmService::with_backend(fake.clone(), local, LinkLayer::InfiniBand, defaults);
    (fake, s)
}

#[test]
fn on_infiniband_the_group_is_the_ipoib_mgid() {
    let (fake, s) = ib();
    let (answers, cb) = recorder();
    let g = mgid_for_ip("239.1.2.3".parse().unwrap(), 0x8001, 2).unwrap();
    assert_eq!(g.to_string(), "ff12:401b:8001::f01:203");
    s.join(params(g, JoinState::SendOnly), cb()).unwrap();
    let j = fake.joins()[0];
    assert_eq!(
        j.1,
        CmAddr::Ib {
            gid: g.0,
            pkey: 0x8001
        }
    );
    assert!(j.2, "send-only flag");
    // IPv6 groups too: IB has no address family to match.
    assert!(s.can_join(mgid_for_ip("ff02::1".parse().unwrap(), 0x8001, 2).unwrap()));
    fake.answer(CmEventKind::MulticastJoin, 0, j.0, j.3, 0xC012, 3);
    s.progress();
    let rec = lock(&answers)[0].unwrap();
    assert_eq!((rec.mlid, rec.sl, rec.qkey), (0xC012, 3, 0x0B1B));
}

#[test]
fn on_infiniband_an_answer_without_a_multicast_lid_fails_the_join() {
    let (fake, s) = ib();
    let (answers, cb) = recorder();
    let g = mgid_for_ip("239.1.2.3".parse().unwrap(), 0x8001, 2).unwrap();
    s.join(params(g, JoinState::Full), cb()).unwrap();
    let j = fake.joins()[0];
    fake.answer(CmEventKind::MulticastJoin, 0, j.0, j.3, 0, 0);
    s.progress();
    assert_eq!(*lock(&answers), vec![Err(JoinError::Failed)]);
    assert_eq!(fake.ids_alive(), 0);
}

#[test]
fn link_layer_decisions() {
    let port = Gid([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let g = mgid_for_ip("239.1.2.3".parse().unwrap(), 0xFFFF, 2).unwrap();
    let g6 = mgid_for_ip("ff02::1:ff00:1".parse().unwrap(), 0xFFFF, 2).unwrap();
    let ip4 = CmAddr::Ip(LOCAL);
    // RoCE: the IP group of the same address family, bound to the IP.
    assert_eq!(
        cm_group(LinkLayer::Ethernet, ip4, g, 0xFFFF),
        Some(CmAddr::Ip("239.1.2.3".parse().unwrap()))
    );
    assert_eq!(cm_group(LinkLayer::Ethernet, ip4, g6, 0xFFFF), None);
    assert_eq!(cm_group(LinkLayer::Ethernet, ip4, port, 0xFFFF), None);
    assert_eq!(
        cm_local(LinkLayer::Ethernet, Some(LOCAL), port, 0xFFFF),
        Some(ip4)
    );
    assert_eq!(cm_local(LinkLayer::Ethernet, None, port, 0xFFFF), None);
    // InfiniBand: the MGID with the P_Key, bound to the port GID.
    let ibl = cm_local(LinkLayer::InfiniBand, Some(LOCAL), port, 0xFFFF).unwrap();
    assert_eq!(
        ibl,
        CmAddr::Ib {
            gid: port.0,
            pkey: 0xFFFF
        }
    );
    assert_eq!(
        cm_group(LinkLayer::InfiniBand, ibl, g6, 0xFFFF),
        Some(CmAddr::Ib {
            gid: g6.0,
            pkey: 0xFFFF
        })
    );
    assert_eq!(cm_group(LinkLayer::InfiniBand, ibl, port, 0xFFFF), None);
    assert_eq!(
        path_source(LinkLayer::InfiniBand),
        PathSource::SubnetAdministrator
    );
    assert_eq!(path_source(LinkLayer::Ethernet), PathSource::Local);
    assert_eq!(
        LinkLayer::from_raw(rdma_sys::LINK_LAYER_ETHERNET),
        LinkLayer::Ethernet
    );
    assert_eq!(
        LinkLayer::from_raw(rdma_sys::LINK_LAYER_INFINIBAND),
        LinkLayer::InfiniBand
    );
    assert_eq!(LinkLayer::from_raw(0), LinkLayer::InfiniBand);
}

#[test]
fn records_copy_the_broadcast_template_and_take_lid_and_sl_per_link() {
    let g = mgid("239.1.2.3");
    let t = GroupTemplate {
        qkey: 0x1234,
        mtu: 2048,
        sl: 1,
        rate: 6,
        pkey: 0x8001,
    };
    let p = JoinParams {
        template: Some(t),
        ..params(g, JoinState::Full)
    };
    let ev = |mlid, sl| CmEvent {
        kind: CmEventKind::MulticastJoin,
        status: 0,
        id: 1,
        context: 1,
        mgid: g.0,
        mlid,
        sl,
        qkey: 0x0123_4567,
        qpn: 0xFF_FFFF,
    };
    let d = IgmpDefaults::default();
    let group = CmAddr::Ip("239.1.2.3".parse().unwrap());
    let r = join_record(LinkLayer::Ethernet, group, &p, &d, &ev(0, 7)).unwrap();
    assert_eq!(
        (r.qkey, r.mtu, r.sl, r.rate, r.pkey),
        (0x1234, 2048, 1, 6, 0x8001)
    );
    assert_eq!(r.mlid, roce_mlid(group));
    let r = join_record(LinkLayer::InfiniBand, group, &p, &d, &ev(0xC001, 7)).unwrap();
    assert_eq!((r.mlid, r.sl, r.qkey), (0xC001, 7, 0x1234));
    assert!(join_record(LinkLayer::InfiniBand, group, &p, &d, &ev(5, 0)).is_none());
}

// Unicast paths on InfiniBand: address, then route, then the path record.

struct FakeRouteId {
    n: usize,
    destroyed: Arc<AtomicU64>,
}

impl Drop for FakeRouteId {
    fn drop(&mut self) {
        self.destroyed.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct FakeRoutes {
    next: AtomicUsize,
    destroyed: Arc<AtomicU64>,
    resolving: Mutex<Vec<(usize, CmAddr, CmAddr)>>,
    routes: Mutex<Vec<usize>>,
    paths: Mutex<HashMap<usize, rdma_sys::CmPath>>,
    events: Mutex<VecDeque<CmEvent>>,
}

impl route::RouteBackend for Arc<FakeRoutes> {
    type Id = FakeRouteId;
    fn resolve_addr(&self, src: CmAddr, dst: CmAddr) -> Result<FakeRouteId, VerbsError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        lock(&self.resolving).push((n, src, dst));
        Ok(FakeRouteId {
            n,
            destroyed: self.destroyed.clone(),
        })
    }
    fn resolve_route(&self, id: &FakeRouteId) -> Result<(), VerbsError> {
        lock(&self.routes).push(id.n);
        Ok(())
    }
    fn path(&self, id: &FakeRouteId) -> Option<rdma_sys::CmPath> {
        lock(&self.paths).get(&id.n).copied()
    }
    fn id_addr(&self, id: &FakeRouteId) -> usize {
        id.n
    }
    fn next_event(&self) -> Result<Option<CmEvent>, VerbsError> {
        Ok(lock(&self.events).pop_front())
    }
}

impl FakeRoutes {
    fn event(&self, kind: CmEventKind, status: i32, id: usize) {
        lock(&self.events).push_back(CmEvent {
            kind,
            status,
            id,
            context: 0,
            mgid: [0; 16],
            mlid: 0,
            sl: 0,
            qkey: 0,
            qpn: 0,
        });
    }
}

#[test]
fn infiniband_paths_come_from_the_sa_through_address_and_route_resolution() {
    use crate::path::{PathError, PathService, QueryId};
    use std::time::Duration;
    let fake = Arc::new(FakeRoutes::default());
    let mut svc = route::SaPathService::new(fake.clone(), 0xFFFF);
    let me = Gid([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 2, 0xc9, 3, 0, 0, 0, 1]);
    let peer = Gid([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 2, 0xc9, 3, 0, 0, 0, 2]);
    let gone = Gid([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 2, 0xc9, 3, 0, 0, 0, 9]);
    let t = Duration::ZERO;
    svc.query(QueryId(1), me, peer, t);
    svc.query(QueryId(2), me, gone, t);
    let r = lock(&fake.resolving).clone();
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[0].1,
        CmAddr::Ib {
            gid: me.0,
            pkey: 0xFFFF
        }
    );
    assert_eq!(
        r[0].2,
        CmAddr::Ib {
            gid: peer.0,
            pkey: 0xFFFF
        }
    );
    assert!(svc.poll(t).is_empty(), "nothing before rdma_cm answers");
    assert_eq!(svc.poll_timeout(), Some(Duration::ZERO));
    // The address resolves: the route (an SA PathRecord query) is asked next.
    fake.event(CmEventKind::AddrResolved, 0, r[0].0);
    fake.event(CmEventKind::AddrError, -libc::EHOSTUNREACH, r[1].0);
    let answers = svc.poll(t);
    assert_eq!(answers, vec![(QueryId(2), Err(PathError::NoPath))]);
    assert_eq!(*lock(&fake.routes), vec![r[0].0]);
    lock(&fake.paths).insert(
        r[0].0,
        rdma_sys::CmPath {
            dgid: peer.0,
            dlid: 0x0012,
            sl: 4,
            mtu: 2048,
            rate: 7,
            pkey: 0xFFFF,
        },
    );
    fake.event(CmEventKind::RouteResolved, 0, r[0].0);
    let answers = svc.poll(t);
    let rec = answers[0].1.unwrap();
    assert_eq!(answers[0].0, QueryId(1));
    assert_eq!(
        (rec.dgid, rec.dlid, rec.sl, rec.mtu, rec.rate),
        (peer, 0x12, 4, 2048, 7)
    );
    // The address handle of that path: LID-routed, the path's SL, no GRH.
    let ah = rec.ah_attr();
    assert_eq!((ah.dlid, ah.sl, ah.dgid), (0x12, 4, None));
    // Every id is gone once answered; a late event changes nothing.
    assert_eq!(svc.in_flight(), 0);
    assert_eq!(fake.destroyed.load(Ordering::SeqCst), 2);
    fake.event(CmEventKind::RouteResolved, 0, r[0].0);
    assert!(svc.poll(t).is_empty());
    let st = svc.stats();
    assert_eq!(
        (st.queries, st.answered, st.failed, st.late_events),
        (2, 1, 1, 1)
    );
    assert_eq!(svc.poll_timeout(), None);
}

#[test]
fn a_route_without_a_lid_or_with_an_error_is_no_path() {
    use crate::path::{PathError, PathService, QueryId};
    use std::time::Duration;
    let fake = Arc::new(FakeRoutes::default());
    let mut svc = route::SaPathService::new(fake.clone(), 0x8001);
    let g = Gid([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
    svc.query(QueryId(7), g, g, Duration::ZERO);
    svc.query(QueryId(8), g, g, Duration::ZERO);
    fake.event(CmEventKind::AddrResolved, 0, 1);
    fake.event(CmEventKind::RouteResolved, 0, 1);
    fake.event(CmEventKind::AddrResolved, 0, 2);
    fake.event(CmEventKind::RouteError, -libc::ETIMEDOUT, 2);
    let answers = svc.poll(Duration::ZERO);
    assert_eq!(
        answers,
        vec![
            (QueryId(7), Err(PathError::NoPath)),
            (QueryId(8), Err(PathError::NoPath))
        ]
    );
    assert_eq!(fake.destroyed.load(Ordering::SeqCst), 2);
}
