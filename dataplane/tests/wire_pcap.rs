//! The shared LINKTYPE_IPOIB (242) capture: each record is a 40-byte pseudo
//! header, the IPoIB header and an ARP or IPv4 packet. Fields are compared
//! with the tshark decode shipped next to the capture.

use std::net::Ipv4Addr;

use ipoib_dataplane::wire::{
    arp, checksum, ipoib, ipv4, ArpOperation, ArpRepr, EtherType, Gid, HwAddr, IpoibRepr, Ipv4Repr,
};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/ipoib_linktype242.pcap"
);
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
const PSEUDO_HEADER_LEN: usize = 40;
const LINKTYPE_IPOIB: u32 = 242;

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// The captured bytes of every record.
fn records() -> Vec<Vec<u8>> {
    let file = std::fs::read(CAPTURE).unwrap_or_else(|e| panic!("cannot read {CAPTURE}: {e}"));
    assert!(
        file.len() >= GLOBAL_HEADER_LEN,
        "pcap shorter than its global header"
    );
    assert_eq!(
        le32(&file, 0),
        0xa1b2_c3d4,
        "little-endian microsecond pcap"
    );
    assert_eq!(le32(&file, 20), LINKTYPE_IPOIB);
    let mut at = GLOBAL_HEADER_LEN;
    let mut out = Vec::new();
    while at < file.len() {
        let caplen = le32(&file, at + 8) as usize;
        let wirelen = le32(&file, at + 12) as usize;
        assert_eq!(caplen, wirelen, "records are not cut");
        let start = at + RECORD_HEADER_LEN;
        out.push(file[start..start + caplen].to_vec());
        at = start + caplen;
    }
    out
}

/// The destination hardware address of a pseudo header without a GRH.
fn destination(record: &[u8]) -> HwAddr {
    assert_eq!(&record[..2], &[0, 0], "no GRH in this capture");
    HwAddr::from_bytes(&record[20..PSEUDO_HEADER_LEN]).unwrap()
}

fn ipoib_repr(record: &[u8]) -> (IpoibRepr, &[u8]) {
    let packet = ipoib::Packet::new_checked(&record[PSEUDO_HEADER_LEN..]).unwrap();
    assert_eq!(packet.reserved(), 0);
    (IpoibRepr::parse(&packet).unwrap(), packet.payload())
}

#[test]
fn capture_has_two_records() {
    let records = records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].len(), 100);
    assert_eq!(records[1].len(), 128);
}

#[test]
fn first_record_is_an_arp_request_to_the_broadcast_group() {
    let record = &records()[0];
    let dest = destination(record);
    assert_eq!(dest.qpn, 0xffffff);
    assert!(dest.is_multicast());
    assert_eq!(dest.gid.to_string(), "ff12:401b:ffff::ffff:ffff");

    let (header, payload) = ipoib_repr(record);
    assert_eq!(header.ethertype, EtherType::Arp);
    let packet = arp::Packet::new_checked(payload).unwrap();
    assert_eq!(packet.hardware_type(), 32);
    assert_eq!(packet.protocol_type(), 0x0800);
    assert_eq!(packet.hardware_len(), 20);
    assert_eq!(packet.protocol_len(), 4);
    let repr = ArpRepr::parse(&packet).unwrap();
    assert_eq!(repr.operation, ArpOperation::Request);
    let sender: String = repr
        .source_hardware_addr
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sender, "00000048fe800000000000000002c90300a1b2c1");
    assert_eq!(repr.source_hardware_addr.qpn, 0x48);
    assert_eq!(repr.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(repr.target_hardware_addr, HwAddr::default());
    assert_eq!(repr.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 2));
}

#[test]
fn second_record_is_an_icmp_echo_to_a_unicast_qpn() {
    let record = &records()[1];
    let dest = destination(record);
    assert_eq!(dest.qpn, 0x49);
    assert!(!dest.is_multicast());
    assert_eq!(dest.gid.to_string(), "fe80::2:c903:a1:b2c2");
    assert_eq!(dest.gid, Gid::link_local(0x0002_c903_00a1_b2c2));

    let (header, payload) = ipoib_repr(record);
    assert_eq!(header.ethertype, EtherType::Ipv4);
    let packet = ipv4::Packet::new_checked(payload).unwrap();
    assert_eq!(packet.header_len(), 20);
    assert_eq!(packet.total_len(), 84);
    assert_eq!(packet.checksum(), 0x21d5);
    assert!(packet.verify_checksum());
    let repr = Ipv4Repr::parse(&packet).unwrap();
    assert_eq!(repr.src_addr, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(repr.dst_addr, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(repr.protocol, ipv4::PROTOCOL_ICMP);
    assert_eq!(repr.ident, 1234);
    assert!(repr.dont_frag && !repr.more_frags);
    assert_eq!(repr.frag_offset, 0);
    assert_eq!(repr.ttl, 64);
    assert_eq!(repr.tos, 0);
    assert_eq!(repr.payload_len, 64);

    let icmp = packet.payload();
    assert_eq!(&icmp[..2], &[8, 0], "echo request, code 0");
    assert_eq!(u16::from_be_bytes([icmp[2], icmp[3]]), 0x1ffc);
    assert_eq!(checksum::data(icmp), 0xffff, "ICMP checksum is correct");
    assert_eq!(u16::from_be_bytes([icmp[4], icmp[5]]), 0x1f2e, "identifier");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1, "sequence");
    let data: Vec<u8> = (0x10..0x48).collect();
    assert_eq!(&icmp[8..], &data[..]);
}

#[test]
fn reemitting_the_parsed_headers_reproduces_the_capture() {
    for record in records() {
        let (header, payload) = ipoib_repr(&record);
        let mut rebuilt = record[PSEUDO_HEADER_LEN..].to_vec();
        rebuilt[..4].fill(0xff);
        header
            .emit(&mut ipoib::Packet::new_unchecked(&mut rebuilt))
            .unwrap();
        match header.ethertype {
            EtherType::Arp => {
                let repr = ArpRepr::parse(&arp::Packet::new_checked(payload).unwrap()).unwrap();
                rebuilt[4..4 + arp::PACKET_LEN].fill(0xff);
                repr.emit(&mut arp::Packet::new_unchecked(&mut rebuilt[4..]))
                    .unwrap();
            }
            EtherType::Ipv4 => {
                let repr = Ipv4Repr::parse(&ipv4::Packet::new_checked(payload).unwrap()).unwrap();
                rebuilt[4..4 + ipv4::HEADER_LEN].fill(0xff);
                repr.emit(&mut ipv4::Packet::new_unchecked(&mut rebuilt[4..]))
                    .unwrap();
            }
            other => panic!("unexpected ethertype {other:?}"),
        }
        assert_eq!(rebuilt, &record[PSEUDO_HEADER_LEN..]);
    }
}
