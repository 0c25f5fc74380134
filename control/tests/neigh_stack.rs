//! Two smoltcp stacks on the IP medium joined by a loop of their packet
//! queues: ICMP and ICMPv6 echo answered by the stack, UDP both ways.

use ipoib_control::stack::{IpStack, StackConfig, StackError};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn stack(n: u8) -> IpStack {
    let cfg = StackConfig {
        addrs: vec![
            (ip(&format!("10.0.0.{n}")), 24),
            (ip(&format!("2001:db8::{n}")), 64),
        ],
        seed: u64::from(n),
        echo_ident: 0x100 + u16::from(n),
        ..StackConfig::default()
    };
    IpStack::new(&cfg, Duration::ZERO).expect("stack")
}

/// Moves packets both ways until neither stack has anything to send.
/// Returns how many packets crossed.
fn exchange(a: &mut IpStack, b: &mut IpStack, now: Duration) -> usize {
    let mut crossed = 0;
    for _ in 0..100 {
        a.poll(now);
        b.poll(now);
        let from_a = a.take_transmitted();
        let from_b = b.take_transmitted();
        if from_a.is_empty() && from_b.is_empty() {
            return crossed;
        }
        crossed += from_a.len() + from_b.len();
        for p in from_a {
            assert!(b.receive(p));
        }
        for p in from_b {
            assert!(a.receive(p));
        }
    }
    panic!("the stacks never went quiet");
}

#[test]
fn echo_is_answered_over_ipv4_and_ipv6() {
    let mut a = stack(1);
    let mut b = stack(2);
    let mut now = Duration::ZERO;
    for (seq, dst) in [(1, ip("10.0.0.2")), (2, ip("2001:db8::2"))] {
        a.ping(dst, seq, b"ipoib echo payload").expect("ping");
        now += Duration::from_millis(1);
        // Request and reply.
        assert_eq!(exchange(&mut a, &mut b, now), 2);
        let replies = a.echo_replies();
        assert_eq!(replies.len(), 1, "one reply to ping {seq}");
        assert_eq!(replies[0].from, dst);
        assert_eq!(replies[0].seq, seq);
        assert_eq!(replies[0].data, b"ipoib echo payload");
    }
    // B answered without any socket of its own.
    assert!(b.echo_replies().is_empty());
}

#[test]
fn echo_to_an_absent_host_gets_no_reply() {
    let mut a = stack(1);
    let mut b = stack(2);
    a.ping(ip("10.0.0.3"), 1, b"x").expect("ping");
    exchange(&mut a, &mut b, Duration::from_millis(1));
    assert!(a.echo_replies().is_empty());
}

#[test]
fn udp_round_trip_over_ipv4_and_ipv6() {
    let mut a = stack(1);
    let mut b = stack(2);
    a.udp_bind(5000).expect("bind");
    b.udp_bind(6000).expect("bind");
    assert_eq!(b.udp_bind(6000), Err(StackError::PortInUse(6000)));
    let mut now = Duration::ZERO;
    for dst in [ip("10.0.0.2"), ip("2001:db8::2")] {
        let to = SocketAddr::new(dst, 6000);
        a.udp_send(5000, to, b"request").expect("send");
        now += Duration::from_millis(1);
        exchange(&mut a, &mut b, now);
        let (from, data) = b.udp_recv(6000).expect("datagram at B");
        assert_eq!(data, b"request");
        assert_eq!(from.port(), 5000);
        assert_eq!(from.ip().is_ipv4(), dst.is_ipv4());

        b.udp_send(6000, from, b"response").expect("send back");
        now += Duration::from_millis(1);
        exchange(&mut a, &mut b, now);
        let (from, data) = a.udp_recv(5000).expect("datagram at A");
        assert_eq!(data, b"response");
        assert_eq!(from, to);
    }
    assert!(a.udp_recv(5000).is_none());
    assert_eq!(
        a.udp_send(7000, SocketAddr::new(ip("10.0.0.2"), 1), b"x"),
        Err(StackError::NotBound(7000))
    );
}

#[test]
fn packets_are_plain_ip() {
    let mut a = stack(1);
    a.ping(ip("10.0.0.2"), 1, b"abc").expect("ping");
    a.poll(Duration::from_millis(1));
    let sent = a.take_transmitted();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][0] >> 4, 4, "an IPv4 header, no link header");
    a.ping(ip("2001:db8::2"), 2, b"abc").expect("ping");
    a.poll(Duration::from_millis(2));
    let sent = a.take_transmitted();
    assert_eq!(sent[0][0] >> 4, 6);
}

#[test]
fn bad_prefix_is_refused() {
    let cfg = StackConfig {
        addrs: vec![(ip("10.0.0.1"), 33)],
        ..StackConfig::default()
    };
    assert!(matches!(
        IpStack::new(&cfg, Duration::ZERO),
        Err(StackError::InvalidAddress(_, 33))
    ));
    for group in ["224.0.0.1", "255.255.255.255", "ff02::1"] {
        let cfg = StackConfig {
            addrs: vec![(ip(group), 24)],
            ..StackConfig::default()
        };
        assert!(
            matches!(
                IpStack::new(&cfg, Duration::ZERO),
                Err(StackError::InvalidAddress(..))
            ),
            "{group}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_packets_never_break_the_stack(
        packets in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..20)
    ) {
        let mut a = stack(1);
        let mut now = Duration::ZERO;
        for p in packets {
            a.receive(p);
            now += Duration::from_millis(1);
            a.poll(now);
            a.take_transmitted();
        }
        // Still answers afterwards.
        let mut b = stack(2);
        b.ping(ip("10.0.0.1"), 9, b"after").map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
        exchange(&mut a, &mut b, now + Duration::from_millis(1));
        proptest::prop_assert_eq!(b.echo_replies().len(), 1);
    }
}
