//! Every parser, fed truncated prefixes of valid packets or random bytes,
//! returns `Err` or a value — never panics — and a truncated prefix of a
//! fixed-size packet is always `Err`.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipoib_dataplane::wire::{
    arp, grh, ipoib, ipv4, ipv6, nd, udp, ArpRepr, Error, EtherType, Gid, GrhRepr, HwAddr,
    IpoibRepr, Ipv4Repr, Ipv6Repr, LinkLayerAddrKind, LinkLayerAddrRepr, NdRepr, NeighborFlags,
    UdpRepr,
};
use proptest::prelude::*;

/// Runs every parser on `bytes`; returns how many accepted it.
fn parse_everything(bytes: &[u8]) -> usize {
    let results = [
        ipoib::Packet::new_checked(bytes)
            .and_then(|p| IpoibRepr::parse(&p))
            .is_ok(),
        arp::Packet::new_checked(bytes)
            .and_then(|p| ArpRepr::parse(&p))
            .is_ok(),
        grh::Packet::new_checked(bytes)
            .and_then(|p| GrhRepr::parse(&p))
            .is_ok(),
        ipv4::Packet::new_checked(bytes)
            .and_then(|p| Ipv4Repr::parse(&p))
            .is_ok(),
        ipv6::Packet::new_checked(bytes)
            .and_then(|p| Ipv6Repr::parse(&p))
            .is_ok(),
        udp::Packet::new_checked(bytes)
            .and_then(|p| UdpRepr::parse(&p))
            .is_ok(),
        nd::Packet::new_checked(bytes)
            .and_then(|p| NdRepr::parse(&p))
            .is_ok(),
        nd::LinkLayerAddrOption::new_checked(bytes)
            .and_then(|o| LinkLayerAddrRepr::parse(&o))
            .is_ok(),
        nd::find_link_layer_addr(bytes, LinkLayerAddrKind::Source).is_ok(),
        nd::message_options(bytes).is_ok_and(|it| it.count() < usize::MAX),
        HwAddr::from_bytes(bytes).is_ok(),
        // Parsing must also survive a view made without checks.
        IpoibRepr::parse(&ipoib::Packet::new_unchecked(bytes)).is_ok(),
        ArpRepr::parse(&arp::Packet::new_unchecked(bytes)).is_ok(),
        GrhRepr::parse(&grh::Packet::new_unchecked(bytes)).is_ok(),
        Ipv4Repr::parse(&ipv4::Packet::new_unchecked(bytes)).is_ok(),
        Ipv6Repr::parse(&ipv6::Packet::new_unchecked(bytes)).is_ok(),
        UdpRepr::parse(&udp::Packet::new_unchecked(bytes)).is_ok(),
        NdRepr::parse(&nd::Packet::new_unchecked(bytes)).is_ok(),
    ];
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = text.parse::<HwAddr>();
    }
    results.iter().filter(|ok| **ok).count()
}

fn hw(qpn: u32) -> HwAddr {
    HwAddr::new(
        0,
        qpn,
        Gid::link_local(0x0002_c903_00a1_b200 | u64::from(qpn)),
    )
}

/// A format's name, one valid packet, and the check its prefixes must fail.
type Sample = (&'static str, Vec<u8>, fn(&[u8]) -> bool);

/// One valid packet per format.
fn samples() -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();

    let mut buf = vec![0u8; 4];
    IpoibRepr {
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut ipoib::Packet::new_unchecked(&mut buf))
    .unwrap();
    out.push(("ipoib", buf, |b| {
        ipoib::Packet::new_checked(b)
            .and_then(|p| IpoibRepr::parse(&p))
            .is_ok()
    }));

    let request = ArpRepr::request(
        hw(0x48),
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
    );
    let mut buf = vec![0u8; request.buffer_len()];
    request
        .emit(&mut arp::Packet::new_unchecked(&mut buf))
        .unwrap();
    out.push(("arp", buf, |b| {
        arp::Packet::new_checked(b)
            .and_then(|p| ArpRepr::parse(&p))
            .is_ok()
    }));

    let g = GrhRepr {
        traffic_class: 0,
        flow_label: 0x12345,
        payload_len: 64,
        next_header: grh::NEXT_HEADER_IBA,
        hop_limit: 1,
        sgid: hw(1).gid,
        dgid: hw(2).gid,
    };
    let mut buf = vec![0u8; g.buffer_len()];
    g.emit(&mut grh::Packet::new_unchecked(&mut buf)).unwrap();
    out.push(("grh", buf, |b| {
        grh::Packet::new_checked(b)
            .and_then(|p| GrhRepr::parse(&p))
            .is_ok()
    }));

    let u = UdpRepr {
        src_port: 4000,
        dst_port: 9,
        payload_len: 28,
    };
    let ip = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        protocol: ipv4::PROTOCOL_UDP,
        payload_len: u.buffer_len() as u16,
        ttl: 64,
        tos: 0,
        ident: 7,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut ipv4::Packet::new_unchecked(&mut buf)).unwrap();
    let mut dgram = udp::Packet::new_unchecked(&mut buf[ipv4::HEADER_LEN..]);
    u.emit(&mut dgram).unwrap();
    dgram.fill_checksum_v4(ip.src_addr, ip.dst_addr);
    out.push(("ipv4", buf.clone(), |b| {
        ipv4::Packet::new_checked(b)
            .and_then(|p| Ipv4Repr::parse(&p))
            .is_ok()
    }));
    out.push(("udp", buf[ipv4::HEADER_LEN..].to_vec(), |b| {
        udp::Packet::new_checked(b)
            .and_then(|p| UdpRepr::parse(&p))
            .is_ok()
    }));

    let v6 = Ipv6Repr {
        src_addr: Ipv6Addr::LOCALHOST,
        dst_addr: Ipv6Addr::LOCALHOST,
        next_header: 17,
        payload_len: 8,
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    };
    let mut buf = vec![0u8; v6.buffer_len()];
    v6.emit(&mut ipv6::Packet::new_unchecked(&mut buf)).unwrap();
    out.push(("ipv6", buf, |b| {
        ipv6::Packet::new_checked(b)
            .and_then(|p| Ipv6Repr::parse(&p))
            .is_ok()
    }));

    let na = NdRepr::NeighborAdvert {
        flags: NeighborFlags {
            router: false,
            solicited: true,
            override_: true,
        },
        target_addr: "fe80::2:c903:a1:b2c2".parse().unwrap(),
        target_lladdr: Some(hw(0x49)),
    };
    let mut buf = vec![0u8; na.buffer_len()];
    na.emit(&mut nd::Packet::new_unchecked(&mut buf)).unwrap();
    // Cut at the option boundary the message is a valid NA without the
    // address; any cut inside the option is an error.
    out.push(("nd", buf, |b| {
        matches!(
            nd::Packet::new_checked(b).and_then(|p| NdRepr::parse(&p)),
            Ok(NdRepr::NeighborAdvert {
                target_lladdr: Some(_),
                ..
            })
        )
    }));

    let hwaddr = hw(0x49).to_bytes().to_vec();
    out.push(("hwaddr", hwaddr, |b| HwAddr::from_bytes(b).is_ok()));
    out
}

#[test]
fn samples_parse_and_every_prefix_is_rejected() {
    for (name, bytes, accepts) in samples() {
        assert!(accepts(&bytes), "{name}: the full packet parses");
        assert!(parse_everything(&bytes) > 0, "{name}");
        for len in 0..bytes.len() {
            assert!(
                !accepts(&bytes[..len]),
                "{name}: prefix of {len} bytes accepted"
            );
            parse_everything(&bytes[..len]);
        }
    }
}

#[test]
fn nd_option_length_zero_is_malformed() {
    let mut options = LinkLayerAddrRepr {
        kind: LinkLayerAddrKind::Source,
        addr: hw(5),
    };
    let mut buf = vec![0u8; 48];
    options
        .emit(&mut nd::LinkLayerAddrOption::new_unchecked(&mut buf[..24]))
        .unwrap();
    options.kind = LinkLayerAddrKind::Target;
    options
        .emit(&mut nd::LinkLayerAddrOption::new_unchecked(&mut buf[24..]))
        .unwrap();
    assert_eq!(
        nd::find_link_layer_addr(&buf, LinkLayerAddrKind::Target),
        Ok(Some(hw(5)))
    );
    buf[25] = 0;
    assert_eq!(
        nd::find_link_layer_addr(&buf, LinkLayerAddrKind::Target),
        Err(Error::Malformed)
    );
    let items: Vec<_> = nd::options(&buf).collect();
    assert_eq!(items.len(), 2, "iteration stops after the malformed option");
    assert!(items[0].is_ok() && items[1] == Err(Error::Malformed));
    // An Ethernet-sized (length 1) address option is not an IPoIB one.
    let ethernet_style = [1u8, 1, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        nd::find_link_layer_addr(&ethernet_style, LinkLayerAddrKind::Source),
        Err(Error::Malformed)
    );
    assert_eq!(
        nd::find_link_layer_addr(&ethernet_style, LinkLayerAddrKind::Target),
        Ok(None)
    );
}

#[test]
fn ipv4_bad_checksum_and_header_length_are_rejected() {
    let (_, mut buf, accepts) = samples().into_iter().find(|s| s.0 == "ipv4").unwrap();
    buf[10] ^= 0xff;
    assert!(!accepts(&buf), "bad header checksum");
    buf[10] ^= 0xff;
    buf[0] = 0x44; // IHL 4: shorter than the fixed header
    assert_eq!(
        ipv4::Packet::new_checked(&buf[..]).err(),
        Some(Error::Malformed)
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        parse_everything(&bytes);
    }

    #[test]
    fn mutated_samples_never_panic(index in any::<usize>(), at in any::<usize>(), value in any::<u8>()) {
        let all = samples();
        let (_, mut bytes, _) = all[index % all.len()].clone();
        let at = at % bytes.len();
        bytes[at] = value;
        parse_everything(&bytes);
    }

    #[test]
    fn random_text_never_panics_as_hwaddr(text in "[0-9a-fA-F:+ ]{0,70}") {
        let _ = text.parse::<HwAddr>();
    }
}
