//! A whole RoCEv2 UD frame: (Ethernet →) IPv4/IPv6 → UDP 4791 → BTH → DETH
//! → (ImmDt) → payload → pad → ICRC. Lengths come from the IP and UDP
//! headers, never from the frame size (links may pad short frames).

use core::fmt;

use super::super::{ipv4, ipv6, udp, Error, Ipv4Repr, Ipv6Repr, UdpRepr};
use super::ethernet::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::icrc::{icrc, ICRC_LEN};
use super::{bth, deth, BthRepr, DethRepr, EthernetRepr};
use super::{IMMDT_LEN, OPCODE_UD_SEND_ONLY, OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE, ROCEV2_UDP_PORT};

const IP_PROTOCOL_UDP: u8 = 17;

/// Why a frame is not an acceptable RoCEv2 UD packet. Each variant is a
/// distinct kind (see [`FrameError::kind`]) so receivers can count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// A header, or a length a header declares, runs past the buffer; or the
    /// UDP payload is too short for BTH, the opcode's headers and ICRC.
    Truncated,
    /// A field holds an impossible value (what is wrong is in the text).
    Malformed(&'static str),
    /// Well formed, but not RoCEv2 (another ethertype, protocol or port).
    NotRoce(&'static str),
    /// A BTH opcode other than UD SEND_ONLY (0x64) and its immediate form (0x65).
    UnsupportedOpcode(u8),
    /// The ICRC on the wire (`found`) is not the one the bytes give (`expected`).
    BadIcrc { expected: u32, found: u32 },
}

impl FrameError {
    /// A short stable name: `truncated`, `malformed`, `not_roce`,
    /// `unsupported_opcode`, `bad_icrc`.
    pub const fn kind(&self) -> &'static str {
        match self {
            FrameError::Truncated => "truncated",
            FrameError::Malformed(_) => "malformed",
            FrameError::NotRoce(_) => "not_roce",
            FrameError::UnsupportedOpcode(_) => "unsupported_opcode",
            FrameError::BadIcrc { .. } => "bad_icrc",
        }
    }

    fn from_wire(err: Error, what: &'static str) -> FrameError {
        match err {
            Error::Truncated => FrameError::Truncated,
            Error::Malformed | Error::Unsupported => FrameError::Malformed(what),
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated => f.write_str("frame is truncated"),
            FrameError::Malformed(what) => write!(f, "malformed {what}"),
            FrameError::NotRoce(why) => write!(f, "not a RoCEv2 packet: {why}"),
            FrameError::UnsupportedOpcode(op) => {
                write!(f, "unsupported BTH opcode {op:#04x} (only UD 0x64/0x65)")
            }
            FrameError::BadIcrc { expected, found } => write!(
                f,
                "ICRC mismatch: wire {} computed {}",
                icrc_hex(*found),
                icrc_hex(*expected)
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// The ICRC as its wire bytes in hex (least-significant byte first).
pub fn icrc_hex(value: u32) -> String {
    value
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The outer IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpRepr {
    V4(Ipv4Repr),
    V6(Ipv6Repr),
}

impl IpRepr {
    pub fn src_addr(&self) -> std::net::IpAddr {
        match self {
            IpRepr::V4(ip) => ip.src_addr.into(),
            IpRepr::V6(ip) => ip.src_addr.into(),
        }
    }

    pub fn dst_addr(&self) -> std::net::IpAddr {
        match self {
            IpRepr::V4(ip) => ip.dst_addr.into(),
            IpRepr::V6(ip) => ip.dst_addr.into(),
        }
    }

    pub const fn version(&self) -> u8 {
        match self {
            IpRepr::V4(_) => 4,
            IpRepr::V6(_) => 6,
        }
    }

    const fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => ipv4::HEADER_LEN,
            IpRepr::V6(_) => ipv6::HEADER_LEN,
        }
    }
}

/// What goes into the UDP checksum on emit. The ICRC masks it, so it may
/// be anything; rxe sends zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpChecksum {
    Zero,
    /// Computed over the pseudo-header and the datagram.
    Compute,
    /// Written as given (what `parse` reports for a non-zero checksum).
    Verbatim(u16),
}

/// The IP and UDP layers of a RoCEv2 frame, with the raw headers the ICRC
/// covers and the UDP payload (BTH onwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer<'a> {
    pub ethernet: Option<EthernetRepr>,
    pub ip: IpRepr,
    pub udp_src_port: u16,
    pub udp_dst_port: u16,
    pub udp_checksum: u16,
    pub ip_header: &'a [u8],
    pub udp_header: &'a [u8],
    pub udp_payload: &'a [u8],
}

impl<'a> Outer<'a> {
    /// Parses an Ethernet frame down to the UDP payload; `port` is the
    /// RoCEv2 destination port (normally 4791).
    pub fn parse_ethernet(frame: &'a [u8], port: u16) -> Result<Outer<'a>, FrameError> {
        let eth = ethernet::Frame::new_checked(frame)
            .map_err(|e| FrameError::from_wire(e, "Ethernet header"))?;
        let eth_repr =
            EthernetRepr::parse(&eth).map_err(|e| FrameError::from_wire(e, "Ethernet header"))?;
        match eth_repr.ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {}
            _ => return Err(FrameError::NotRoce("ethertype is not IPv4 or IPv6")),
        }
        let mut outer = Self::parse_ip(eth.payload(), port)?;
        if outer.ip.version() == 4 && eth_repr.ethertype != ETHERTYPE_IPV4
            || outer.ip.version() == 6 && eth_repr.ethertype != ETHERTYPE_IPV6
        {
            return Err(FrameError::Malformed("ethertype disagrees with IP version"));
        }
        outer.ethernet = Some(eth_repr);
        Ok(outer)
    }

    /// Parses an IP packet (no link header) down to the UDP payload.
    pub fn parse_ip(packet: &'a [u8], port: u16) -> Result<Outer<'a>, FrameError> {
        let (ip, ip_header, segment) = match packet.first().map(|b| b >> 4) {
            None => return Err(FrameError::Truncated),
            Some(4) => {
                let view = ipv4::Packet::new_checked(packet)
                    .map_err(|e| FrameError::from_wire(e, "IPv4 header"))?;
                let repr = Ipv4Repr::parse(&view)
                    .map_err(|e| FrameError::from_wire(e, "IPv4 header or checksum"))?;
                if repr.more_frags || repr.frag_offset != 0 {
                    return Err(FrameError::NotRoce("fragmented IPv4 packet"));
                }
                if repr.protocol != IP_PROTOCOL_UDP {
                    return Err(FrameError::NotRoce("IP protocol is not UDP"));
                }
                let header_len = usize::from(view.header_len());
                (IpRepr::V4(repr), &packet[..header_len], view.payload())
            }
            Some(6) => {
                let view = ipv6::Packet::new_checked(packet)
                    .map_err(|e| FrameError::from_wire(e, "IPv6 header"))?;
                let repr =
                    Ipv6Repr::parse(&view).map_err(|e| FrameError::from_wire(e, "IPv6 header"))?;
                if repr.next_header != IP_PROTOCOL_UDP {
                    return Err(FrameError::NotRoce("IPv6 next header is not UDP"));
                }
                (
                    IpRepr::V6(repr),
                    &packet[..ipv6::HEADER_LEN],
                    view.payload(),
                )
            }
            Some(_) => return Err(FrameError::NotRoce("not an IPv4 or IPv6 packet")),
        };
        let datagram = udp::Packet::new_checked(segment)
            .map_err(|e| FrameError::from_wire(e, "UDP header"))?;
        // The IP length must match the UDP length: trailing bytes inside the
        // IP packet would otherwise hide from the ICRC.
        if usize::from(datagram.len()) != segment.len() {
            return Err(FrameError::Malformed("UDP length disagrees with IP length"));
        }
        if datagram.dst_port() != port {
            return Err(FrameError::NotRoce("UDP destination port is not RoCEv2"));
        }
        Ok(Outer {
            ethernet: None,
            ip,
            udp_src_port: datagram.src_port(),
            udp_dst_port: datagram.dst_port(),
            udp_checksum: datagram.checksum(),
            ip_header,
            udp_header: &segment[..udp::HEADER_LEN],
            udp_payload: datagram.payload(),
        })
    }
}

/// Bytes between the BTH and the payload for a supported opcode.
pub const fn extension_len(opcode: u8) -> Option<usize> {
    match opcode {
        OPCODE_UD_SEND_ONLY => Some(deth::HEADER_LEN),
        OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE => Some(deth::HEADER_LEN + IMMDT_LEN),
        _ => None,
    }
}

/// The PadCnt that makes a payload of `len` bytes a multiple of 4.
pub const fn pad_count_for(len: usize) -> u8 {
    ((4 - len % 4) % 4) as u8
}

/// A parsed RoCEv2 UD frame; `payload` borrows the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoceFrame<'a> {
    /// `None` for a frame that starts at the IP header.
    pub ethernet: Option<EthernetRepr>,
    /// `payload_len` and the protocol are recomputed on emit.
    pub ip: IpRepr,
    pub udp_src_port: u16,
    pub udp_dst_port: u16,
    pub udp_checksum: UdpChecksum,
    /// `opcode` selects the layout: 0x65 carries `immediate`.
    pub bth: BthRepr,
    pub deth: DethRepr,
    /// Present exactly for opcode 0x65.
    pub immediate: Option<u32>,
    /// The message, without pad bytes.
    pub payload: &'a [u8],
    /// As found on the wire (ignored on emit, which computes it).
    pub icrc: u32,
}

impl<'a> RoceFrame<'a> {
    /// Parses an Ethernet frame on UDP port 4791 and verifies the ICRC.
    pub fn parse(frame: &'a [u8]) -> Result<RoceFrame<'a>, FrameError> {
        Self::parse_ethernet(frame, ROCEV2_UDP_PORT)
    }

    pub fn parse_ethernet(frame: &'a [u8], port: u16) -> Result<RoceFrame<'a>, FrameError> {
        Self::verified(Outer::parse_ethernet(frame, port)?)
    }

    /// Parses a frame that starts at the IP header.
    pub fn parse_ip(packet: &'a [u8], port: u16) -> Result<RoceFrame<'a>, FrameError> {
        Self::verified(Outer::parse_ip(packet, port)?)
    }

    fn verified(outer: Outer<'a>) -> Result<RoceFrame<'a>, FrameError> {
        let (frame, expected) = Self::parse_unverified(&outer)?;
        if frame.icrc != expected {
            return Err(FrameError::BadIcrc {
                expected,
                found: frame.icrc,
            });
        }
        Ok(frame)
    }

    /// Parses the transport layers without judging the ICRC; returns the
    /// frame (with the ICRC found) and the ICRC the bytes give.
    pub fn parse_unverified(outer: &Outer<'a>) -> Result<(RoceFrame<'a>, u32), FrameError> {
        let udp_payload = outer.udp_payload;
        let bth_view = bth::Packet::new_checked(udp_payload).map_err(|_| FrameError::Truncated)?;
        let bth_repr = BthRepr::parse(&bth_view).map_err(|_| FrameError::Truncated)?;
        let ext_len = extension_len(bth_repr.opcode);
        let headers_len = bth::HEADER_LEN + ext_len.unwrap_or(0);
        let icrc_at = udp_payload
            .len()
            .checked_sub(ICRC_LEN)
            .filter(|&at| at >= headers_len)
            .ok_or(FrameError::Truncated)?;
        let Some(ext_len) = ext_len else {
            return Err(FrameError::UnsupportedOpcode(bth_repr.opcode));
        };
        let after_bth = &udp_payload[bth::HEADER_LEN..icrc_at];
        let deth_view = deth::Packet::new_checked(after_bth).map_err(|_| FrameError::Truncated)?;
        let deth_repr = DethRepr::parse(&deth_view).map_err(|_| FrameError::Truncated)?;
        let immediate = (ext_len > deth::HEADER_LEN).then(|| {
            let at = deth::HEADER_LEN;
            u32::from_be_bytes([
                after_bth[at],
                after_bth[at + 1],
                after_bth[at + 2],
                after_bth[at + 3],
            ])
        });
        let padded = &after_bth[ext_len..];
        let payload_len = padded
            .len()
            .checked_sub(usize::from(bth_repr.pad_count))
            .ok_or(FrameError::Malformed("PadCnt exceeds the payload"))?;
        let wire_icrc = &udp_payload[icrc_at..];
        let found = u32::from_le_bytes([wire_icrc[0], wire_icrc[1], wire_icrc[2], wire_icrc[3]]);
        let expected = icrc(outer.ip_header, outer.udp_header, &udp_payload[..icrc_at])
            .map_err(|e| FrameError::from_wire(e, "ICRC input"))?;
        let frame = RoceFrame {
            ethernet: outer.ethernet,
            ip: outer.ip,
            udp_src_port: outer.udp_src_port,
            udp_dst_port: outer.udp_dst_port,
            udp_checksum: match outer.udp_checksum {
                0 => UdpChecksum::Zero,
                value => UdpChecksum::Verbatim(value),
            },
            bth: bth_repr,
            deth: deth_repr,
            immediate,
            payload: &padded[..payload_len],
            icrc: found,
        };
        Ok((frame, expected))
    }

    fn transport_len(&self) -> usize {
        bth::HEADER_LEN
            + deth::HEADER_LEN
            + if self.immediate.is_some() {
                IMMDT_LEN
            } else {
                0
            }
            + self.payload.len()
            + usize::from(self.bth.pad_count)
            + ICRC_LEN
    }

    /// The whole frame's size: what `emit` needs.
    pub fn buffer_len(&self) -> usize {
        let link = if self.ethernet.is_some() {
            ethernet::HEADER_LEN
        } else {
            0
        };
        link + self.ip.header_len() + udp::HEADER_LEN + self.transport_len()
    }

    /// Writes the frame, pad bytes zero and a freshly computed ICRC; returns
    /// the length written. `Malformed` when the opcode does not match
    /// `immediate` or a length overflows its field, `Truncated` when `buffer`
    /// is too short.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        let with_immediate = self.immediate.is_some();
        if extension_len(self.bth.opcode).is_none()
            || with_immediate != (self.bth.opcode == OPCODE_UD_SEND_ONLY_WITH_IMMEDIATE)
        {
            return Err(Error::Malformed);
        }
        let total = self.buffer_len();
        let buffer = buffer.get_mut(..total).ok_or(Error::Truncated)?;
        let udp_len =
            u16::try_from(udp::HEADER_LEN + self.transport_len()).map_err(|_| Error::Malformed)?;
        let mut at = 0;
        if let Some(eth) = &self.ethernet {
            let mut eth = *eth;
            eth.ethertype = match self.ip {
                IpRepr::V4(_) => ETHERTYPE_IPV4,
                IpRepr::V6(_) => ETHERTYPE_IPV6,
            };
            eth.emit(&mut ethernet::Frame::new_unchecked(&mut buffer[..]))?;
            at = ethernet::HEADER_LEN;
        }
        let ip_at = at;
        match self.ip {
            IpRepr::V4(ip) => {
                let repr = Ipv4Repr {
                    payload_len: udp_len,
                    protocol: IP_PROTOCOL_UDP,
                    ..ip
                };
                repr.emit(&mut ipv4::Packet::new_unchecked(&mut buffer[at..]))?;
            }
            IpRepr::V6(ip) => {
                let repr = Ipv6Repr {
                    payload_len: udp_len,
                    next_header: IP_PROTOCOL_UDP,
                    ..ip
                };
                repr.emit(&mut ipv6::Packet::new_unchecked(&mut buffer[at..]))?;
            }
        }
        at += self.ip.header_len();
        let udp_at = at;
        UdpRepr {
            src_port: self.udp_src_port,
            dst_port: self.udp_dst_port,
            payload_len: udp_len - udp::HEADER_LEN as u16,
        }
        .emit(&mut udp::Packet::new_unchecked(&mut buffer[at..]))?;
        at += udp::HEADER_LEN;
        let transport_at = at;
        self.bth
            .emit(&mut bth::Packet::new_unchecked(&mut buffer[at..]))?;
        at += bth::HEADER_LEN;
        self.deth
            .emit(&mut deth::Packet::new_unchecked(&mut buffer[at..]))?;
        at += deth::HEADER_LEN;
        if let Some(immediate) = self.immediate {
            buffer[at..at + IMMDT_LEN].copy_from_slice(&immediate.to_be_bytes());
            at += IMMDT_LEN;
        }
        buffer[at..at + self.payload.len()].copy_from_slice(self.payload);
        at += self.payload.len();
        let pad = usize::from(self.bth.pad_count);
        buffer[at..at + pad].fill(0);
        at += pad;
        let value = icrc(
            &buffer[ip_at..udp_at],
            &buffer[udp_at..transport_at],
            &buffer[transport_at..at],
        )?;
        buffer[at..at + ICRC_LEN].copy_from_slice(&value.to_le_bytes());
        let mut datagram = udp::Packet::new_unchecked(&mut buffer[udp_at..]);
        match (self.udp_checksum, self.ip) {
            (UdpChecksum::Zero, _) => {}
            (UdpChecksum::Verbatim(value), _) => datagram.set_checksum(value),
            (UdpChecksum::Compute, IpRepr::V4(ip)) => {
                datagram.fill_checksum_v4(ip.src_addr, ip.dst_addr)
            }
            (UdpChecksum::Compute, IpRepr::V6(ip)) => {
                datagram.fill_checksum_v6(ip.src_addr, ip.dst_addr)
            }
        }
        Ok(total)
    }
}
