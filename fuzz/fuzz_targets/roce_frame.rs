//! RoCEv2 frames (Ethernet and raw IP) and the decoder behind
//! `ipoibctl decode`: never panic; accepted frames emit a frame that parses
//! back to the same fields and re-emits identically.
#![no_main]

use ipoib_dataplane::capture::{decode_frame, decode_input, Link, PcapReader};
use ipoib_dataplane::wire::ipv4;
use ipoib_dataplane::wire::roce::{icrc, Outer, RoceFrame, ICRC_LEN, ROCEV2_UDP_PORT};
use libfuzzer_sys::fuzz_target;

const ETHERNET_HEADER_LEN: usize = 14;

fn roundtrip(frame: RoceFrame<'_>, with_ethernet: bool) {
    let mut out = vec![0u8; frame.buffer_len()];
    let written = frame.emit(&mut out).expect("a parsed frame emits");
    assert_eq!(written, out.len());
    let again = if with_ethernet {
        RoceFrame::parse(&out)
    } else {
        RoceFrame::parse_ip(&out, ROCEV2_UDP_PORT)
    }
    .expect("an emitted frame parses");
    assert_eq!(again.bth, frame.bth);
    assert_eq!(again.deth, frame.deth);
    assert_eq!(again.immediate, frame.immediate);
    assert_eq!(again.payload, frame.payload);
    // Emit zeroes reserved bits, pad bytes and IPv4 options, so only the
    // second emission must match the first byte for byte.
    let mut twice = vec![0u8; again.buffer_len()];
    again.emit(&mut twice).expect("a reparsed frame emits");
    assert_eq!(twice, out);
}

/// Random bytes almost never carry a valid IPv4 checksum and ICRC: repair
/// both on a copy so the round trip behind them is reached too.
fn repaired(data: &[u8]) -> Option<Vec<u8>> {
    let mut copy = data.to_vec();
    let ip = copy.get_mut(ETHERNET_HEADER_LEN..)?;
    if let Ok(mut packet) = ipv4::Packet::new_checked(&mut ip[..]) {
        packet.fill_checksum();
    }
    let outer = Outer::parse_ethernet(&copy, ROCEV2_UDP_PORT).ok()?;
    let payload = outer.udp_payload;
    let covered = payload.len().checked_sub(ICRC_LEN)?;
    let value = icrc(outer.ip_header, outer.udp_header, &payload[..covered]).ok()?;
    // The UDP payload is a subslice of `copy`; its offset locates the ICRC.
    let at = payload.as_ptr() as usize - copy.as_ptr() as usize + covered;
    copy[at..at + ICRC_LEN].copy_from_slice(&value.to_le_bytes());
    Some(copy)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = RoceFrame::parse(data) {
        roundtrip(frame, true);
    }
    if let Some(copy) = repaired(data) {
        if let Ok(frame) = RoceFrame::parse(&copy) {
            roundtrip(frame, true);
        }
    }
    if let Ok(frame) = RoceFrame::parse_ip(data, ROCEV2_UDP_PORT) {
        roundtrip(frame, false);
    }
    for link in [Link::Ethernet, Link::RawIp, Link::Ipoib] {
        let _ = decode_frame(1, link, data);
    }
    let _ = decode_input(data, Link::Ethernet, &mut std::io::sink());
    if let Ok(reader) = PcapReader::new(data) {
        for record in reader.take(64) {
            if record.is_err() {
                break;
            }
        }
    }
});
