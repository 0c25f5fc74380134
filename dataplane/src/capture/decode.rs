//! Decodes captured frames into one JSON object per frame: RoCEv2 UD frames
//! (Ethernet or raw IP) with every BTH/DETH field and the ICRC verdict,
//! LINKTYPE_IPOIB records with their pseudo header, and in both cases a
//! summary of the IPoIB payload. Malformed frames become error objects;
//! nothing here panics on any input.
//!
//! Keys, in order. Every object: `frame` (1-based). RoCEv2: `link`,
//! `ip_version`, `src_ip`, `dst_ip`, `udp_sport`, `udp_dport`, the BTH
//! (`opcode`, `solicited`, `migreq`, `pad_count`, `tver`, `pkey`, `fecn`,
//! `becn`, `dest_qpn`, `ack_req`, `psn`), `qkey`, `src_qpn`, `immediate`,
//! `payload_len`, `icrc_ok`, `icrc` (wire bytes in hex), then `ipoib`.
//! LINKTYPE_IPOIB: `link`, `dest_hwaddr`, `dest_qpn`, `dest_gid` (or
//! `grh_hex`), `ipoib`. `ipoib` holds `ethertype` and, for ARP, `op`,
//! `sender_hwaddr`, `sender_ip`, `target_hwaddr`, `target_ip`; for IPv4 and
//! IPv6, `src`, `dst`, `protocol`, `length` (whole packet). A frame with a
//! problem carries `error` (a [`FrameError::kind`], or `bad_hex`) and
//! `detail`, next to whatever could still be read.

use std::io::{self, Write};

use super::ipoib_link::LinkHeader;
use super::json::{hex, Object};
use super::pcap::{PcapError, PcapReader, LINKTYPE_ETHERNET, LINKTYPE_IPOIB, LINKTYPE_RAW};
use crate::wire::roce::frame::icrc_hex;
use crate::wire::roce::{BthRepr, FrameError, Outer, RoceFrame, ROCEV2_UDP_PORT};
use crate::wire::{arp, ipoib, ipv4, ipv6, ArpOperation, ArpRepr, EtherType};

/// What a frame starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II carrying RoCEv2 (LINKTYPE_ETHERNET, 1).
    Ethernet,
    /// An IP packet carrying RoCEv2 (LINKTYPE_RAW, 101).
    RawIp,
    /// The 40-byte pseudo header and an IPoIB frame (LINKTYPE_IPOIB, 242).
    Ipoib,
}

impl Link {
    pub fn from_linktype(linktype: u32) -> Option<Link> {
        match linktype {
            LINKTYPE_ETHERNET => Some(Link::Ethernet),
            LINKTYPE_RAW => Some(Link::RawIp),
            LINKTYPE_IPOIB => Some(Link::Ipoib),
            _ => None,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Link::Ethernet => "ethernet",
            Link::RawIp => "raw_ip",
            Link::Ipoib => "ipoib",
        }
    }
}

/// Why the input as a whole could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Pcap(#[from] PcapError),
    #[error("pcap link type {0} is not supported (expected 1 Ethernet, 101 raw IP or 242 IPoIB)")]
    UnknownLinkType(u32),
    #[error("pcapng files are not supported; convert with `editcap -F pcap IN OUT`")]
    Pcapng,
    #[error("input is neither a pcap file nor hex text")]
    NotText,
    #[error("cannot write output: {0}")]
    Output(io::Error),
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

fn is_pcap(bytes: &[u8]) -> bool {
    let Some(magic) = bytes.get(..4) else {
        return false;
    };
    let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
    [0xa1b2_c3d4u32, 0xa1b2_3c4d]
        .iter()
        .any(|&m| magic == m || magic == m.swap_bytes())
}

/// Decodes a whole input: a classic pcap (sniffed by its magic) or hex
/// text, one frame per line (whitespace ignored, `#` starts a comment
/// line), each starting with `hex_link`. Writes one JSON line per frame and
/// returns how many frames there were.
pub fn decode_input(
    input: &[u8],
    hex_link: Link,
    out: &mut impl Write,
) -> Result<usize, DecodeError> {
    if input.starts_with(&PCAPNG_MAGIC) {
        return Err(DecodeError::Pcapng);
    }
    if is_pcap(input) {
        return decode_pcap(input, out);
    }
    let text = std::str::from_utf8(input).map_err(|_| DecodeError::NotText)?;
    let mut count = 0;
    for line in text.lines() {
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() || compact.starts_with('#') {
            continue;
        }
        count += 1;
        let json = match unhex(&compact) {
            Ok(bytes) => decode_frame(count, hex_link, &bytes),
            Err(detail) => error_object(count, "bad_hex", &detail).finish(),
        };
        writeln!(out, "{json}").map_err(DecodeError::Output)?;
    }
    Ok(count)
}

fn decode_pcap(input: &[u8], out: &mut impl Write) -> Result<usize, DecodeError> {
    let reader = PcapReader::new(input)?;
    let link = Link::from_linktype(reader.linktype())
        .ok_or(DecodeError::UnknownLinkType(reader.linktype()))?;
    let mut count = 0;
    for record in reader {
        let record = record?;
        count += 1;
        let json = decode_frame(count, link, &record.data);
        writeln!(out, "{json}").map_err(DecodeError::Output)?;
    }
    Ok(count)
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    let pairs = text.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(format!("odd number of hex digits ({})", text.len()));
    }
    pairs
        .enumerate()
        .map(|(i, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("not a hex byte at offset {i}"))
        })
        .collect()
}

fn error_object(frame: usize, kind: &str, detail: &str) -> Object {
    let mut o = Object::new();
    o.num("frame", frame)
        .str("error", kind)
        .str("detail", detail);
    o
}

/// One JSON object (without newline) for frame number `frame` (1-based).
pub fn decode_frame(frame: usize, link: Link, bytes: &[u8]) -> String {
    match link {
        Link::Ipoib => decode_ipoib_record(frame, bytes),
        Link::Ethernet => decode_roce(frame, link, Outer::parse_ethernet(bytes, ROCEV2_UDP_PORT)),
        Link::RawIp => decode_roce(frame, link, Outer::parse_ip(bytes, ROCEV2_UDP_PORT)),
    }
}

fn decode_ipoib_record(frame: usize, bytes: &[u8]) -> String {
    let Some((header, ipoib_frame)) = LinkHeader::split(bytes) else {
        return error_object(
            frame,
            "truncated",
            "record shorter than the 40-byte pseudo header",
        )
        .finish();
    };
    let mut o = Object::new();
    o.num("frame", frame).str("link", Link::Ipoib.name());
    match header {
        LinkHeader::DestHwAddr(dest) => {
            o.str("dest_hwaddr", &dest.to_string())
                .num("dest_qpn", dest.qpn)
                .str("dest_gid", &dest.gid.to_string());
        }
        LinkHeader::Grh(raw) => {
            o.str("grh_hex", &hex(&raw));
        }
    }
    o.object("ipoib", ipoib_summary(ipoib_frame));
    o.finish()
}

fn decode_roce(frame: usize, link: Link, outer: Result<Outer<'_>, FrameError>) -> String {
    let outer = match outer {
        Ok(outer) => outer,
        Err(err) => return error_object(frame, err.kind(), &err.to_string()).finish(),
    };
    let mut o = Object::new();
    o.num("frame", frame).str("link", link.name());
    outer_fields(&mut o, &outer);
    match RoceFrame::parse_unverified(&outer) {
        Ok((roce, expected)) => {
            bth_fields(&mut o, &roce.bth);
            o.num("qkey", roce.deth.qkey)
                .num("src_qpn", roce.deth.src_qpn);
            match roce.immediate {
                Some(imm) => o.num("immediate", imm),
                None => o.null("immediate"),
            };
            o.num("payload_len", roce.payload.len())
                .bool("icrc_ok", roce.icrc == expected)
                .str("icrc", &icrc_hex(roce.icrc));
            if roce.icrc != expected {
                let err = FrameError::BadIcrc {
                    expected,
                    found: roce.icrc,
                };
                o.str("icrc_expected", &icrc_hex(expected))
                    .str("error", err.kind())
                    .str("detail", &err.to_string());
            }
            if roce.payload.is_empty() {
                o.null("ipoib");
            } else {
                o.object("ipoib", ipoib_summary(roce.payload));
            }
        }
        Err(err) => {
            let detail = match err {
                FrameError::Truncated => format!(
                    "UDP payload of {} bytes is too short for the BTH, the opcode's headers and the ICRC",
                    outer.udp_payload.len()
                ),
                other => other.to_string(),
            };
            o.str("error", err.kind()).str("detail", &detail);
            // The BTH is still worth showing when only the layout after it is unknown.
            if let FrameError::UnsupportedOpcode(_) = err {
                let view = crate::wire::roce::bth::Packet::new_checked(outer.udp_payload);
                if let Ok(bth) = view.and_then(|v| BthRepr::parse(&v)) {
                    bth_fields(&mut o, &bth);
                }
            }
        }
    }
    o.finish()
}

fn outer_fields(o: &mut Object, outer: &Outer<'_>) {
    o.num("ip_version", outer.ip.version())
        .str("src_ip", &outer.ip.src_addr().to_string())
        .str("dst_ip", &outer.ip.dst_addr().to_string())
        .num("udp_sport", outer.udp_src_port)
        .num("udp_dport", outer.udp_dst_port);
}

fn bth_fields(o: &mut Object, bth: &BthRepr) {
    o.num("opcode", bth.opcode)
        .bool("solicited", bth.solicited)
        .bool("migreq", bth.migreq)
        .num("pad_count", bth.pad_count)
        .num("tver", bth.tver)
        .num("pkey", bth.pkey)
        .bool("fecn", bth.fecn)
        .bool("becn", bth.becn)
        .num("dest_qpn", bth.dest_qpn)
        .bool("ack_req", bth.ack_req)
        .num("psn", bth.psn);
}

/// The IPoIB header's ethertype and a summary of ARP, IPv4 or IPv6.
fn ipoib_summary(frame: &[u8]) -> Object {
    let mut o = Object::new();
    let Ok(packet) = ipoib::Packet::new_checked(frame) else {
        o.str("error", "truncated")
            .str("detail", "shorter than the 4-byte IPoIB header");
        return o;
    };
    let ethertype = packet.ethertype();
    o.str("ethertype", &format!("{:#06x}", u16::from(ethertype)));
    let inner = packet.payload();
    match ethertype {
        EtherType::Arp => arp_summary(&mut o, inner),
        EtherType::Ipv4 => ipv4_summary(&mut o, inner),
        EtherType::Ipv6 => ipv6_summary(&mut o, inner),
        EtherType::Unknown(_) => {
            o.num("length", inner.len());
        }
    }
    o
}

fn arp_summary(o: &mut Object, inner: &[u8]) {
    let repr = arp::Packet::new_checked(inner).and_then(|p| ArpRepr::parse(&p));
    let Ok(repr) = repr else {
        o.str("error", "malformed")
            .str("detail", "not an IPoIB ARP packet");
        return;
    };
    let op = match repr.operation {
        ArpOperation::Request => "request",
        ArpOperation::Reply => "reply",
        ArpOperation::Unknown(_) => "unknown",
    };
    o.str("op", op)
        .str("sender_hwaddr", &repr.source_hardware_addr.to_string())
        .str("sender_ip", &repr.source_protocol_addr.to_string())
        .str("target_hwaddr", &repr.target_hardware_addr.to_string())
        .str("target_ip", &repr.target_protocol_addr.to_string());
}

fn ipv4_summary(o: &mut Object, inner: &[u8]) {
    let Ok(packet) = ipv4::Packet::new_checked(inner) else {
        o.str("error", "truncated")
            .str("detail", "IPv4 packet cut short");
        return;
    };
    o.str("src", &packet.src_addr().to_string())
        .str("dst", &packet.dst_addr().to_string())
        .num("protocol", packet.protocol())
        .num("length", packet.total_len())
        .bool("checksum_ok", packet.verify_checksum());
}

fn ipv6_summary(o: &mut Object, inner: &[u8]) {
    let Ok(packet) = ipv6::Packet::new_checked(inner) else {
        o.str("error", "truncated")
            .str("detail", "IPv6 packet cut short");
        return;
    };
    o.str("src", &packet.src_addr().to_string())
        .str("dst", &packet.dst_addr().to_string())
        .num("protocol", packet.next_header())
        .num(
            "length",
            ipv6::HEADER_LEN + usize::from(packet.payload_len()),
        );
}
