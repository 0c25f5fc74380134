//! Format details that round trips do not reach: IPv4 options on parse, the
//! option lists of router messages, and checksum conventions.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipoib_dataplane::wire::{
    checksum, ipv4, nd, udp, Error, Gid, HwAddr, Ipv4Repr, LinkLayerAddrKind, LinkLayerAddrRepr,
    UdpRepr,
};

#[test]
fn ipv4_options_are_skipped_on_parse() {
    // 24-byte header: one NOP option and three end-of-list bytes, 4-byte payload.
    let mut buf = [0u8; 28];
    buf[0] = 0x46;
    buf[2..4].copy_from_slice(&28u16.to_be_bytes());
    buf[8] = 64;
    buf[9] = ipv4::PROTOCOL_UDP;
    buf[12..16].copy_from_slice(&[10, 0, 0, 1]);
    buf[16..20].copy_from_slice(&[10, 0, 0, 2]);
    buf[20] = 1;
    buf[24..].copy_from_slice(b"data");
    let mut packet = ipv4::Packet::new_checked(&mut buf[..]).unwrap();
    packet.fill_checksum();
    let packet = ipv4::Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(packet.header_len(), 24);
    assert_eq!(packet.payload(), b"data");
    let repr = Ipv4Repr::parse(&packet).unwrap();
    assert_eq!(repr.payload_len, 4);
    assert_eq!(repr.src_addr, Ipv4Addr::new(10, 0, 0, 1));

    // Re-emitting drops the options but keeps the payload length.
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut out))
        .unwrap();
    assert_eq!(out.len(), 24);
    assert_eq!(out[0], 0x45);
    assert_eq!(
        Ipv4Repr::parse(&ipv4::Packet::new_checked(&out).unwrap()),
        Ok(repr)
    );
}

#[test]
fn ipv4_total_length_is_checked_both_ways() {
    let mut buf = [0u8; 20];
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(
        ipv4::Packet::new_checked(&buf[..]).err(),
        Some(Error::Malformed)
    );
    buf[2..4].copy_from_slice(&21u16.to_be_bytes());
    assert_eq!(
        ipv4::Packet::new_checked(&buf[..]).err(),
        Some(Error::Truncated)
    );
    buf[0] = 0x65;
    buf[2..4].copy_from_slice(&20u16.to_be_bytes());
    let mut packet = ipv4::Packet::new_checked(&mut buf[..]).unwrap();
    packet.fill_checksum();
    assert_eq!(
        Ipv4Repr::parse(&packet),
        Err(Error::Malformed),
        "version 6 in an IPv4 header"
    );
}

/// An RA (16 fixed bytes) with an MTU option, then an IPoIB source address option.
fn router_advert(source: HwAddr) -> Vec<u8> {
    let mut msg = vec![0u8; 16];
    msg[0] = nd::ICMPV6_ROUTER_ADVERT;
    msg.extend_from_slice(&[5, 1, 0, 0, 0, 0, 0x08, 0x00]);
    let option = LinkLayerAddrRepr {
        kind: LinkLayerAddrKind::Source,
        addr: source,
    };
    let at = msg.len();
    msg.resize(at + option.buffer_len(), 0);
    option
        .emit(&mut nd::LinkLayerAddrOption::new_unchecked(&mut msg[at..]))
        .unwrap();
    msg
}

#[test]
fn router_advert_options_are_found_after_other_options() {
    let source = HwAddr::new(0x80, 0x123, Gid::link_local(0x0002_c903_0000_0001));
    let msg = router_advert(source);
    let kinds: Vec<u8> = nd::message_options(&msg)
        .unwrap()
        .map(|o| o.unwrap().kind)
        .collect();
    assert_eq!(kinds, [5, nd::OPTION_SOURCE_LLADDR]);
    let options = &msg[nd::options_offset(nd::ICMPV6_ROUTER_ADVERT).unwrap()..];
    assert_eq!(
        nd::find_link_layer_addr(options, LinkLayerAddrKind::Source),
        Ok(Some(source))
    );
    assert_eq!(
        nd::find_link_layer_addr(options, LinkLayerAddrKind::Target),
        Ok(None)
    );
    // A list cut inside the last option is an error, not a silent miss.
    let cut = &options[..options.len() - 1];
    assert_eq!(
        nd::find_link_layer_addr(cut, LinkLayerAddrKind::Source),
        Err(Error::Truncated)
    );
    assert_eq!(
        nd::message_options(&msg[..10]).err(),
        Some(Error::Truncated)
    );
    assert_eq!(
        nd::message_options(&[128, 0, 0, 0]).err(),
        Some(Error::Unsupported)
    );
}

#[test]
fn neighbor_solicitation_checksum_covers_the_addresses() {
    let repr = nd::Repr::NeighborSolicit {
        target_addr: "fe80::2:c903:a1:b2c2".parse().unwrap(),
        source_lladdr: Some(HwAddr::new(0, 0x48, Gid::link_local(0x0002_c903_00a1_b2c1))),
    };
    let src: Ipv6Addr = "fe80::2:c903:a1:b2c1".parse().unwrap();
    let dst: Ipv6Addr = "ff02::1:ffa1:b2c2".parse().unwrap();
    let mut buf = vec![0u8; repr.buffer_len()];
    assert_eq!(buf.len(), 48);
    let mut packet = nd::Packet::new_checked(&mut buf[..]).unwrap();
    repr.emit(&mut packet).unwrap();
    packet.fill_checksum(src, dst);
    let packet = nd::Packet::new_checked(&buf[..]).unwrap();
    assert!(packet.verify_checksum(src, dst));
    assert!(!packet.verify_checksum(Ipv6Addr::LOCALHOST, dst));
    assert_eq!(&buf[24..28], &[nd::OPTION_SOURCE_LLADDR, 3, 0, 0]);
    // Code must be zero (RFC 4861 §7.1.1).
    buf[1] = 1;
    let packet = nd::Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(nd::Repr::parse(&packet), Err(Error::Malformed));
}

#[test]
fn udp_zero_checksum_rules() {
    let repr = UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload_len: 0,
    };
    let mut buf = [0u8; 8];
    repr.emit(&mut udp::Packet::new_unchecked(&mut buf[..]))
        .unwrap();
    let packet = udp::Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(packet.checksum(), 0);
    assert!(
        packet.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
        "IPv4: not computed"
    );
    assert!(
        !packet.verify_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST),
        "IPv6: mandatory"
    );
}

#[test]
fn udp_checksum_of_zero_is_sent_as_all_ones() {
    // Pick the payload so that the computed checksum comes out as zero: the
    // sum of everything else plus the payload word must be 0xffff.
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let repr = UdpRepr {
        src_port: 1000,
        dst_port: 2000,
        payload_len: 2,
    };
    let mut buf = [0u8; 10];
    let mut packet = udp::Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut packet).unwrap();
    let partial = checksum::combine(&[
        checksum::pseudo_header_v4(src, dst, 17, 10),
        checksum::data(&[0x03, 0xe8, 0x07, 0xd0, 0x00, 0x0a]),
    ]);
    packet
        .payload_mut()
        .copy_from_slice(&(!partial).to_be_bytes());
    packet.fill_checksum_v4(src, dst);
    assert_eq!(packet.checksum(), 0xffff);
    assert!(packet.verify_checksum_v4(src, dst));
}
