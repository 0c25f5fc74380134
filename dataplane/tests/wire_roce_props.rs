//! Property tests: BTH, DETH and whole RoCEv2 frames survive emit → parse;
//! the ICRC catches any change to a covered byte and ignores the masked ones.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipoib_dataplane::wire::roce::{
    bth, deth, frame::pad_count_for, icrc, BthRepr, DethRepr, EthernetRepr, FrameError, IpRepr,
    Outer, RoceFrame, UdpChecksum, OPCODE_UD_SEND_ONLY, OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE,
    ROCEV2_UDP_PORT,
};
use ipoib_dataplane::wire::{ipv4, Ipv4Repr, Ipv6Repr};
use proptest::prelude::*;

fn bth_repr() -> impl Strategy<Value = BthRepr> {
    (
        any::<u8>(),
        any::<[bool; 5]>(),
        0u8..4,
        0u8..16,
        any::<u16>(),
        0u32..1 << 24,
        0u32..1 << 24,
    )
        .prop_map(
            |(opcode, bits, pad_count, tver, pkey, dest_qpn, psn)| BthRepr {
                opcode,
                solicited: bits[0],
                migreq: bits[1],
                pad_count,
                tver,
                pkey,
                fecn: bits[2],
                becn: bits[3],
                dest_qpn,
                ack_req: bits[4],
                psn,
            },
        )
}

fn deth_repr() -> impl Strategy<Value = DethRepr> {
    (any::<u32>(), 0u32..1 << 24).prop_map(|(qkey, src_qpn)| DethRepr { qkey, src_qpn })
}

fn ip_repr() -> impl Strategy<Value = IpRepr> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
    )
        .prop_map(|(src, dst, ttl, tos, ident)| {
            IpRepr::V4(Ipv4Repr {
                src_addr: Ipv4Addr::from(src),
                dst_addr: Ipv4Addr::from(dst),
                protocol: 17,
                payload_len: 0,
                ttl,
                tos,
                ident,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
            })
        });
    let v6 = (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u8>(),
        any::<u8>(),
        0u32..1 << 20,
    )
        .prop_map(|(src, dst, hop_limit, traffic_class, flow_label)| {
            IpRepr::V6(Ipv6Repr {
                src_addr: Ipv6Addr::from(src),
                dst_addr: Ipv6Addr::from(dst),
                next_header: 17,
                payload_len: 0,
                hop_limit,
                traffic_class,
                flow_label,
            })
        });
    prop_oneof![v4, v6]
}

/// Everything a frame holds except the payload it borrows.
#[derive(Debug, Clone)]
struct FrameParts {
    with_ethernet: bool,
    ip: IpRepr,
    sport: u16,
    checksum: UdpChecksum,
    bth: BthRepr,
    deth: DethRepr,
    immediate: Option<u32>,
    payload: Vec<u8>,
}

impl FrameParts {
    fn frame(&self) -> RoceFrame<'_> {
        RoceFrame {
            ethernet: self.with_ethernet.then_some(EthernetRepr {
                dst_addr: [2, 0, 0, 0, 0, 2],
                src_addr: [2, 0, 0, 0, 0, 1],
                ethertype: 0,
            }),
            ip: self.ip,
            udp_src_port: self.sport,
            udp_dst_port: ROCEV2_UDP_PORT,
            udp_checksum: self.checksum,
            bth: self.bth,
            deth: self.deth,
            immediate: self.immediate,
            payload: &self.payload,
            icrc: 0,
        }
    }

    fn emit(&self) -> Vec<u8> {
        let frame = self.frame();
        let mut out = vec![0u8; frame.buffer_len()];
        assert_eq!(frame.emit(&mut out), Ok(out.len()));
        out
    }
}

fn frame_parts() -> impl Strategy<Value = FrameParts> {
    (
        any::<bool>(),
        ip_repr(),
        any::<u16>(),
        prop_oneof![
            Just(UdpChecksum::Zero),
            Just(UdpChecksum::Compute),
            (1u16..).prop_map(UdpChecksum::Verbatim)
        ],
        bth_repr(),
        deth_repr(),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(with_ethernet, ip, sport, checksum, mut bth, deth, immediate, payload)| {
                bth.opcode = if immediate.is_some() {
                    OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE
                } else {
                    OPCODE_UD_SEND_ONLY
                };
                bth.pad_count = pad_count_for(payload.len());
                FrameParts {
                    with_ethernet,
                    ip,
                    sport,
                    checksum,
                    bth,
                    deth,
                    immediate,
                    payload,
                }
            },
        )
}

fn parse(bytes: &[u8], with_ethernet: bool) -> Result<RoceFrame<'_>, FrameError> {
    if with_ethernet {
        RoceFrame::parse(bytes)
    } else {
        RoceFrame::parse_ip(bytes, ROCEV2_UDP_PORT)
    }
}

fn outer(bytes: &[u8], with_ethernet: bool) -> Outer<'_> {
    if with_ethernet {
        Outer::parse_ethernet(bytes, ROCEV2_UDP_PORT).unwrap()
    } else {
        Outer::parse_ip(bytes, ROCEV2_UDP_PORT).unwrap()
    }
}

/// Positions (relative to the IP header) the ICRC masks, and for the
/// IPv6 first byte only its low nibble.
fn masked(version: u8, at: usize, udp_at: usize, xor: u8) -> bool {
    let ip_masked = match version {
        4 => [1, 8, 10, 11].contains(&at),
        _ => [1, 2, 3, 7].contains(&at) || (at == 0 && xor & 0xf0 == 0),
    };
    ip_masked || at == udp_at + 6 || at == udp_at + 7 || at == udp_at + 8 + bth::VARIANT_BYTE
}

proptest! {
    #[test]
    fn bth_round_trips(repr in bth_repr()) {
        let mut buf = [0u8; bth::HEADER_LEN];
        repr.emit(&mut bth::Packet::new_unchecked(&mut buf[..])).unwrap();
        prop_assert_eq!(BthRepr::parse(&bth::Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn deth_round_trips(repr in deth_repr()) {
        let mut buf = [0u8; deth::HEADER_LEN];
        repr.emit(&mut deth::Packet::new_unchecked(&mut buf[..])).unwrap();
        prop_assert_eq!(DethRepr::parse(&deth::Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn frames_round_trip_with_a_valid_icrc(parts in frame_parts()) {
        let bytes = parts.emit();
        let frame = parse(&bytes, parts.with_ethernet).unwrap();
        prop_assert_eq!(frame.bth, parts.bth);
        prop_assert_eq!(frame.deth, parts.deth);
        prop_assert_eq!(frame.immediate, parts.immediate);
        prop_assert_eq!(frame.payload, &parts.payload[..]);
        prop_assert_eq!(frame.udp_src_port, parts.sport);
        let mut again = vec![0u8; frame.buffer_len()];
        frame.emit(&mut again).unwrap();
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn icrc_catches_covered_bytes_and_ignores_masked_ones(
        parts in frame_parts(),
        pick in any::<prop::sample::Index>(),
        xor in 1u8..,
    ) {
        let bytes = parts.emit();
        let good = outer(&bytes, parts.with_ethernet);
        let (frame, expected) = RoceFrame::parse_unverified(&good).unwrap();
        prop_assert_eq!(frame.icrc, expected);
        let ip_len = good.ip_header.len();
        let covered_len = ip_len + 8 + good.udp_payload.len() - 4;
        let at = pick.index(covered_len);
        let mut ip = good.ip_header.to_vec();
        let mut udp = good.udp_header.to_vec();
        let mut transport = good.udp_payload[..good.udp_payload.len() - 4].to_vec();
        match at {
            a if a < ip_len => ip[a] ^= xor,
            a if a < ip_len + 8 => udp[a - ip_len] ^= xor,
            a => transport[a - ip_len - 8] ^= xor,
        }
        let changed = icrc(&ip, &udp, &transport) != Ok(expected);
        prop_assert_eq!(changed, !masked(good.ip.version(), at, ip_len, xor), "byte {}", at);
    }

    #[test]
    fn routers_rewriting_masked_fields_keep_frames_valid(
        parts in frame_parts(),
        hop in any::<u8>(),
        class in any::<u8>(),
        flow in 0u32..1 << 20,
        checksum in any::<u16>(),
        congestion in any::<u8>(),
    ) {
        let mut bytes = parts.emit();
        let ip_at = if parts.with_ethernet { 14 } else { 0 };
        let udp_at = match parts.ip {
            IpRepr::V4(_) => {
                let mut ip = ipv4::Packet::new_unchecked(&mut bytes[ip_at..]);
                ip.set_ttl(hop);
                ip.set_tos(class);
                ip.fill_checksum();
                ip_at + 20
            }
            IpRepr::V6(_) => {
                let word = (6u32 << 28) | (u32::from(class) << 20) | flow;
                bytes[ip_at..ip_at + 4].copy_from_slice(&word.to_be_bytes());
                bytes[ip_at + 7] = hop;
                ip_at + 40
            }
        };
        bytes[udp_at + 6..udp_at + 8].copy_from_slice(&checksum.to_be_bytes());
        bytes[udp_at + 8 + bth::VARIANT_BYTE] = congestion;
        let frame = parse(&bytes, parts.with_ethernet);
        prop_assert!(frame.is_ok(), "{:?}", frame);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = RoceFrame::parse(&bytes);
        let _ = RoceFrame::parse_ip(&bytes, ROCEV2_UDP_PORT);
    }
}
