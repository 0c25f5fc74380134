//! Known answers from the shared RoCEv2 vectors: the outer IPv4/IPv6 and UDP
//! headers (checksums included) and the IPoIB payloads they carry. The
//! BTH/DETH/ICRC layers are not parsed here; the vectors give the payload.

use std::net::IpAddr;

use ipoib_dataplane::wire::{
    arp, ipoib, ipv4, ipv6, udp, ArpRepr, EtherType, IpoibRepr, Ipv4Repr, Ipv6Repr, UdpRepr,
};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/roce_v2_ud.json"
);
const ETHERNET_HEADER_LEN: usize = 14;
const ROCEV2_PORT: u16 = 4791;

fn unhex(text: &str) -> Vec<u8> {
    let pairs = text.as_bytes().chunks_exact(2);
    assert!(pairs.remainder().is_empty(), "odd hex length");
    pairs
        .map(|pair| {
            let digits = std::str::from_utf8(pair).expect("ASCII hex");
            u8::from_str_radix(digits, 16).expect("hex digit")
        })
        .collect()
}

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read RoCEv2 vectors {VECTORS}: {e}"));
    let parsed: Value = serde_json::from_str(&text).expect("vectors are JSON");
    let entries = parsed.as_array().expect("vectors are an array").clone();
    assert!(!entries.is_empty());
    entries
}

/// Parses the outer IP and UDP headers; returns the UDP payload.
fn outer_udp<'a>(name: &str, frame: &'a [u8], fields: &Value, expect_ok: bool) -> &'a [u8] {
    let ip_packet = &frame[ETHERNET_HEADER_LEN..];
    let src: IpAddr = fields["src_ip"].as_str().unwrap().parse().unwrap();
    let dst: IpAddr = fields["dst_ip"].as_str().unwrap().parse().unwrap();
    let (segment, checksum_ok) = match fields["ip_version"].as_u64() {
        Some(4) => {
            let packet = ipv4::Packet::new_checked(ip_packet).unwrap();
            let repr = Ipv4Repr::parse(&packet).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(IpAddr::V4(repr.src_addr), src, "{name}");
            assert_eq!(IpAddr::V4(repr.dst_addr), dst, "{name}");
            assert_eq!(repr.protocol, ipv4::PROTOCOL_UDP, "{name}");
            assert!(repr.dont_frag, "{name}: DF set");
            let segment = packet.payload();
            let udp_packet = udp::Packet::new_checked(segment).unwrap();
            (
                segment,
                udp_packet.verify_checksum_v4(repr.src_addr, repr.dst_addr),
            )
        }
        Some(6) => {
            let packet = ipv6::Packet::new_checked(ip_packet).unwrap();
            let repr = Ipv6Repr::parse(&packet).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(IpAddr::V6(repr.src_addr), src, "{name}");
            assert_eq!(IpAddr::V6(repr.dst_addr), dst, "{name}");
            assert_eq!(repr.next_header, 17, "{name}");
            let segment = packet.payload();
            let udp_packet = udp::Packet::new_checked(segment).unwrap();
            // RoCEv2 senders (rxe) may leave the UDP checksum zero over
            // IPv6 too (tunnel exception, RFC 6935); a non-zero one must hold.
            let ok = udp_packet.checksum() == 0
                || udp_packet.verify_checksum_v6(repr.src_addr, repr.dst_addr);
            (segment, ok)
        }
        other => panic!("{name}: ip_version {other:?}"),
    };
    let udp_packet = udp::Packet::new_checked(segment).unwrap();
    let udp_repr = UdpRepr::parse(&udp_packet).unwrap();
    assert_eq!(
        u64::from(udp_repr.src_port),
        fields["udp_sport"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(udp_repr.dst_port, ROCEV2_PORT, "{name}");
    if expect_ok {
        assert!(checksum_ok, "{name}: UDP checksum");
    }
    udp_packet.payload()
}

fn check_ipoib_payload(name: &str, kind: &str, payload: &[u8], outer_src: IpAddr) {
    let packet = ipoib::Packet::new_checked(payload).unwrap();
    let header = IpoibRepr::parse(&packet).unwrap();
    let inner = packet.payload();
    match kind {
        "ipoib_ipv4" => {
            assert_eq!(header.ethertype, EtherType::Ipv4, "{name}");
            let ip = ipv4::Packet::new_checked(inner).unwrap();
            Ipv4Repr::parse(&ip).unwrap_or_else(|e| panic!("{name}: inner IPv4 {e}"));
        }
        "ipoib_ipv6" => {
            assert_eq!(header.ethertype, EtherType::Ipv6, "{name}");
            let ip = ipv6::Packet::new_checked(inner).unwrap();
            Ipv6Repr::parse(&ip).unwrap_or_else(|e| panic!("{name}: inner IPv6 {e}"));
        }
        "ipoib_arp" => {
            assert_eq!(header.ethertype, EtherType::Arp, "{name}");
            let packet = arp::Packet::new_checked(inner).unwrap();
            let repr = ArpRepr::parse(&packet).unwrap_or_else(|e| panic!("{name}: ARP {e}"));
            // The sender's GID is its IPv4-mapped RoCE GID: the outer source.
            let IpAddr::V4(outer_v4) = outer_src else {
                panic!("{name}: ARP vectors travel over IPv4");
            };
            let expected = outer_v4.to_ipv6_mapped().octets();
            assert_eq!(
                repr.source_hardware_addr.gid.as_bytes(),
                &expected,
                "{name}"
            );
            assert_eq!(
                repr.source_protocol_addr.octets()[0],
                10,
                "{name}: overlay address"
            );
        }
        other => panic!("{name}: unknown payload kind {other}"),
    }
}

#[test]
fn outer_headers_and_ipoib_payloads_parse() {
    let mut payloads_checked = 0;
    for entry in vectors() {
        let name = entry["name"].as_str().unwrap();
        let frame = unhex(entry["hex"].as_str().unwrap());
        let ethertype = match entry["fields"]["ip_version"].as_u64() {
            Some(4) => ipoib::ETHERTYPE_IPV4,
            _ => ipoib::ETHERTYPE_IPV6,
        };
        assert_eq!(
            u16::from_be_bytes([frame[12], frame[13]]),
            ethertype,
            "{name}"
        );
        let expect_ok = entry["expect"] == "ok";
        let fields = &entry["fields"];
        let udp_payload = outer_udp(name, &frame, fields, expect_ok);
        assert!(!udp_payload.is_empty(), "{name}");
        if let (Some(kind), Some(payload_hex)) = (
            entry["payload_kind"].as_str(),
            fields["payload_hex"].as_str(),
        ) {
            if kind != "empty" {
                let outer_src: IpAddr = fields["src_ip"].as_str().unwrap().parse().unwrap();
                check_ipoib_payload(name, kind, &unhex(payload_hex), outer_src);
                payloads_checked += 1;
            }
        }
    }
    assert!(
        payloads_checked >= 10,
        "only {payloads_checked} payloads checked"
    );
}

#[test]
fn a_rewritten_udp_port_breaks_a_real_ipv6_udp_checksum() {
    let entry = vectors()
        .into_iter()
        .find(|e| e["name"] == "ipv6_ud_send_only_masked_fields")
        .expect("vector with a real UDP checksum");
    let mut frame = unhex(entry["hex"].as_str().unwrap());
    let ip = ipv6::Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let udp_at = ETHERNET_HEADER_LEN + ipv6::HEADER_LEN;
    assert_ne!(
        udp::Packet::new_checked(&frame[udp_at..])
            .unwrap()
            .checksum(),
        0
    );
    frame[udp_at + 1] ^= 0x01;
    let segment = udp::Packet::new_checked(&frame[udp_at..]).unwrap();
    assert!(!segment.verify_checksum_v6(src, dst));
    // Recomputing gives back the original value once the port is restored.
    frame[udp_at + 1] ^= 0x01;
    let original = udp::Packet::new_checked(&frame[udp_at..])
        .unwrap()
        .checksum();
    let mut copy = frame[udp_at..].to_vec();
    let mut segment = udp::Packet::new_checked(&mut copy[..]).unwrap();
    segment.fill_checksum_v6(src, dst);
    assert_eq!(segment.checksum(), original);
}
