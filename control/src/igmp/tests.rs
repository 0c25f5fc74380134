//! The join engine joining through the IGMP service on loopback: full
//! members show up in the kernel's IGMP table, send-only ones do not, and
//! a flush leaves them all.

use super::*;
use crate::mcast::GroupStatus;
use crate::{Engine, EngineConfig};
use ipoib_dataplane::mem::{HugepageMode, Mempool, MempoolConfig};
use ipoib_dataplane::provider::rocev2::{Rocev2Config, Rocev2Provider};
use ipoib_dataplane::tables::JoinRequest;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

fn provider(local: Ipv4Addr) -> Rocev2Provider {
    let pool = Mempool::new(MempoolConfig {
        name: "igmp-test".into(),
        count: 256,
        buf_size: 2304,
        hugepages: HugepageMode::Off,
    })
    .expect("pool");
    let port = UdpSocket::bind((local, 0))
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let cfg = Rocev2Config {
        port,
        ..Rocev2Config::new(local.into(), 0x99)
    };
    Rocev2Provider::new(cfg, pool.cache(32)).expect("provider")
}

/// Whether `/proc/net/igmp` lists `group` on any interface.
fn igmp_lists(group: Ipv4Addr) -> bool {
    let hex = format!("{:08X}", u32::from_ne_bytes(group.octets()));
    std::fs::read_to_string("/proc/net/igmp")
        .map(|t| t.lines().any(|l| l.trim_start().starts_with(&hex)))
        .unwrap_or(false)
}

fn gid(ip: Ipv4Addr) -> Gid {
    addr::gid_of(ip.into())
}

/// Runs the join task until `done` or a deadline.
fn drive(e: &Engine, done: impl Fn(&Engine) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        e.join_task();
        if done(e) {
            return true;
        }
        e.wait_for_work(Duration::from_millis(5));
    }
    false
}

#[test]
fn engine_joins_full_members_with_igmp_and_send_only_without() {
    let local = Ipv4Addr::new(127, 0, 6, 1);
    let (bcast, full, sendonly) = (
        Ipv4Addr::new(239, 6, 0, 255),
        Ipv4Addr::new(239, 6, 0, 1),
        Ipv4Addr::new(239, 6, 0, 2),
    );
    let qp = provider(local);
    let sockets = vec![qp.mcast_socket().expect("multicast socket")];
    let service = Arc::new(IgmpService::new(sockets, IgmpDefaults::default()).expect("service"));
    let e = Engine::builder(EngineConfig::new(gid(local), gid(bcast)), service.clone())
        .attach(Arc::new(SocketAttach))
        .build();
    e.up();
    e.restart(&[gid(full)]);
    assert!(e.requests().push(JoinRequest {
        mgid: gid(sendonly),
        ifindex: 0,
    }));
    let all_joined = |e: &Engine| {
        let g = e.groups();
        g.len() == 3 && g.iter().all(|g| g.status == GroupStatus::Joined)
    };
    assert!(drive(&e, all_joined), "groups: {:?}", e.groups());
    assert!(igmp_lists(bcast) && igmp_lists(full));
    assert!(!igmp_lists(sendonly), "a send-only join sends no IGMP");
    let s = service.stats();
    assert_eq!((s.joins, s.sendonly_joins, s.failed), (2, 1, 0));
    assert_eq!(
        service.joined_groups(),
        vec![IpAddr::from(full), bcast.into()]
    );
    let record = e.group(gid(full)).and_then(|g| g.record).expect("record");
    assert_eq!(record.qkey, 0x0B1B);

    e.down();
    assert!(!igmp_lists(bcast) && !igmp_lists(full));
    assert_eq!(service.stats().leaves, 3);
    assert!(service.joined_groups().is_empty());
}

#[test]
fn unicast_mgids_are_refused_and_cancel_leaves_a_joined_membership() {
    let qp = provider(Ipv4Addr::new(127, 0, 6, 2));
    let service = IgmpService::new(
        vec![qp.mcast_socket().expect("socket")],
        IgmpDefaults::default(),
    )
    .expect("service");
    let params = |ip: Ipv4Addr| JoinParams {
        mgid: gid(ip),
        port_gid: gid(Ipv4Addr::new(127, 0, 6, 2)),
        join_state: JoinState::Full,
        template: None,
    };
    let refused = service.join(params(Ipv4Addr::new(10, 0, 0, 1)), Box::new(|_| {}));
    assert_eq!(refused, Err(JoinError::InvalidArgument));

    let (tx, rx) = mpsc::channel();
    let m = service
        .join(
            params(Ipv4Addr::new(239, 6, 1, 1)),
            Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            }),
        )
        .expect("join");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    assert!(igmp_lists(Ipv4Addr::new(239, 6, 1, 1)));
    service.cancel(m);
    assert!(
        !igmp_lists(Ipv4Addr::new(239, 6, 1, 1)),
        "cancel of a joined membership leaves"
    );
    service.shutdown();
    assert_eq!(
        service.join(params(Ipv4Addr::new(239, 6, 1, 2)), Box::new(|_| {})),
        Err(JoinError::Shutdown)
    );
}
