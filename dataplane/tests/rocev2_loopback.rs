//! Two rocev2 QPs on loopback addresses exchange UD messages through real
//! UDP sockets: unicast both ways, in order, with the sender's QPN and GID.

mod rocev2_common;

use ipoib_dataplane::provider::rocev2::addr::gid_of;
use ipoib_dataplane::provider::Provider;
use rocev2_common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn unicast_both_ways_in_order() {
    let port = free_port("127.0.1.1");
    let mut a = provider("127.0.1.1", 0x11, port, false);
    let mut b = provider("127.0.1.2", 0x22, port, false);
    let to_b = ah_to(&mut a, ip("127.0.1.2"));
    let to_a = ah_to(&mut b, ip("127.0.1.1"));

    let sent: Vec<Vec<u8>> = (0..100).map(|i| payload(i, 64 + i)).collect();
    send_all(&mut a, to_b, 0x22, QKEY, &sent);
    let got = recv_n(&mut b, sent.len(), WAIT);
    assert_eq!(got.len(), sent.len(), "B counters: {:?}", b.counters);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.data, sent[i], "message {i}");
        assert_eq!(g.src_qpn, 0x11);
        assert_eq!(g.sgid, Some(gid_of(ip("127.0.1.1"))));
        assert_eq!(g.dgid, Some(gid_of(ip("127.0.1.2"))));
        assert!(!g.multicast && !g.own);
    }
    assert_eq!(a.counters.tx_packets, 100);
    assert_eq!(a.next_psn(), 100);
    assert_eq!(b.counters.rx_packets, 100);
    assert_eq!(b.counters.rx_drops(), 0);

    let back: Vec<Vec<u8>> = (0..5).map(|i| payload(i, 1500)).collect();
    send_all(&mut b, to_a, 0x11, QKEY, &back);
    let got = recv_n(&mut a, back.len(), WAIT);
    assert_eq!(got.iter().map(|g| g.data.clone()).collect::<Vec<_>>(), back);
    assert!(got.iter().all(|g| g.src_qpn == 0x22));
}

#[test]
fn controlled_qkey_sends_the_qps_own() {
    let port = free_port("127.0.1.3");
    let mut a = provider("127.0.1.3", 0x31, port, false);
    let mut b = provider("127.0.1.4", 0x32, port, false);
    let ah = ah_to(&mut a, ip("127.0.1.4"));
    send_all(&mut a, ah, 0x32, 0x8000_0000, &[payload(1, 40)]);
    let got = recv_n(&mut b, 1, WAIT);
    assert_eq!(got.len(), 1, "B counters: {:?}", b.counters);
}

#[test]
fn wrong_qkey_and_wrong_qpn_are_counted_drops() {
    let port = free_port("127.0.1.5");
    let mut a = provider("127.0.1.5", 0x41, port, false);
    let mut b = provider("127.0.1.6", 0x42, port, false);
    let ah = ah_to(&mut a, ip("127.0.1.6"));
    send_all(&mut a, ah, 0x42, 0x1234, &[payload(1, 40)]);
    send_all(&mut a, ah, 0x99, QKEY, &[payload(2, 40), payload(3, 40)]);
    send_all(&mut a, ah, 0x42, QKEY, &[payload(4, 40)]);
    let got = recv_n(&mut b, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, payload(4, 40));
    assert!(poll_until(&mut b, WAIT, |b| b.counters.rx_drops() == 3));
    assert_eq!(b.counters.rx_qkey_mismatch, 1);
    assert_eq!(b.counters.rx_wrong_qpn, 2);
}

#[test]
fn ipv6_loopback_works_too() {
    let port = free_port("::1");
    let mut a = provider("::1", 0x51, port, false);
    // Both ends on ::1: the receiver tells them apart by QPN.
    let ah = ah_to(&mut a, ip("::1"));
    send_all(&mut a, ah, 0x51, QKEY, &[payload(1, 100)]);
    let got = recv_n(&mut a, 1, WAIT);
    assert_eq!(got.len(), 1, "counters: {:?}", a.counters);
    assert_eq!(got[0].data, payload(1, 100));
    assert!(got[0].own, "a QP's own message is recognisable");
}

#[test]
fn address_handles_need_a_gid_of_the_same_family() {
    let port = free_port("127.0.1.7");
    let mut a = provider("127.0.1.7", 0x61, port, false);
    let attr = ipoib_dataplane::provider::AhAttr {
        dlid: 1,
        dgid: None,
        sl: 0,
    };
    assert!(a.create_ah(&attr).is_err());
    let v6 = ipoib_dataplane::provider::AhAttr {
        dgid: Some(gid_of(ip("fd00::1"))),
        ..attr
    };
    assert!(a.create_ah(&v6).is_err());
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let port = free_port("127.0.1.9");
    let _holder = std::net::UdpSocket::bind(("127.0.1.9", port)).expect("holder");
    let cfg = ipoib_dataplane::provider::rocev2::Rocev2Config {
        port,
        multicast: false,
        ..ipoib_dataplane::provider::rocev2::Rocev2Config::new(ip("127.0.1.9"), 0x71)
    };
    let err = ipoib_dataplane::provider::rocev2::Rocev2Provider::new(cfg, cache())
        .err()
        .expect("the port is taken");
    let text = err.to_string();
    assert!(
        text.contains(&format!("cannot bind UDP 127.0.1.9:{port}")),
        "{text}"
    );
}
