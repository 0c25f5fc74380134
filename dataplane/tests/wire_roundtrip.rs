//! Emit then parse gives back the same `Repr`, for every format.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipoib_dataplane::wire::{
    arp, grh, ipoib, ipv4, ipv6, nd, udp, ArpOperation, ArpRepr, EtherType, Gid, GrhRepr, HwAddr,
    IpoibRepr, Ipv4Repr, Ipv6Repr, LinkLayerAddrKind, LinkLayerAddrRepr, NdRepr, NeighborFlags,
    UdpRepr,
};
use proptest::prelude::*;

fn gid() -> impl Strategy<Value = Gid> {
    any::<[u8; 16]>().prop_map(Gid)
}

fn hwaddr() -> impl Strategy<Value = HwAddr> {
    (any::<u8>(), 0..=0xff_ffffu32, gid()).prop_map(|(flags, qpn, gid)| HwAddr { flags, qpn, gid })
}

fn ipv4_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6_addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn neighbor_flags() -> impl Strategy<Value = NeighborFlags> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(router, solicited, override_)| {
        NeighborFlags {
            router,
            solicited,
            override_,
        }
    })
}

fn nd_repr() -> impl Strategy<Value = NdRepr> {
    prop_oneof![
        (ipv6_addr(), proptest::option::of(hwaddr())).prop_map(|(target_addr, source_lladdr)| {
            NdRepr::NeighborSolicit {
                target_addr,
                source_lladdr,
            }
        }),
        (
            neighbor_flags(),
            ipv6_addr(),
            proptest::option::of(hwaddr())
        )
            .prop_map(
                |(flags, target_addr, target_lladdr)| NdRepr::NeighborAdvert {
                    flags,
                    target_addr,
                    target_lladdr
                }
            ),
    ]
}

proptest! {
    #[test]
    fn hwaddr_bytes_and_text(hw in hwaddr()) {
        prop_assert_eq!(HwAddr::from_bytes(&hw.to_bytes()), Ok(hw));
        prop_assert_eq!(hw.to_string().parse::<HwAddr>(), Ok(hw));
    }

    #[test]
    fn ipoib_header(ethertype in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let repr = IpoibRepr { ethertype: EtherType::from(ethertype) };
        let mut buf = vec![0xa5u8; repr.buffer_len() + payload.len()];
        buf[repr.buffer_len()..].copy_from_slice(&payload);
        repr.emit(&mut ipoib::Packet::new_unchecked(&mut buf)).unwrap();
        let packet = ipoib::Packet::new_checked(&buf).unwrap();
        prop_assert_eq!(packet.reserved(), 0);
        prop_assert_eq!(packet.payload(), &payload[..]);
        prop_assert_eq!(IpoibRepr::parse(&packet), Ok(repr));
        prop_assert_eq!(u16::from(repr.ethertype), ethertype);
    }

    #[test]
    fn arp(reply in any::<bool>(), sha in hwaddr(), spa in ipv4_addr(), tha in hwaddr(), tpa in ipv4_addr()) {
        let repr = ArpRepr {
            operation: if reply { ArpOperation::Reply } else { ArpOperation::Request },
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: tha,
            target_protocol_addr: tpa,
        };
        let mut buf = vec![0xffu8; repr.buffer_len()];
        repr.emit(&mut arp::Packet::new_unchecked(&mut buf)).unwrap();
        let packet = arp::Packet::new_checked(&buf).unwrap();
        prop_assert_eq!(ArpRepr::parse(&packet), Ok(repr));
    }

    #[test]
    fn grh(tc in any::<u8>(), flow in 0..=0xf_ffffu32, paylen in any::<u16>(), nh in any::<u8>(),
           hops in any::<u8>(), sgid in gid(), dgid in gid()) {
        let repr = GrhRepr { traffic_class: tc, flow_label: flow, payload_len: paylen,
                             next_header: nh, hop_limit: hops, sgid, dgid };
        let mut buf = vec![0xffu8; repr.buffer_len()];
        repr.emit(&mut grh::Packet::new_unchecked(&mut buf)).unwrap();
        let packet = grh::Packet::new_checked(&buf).unwrap();
        prop_assert_eq!(packet.ip_version(), 6);
        prop_assert_eq!(GrhRepr::parse(&packet), Ok(repr));
    }

    #[test]
    fn ipv4(src in ipv4_addr(), dst in ipv4_addr(), protocol in any::<u8>(), payload_len in 0..200u16,
           ttl in any::<u8>(), tos in any::<u8>(), ident in any::<u16>(), df in any::<bool>(),
           mf in any::<bool>(), frag_units in 0..0x2000u16) {
        let repr = Ipv4Repr { src_addr: src, dst_addr: dst, protocol, payload_len, ttl, tos, ident,
                              dont_frag: df, more_frags: mf, frag_offset: frag_units * 8 };
        let mut buf = vec![0xeeu8; repr.buffer_len()];
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf)).unwrap();
        let packet = ipv4::Packet::new_checked(&buf).unwrap();
        prop_assert!(packet.verify_checksum());
        prop_assert_eq!(packet.payload().len(), usize::from(payload_len));
        prop_assert_eq!(Ipv4Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn ipv6(src in ipv6_addr(), dst in ipv6_addr(), nh in any::<u8>(), payload_len in 0..200u16,
            hops in any::<u8>(), tc in any::<u8>(), flow in 0..=0xf_ffffu32) {
        let repr = Ipv6Repr { src_addr: src, dst_addr: dst, next_header: nh, payload_len,
                              hop_limit: hops, traffic_class: tc, flow_label: flow };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ipv6::Packet::new_unchecked(&mut buf)).unwrap();
        let packet = ipv6::Packet::new_checked(&buf).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn udp_over_ipv4(sport in any::<u16>(), dport in any::<u16>(), src in ipv4_addr(), dst in ipv4_addr(),
                     payload in proptest::collection::vec(any::<u8>(), 0..100)) {
        let repr = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() as u16 };
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut packet = udp::Packet::new_unchecked(&mut buf);
        repr.emit(&mut packet).unwrap();
        packet.payload_mut().copy_from_slice(&payload);
        packet.fill_checksum_v4(src, dst);
        let packet = udp::Packet::new_checked(&buf).unwrap();
        prop_assert_ne!(packet.checksum(), 0);
        prop_assert!(packet.verify_checksum_v4(src, dst));
        prop_assert_eq!(packet.payload(), &payload[..]);
        prop_assert_eq!(UdpRepr::parse(&packet), Ok(repr));
        // Any single flipped bit in the datagram breaks the checksum.
        let mut corrupted = buf.clone();
        corrupted[0] ^= 0x01;
        prop_assert!(!udp::Packet::new_checked(&corrupted).unwrap().verify_checksum_v4(src, dst));
    }

    #[test]
    fn udp_over_ipv6(sport in any::<u16>(), dport in any::<u16>(), src in ipv6_addr(), dst in ipv6_addr(),
                     payload in proptest::collection::vec(any::<u8>(), 0..100)) {
        let repr = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() as u16 };
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut packet = udp::Packet::new_unchecked(&mut buf);
        repr.emit(&mut packet).unwrap();
        packet.payload_mut().copy_from_slice(&payload);
        packet.fill_checksum_v6(src, dst);
        let packet = udp::Packet::new_checked(&buf).unwrap();
        prop_assert!(packet.verify_checksum_v6(src, dst));
        prop_assert_eq!(UdpRepr::parse(&packet), Ok(repr));
    }

    #[test]
    fn lladdr_option(target in any::<bool>(), addr in hwaddr()) {
        let kind = if target { LinkLayerAddrKind::Target } else { LinkLayerAddrKind::Source };
        let repr = LinkLayerAddrRepr { kind, addr };
        let mut buf = vec![0xffu8; repr.buffer_len()];
        repr.emit(&mut nd::LinkLayerAddrOption::new_unchecked(&mut buf)).unwrap();
        prop_assert_eq!(&buf[..4], &[kind.option_type(), 3, 0, 0][..]);
        let option = nd::LinkLayerAddrOption::new_checked(&buf).unwrap();
        prop_assert_eq!(LinkLayerAddrRepr::parse(&option), Ok(repr));
        prop_assert_eq!(nd::find_link_layer_addr(&buf, kind), Ok(Some(addr)));
    }

    #[test]
    fn neighbor_message(repr in nd_repr(), src in ipv6_addr(), dst in ipv6_addr()) {
        let mut buf = vec![0xffu8; repr.buffer_len()];
        let mut packet = nd::Packet::new_unchecked(&mut buf);
        repr.emit(&mut packet).unwrap();
        packet.fill_checksum(src, dst);
        let packet = nd::Packet::new_checked(&buf).unwrap();
        prop_assert!(packet.verify_checksum(src, dst));
        prop_assert_eq!(NdRepr::parse(&packet), Ok(repr));
        let options: Vec<_> = nd::message_options(&buf).unwrap().collect();
        prop_assert!(options.iter().all(|o| o.is_ok()));
    }
}

#[test]
fn emit_refuses_short_buffers() {
    let ip = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        protocol: ipv4::PROTOCOL_UDP,
        payload_len: 8,
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut buf = [0u8; 27];
    assert!(ip
        .emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
        .is_err());
    let udp = UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload_len: 20,
    };
    assert!(udp
        .emit(&mut udp::Packet::new_unchecked(&mut buf[..27]))
        .is_err());
    let too_long = UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload_len: u16::MAX,
    };
    assert!(too_long
        .emit(&mut udp::Packet::new_unchecked(&mut vec![0u8; 70_000]))
        .is_err());
    let arp_repr = ArpRepr::request(HwAddr::default(), Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
    assert!(arp_repr
        .emit(&mut arp::Packet::new_unchecked(&mut buf[..]))
        .is_err());
}

#[test]
fn arp_reply_swaps_roles() {
    let requester = HwAddr::new(0, 0x48, Gid::link_local(1));
    let responder = HwAddr::new(0, 0x49, Gid::link_local(2));
    let request = ArpRepr::request(
        requester,
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
    );
    let reply = request.reply(responder);
    assert_eq!(reply.operation, ArpOperation::Reply);
    assert_eq!(reply.source_hardware_addr, responder);
    assert_eq!(reply.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(reply.target_hardware_addr, requester);
    assert_eq!(reply.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
}
