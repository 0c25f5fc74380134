//! UDP GRO receive: a GSO sender's run comes up as one buffer and is cut
//! into its messages, in order, each checked (ICRC made with the segment's
//! IPv4 ID); a burst smaller than the run leaves the rest staged for the
//! next poll; plain senders are received as before.

mod rocev2_common;

use ipoib_dataplane::provider::rocev2::{Rocev2Config, Rocev2Provider};
use ipoib_dataplane::provider::{Provider, RecvCompletion};
use rocev2_common::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn qp(local: &str, qpn: u32, port: u16, gso: bool, gro: bool) -> Rocev2Provider {
    let cfg = Rocev2Config {
        port,
        multicast: false,
        gso,
        gro,
        // Strict: on loopback a GSO send comes up whole, segment k with
        // IPv4 ID k, so every ICRC must match with the ID its place gives
        // (a sender that covered the wrong ID fails here).
        accept_nonzero_ip_id: !gro,
        ..Rocev2Config::new(ip(local), qpn)
    };
    Rocev2Provider::new(cfg, cache()).expect("rocev2 QP")
}

#[test]
fn gso_runs_come_up_as_one_buffer_and_are_cut_in_order() {
    let port = free_port("127.0.11.1");
    let mut a = qp("127.0.11.1", 0xa1, port, true, false);
    let mut b = qp("127.0.11.2", 0xa2, port, false, true);
    let ah = ah_to(&mut a, ip("127.0.11.2"));
    // A run of 30 equal messages (unaligned: padded), then 10 of another size.
    let mut sent: Vec<Vec<u8>> = (0..30).map(|i| payload(i, 201)).collect();
    sent.extend((30..40).map(|i| payload(i, 64)));
    send_all(&mut a, ah, 0xa2, QKEY, &sent);
    let got = recv_n(&mut b, sent.len(), WAIT);
    assert_eq!(got.len(), sent.len(), "b: {:?}", b.counters);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.data, sent[i], "message {i}");
        assert_eq!(g.src_qpn, 0xa1);
    }
    assert!(b.counters.rx_gro_buffers >= 1, "b: {:?}", b.counters);
    assert_eq!(b.counters.rx_drops(), 0);
}

#[test]
fn a_small_burst_leaves_the_rest_of_a_run_staged() {
    let port = free_port("127.0.11.3");
    let mut a = qp("127.0.11.3", 0xb1, port, true, false);
    let mut b = qp("127.0.11.4", 0xb2, port, false, true);
    let ah = ah_to(&mut a, ip("127.0.11.4"));
    let sent: Vec<Vec<u8>> = (0..32).map(|i| payload(i, 128)).collect();
    send_all(&mut a, ah, 0xb2, QKEY, &sent);
    let mut out: arrayvec::ArrayVec<RecvCompletion, 3> = arrayvec::ArrayVec::new();
    let mut got = Vec::new();
    let mut c = cache();
    let deadline = Instant::now() + WAIT;
    while got.len() < sent.len() && Instant::now() < deadline {
        b.poll_recv(&mut out);
        assert!(out.len() <= 3);
        for m in out.drain(..) {
            got.push(m.mbuf.data().to_vec());
            c.free(m.mbuf);
        }
    }
    assert_eq!(got, sent, "b: {:?}", b.counters);
    assert!(b.counters.rx_gro_buffers >= 1, "b: {:?}", b.counters);
}

#[test]
fn plain_senders_and_bad_frames_are_handled_as_without_gro() {
    let port = free_port("127.0.11.5");
    let mut a = qp("127.0.11.5", 0xc1, port, false, false);
    let mut b = qp("127.0.11.6", 0xc2, port, false, true);
    let ah = ah_to(&mut a, ip("127.0.11.6"));
    send_all(&mut a, ah, 0xc2, 0x1234, &[payload(0, 40)]);
    let sent: Vec<Vec<u8>> = (1..6).map(|i| payload(i, 40 + i)).collect();
    send_all(&mut a, ah, 0xc2, QKEY, &sent);
    let got = recv_n(&mut b, sent.len(), WAIT);
    let data: Vec<Vec<u8>> = got.into_iter().map(|g| g.data).collect();
    assert_eq!(data, sent, "b: {:?}", b.counters);
    assert_eq!(b.counters.rx_qkey_mismatch, 1);
    // A corrupted datagram from a plain socket is a counted drop.
    let raw = std::net::UdpSocket::bind(("127.0.11.7", 0)).expect("plain socket");
    raw.send_to(&[0x64; 60], ("127.0.11.6", port))
        .expect("send");
    assert!(poll_until(&mut b, WAIT, |b| b.counters.rx_bad_icrc == 1));
}

/// Segments of one buffer are checked one by one: a segment whose DETH
/// differs from its neighbours' (another Q_Key) is a counted drop, and the
/// segments around it, before and after, still come up.
#[test]
fn a_segment_unlike_its_neighbours_is_checked_on_its_own() {
    let port = free_port("127.0.11.8");
    let mut a = qp("127.0.11.8", 0xd1, port, true, false);
    let mut b = qp("127.0.11.9", 0xd2, port, false, true);
    let ah = ah_to(&mut a, ip("127.0.11.9"));
    let mut cache = cache();
    let mut wrs: ipoib_dataplane::provider::Burst<ipoib_dataplane::provider::SendWr<_>> =
        ipoib_dataplane::provider::Burst::new();
    for i in 0..8 {
        let mut m = cache.alloc().expect("mbuf");
        m.append(100)
            .expect("room")
            .copy_from_slice(&payload(i, 100));
        wrs.push(ipoib_dataplane::provider::SendWr {
            mbuf: m,
            ah,
            remote_qpn: 0xd2,
            remote_qkey: if i == 3 { 0x1234 } else { QKEY },
        });
    }
    while !wrs.is_empty() {
        a.post_send(&mut wrs);
    }
    assert_eq!(a.counters.tx_gso_sends, 1, "one run: {:?}", a.counters);
    let got = recv_n(&mut b, 7, WAIT);
    let data: Vec<Vec<u8>> = got.into_iter().map(|g| g.data).collect();
    let want: Vec<Vec<u8>> = (0..8)
        .filter(|&i| i != 3)
        .map(|i| payload(i, 100))
        .collect();
    assert_eq!(data, want, "b: {:?}", b.counters);
    assert_eq!(b.counters.rx_qkey_mismatch, 1);
    assert_eq!(b.counters.rx_gro_buffers, 1, "b: {:?}", b.counters);
}
