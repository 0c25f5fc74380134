//! rocev2 multicast on loopback: a group joined through a QP's
//! `McastSocket` (the kernel records the IGMP membership), sends to an
//! IPv4-mapped MGID reach every member with destination QPN 0xFFFFFF, a
//! sender's own copy is recognisable, and non-members see nothing.

mod rocev2_common;

use ipoib_dataplane::provider::rocev2::addr::gid_of;
use ipoib_dataplane::provider::Provider;
use rocev2_common::*;
use std::net::Ipv4Addr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// Whether `/proc/net/igmp` lists `group` on any interface.
fn igmp_lists(group: Ipv4Addr) -> bool {
    let hex = format!("{:08X}", u32::from_ne_bytes(group.octets()));
    std::fs::read_to_string("/proc/net/igmp")
        .map(|t| t.lines().any(|l| l.trim_start().starts_with(&hex)))
        .unwrap_or(false)
}

#[test]
fn members_receive_group_sends_and_the_sender_knows_its_own() {
    let group = Ipv4Addr::new(239, 7, 1, 1);
    let port = free_port("127.0.5.1");
    let mut a = provider("127.0.5.1", 0x71, port, true);
    let mut b = provider("127.0.5.2", 0x72, port, true);
    let mut outsider = provider("127.0.5.3", 0x73, port, true);
    let mut sender = provider("127.0.5.4", 0x74, port, true);
    a.mcast_socket()
        .expect("multicast")
        .join(group.into())
        .expect("join A");
    b.mcast_socket()
        .expect("multicast")
        .join(group.into())
        .expect("join B");
    assert!(igmp_lists(group), "the kernel records the membership");

    let ah = ah_to(&mut sender, group.into());
    assert!(ah.multicast);
    let sent: Vec<Vec<u8>> = (0..10).map(|i| payload(i, 100)).collect();
    // The remote QPN is ignored: multicast goes to QPN 0xFFFFFF.
    send_all(&mut sender, ah, 0, QKEY, &sent);
    for (name, p) in [("A", &mut a), ("B", &mut b)] {
        let got = recv_n(p, sent.len(), WAIT);
        assert_eq!(got.len(), sent.len(), "{name}: {:?}", p.counters);
        for (g, want) in got.iter().zip(&sent) {
            assert_eq!(&g.data, want);
            assert!(g.multicast);
            assert!(!g.own);
            assert_eq!(g.src_qpn, 0x74);
            assert_eq!(g.dgid, Some(gid_of(group.into())));
            assert_eq!(g.sgid, Some(gid_of(ip("127.0.5.4"))));
        }
        assert_eq!(p.counters.rx_multicast, sent.len() as u64);
    }
    assert!(recv_n(&mut outsider, 1, Duration::from_millis(50)).is_empty());

    // A member's own send loops back, recognisably.
    let ah = ah_to(&mut a, group.into());
    send_all(&mut a, ah, 0, QKEY, &[payload(99, 30)]);
    let got = recv_n(&mut a, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert!(got[0].own && got[0].multicast);
    let got = recv_n(&mut b, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert!(!got[0].own);

    a.mcast_socket()
        .expect("multicast")
        .leave(group.into())
        .expect("leave A");
    b.mcast_socket()
        .expect("multicast")
        .leave(group.into())
        .expect("leave B");
    assert!(
        !igmp_lists(group),
        "the membership is gone after the leaves"
    );
    let ah = ah_to(&mut sender, group.into());
    send_all(&mut sender, ah, 0, QKEY, &[payload(1, 8)]);
    assert!(recv_n(&mut a, 1, Duration::from_millis(50)).is_empty());
    let _ = outsider.port();
}

#[test]
fn ipoib_mgids_address_their_ipv4_group() {
    let group = Ipv4Addr::new(239, 7, 2, 9);
    let port = free_port("127.0.5.5");
    let mut member = provider("127.0.5.5", 0x75, port, true);
    let mut sender = provider("127.0.5.6", 0x76, port, true);
    member
        .mcast_socket()
        .expect("multicast")
        .join(group.into())
        .expect("join");
    // ff12:401b:ffff::f07:209: the IPoIB MGID of 239.7.2.9 (its low 28 bits).
    let mgid: std::net::Ipv6Addr = "ff12:401b:ffff::f07:209".parse().expect("mgid");
    let ah = sender
        .create_ah(&ipoib_dataplane::provider::AhAttr {
            dlid: 0xC001,
            dgid: Some(mgid.into()),
            sl: 0,
        })
        .expect("ah");
    assert_eq!(ah.dst, std::net::IpAddr::V4(group));
    send_all(&mut sender, ah, 0, QKEY, &[payload(3, 64)]);
    let got = recv_n(&mut member, 1, WAIT);
    assert_eq!(got.len(), 1, "{:?}", member.counters);
    assert_eq!(got[0].data, payload(3, 64));
}
