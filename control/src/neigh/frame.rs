//! ARP and ND frames on the IPoIB link: IPoIB header + ARP, or IPoIB header +
//! IPv6 header + Neighbour Solicitation/Advertisement. Built with the wire
//! module's `emit`, parsed with its checked views; parsing never panics.

use ipoib_dataplane::wire::checksum::PROTOCOL_ICMPV6;
use ipoib_dataplane::wire::ipoib::HEADER_LEN as IPOIB_HEADER_LEN;
use ipoib_dataplane::wire::ipv6::HEADER_LEN as IPV6_HEADER_LEN;
use ipoib_dataplane::wire::{
    self, ArpPacket, ArpRepr, EtherType, IpoibPacket, IpoibRepr, Ipv6Packet, Ipv6Repr, NdPacket,
    NdRepr,
};
use std::net::Ipv6Addr;

/// ND messages must arrive with hop limit 255 (RFC 4861 §7.1), proving they
/// were not forwarded by a router.
pub const ND_HOP_LIMIT: u8 = 255;

/// A Neighbour Solicitation or Advertisement with its IPv6 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NdMessage {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub repr: NdRepr,
}

/// A frame the neighbour code cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inbound {
    Arp(ArpRepr),
    Nd(NdMessage),
}

/// Why a frame was not handed to the neighbour cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Valid traffic, but not ARP or NS/NA (e.g. an IPv4 datagram).
    #[error("not an ARP or neighbour discovery frame")]
    NotNeighbour,
    #[error("malformed frame: {0}")]
    Wire(#[from] wire::Error),
    #[error("ND message with hop limit {0} (must be 255)")]
    HopLimit(u8),
    #[error("ND message with a bad ICMPv6 checksum")]
    Checksum,
}

/// IPoIB header + ARP packet.
pub fn arp_frame(repr: &ArpRepr) -> Result<Vec<u8>, wire::Error> {
    let mut frame = vec![0u8; IPOIB_HEADER_LEN + repr.buffer_len()];
    let mut ipoib = IpoibPacket::new_unchecked(&mut frame[..]);
    IpoibRepr {
        ethertype: EtherType::Arp,
    }
    .emit(&mut ipoib)?;
    repr.emit(&mut ArpPacket::new_unchecked(ipoib.payload_mut()))?;
    Ok(frame)
}

/// IPoIB header + IPv6 header + NS/NA with its checksum filled in.
pub fn nd_frame(msg: &NdMessage) -> Result<Vec<u8>, wire::Error> {
    let nd_len = msg.repr.buffer_len();
    let payload_len = u16::try_from(nd_len).map_err(|_| wire::Error::Malformed)?;
    let mut frame = vec![0u8; IPOIB_HEADER_LEN + IPV6_HEADER_LEN + nd_len];
    let mut ipoib = IpoibPacket::new_unchecked(&mut frame[..]);
    IpoibRepr {
        ethertype: EtherType::Ipv6,
    }
    .emit(&mut ipoib)?;
    let mut ip = Ipv6Packet::new_unchecked(ipoib.payload_mut());
    Ipv6Repr {
        src_addr: msg.src,
        dst_addr: msg.dst,
        next_header: PROTOCOL_ICMPV6,
        payload_len,
        hop_limit: ND_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ip)?;
    let mut nd = NdPacket::new_unchecked(ip.payload_mut());
    msg.repr.emit(&mut nd)?;
    nd.fill_checksum(msg.src, msg.dst);
    Ok(frame)
}

/// Recognises ARP and NS/NA frames (IPoIB header included).
pub fn parse_frame(frame: &[u8]) -> Result<Inbound, FrameError> {
    let ipoib = IpoibPacket::new_checked(frame)?;
    match ipoib.ethertype() {
        EtherType::Arp => {
            let arp = ArpPacket::new_checked(ipoib.payload())?;
            Ok(Inbound::Arp(ArpRepr::parse(&arp)?))
        }
        EtherType::Ipv6 => parse_nd(ipoib.payload()).map(Inbound::Nd),
        _ => Err(FrameError::NotNeighbour),
    }
}

fn parse_nd(packet: &[u8]) -> Result<NdMessage, FrameError> {
    let ip = Ipv6Packet::new_checked(packet)?;
    let header = Ipv6Repr::parse(&ip)?;
    if header.next_header != PROTOCOL_ICMPV6 {
        return Err(FrameError::NotNeighbour);
    }
    let icmp = ip.payload();
    let nd = NdPacket::new_checked(icmp)?;
    let repr = match NdRepr::parse(&nd) {
        Ok(repr) => repr,
        // Echo, router messages and the like are not ours.
        Err(wire::Error::Unsupported) => return Err(FrameError::NotNeighbour),
        Err(err) => return Err(err.into()),
    };
    if header.hop_limit != ND_HOP_LIMIT {
        return Err(FrameError::HopLimit(header.hop_limit));
    }
    if !nd.verify_checksum(header.src_addr, header.dst_addr) {
        return Err(FrameError::Checksum);
    }
    Ok(NdMessage {
        src: header.src_addr,
        dst: header.dst_addr,
        repr,
    })
}
