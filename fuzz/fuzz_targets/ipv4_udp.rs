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

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ipv4::Packet::new_checked(data) {
        if let Ok(repr) = Ipv4Repr::parse(&packet) {
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
    }
    if let Ok(packet) = ipv6::Packet::new_checked(data) {
        if let Ok(repr) = Ipv6Repr::parse(&packet) {
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
    }
    udp_roundtrip(data);
});
