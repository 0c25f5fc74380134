//! RoCEv2 frames (Ethernet and raw IP) and the decoder behind
//! `ipoibctl decode`: never panic; accepted frames re-emit identically
//! apart from what emit normalises, and parse again to the same frame.
#![no_main]

use ipoib_dataplane::capture::{decode_frame, decode_input, Link, PcapReader};
use ipoib_dataplane::wire::roce::{RoceFrame, ROCEV2_UDP_PORT};
use libfuzzer_sys::fuzz_target;

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
    assert_eq!(again.icrc, frame.icrc, "a valid ICRC is reproduced");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = RoceFrame::parse(data) {
        roundtrip(frame, true);
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
