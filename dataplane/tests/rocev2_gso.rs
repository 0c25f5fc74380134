//! UDP GSO sends: equal-sized messages to one destination leave as one
//! send, every segment a whole RoCEv2 packet with its own ICRC, and arrive
//! as ordinary datagrams at a receiver that does nothing special.

mod rocev2_common;

use ipoib_dataplane::provider::rocev2::{Rocev2Config, Rocev2Provider};
use rocev2_common::*;
use std::time::Duration;

#[test]
fn gso_runs_arrive_as_separate_messages_in_order() {
    let port = free_port("127.0.10.1");
    let cfg = Rocev2Config {
        port,
        multicast: false,
        gso: true,
        ..Rocev2Config::new(ip("127.0.10.1"), 0x91)
    };
    let mut a = Rocev2Provider::new(cfg, cache()).expect("GSO sender");
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
