//! UD SEND_ONLY_WITH_IMMEDIATE (opcode 0x65), as rdma_cm's `mckey` sends it:
//! the wire layout (BTH, DETH, ImmDt, payload, pad, ICRC) seen by a plain UDP
//! socket, the immediate delivered next to each completion, and plain sends
//! and receives unchanged beside it.

mod rocev2_common;

use ipoib_dataplane::provider::rocev2::{icrc_for, Rocev2Ah, Rocev2Provider};
use ipoib_dataplane::provider::{Burst, Provider, RecvCompletion, SendWr};
use ipoib_dataplane::wire::roce::{
    bth, deth, rxe_udp_sport, ICRC_LEN, IMMDT_LEN, OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE,
};
use rocev2_common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

/// Posts one message of `data` with immediate `imm` (or a plain send).
fn send_one(
    p: &mut Rocev2Provider,
    ah: Rocev2Ah,
    qpn: u32,
    qkey: u32,
    data: &[u8],
    imm: Option<u32>,
) {
    let mut cache = cache();
    let mut m = cache.alloc().expect("mbuf");
    m.append(data.len()).expect("room").copy_from_slice(data);
    let mut wrs: Burst<SendWr<Rocev2Ah>> = Burst::new();
    wrs.push(SendWr {
        mbuf: m,
        ah,
        remote_qpn: qpn,
        remote_qkey: qkey,
    });
    let deadline = Instant::now() + WAIT;
    while !wrs.is_empty() {
        match imm {
            Some(imm) => p.post_send_imm(&mut wrs, imm),
            None => p.post_send(&mut wrs),
        };
        assert!(Instant::now() < deadline, "send did not drain");
    }
}

#[test]
fn wire_layout_of_a_send_with_immediate() {
    let port = free_port("127.0.7.2");
    let raw = UdpSocket::bind(("127.0.7.2", port)).expect("plain receiver");
    raw.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut a = provider("127.0.7.1", 0x13, port, false);
    let ah = ah_to(&mut a, ip("127.0.7.2"));
    // 101 bytes: padded with 3 zero bytes to a multiple of 4, as rxe pads.
    let data = payload(3, 101);
    send_one(&mut a, ah, 0x77, 0x0123_4567, &data, Some(0xdead_beef));

    let mut buf = [0u8; 2048];
    let (len, from) = raw.recv_from(&mut buf).expect("a datagram");
    let p = &buf[..len];
    assert_eq!(from, SocketAddr::new(ip("127.0.7.1"), rxe_udp_sport(0x13)));
    assert_eq!(
        len,
        bth::HEADER_LEN + deth::HEADER_LEN + IMMDT_LEN + 104 + ICRC_LEN
    );
    let b = bth::Packet::new_checked(p).expect("BTH");
    assert_eq!(b.opcode(), OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE);
    assert_eq!(b.dest_qpn(), 0x77);
    assert_eq!(b.pkey(), 0xffff);
    assert_eq!(b.pad_count(), 3);
    let d = deth::Packet::new_checked(&p[bth::HEADER_LEN..]).expect("DETH");
    assert_eq!((d.qkey(), d.src_qpn()), (0x0123_4567, 0x13));
    let at = bth::HEADER_LEN + deth::HEADER_LEN;
    assert_eq!(&p[at..at + IMMDT_LEN], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&p[at + IMMDT_LEN..len - ICRC_LEN - 3], &data[..]);
    assert_eq!(&p[len - ICRC_LEN - 3..len - ICRC_LEN], &[0, 0, 0]);
    let icrc = u32::from_le_bytes(p[len - ICRC_LEN..].try_into().expect("4 bytes"));
    let dst = SocketAddr::new(ip("127.0.7.2"), port);
    assert_eq!(icrc_for(from, dst, len, &p[..len - ICRC_LEN]), Some(icrc));
    assert_eq!(a.counters.tx_immediate, 1);
}

#[test]
fn immediates_arrive_beside_their_completions() {
    let port = free_port("127.0.7.3");
    let mut a = provider("127.0.7.3", 0x21, port, false);
    let mut b = provider("127.0.7.4", 0x22, port, false);
    let ah = ah_to(&mut a, ip("127.0.7.4"));
    send_one(&mut a, ah, 0x22, QKEY, &payload(1, 64), Some(7));
    send_one(&mut a, ah, 0x22, QKEY, &payload(2, 65), None);
    send_one(&mut a, ah, 0x22, QKEY, &payload(3, 3), Some(0xffff_ffff));

    let mut out: Burst<RecvCompletion> = Burst::new();
    let mut imms: Burst<Option<u32>> = Burst::new();
    let deadline = Instant::now() + WAIT;
    while out.len() < 3 && Instant::now() < deadline {
        b.poll_recv_imm(&mut out, &mut imms);
        std::thread::yield_now();
    }
    assert_eq!(out.len(), 3, "B counters: {:?}", b.counters);
    assert_eq!(imms.as_slice(), &[Some(7), None, Some(0xffff_ffff)]);
    let lens: Vec<usize> = out.iter().map(|c| c.mbuf.len()).collect();
    assert_eq!(lens, [64, 65, 3]);
    assert_eq!(out[0].mbuf.data(), &payload(1, 64)[..]);
    assert_eq!(out[2].mbuf.data(), &payload(3, 3)[..]);
    assert!(out.iter().all(|c| c.src_qpn == 0x21));
    assert_eq!(b.counters.rx_immediate, 2);
    assert_eq!(b.counters.rx_drops(), 0);
    let mut c = cache();
    for m in out.drain(..) {
        c.free(m.mbuf);
    }

    // The plain poll delivers immediate sends too (the ImmDt is dropped).
    send_one(&mut a, ah, 0x22, QKEY, &payload(4, 10), Some(9));
    let got = recv_n(&mut b, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, payload(4, 10));
}
