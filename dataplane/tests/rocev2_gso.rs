//! UDP GSO sends: equal-sized messages to one destination leave as one
//! send, every segment a whole RoCEv2 packet with its own ICRC, and arrive
//! as ordinary datagrams at a receiver that does nothing special.

mod rocev2_common;

use ipoib_dataplane::mem::LcoreCache;
use ipoib_dataplane::provider::rocev2::{Rocev2Config, Rocev2Provider};
use ipoib_dataplane::provider::{Burst, Provider, SendWr};
use rocev2_common::*;
use std::time::Duration;

/// A sender QP at `local` (no multicast), with GSO or without, and its
/// mbuf cache.
fn sender(local: &str, qpn: u32, port: u16, gso: bool, cache: LcoreCache) -> Rocev2Provider {
    let cfg = Rocev2Config {
        port,
        multicast: false,
        gso,
        ..Rocev2Config::new(ip(local), qpn)
    };
    Rocev2Provider::new(cfg, cache).expect("sender")
}

#[test]
fn gso_runs_arrive_as_separate_messages_in_order() {
    let port = free_port("127.0.10.1");
    let mut a = sender("127.0.10.1", 0x91, port, true, cache());
    let mut b = provider("127.0.10.2", 0x92, port, false);
    let ah = ah_to(&mut a, ip("127.0.10.2"));
    // Two runs of equal sizes, then a different size: three sends at least.
    let mut sent: Vec<Vec<u8>> = (0..24).map(|i| payload(i, 256)).collect();
    sent.extend((24..32).map(|i| payload(i, 100)));
    send_all(&mut a, ah, 0x92, QKEY, &sent);
    let got = recv_n(&mut b, sent.len(), Duration::from_secs(5));
    assert_eq!(got.len(), sent.len(), "b: {:?}", b.counters);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.data, sent[i], "message {i}");
        assert_eq!(g.src_qpn, 0x91);
    }
    assert!(a.counters.tx_gso_sends >= 2, "a: {:?}", a.counters);
    assert_eq!(a.counters.tx_packets, 32);
    assert_eq!(b.counters.rx_drops(), 0);
    // Segments after the first carry IPv4 IDs 1, 2, ... in their ICRCs.
    assert!(b.counters.rx_nonzero_ip_id >= 30, "b: {:?}", b.counters);
}

/// Short messages are staged and long ones go from their mbufs: a burst
/// that mixes them (and every pad count) arrives whole and in order, with
/// one PSN per message, GSO on or off; shared mbufs are sent as they are.
#[test]
fn short_and_long_messages_in_one_burst_arrive_in_order() {
    for gso in [true, false] {
        let port = free_port("127.0.10.3");
        let mut a = sender("127.0.10.3", 0x93, port, gso, cache());
        let mut b = provider("127.0.10.4", 0x94, port, false);
        let ah = ah_to(&mut a, ip("127.0.10.4"));
        let sizes = [64, 64, 64, 1000, 61, 62, 63, 256, 257, 256, 1500, 1, 1, 200];
        let sent: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| payload(i, n))
            .collect();
        send_all(&mut a, ah, 0x94, QKEY, &sent);
        // The same message twice from one shared buffer.
        let mut c = cache();
        let mut m = c.alloc().expect("mbuf");
        m.append(80)
            .expect("room")
            .copy_from_slice(&payload(99, 80));
        let twin = m.share();
        let mut wrs: Burst<SendWr<_>> = Burst::new();
        for mbuf in [m, twin] {
            wrs.push(SendWr {
                mbuf,
                ah,
                remote_qpn: 0x94,
                remote_qkey: QKEY,
            });
        }
        while !wrs.is_empty() {
            a.post_send(&mut wrs);
        }
        let got = recv_n(&mut b, sent.len() + 2, Duration::from_secs(5));
        assert_eq!(got.len(), sent.len() + 2, "gso {gso}, b: {:?}", b.counters);
        for (i, g) in got.iter().take(sent.len()).enumerate() {
            assert_eq!(g.data, sent[i], "gso {gso}, message {i}");
        }
        assert_eq!(got[sent.len()].data, payload(99, 80));
        assert_eq!(got[sent.len() + 1].data, payload(99, 80));
        assert_eq!(a.next_psn(), sent.len() as u32 + 2, "one PSN per message");
        assert_eq!(a.counters.tx_packets, sent.len() as u64 + 2);
        assert_eq!(b.counters.rx_drops(), 0, "gso {gso}: {:?}", b.counters);
    }
}

/// A caller that offers several GSO runs at once has them all sent in one
/// call, in order: short messages (staged) and long ones (sent where they
/// lie, more than the 64 one `sendmmsg` once took).
#[test]
fn several_runs_leave_in_one_call() {
    // 64 segments a send; 1000-byte messages take 1024 bytes of the
    // 65000 a send may carry: 63 a send.
    for (size, host, gso_sends) in [(64, 5, 5), (1000, 20, 5)] {
        several_runs_in_one_call(size, host, gso_sends);
    }
}

fn several_runs_in_one_call(size: usize, host: u8, gso_sends: u64) {
    let (a_ip, b_ip) = (format!("127.0.10.{host}"), format!("127.0.10.{}", host + 1));
    let port = free_port(&a_ip);
    let mut a = sender(&a_ip, 0x95, port, true, pool().cache(512));
    let mut b = provider(&b_ip, 0x96, port, false);
    b.set_recv_buffer(8 << 20).expect("receive buffer");
    let ah = ah_to(&mut a, ip(&b_ip));
    let sent: Vec<Vec<u8>> = (0..300).map(|i| payload(i, size)).collect();
    let mut c = pool().cache(512);
    let mut wrs: arrayvec::ArrayVec<SendWr<_>, 512> = arrayvec::ArrayVec::new();
    for p in &sent {
        let mut m = c.alloc().expect("mbuf");
        m.append(p.len()).expect("room").copy_from_slice(p);
        wrs.push(SendWr {
            mbuf: m,
            ah,
            remote_qpn: 0x96,
            remote_qkey: QKEY,
        });
    }
    let consumed = a.post_send(&mut wrs);
    assert_eq!(consumed, 300, "{size} bytes, a: {:?}", a.counters);
    assert_eq!(
        a.counters.tx_gso_sends, gso_sends,
        "{size} bytes, a: {:?}",
        a.counters
    );
    let got = recv_n(&mut b, sent.len(), Duration::from_secs(5));
    let data: Vec<Vec<u8>> = got.into_iter().map(|g| g.data).collect();
    assert_eq!(data, sent, "{size} bytes, b: {:?}", b.counters);
}

/// A request no socket can carry (an IPv6 destination from an IPv4 QP) is a
/// counted error; the messages around it, to the same peer, still go.
#[test]
fn an_unsendable_request_between_two_sendable_ones_is_counted() {
    let port = free_port("127.0.10.7");
    let mut a = sender("127.0.10.7", 0x97, port, true, cache());
    let mut b = provider("127.0.10.8", 0x98, port, false);
    let ah = ah_to(&mut a, ip("127.0.10.8"));
    let v6 = ipoib_dataplane::provider::rocev2::Rocev2Ah {
        dst: ip("::1"),
        multicast: false,
    };
    let mut c = cache();
    let mut wrs: Burst<SendWr<_>> = Burst::new();
    for (i, to) in [ah, v6, ah].into_iter().enumerate() {
        let mut m = c.alloc().expect("mbuf");
        m.append(64).expect("room").copy_from_slice(&payload(i, 64));
        wrs.push(SendWr {
            mbuf: m,
            ah: to,
            remote_qpn: 0x98,
            remote_qkey: QKEY,
        });
    }
    while !wrs.is_empty() {
        a.post_send(&mut wrs);
    }
    assert_eq!(a.counters.tx_errors, 1, "a: {:?}", a.counters);
    let got = recv_n(&mut b, 2, Duration::from_secs(5));
    let data: Vec<Vec<u8>> = got.into_iter().map(|g| g.data).collect();
    assert_eq!(
        data,
        vec![payload(0, 64), payload(2, 64)],
        "b: {:?}",
        b.counters
    );
}

/// Long messages (sent where they lie) longer than the QP's largest are
/// counted errors wherever they stand in the burst, the last place too;
/// the others, to the same peer, still go.
#[test]
fn overlong_messages_among_long_ones_are_counted() {
    let port = free_port("127.0.10.22");
    let max = usize::from(Rocev2Config::new(ip("127.0.10.22"), 0x99).max_msg);
    let mut a = sender("127.0.10.22", 0x99, port, true, cache());
    let mut b = provider("127.0.10.23", 0x9a, port, false);
    let ah = ah_to(&mut a, ip("127.0.10.23"));
    let mut c = cache();
    let mut wrs: Burst<SendWr<_>> = Burst::new();
    let sizes = [1000, max + 1, 1000, 1000, max + 1];
    for (i, &size) in sizes.iter().enumerate() {
        let mut m = c.alloc().expect("mbuf");
        m.append(size)
            .expect("room")
            .copy_from_slice(&payload(i, size));
        wrs.push(SendWr {
            mbuf: m,
            ah,
            remote_qpn: 0x9a,
            remote_qkey: QKEY,
        });
    }
    while !wrs.is_empty() {
        a.post_send(&mut wrs);
    }
    assert_eq!(a.counters.tx_errors, 2, "a: {:?}", a.counters);
    assert_eq!(a.counters.tx_packets, 3, "a: {:?}", a.counters);
    let got = recv_n(&mut b, 3, Duration::from_secs(5));
    let data: Vec<Vec<u8>> = got.into_iter().map(|g| g.data).collect();
    let want: Vec<Vec<u8>> = [0, 2, 3].iter().map(|&i| payload(i, 1000)).collect();
    assert_eq!(data, want, "b: {:?}", b.counters);
}
