//! An interface and its P_Key child on one local address: two rocev2 QPs
//! whose unicast sockets share the address. Steered by destination QPN,
//! each QP gets exactly its own messages, and one from the other partition
//! is dropped and counted by the QP it was addressed to.

mod rocev2_common;

use arrayvec::ArrayVec;
use ipoib_dataplane::provider::rocev2::{steer_unicast, Rocev2Config, Rocev2Provider};
use ipoib_dataplane::provider::{Provider, SendWr};
use rocev2_common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn qp(local: &str, qpn: u32, pkey: u16, port: u16) -> Rocev2Provider {
    let cfg = Rocev2Config {
        port,
        pkey,
        multicast: false,
        ..Rocev2Config::new(ip(local), qpn)
    };
    Rocev2Provider::new(cfg, cache()).expect("rocev2 provider")
}

/// (parent on 0xFFFF, child on 0x8001) at `local`, steered.
fn host(local: &str, port: u16, lid: u32) -> (Rocev2Provider, Rocev2Provider) {
    let parent = qp(local, 0x100 + lid, 0xFFFF, port);
    let child = qp(local, 0x100 + lid + 0x10000, 0x8001, port);
    steer_unicast(&[&parent, &child]).expect("steering program attached");
    (parent, child)
}

#[test]
fn parent_and_child_on_one_address_each_get_their_own_unicast() {
    let port = free_port("127.0.7.1");
    let (mut a, mut a_child) = host("127.0.7.1", port, 1);
    let (mut b, mut b_child) = host("127.0.7.2", port, 2);
    let to_b = ah_to(&mut a, ip("127.0.7.2"));
    let to_b_from_child = ah_to(&mut a_child, ip("127.0.7.2"));

    // Interleaved, so a balancing group would split each stream.
    let (parents, children): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (
        (0..64).map(|i| payload(i, 80)).collect(),
        (0..64).map(|i| payload(i, 90)).collect(),
    );
    for i in 0..4 {
        let r = i * 16..(i + 1) * 16;
        send_all(&mut a, to_b, 0x102, QKEY, &parents[r.clone()]);
        send_all(&mut a_child, to_b_from_child, 0x10102, QKEY, &children[r]);
    }
    let got = recv_n(&mut b, parents.len(), WAIT);
    let got_child = recv_n(&mut b_child, children.len(), WAIT);
    assert_eq!(got.len(), 64, "parent: {:?}", b.counters);
    assert_eq!(got_child.len(), 64, "child: {:?}", b_child.counters);
    assert!(got.iter().all(|g| g.src_qpn == 0x101 && g.data.len() == 80));
    assert!(got_child
        .iter()
        .all(|g| g.src_qpn == 0x10101 && g.data.len() == 90));
    assert_eq!(
        got.iter().map(|g| g.data.clone()).collect::<Vec<_>>(),
        parents
    );
    assert_eq!((b.counters.rx_drops(), b_child.counters.rx_drops()), (0, 0));

    // The child addressing the parent's QP: the parent's socket gets it and
    // its P_Key check drops it; nothing reaches the child.
    send_all(
        &mut a_child,
        to_b_from_child,
        0x102,
        QKEY,
        &[payload(1, 60), payload(2, 60)],
    );
    assert!(
        poll_until(&mut b, WAIT, |p| p.counters.rx_pkey_mismatch == 2),
        "parent: {:?}",
        b.counters
    );
    assert!(recv_n(&mut b_child, 1, Duration::from_millis(100)).is_empty());
    assert_eq!(b_child.counters.rx_drops(), 0);
    // And the other way.
    send_all(&mut a, to_b, 0x10102, QKEY, &[payload(3, 60)]);
    assert!(
        poll_until(&mut b_child, WAIT, |p| p.counters.rx_pkey_mismatch == 1),
        "child: {:?}",
        b_child.counters
    );
    assert_eq!(b.counters.rx_pkey_mismatch, 2);
}

#[test]
fn steering_needs_one_address() {
    let port = free_port("127.0.7.3");
    let a = qp("127.0.7.3", 0x103, 0xFFFF, port);
    let b = qp("127.0.7.4", 0x10103, 0x8001, port);
    let err = steer_unicast(&[&a, &b]).unwrap_err();
    assert!(
        err.to_string().contains("share their local address"),
        "{err}"
    );
    steer_unicast(&[]).unwrap();
}

/// A GSO sender batches equal-sized messages to one address; a receiver's
/// kernel may pick one socket for a whole batch, by its first BTH. So a
/// batch holds messages to one QP only, and interleaved messages to a
/// parent and its child still each reach their own QP.
#[test]
fn a_gso_sender_keeps_each_batch_to_one_qp() {
    let port = free_port("127.0.7.5");
    let mut a = Rocev2Provider::new(
        Rocev2Config {
            port,
            gso: true,
            multicast: false,
            ..Rocev2Config::new(ip("127.0.7.5"), 0x10105)
        },
        cache(),
    )
    .expect("GSO sender");
    let (mut b, mut b_child) = host("127.0.7.6", port, 6);
    let to_b = ah_to(&mut a, ip("127.0.7.6"));
    let msgs: Vec<Vec<u8>> = (0..32).map(|i| payload(i, 100)).collect();
    let mut cache = cache();
    let mut wrs: ArrayVec<SendWr<_>, 32> = ArrayVec::new();
    for (i, m) in msgs.iter().enumerate() {
        let mut buf = cache.alloc().expect("mbuf");
        buf.append(m.len()).expect("room").copy_from_slice(m);
        wrs.push(SendWr {
            mbuf: buf,
            ah: to_b,
            // Both partitions' QPs, alternately; the sender's P_Key is 0xFFFF.
            remote_qpn: if i % 4 < 2 { 0x106 } else { 0x10106 },
            remote_qkey: QKEY,
        });
    }
    assert_eq!(a.post_send(&mut wrs), 32);
    assert_eq!(
        a.counters.tx_gso_sends, 16,
        "pairs to one QP: {:?}",
        a.counters
    );
    assert_eq!(
        recv_n(&mut b, 16, WAIT).len(),
        16,
        "parent: {:?}",
        b.counters
    );
    // The child's QP got its 16, each dropped by its P_Key check, none lost
    // to the parent's socket.
    assert!(
        poll_until(&mut b_child, WAIT, |p| p.counters.rx_pkey_mismatch == 16),
        "child: {:?}",
        b_child.counters
    );
    assert_eq!(b.counters.rx_drops(), 0, "{:?}", b.counters);
}
