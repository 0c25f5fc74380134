//! Real Linux rxe traffic (shared captures): every RoCEv2 frame parses with a
//! valid ICRC, re-emits byte for byte, and shows what rxe puts on the wire
//! (UDP source port from the QPN, UDP checksum 0, DF, TTL 64, P_Key 0xFFFF,
//! no padding).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use ipoib_dataplane::capture::{PcapReader, LINKTYPE_ETHERNET};
use ipoib_dataplane::wire::roce::{
    ethernet::ipv4_multicast_mac, rxe_udp_sport, FrameError, IpRepr, RoceFrame, UdpChecksum,
};

const RXE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/rxe/");

struct Expect {
    file: &'static str,
    frames: usize,
    opcode: u8,
    qpn: u32,
    qkey: u32,
    payload_len: usize,
    /// IGMP and other non-RoCE frames in the capture.
    others: usize,
}

const CAPTURES: [Expect; 3] = [
    Expect {
        file: "ud-send-only-ipv4-ud_pingpong.pcap",
        frames: 40,
        opcode: 0x64,
        qpn: 0x11,
        qkey: 0x1111_1111,
        payload_len: 512,
        others: 0,
    },
    Expect {
        file: "ud-send-only-ipv4-ib_send_lat.pcap",
        frames: 200,
        opcode: 0x64,
        qpn: 0x12,
        qkey: 0x1111_1111,
        payload_len: 64,
        others: 0,
    },
    Expect {
        file: "ud-mcast-mckey-rdma_cm-ipv4.pcap",
        frames: 10,
        opcode: 0x65,
        qpn: 0x13,
        qkey: 0x0123_4567,
        payload_len: 100,
        others: 8,
    },
];

fn records(file: &str) -> Vec<Vec<u8>> {
    let path = format!("{RXE_DIR}{file}");
    let input = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    let reader = PcapReader::new(std::io::BufReader::new(input)).expect("pcap header");
    assert_eq!(reader.linktype(), LINKTYPE_ETHERNET, "{file}");
    reader.map(|r| r.expect("record").data).collect::<Vec<_>>()
}

#[test]
fn rxe_source_port_hash_matches_the_documented_values() {
    assert_eq!(rxe_udp_sport(0x11), 57236);
    assert_eq!(rxe_udp_sport(0x12), 63494);
    assert_eq!(rxe_udp_sport(0x13), 53368);
    // The port always lands in 0xC000..=0xFFFF.
    for qpn in [0, 1, 0xFF_FFFF, 0x12_3456] {
        assert!(rxe_udp_sport(qpn) >= 0xC000);
    }
}

#[test]
fn every_rxe_frame_has_a_valid_icrc_and_rxe_shape() {
    for expect in &CAPTURES {
        let file = expect.file;
        let mut frames = 0;
        let mut others = 0;
        let mut ip_ids = HashSet::new();
        let mut psns = Vec::new();
        for bytes in records(file) {
            let frame = match RoceFrame::parse(&bytes) {
                Ok(frame) => frame,
                Err(FrameError::NotRoce(_)) => {
                    others += 1;
                    continue;
                }
                Err(e) => panic!("{file}: frame {}: {e}", frames + others),
            };
            frames += 1;
            assert_eq!(frame.bth.opcode, expect.opcode, "{file}");
            assert_eq!(frame.deth.src_qpn, expect.qpn, "{file}");
            assert_eq!(frame.deth.qkey, expect.qkey, "{file}");
            assert_eq!(frame.payload.len(), expect.payload_len, "{file}");
            assert_eq!(
                frame.udp_src_port,
                rxe_udp_sport(frame.deth.src_qpn),
                "{file}"
            );
            assert_eq!(frame.udp_checksum, UdpChecksum::Zero, "{file}");
            assert_eq!(frame.bth.pkey, 0xFFFF, "{file}");
            assert_eq!(frame.bth.pad_count, 0, "{file}");
            let IpRepr::V4(ip) = frame.ip else {
                panic!("{file}: IPv4 expected");
            };
            assert!(ip.dont_frag, "{file}");
            assert_eq!(ip.ttl, 64, "{file}");
            assert!(
                ip_ids.insert((ip.src_addr, ip.ident)),
                "{file}: IP ID reused"
            );
            if expect.opcode == 0x65 {
                assert_eq!(
                    frame.immediate,
                    Some(expect.qpn),
                    "{file}: ImmDt = source QPN"
                );
                assert_eq!(frame.bth.dest_qpn, 0xFF_FFFF, "{file}");
                let group = Ipv4Addr::new(239, 1, 1, 1);
                assert_eq!(frame.ip.dst_addr(), IpAddr::V4(group), "{file}");
                let eth = frame.ethernet.expect("Ethernet header");
                assert_eq!(eth.dst_addr, ipv4_multicast_mac(group), "{file}");
                psns.push(frame.bth.psn);
            } else {
                assert_eq!(frame.bth.dest_qpn, expect.qpn, "{file}");
            }
            let mut out = vec![0u8; frame.buffer_len()];
            frame.emit(&mut out).unwrap();
            assert_eq!(out, bytes, "{file}: re-emitted frame {frames}");
        }
        assert_eq!((frames, others), (expect.frames, expect.others), "{file}");
        if expect.opcode == 0x65 {
            assert_eq!(psns, (0..10).collect::<Vec<u32>>(), "{file}");
        }
    }
}

#[test]
fn a_corrupted_rxe_payload_byte_is_a_bad_icrc() {
    let bytes = records(CAPTURES[0].file).remove(0);
    let mut copy = bytes.clone();
    let last_payload_byte = copy.len() - 5;
    copy[last_payload_byte] ^= 0x80;
    let Err(FrameError::BadIcrc { expected, found }) = RoceFrame::parse(&copy) else {
        panic!("corruption not detected");
    };
    assert_ne!(expected, found);
    assert_eq!(found, RoceFrame::parse(&bytes).unwrap().icrc);
}
