//! Real Linux rxe captures: rxe puts a fresh IPv4 ID in every packet and its
//! ICRC covers it. The rocev2 receive path, which sees no IP header, must
//! find exactly that ID from the ICRC for every captured frame.

use ipoib_dataplane::provider::rocev2::recover_ipv4_id;
use ipoib_dataplane::wire::roce::{icrc, Outer, ICRC_LEN, ROCEV2_UDP_PORT};

const RXE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/rxe");

/// The frames of a classic pcap file (either byte order).
fn pcap_frames(bytes: &[u8]) -> Vec<&[u8]> {
    let le = match bytes.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) => true,
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => false,
        _ => panic!("not a classic pcap file"),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32_at(at + 8) as usize;
        frames.push(&bytes[at + 16..at + 16 + len]);
        at += 16 + len;
    }
    frames
}

#[test]
fn every_rxe_frame_yields_its_own_ip_id() {
    let mut checked = 0;
    let mut nonzero = 0;
    for entry in std::fs::read_dir(RXE).expect("rxe captures") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("pcap") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read pcap");
        for frame in pcap_frames(&bytes) {
            let Ok(outer) = Outer::parse_ethernet(frame, ROCEV2_UDP_PORT) else {
                continue; // IGMP reports in the multicast capture
            };
            let mut ip = outer.ip_header.to_vec();
            let id = u16::from_be_bytes([ip[4], ip[5]]);
            ip[4..6].fill(0);
            let p = outer.udp_payload;
            let at = p.len() - ICRC_LEN;
            let found = u32::from_le_bytes(p[at..].try_into().expect("icrc"));
            let zero = icrc(&ip, outer.udp_header, &p[..at]).expect("icrc input");
            assert_eq!(
                recover_ipv4_id(zero ^ found, at),
                Some(id),
                "{} frame {checked}",
                path.display()
            );
            checked += 1;
            nonzero += usize::from(id != 0);
        }
    }
    assert!(
        checked >= 250,
        "only {checked} RoCEv2 frames in the captures"
    );
    assert!(nonzero > 0, "rxe's IDs are not all zero");
}
