//! IPv4 then UDP (and IPv6 then UDP): parse, verify checksums, re-emit.
#![no_main]

use ipoib_dataplane::wire::{ipv4, ipv6, udp, Ipv4Repr, Ipv6Repr, UdpRepr};
use libfuzzer_sys::fuzz_target;

fn udp_roundtrip(segment: &[u8]) -> Option<UdpRepr> {
    let packet = udp::Packet::new_checked(segment).ok()?;
    let repr = UdpRepr::parse(&packet).ok()?;
    let mut out = vec![0u8; repr.buffer_len()];
    let mut emitted = udp::Packet::new_unchecked(&mut out);
    repr.emit(&mut emitted).unwrap();
    emitted.payload_mut().copy_from_slice(packet.payload());
    assert_eq!(
        UdpRepr::parse(&udp::Packet::new_checked(&out).unwrap()),
        Ok(repr)
    );
    Some(repr)
}

fn check_ipv4(data: &[u8]) {
    let Ok(packet) = ipv4::Packet::new_checked(data) else {
        return;
    };
    let Ok(repr) = Ipv4Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut out))
        .unwrap();
    let reparsed = ipv4::Packet::new_checked(&out).unwrap();
    assert!(reparsed.verify_checksum());
    assert_eq!(Ipv4Repr::parse(&reparsed), Ok(repr));
    if udp_roundtrip(packet.payload()).is_some() {
        let segment = udp::Packet::new_checked(packet.payload()).unwrap();
        let _ = segment.verify_checksum_v4(repr.src_addr, repr.dst_addr);
    }
}

fn check_ipv6(data: &[u8]) {
    let Ok(packet) = ipv6::Packet::new_checked(data) else {
        return;
    };
    let Ok(repr) = Ipv6Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ipv6::Packet::new_unchecked(&mut out))
        .unwrap();
    assert_eq!(
        Ipv6Repr::parse(&ipv6::Packet::new_checked(&out).unwrap()),
        Ok(repr)
    );
    if udp_roundtrip(packet.payload()).is_some() {
        let segment = udp::Packet::new_checked(packet.payload()).unwrap();
        let _ = segment.verify_checksum_v6(repr.src_addr, repr.dst_addr);
    }
}

fuzz_target!(|data: &[u8]| {
    check_ipv4(data);
    // Random bytes almost never carry a valid header checksum; repair it on
    // a copy so the checks behind it are reached too.
    let mut repaired = data.to_vec();
    if let Ok(mut packet) = ipv4::Packet::new_checked(&mut repaired[..]) {
        packet.fill_checksum();
        check_ipv4(&repaired);
    }
    check_ipv6(data);
    udp_roundtrip(data);
});
