//! Frames built by `RoceFrame::emit` as Wireshark sees them: written to an
//! Ethernet pcap, tshark's InfiniBand dissector must report the same BTH,
//! DETH and ICRC, decode the IPoIB payload, and find nothing malformed.
//! Skipped (with a printed reason) where tshark is not installed.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

use ipoib_dataplane::capture::{PcapWriter, Timestamp, LINKTYPE_ETHERNET};
use ipoib_dataplane::wire::roce::{
    frame::{icrc_hex, pad_count_for},
    rxe_udp_sport, BthRepr, DethRepr, EthernetRepr, IpRepr, RoceFrame, UdpChecksum,
    OPCODE_UD_SEND_ONLY, OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE, ROCEV2_UDP_PORT,
};
use ipoib_dataplane::wire::{ipoib, ipv4, udp, EtherType, IpoibRepr, Ipv4Repr, Ipv6Repr, UdpRepr};

/// An IPoIB frame carrying an IPv4/UDP datagram with `extra` payload bytes.
fn ipoib_udp(extra: usize) -> Vec<u8> {
    let message: Vec<u8> = b"hello"
        .iter()
        .copied()
        .chain((0..extra as u8).map(|b| b'a' + b))
        .collect();
    let udp_repr = UdpRepr {
        src_port: 1234,
        dst_port: 7,
        payload_len: message.len() as u16,
    };
    let ip_repr = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        protocol: ipv4::PROTOCOL_UDP,
        payload_len: udp_repr.buffer_len() as u16,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut out = vec![0u8; ipoib::HEADER_LEN + ip_repr.buffer_len()];
    IpoibRepr {
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut ipoib::Packet::new_unchecked(&mut out[..]))
    .unwrap();
    let mut ip = ipv4::Packet::new_unchecked(&mut out[ipoib::HEADER_LEN..]);
    ip_repr.emit(&mut ip).unwrap();
    let mut datagram = udp::Packet::new_unchecked(ip.payload_mut());
    udp_repr.emit(&mut datagram).unwrap();
    datagram.payload_mut().copy_from_slice(&message);
    datagram.fill_checksum_v4(ip_repr.src_addr, ip_repr.dst_addr);
    out
}

fn ip(v6: bool) -> IpRepr {
    if v6 {
        IpRepr::V6(Ipv6Repr {
            src_addr: "2001:db8::10".parse::<Ipv6Addr>().unwrap(),
            dst_addr: "2001:db8::20".parse::<Ipv6Addr>().unwrap(),
            next_header: 17,
            payload_len: 0,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0x12345,
        })
    } else {
        IpRepr::V4(Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 0, 2, 10),
            dst_addr: Ipv4Addr::new(192, 0, 2, 20),
            protocol: 17,
            payload_len: 0,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        })
    }
}

#[test]
fn tshark_agrees_with_emitted_frames() {
    if Command::new("tshark").arg("--version").output().is_err() {
        println!("skipped: tshark is not installed");
        return;
    }
    let payloads: Vec<Vec<u8>> = (0..4).map(ipoib_udp).collect();
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        for v6 in [false, true] {
            let immediate = (i % 2 == 1).then_some(0xcafe_0000 + i as u32);
            let src_qpn = 0x11 + i as u32;
            let frame = RoceFrame {
                ethernet: Some(EthernetRepr {
                    dst_addr: [2, 0, 0, 0, 0, 2],
                    src_addr: [2, 0, 0, 0, 0, 1],
                    ethertype: 0,
                }),
                ip: ip(v6),
                udp_src_port: rxe_udp_sport(src_qpn),
                udp_dst_port: ROCEV2_UDP_PORT,
                udp_checksum: if v6 {
                    UdpChecksum::Compute
                } else {
                    UdpChecksum::Zero
                },
                bth: BthRepr {
                    opcode: if immediate.is_some() {
                        OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE
                    } else {
                        OPCODE_UD_SEND_ONLY
                    },
                    pad_count: pad_count_for(payload.len()),
                    pkey: 0xffff,
                    dest_qpn: 0x100 + i as u32,
                    psn: 1000 + i as u32,
                    ..BthRepr::default()
                },
                deth: DethRepr {
                    qkey: 0x0b1b,
                    src_qpn,
                },
                immediate,
                payload,
                icrc: 0,
            };
            let mut bytes = vec![0u8; frame.buffer_len()];
            frame.emit(&mut bytes).unwrap();
            let parsed = RoceFrame::parse(&bytes).unwrap();
            expected.push(format!(
                "{}\t{:#08x}\t{}\t65535\t{}\t{:#018x}\t{:#010x}\t0x{}\t{}",
                frame.bth.opcode,
                frame.bth.dest_qpn,
                frame.bth.psn,
                frame.bth.pad_count,
                frame.deth.qkey,
                frame.deth.src_qpn,
                icrc_hex(parsed.icrc),
                if v6 { "ipv6" } else { "ip" },
            ));
            frames.push(bytes);
        }
    }
    let mut writer = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
    for frame in &frames {
        writer
            .write_record(Timestamp::from_micros(1, 0), frame)
            .unwrap();
    }
    let path = std::env::temp_dir().join(format!("roce-emit-{}.pcap", std::process::id()));
    std::fs::write(&path, writer.into_inner()).unwrap();
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-T", "fields"])
        .args(["-e", "infiniband.bth.opcode", "-e", "infiniband.bth.destqp"])
        .args(["-e", "infiniband.bth.psn", "-e", "infiniband.bth.p_key"])
        .args(["-e", "infiniband.bth.padcnt", "-e", "infiniband.deth.q_key"])
        .args([
            "-e",
            "infiniband.deth.srcqp",
            "-e",
            "infiniband.invariant.crc",
        ])
        .args(["-e", "frame.protocols", "-e", "_ws.malformed"])
        .output()
        .expect("run tshark");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, want) in lines.iter().zip(&expected) {
        let columns: Vec<&str> = line.split('\t').collect();
        assert_eq!(columns.len(), 10, "{line}");
        let (fields, outer) = want.rsplit_once('\t').unwrap();
        assert_eq!(columns[..8].join("\t"), fields, "{line}");
        let protocols = format!("eth:ethertype:{outer}:udp:infiniband:ethertype:ip:udp");
        assert!(columns[8].starts_with(&protocols), "{line}");
        assert!(columns[9].is_empty(), "malformed: {line}");
    }
}
