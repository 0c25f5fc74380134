//! The IP and UDP headers the ICRC covers, rebuilt from socket addresses.
//!
//! A UDP socket never shows the headers, but the kernel's are predictable:
//! an unconnected socket with `IP_PMTUDISC_DO` sends DF set and IP ID 0,
//! and every other covered field follows from the addresses and the length
//! (TOS, TTL, checksums and the IPv6 traffic class, flow label and hop
//! limit are masked by the ICRC).

use crate::wire::roce::IcrcHeaders;
use std::net::SocketAddr;

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
const PROTO_UDP: u8 = 17;
const IPV4_DF: u16 = 0x4000;
/// What rxe (and the kernel for our sockets) puts in TTL / hop limit.
const TTL: u8 = 64;

/// The ICRC of a UDP payload (BTH up to, not including, the ICRC) sent from
/// `src` to `dst`; `udp_payload_len` counts the ICRC too. `None` when the
/// families differ or the payload is shorter than a BTH.
pub fn icrc_for(
    src: SocketAddr,
    dst: SocketAddr,
    udp_payload_len: usize,
    transport: &[u8],
) -> Option<u32> {
    icrc_with_ip_id(src, dst, udp_payload_len, transport, 0)
}

/// As [`icrc_for`], for an IPv4 header with identification `ip_id` (the
/// kernel numbers the segments of one UDP GSO send 0, 1, 2, ...).
pub fn icrc_with_ip_id(
    src: SocketAddr,
    dst: SocketAddr,
    udp_payload_len: usize,
    transport: &[u8],
    ip_id: u16,
) -> Option<u32> {
    let mut h = headers(src, dst, udp_payload_len)?;
    h.set_ipv4_id(ip_id);
    h.icrc(transport).ok()
}

/// The headers the ICRC of a UDP payload of `udp_payload_len` bytes (the
/// ICRC included) from `src` to `dst` covers, IPv4 ID 0: built once for
/// the messages of one size to one peer. `None` when the families differ.
pub fn headers(src: SocketAddr, dst: SocketAddr, udp_payload_len: usize) -> Option<IcrcHeaders> {
    let udp_len = u16::try_from(UDP_HEADER_LEN + udp_payload_len).ok()?;
    let mut ip = [0u8; IPV6_HEADER_LEN];
    let ip = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            let total = u16::try_from(IPV4_HEADER_LEN + usize::from(udp_len)).ok()?;
            let h = &mut ip[..IPV4_HEADER_LEN];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[6..8].copy_from_slice(&IPV4_DF.to_be_bytes());
            h[8] = TTL;
            h[9] = PROTO_UDP;
            h[12..16].copy_from_slice(&s.ip().octets());
            h[16..20].copy_from_slice(&d.ip().octets());
            &*h
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = PROTO_UDP;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&s.ip().octets());
            ip[24..40].copy_from_slice(&d.ip().octets());
            &ip[..]
        }
        _ => return None,
    };
    let mut udp = [0u8; UDP_HEADER_LEN];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    IcrcHeaders::new(ip, &udp).ok()
}

/// The headers of the flow an ICRC was last checked for: a receiver's
/// messages mostly come from one sender at one size (a GRO buffer always
/// does), so they are built once for many.
#[derive(Debug, Default)]
pub(super) struct HeadersCache {
    last: Option<(SocketAddr, SocketAddr, usize, IcrcHeaders)>,
}

impl HeadersCache {
    /// The headers for a UDP payload of `udp_payload_len` bytes from `src`
    /// to `dst` (IPv4 ID as last set); `None` when the families differ.
    pub(super) fn get(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        udp_payload_len: usize,
    ) -> Option<&mut IcrcHeaders> {
        let hit = matches!(&self.last,
            Some((s, d, l, _)) if *s == src && *d == dst && *l == udp_payload_len);
        if !hit {
            let h = headers(src, dst, udp_payload_len)?;
            self.last = Some((src, dst, udp_payload_len, h));
        }
        self.last.as_mut().map(|(_, _, _, h)| h)
    }
}
