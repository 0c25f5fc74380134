//! Wire compatibility of the rocev2 provider: what it sends parses with
//! `wire::roce` with a valid ICRC and follows rxe's header rules, and the
//! UDP payloads of the shared RoCEv2 vectors, sent by a plain UDP socket,
//! are delivered or dropped (and counted) as their `expect` says.

mod rocev2_common;

use ipoib_dataplane::provider::rocev2::icrc_for;
use ipoib_dataplane::wire::roce::{rxe_udp_sport, Outer, RoceFrame, OPCODE_UD_SEND_ONLY};
use rocev2_common::*;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/roce_v2_ud.json"
);

/// A plain UDP socket that sends as the provider does (DF, so IP ID 0).
fn plain_socket(at: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(at).expect("plain socket");
    let value: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: a live c_int and its size, on a socket this test owns.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "IP_MTU_DISCOVER");
    s
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 packet the kernel builds around a UDP payload on our sockets:
/// DF, IP ID 0, TTL 64, UDP checksum 0.
fn ipv4_packet(src: SocketAddr, dst: SocketAddr, udp_payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only");
    };
    let udp_len = 8 + udp_payload.len();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    let sum = internet_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(udp_payload);
    p
}

fn recv_datagram(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = vec![0u8; 9000];
    let (n, from) = s.recv_from(&mut buf).expect("a datagram from the provider");
    buf.truncate(n);
    (buf, from)
}

#[test]
fn sent_frames_parse_with_a_valid_icrc_and_rxe_header_rules() {
    let port = free_port("127.0.2.2");
    let capture = UdpSocket::bind((ip("127.0.2.2"), port)).expect("capture socket");
    let mut a = provider("127.0.2.1", 0x11, port, false);
    let ah = ah_to(&mut a, ip("127.0.2.2"));
    a.set_psn(0xFF_FFFE);
    let sent: Vec<Vec<u8>> = (0..3).map(|i| payload(i, 61 + i)).collect();
    send_all(&mut a, ah, 0x1234, 0x8000_0000, &sent);
    for (i, want) in sent.iter().enumerate() {
        let (udp_payload, from) = recv_datagram(&capture);
        assert_eq!(from, SocketAddr::new(ip("127.0.2.1"), rxe_udp_sport(0x11)));
        assert_eq!(from.port(), 57236, "rxe's source port for QPN 0x11");
        let dst = SocketAddr::new(ip("127.0.2.2"), port);
        let packet = ipv4_packet(from, dst, &udp_payload);
        let f = RoceFrame::parse_ip(&packet, port).expect("a valid RoCEv2 frame");
        assert_eq!(f.bth.opcode, OPCODE_UD_SEND_ONLY);
        assert_eq!(f.bth.pkey, 0xFFFF);
        assert_eq!(
            usize::from(f.bth.pad_count),
            (4 - want.len() % 4) % 4,
            "padded to a multiple of 4, as rxe pads"
        );
        assert_eq!(f.bth.dest_qpn, 0x1234);
        assert_eq!(f.bth.psn, (0xFF_FFFE + i as u32) & 0xFF_FFFF, "24-bit wrap");
        assert_eq!(f.deth.qkey, QKEY, "controlled Q_Key: the QP's own");
        assert_eq!(f.deth.src_qpn, 0x11);
        assert_eq!(f.payload, &want[..]);
    }
}

/// A packet socket on every interface (needs CAP_NET_RAW).
fn packet_socket() -> Option<std::os::fd::OwnedFd> {
    // SAFETY: plain socket(2); checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            (libc::ETH_P_ALL as u16).to_be() as libc::c_int,
        )
    };
    if raw < 0 {
        return None;
    }
    // A packet socket sees every frame of every test running in parallel: a
    // large buffer keeps ours from being dropped before we read it.
    let size: libc::c_int = 16 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a c_int option value of the right size.
        let r = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Some(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// The first RoCEv2 frame from `src` to `port` the packet socket sees,
/// parsed with its ICRC verified against the kernel's real headers.
fn captured(sock: &std::os::fd::OwnedFd, src: IpAddr, port: u16) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 9000];
    loop {
        assert!(Instant::now() < deadline, "no frame from {src} seen on lo");
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            std::thread::yield_now();
            continue;
        }
        let frame = &buf[..n as usize];
        match RoceFrame::parse_ethernet(frame, port) {
            Ok(f) if f.ip.src_addr() == src => return frame.to_vec(),
            _ => continue,
        }
    }
}

/// The real headers on the wire, seen by a packet socket on `lo` (skipped
/// with a reason without CAP_NET_RAW).
#[test]
fn kernel_headers_are_what_the_icrc_assumed() {
    let Some(sock) = packet_socket() else {
        eprintln!("skipped: no packet socket (needs CAP_NET_RAW)");
        return;
    };
    let port = free_port("127.0.2.4");
    let capture = UdpSocket::bind((ip("127.0.2.4"), port)).expect("capture socket");
    let mut a = provider("127.0.2.3", 0x12, port, false);
    let ah = ah_to(&mut a, ip("127.0.2.4"));
    send_all(&mut a, ah, 0x77, QKEY, &[payload(1, 64)]);
    let _ = recv_datagram(&capture);
    let frame = captured(&sock, ip("127.0.2.3"), port);
    let f = RoceFrame::parse_ethernet(&frame, port).expect("valid ICRC");
    let ipv4::Fields {
        ident,
        dont_frag,
        ttl,
    } = ipv4::fields(&frame[14..]);
    assert_eq!(ident, 0, "IP ID");
    assert!(dont_frag, "DF");
    assert_eq!(ttl, 64, "TTL");
    assert_eq!(
        f.udp_checksum,
        ipoib_dataplane::wire::roce::UdpChecksum::Zero
    );
    assert_eq!(f.udp_src_port, rxe_udp_sport(0x12));
    assert_eq!(f.bth.dest_qpn, 0x77);
}

/// The same over IPv6: the ICRC matches the kernel's IPv6 header, hop limit 64.
#[test]
fn kernel_ipv6_headers_are_what_the_icrc_assumed() {
    let Some(sock) = packet_socket() else {
        eprintln!("skipped: no packet socket (needs CAP_NET_RAW)");
        return;
    };
    let port = free_port("::1");
    let mut a = provider("::1", 0x13, port, false);
    let ah = ah_to(&mut a, ip("::1"));
    send_all(&mut a, ah, 0x13, QKEY, &[payload(2, 100)]);
    let frame = captured(&sock, ip("::1"), port);
    let f = RoceFrame::parse_ethernet(&frame, port).expect("valid ICRC");
    assert_eq!(frame[14 + 7], 64, "hop limit");
    assert_eq!(f.udp_src_port, rxe_udp_sport(0x13));
    assert_eq!(f.payload, &payload(2, 100)[..]);
}

mod ipv4 {
    pub struct Fields {
        pub ident: u16,
        pub dont_frag: bool,
        pub ttl: u8,
    }
    pub fn fields(h: &[u8]) -> Fields {
        Fields {
            ident: u16::from_be_bytes([h[4], h[5]]),
            dont_frag: h[6] & 0x40 != 0,
            ttl: h[8],
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn shared_vectors_are_delivered_or_dropped_as_expected() {
    let text = std::fs::read_to_string(VECTORS).expect("roce_v2_ud.json");
    let vectors: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let vectors = vectors.as_array().expect("array");
    let port = free_port("127.0.2.6");
    let mut p = provider("127.0.2.6", 0x4242, port, false);
    let to = SocketAddr::new(ip("127.0.2.6"), port);
    let peer = plain_socket(SocketAddr::new(ip("127.0.2.5"), 0));
    let from = peer.local_addr().expect("peer address");

    let mut delivered = Vec::new();
    let mut counts = std::collections::HashMap::new();
    for v in vectors {
        let name = v["name"].as_str().expect("name");
        let expect = v["expect"].as_str().expect("expect");
        let frame = unhex(v["hex"].as_str().expect("hex"));
        let outer = Outer::parse_ethernet(&frame, 4791).expect(name);
        let mut udp = outer.udp_payload.to_vec();
        let n = udp.len();
        match expect {
            "ok" | "bad_icrc" => {
                let (_, correct) = RoceFrame::parse_unverified(&outer).expect(name);
                let wire = u32::from_le_bytes(udp[n - 4..].try_into().expect("icrc"));
                // Re-address the message to this QP: P_Key, QPN, Q_Key.
                udp[2..4].copy_from_slice(&0xFFFFu16.to_be_bytes());
                udp[5..8].copy_from_slice(&0x4242u32.to_be_bytes()[1..]);
                udp[12..16].copy_from_slice(&QKEY.to_be_bytes());
                let fresh = icrc_for(from, to, n, &udp[..n - 4]).expect("icrc");
                // A bad vector stays exactly as wrong as it was.
                let icrc = fresh ^ wire ^ correct;
                udp[n - 4..].copy_from_slice(&icrc.to_le_bytes());
                if expect == "ok" {
                    let fields = &v["fields"];
                    delivered.push((
                        name.to_string(),
                        unhex(fields["payload_hex"].as_str().expect("payload")),
                        fields["src_qpn"].as_u64().expect("src_qpn") as u32,
                    ));
                }
            }
            "unsupported_opcode" => {
                let fresh = icrc_for(from, to, n, &udp[..n - 4]).expect("icrc");
                udp[n - 4..].copy_from_slice(&fresh.to_le_bytes());
            }
            _ => {}
        }
        *counts.entry(expect.to_string()).or_insert(0u64) += 1;
        peer.send_to(&udp, to).expect("send");
    }
    let got = recv_n(&mut p, delivered.len(), WAIT);
    assert_eq!(got.len(), delivered.len(), "counters: {:?}", p.counters);
    for (g, (name, data, src_qpn)) in got.iter().zip(&delivered) {
        assert_eq!(&g.data, data, "{name}");
        assert_eq!(g.src_qpn, *src_qpn, "{name}");
    }
    let want = |k: &str| counts.get(k).copied().unwrap_or(0);
    assert!(poll_until(&mut p, WAIT, |p| p.counters.rx_drops()
        == want("bad_icrc")
            + want("truncated")
            + want("unsupported_opcode")));
    assert_eq!(p.counters.rx_bad_icrc, want("bad_icrc"));
    assert_eq!(p.counters.rx_truncated, want("truncated"));
    assert_eq!(p.counters.rx_unsupported_opcode, want("unsupported_opcode"));
    assert_eq!(want("ok"), 16);
    assert_eq!(want("bad_icrc"), 2);
}

/// A frame whose ICRC was made with IPv4 ID `id` (as rxe sends) from `from`
/// to `to`: the UDP payload, ICRC included.
fn udp_payload_with_ip_id(from: SocketAddr, to: SocketAddr, id: u16, msg: &[u8]) -> Vec<u8> {
    let mut udp = vec![0x64, 0, 0xff, 0xff, 0, 0, 0x42, 0x42, 0, 0, 0, 7];
    udp.extend_from_slice(&QKEY.to_be_bytes());
    udp.extend_from_slice(&[0, 0, 0, 0x33]);
    udp.extend_from_slice(msg);
    udp.extend_from_slice(&[0; 4]);
    let mut packet = ipv4_packet(from, to, &udp);
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    let n = udp.len();
    let value = ipoib_dataplane::wire::roce::icrc(&packet[..20], &packet[20..28], &udp[..n - 4])
        .expect("icrc");
    udp[n - 4..].copy_from_slice(&value.to_le_bytes());
    udp
}

#[test]
fn icrcs_made_with_rxes_nonzero_ip_ids_are_accepted_unless_strict() {
    let port = free_port("127.0.2.8");
    let mut p = provider("127.0.2.8", 0x4242, port, false);
    let to = SocketAddr::new(ip("127.0.2.8"), port);
    let peer = plain_socket(SocketAddr::new(ip("127.0.2.7"), 0));
    let from = peer.local_addr().expect("peer address");
    for id in [0x1234u16, 0xfffe] {
        let udp = udp_payload_with_ip_id(from, to, id, &payload(id as usize, 64));
        peer.send_to(&udp, to).expect("send");
    }
    let got = recv_n(&mut p, 2, WAIT);
    assert_eq!(got.len(), 2, "counters: {:?}", p.counters);
    assert_eq!(got[0].src_qpn, 0x33);
    assert_eq!(p.counters.rx_nonzero_ip_id, 2);

    let cfg = ipoib_dataplane::provider::rocev2::Rocev2Config {
        port,
        multicast: false,
        accept_nonzero_ip_id: false,
        ..ipoib_dataplane::provider::rocev2::Rocev2Config::new(ip("127.0.2.9"), 0x4242)
    };
    let mut strict = ipoib_dataplane::provider::rocev2::Rocev2Provider::new(cfg, cache())
        .expect("strict provider");
    let to = SocketAddr::new(ip("127.0.2.9"), port);
    let udp = udp_payload_with_ip_id(from, to, 0x1234, &payload(1, 64));
    peer.send_to(&udp, to).expect("send");
    assert!(poll_until(&mut strict, WAIT, |p| p.counters.rx_bad_icrc == 1));
    assert_eq!(strict.counters.rx_packets, 0);
}

#[test]
fn ipv6_datagrams_with_udp_checksum_zero_are_delivered_as_rxe_sends_them() {
    let port = free_port("::1");
    let mut p = provider("::1", 0x4242, port, false);
    let to = SocketAddr::new(ip("::1"), port);
    // rxe sends UDP checksum 0 over IPv6 too; the kernel drops such a
    // datagram unless the receiving socket allows it.
    let peer = UdpSocket::bind(SocketAddr::new(ip("::1"), 0)).expect("peer");
    let on: libc::c_int = 1;
    // SAFETY: a live c_int and its size, on a socket this test owns.
    let rc = unsafe {
        libc::setsockopt(
            peer.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_NO_CHECK6_TX,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_NO_CHECK6_TX");
    let from = peer.local_addr().expect("peer address");
    let mut udp = vec![0x64, 0, 0xff, 0xff, 0, 0, 0x42, 0x42, 0, 0, 0, 7];
    udp.extend_from_slice(&QKEY.to_be_bytes());
    udp.extend_from_slice(&[0, 0, 0, 0x33]);
    udp.extend_from_slice(&payload(6, 64));
    udp.extend_from_slice(&[0; 4]);
    let n = udp.len();
    let icrc = icrc_for(from, to, n, &udp[..n - 4]).expect("icrc");
    udp[n - 4..].copy_from_slice(&icrc.to_le_bytes());
    peer.send_to(&udp, to).expect("send");
    let got = recv_n(&mut p, 1, WAIT);
    assert_eq!(got.len(), 1, "counters: {:?}", p.counters);
    assert_eq!((got[0].src_qpn, &got[0].data), (0x33, &payload(6, 64)));
}
