//! IP multicast group → IPoIB MGID mapping, exactly as Linux
//! `ip_ib_mc_map`/`ipv6_ib_mc_map` (RFC 4391 §4), and back.
//!
//! MGID = `ff` | `1`,scope | signature | P_Key (full-member bit set) | group,
//! where the group is 48 zero bits and the low 28 bits of an IPv4 group (all
//! ones in the low 32 bits for 255.255.255.255, the broadcast-GID), or the
//! low 80 bits of an IPv6 group. The scope nibble is the link's, never the
//! IPv6 group's own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Gid, HwAddr};

pub const IPV4_SIGNATURE: u16 = 0x401B;
pub const IPV6_SIGNATURE: u16 = 0x601B;
/// The P_Key bit that marks full membership; MGIDs always carry it.
pub const PKEY_FULL_MEMBER: u16 = 0x8000;
pub const DEFAULT_PKEY: u16 = 0xFFFF;
pub const SCOPE_LINK_LOCAL: u8 = 0x2;
pub const SCOPE_SITE_LOCAL: u8 = 0x5;
pub const SCOPE_ORG_LOCAL: u8 = 0x8;
pub const SCOPE_GLOBAL: u8 = 0xE;
pub const MAX_SCOPE: u8 = 0xF;

/// Why an address has no MGID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MgidError {
    #[error("{0} is not a multicast address")]
    NotMulticast(IpAddr),
    #[error("scope {0} is out of range (0-15)")]
    ScopeOutOfRange(u8),
}

/// The MGID prefix shared by both families: bytes 0–9.
fn prefix(signature: u16, pkey: u16, scope: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = 0xff;
    // Flags nibble 1: a transient (not well-known) group.
    b[1] = 0x10 | (scope & 0x0f);
    b[2..4].copy_from_slice(&signature.to_be_bytes());
    b[4..6].copy_from_slice(&(pkey | PKEY_FULL_MEMBER).to_be_bytes());
    b
}

/// The IPv4 broadcast-GID of a partition: `ff1S:401b:PKEY::ffff:ffff`.
/// Only the low four bits of `scope` are used.
pub fn broadcast_mgid(pkey: u16, scope: u8) -> Gid {
    let mut b = prefix(IPV4_SIGNATURE, pkey, scope);
    b[12..].copy_from_slice(&[0xff; 4]);
    Gid(b)
}

fn ipv4_mgid(group: Ipv4Addr, pkey: u16, scope: u8) -> Gid {
    if group.is_broadcast() {
        return broadcast_mgid(pkey, scope);
    }
    let mut b = prefix(IPV4_SIGNATURE, pkey, scope);
    let octets = group.octets();
    b[12] = octets[0] & 0x0f;
    b[13..].copy_from_slice(&octets[1..]);
    Gid(b)
}

fn ipv6_mgid(group: Ipv6Addr, pkey: u16, scope: u8) -> Gid {
    let mut b = prefix(IPV6_SIGNATURE, pkey, scope);
    b[6..].copy_from_slice(&group.octets()[6..]);
    Gid(b)
}

/// The MGID of an IPv4 multicast group (or 255.255.255.255) or an IPv6
/// multicast group on the partition `pkey` with the link's `scope`.
pub fn mgid_for_ip(addr: IpAddr, pkey: u16, scope: u8) -> Result<Gid, MgidError> {
    if scope > MAX_SCOPE {
        return Err(MgidError::ScopeOutOfRange(scope));
    }
    match addr {
        IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => Ok(ipv4_mgid(v4, pkey, scope)),
        IpAddr::V6(v6) if v6.is_multicast() => Ok(ipv6_mgid(v6, pkey, scope)),
        _ => Err(MgidError::NotMulticast(addr)),
    }
}

/// The multicast hardware address (QPN 0xFFFFFF) of a group.
pub fn multicast_hwaddr(addr: IpAddr, pkey: u16, scope: u8) -> Result<HwAddr, MgidError> {
    mgid_for_ip(addr, pkey, scope).map(HwAddr::multicast)
}

/// What an IPoIB MGID says: partition, scope and IP group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpoibMgid {
    /// As carried in the MGID, full-member bit included.
    pub pkey: u16,
    pub scope: u8,
    /// The IPv4 group (top nibble restored to 0xE, or 255.255.255.255 for
    /// the broadcast-GID); for IPv6, the low 80 bits of the group under
    /// `ff0S::/16` with S the MGID's scope, since the mapping drops the
    /// group's own flags, scope and bytes 2–5.
    pub group: IpAddr,
}

/// Recognises an MGID made by [`mgid_for_ip`] and recovers its group.
/// Returns `None` for any other GID.
pub fn decode_mgid(mgid: &Gid) -> Option<IpoibMgid> {
    let b = mgid.as_bytes();
    if b[0] != 0xff || b[1] >> 4 != 0x1 {
        return None;
    }
    let scope = b[1] & 0x0f;
    let signature = u16::from_be_bytes([b[2], b[3]]);
    let pkey = u16::from_be_bytes([b[4], b[5]]);
    if pkey & PKEY_FULL_MEMBER == 0 {
        return None;
    }
    let group = match signature {
        IPV4_SIGNATURE => {
            if b[6..12].iter().any(|&x| x != 0) {
                return None;
            }
            let low = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
            if low == u32::MAX {
                IpAddr::V4(Ipv4Addr::BROADCAST)
            } else if low >> 28 == 0 {
                IpAddr::V4(Ipv4Addr::from(0xE000_0000 | low))
            } else {
                return None;
            }
        }
        IPV6_SIGNATURE => {
            let mut group = [0u8; 16];
            group[0] = 0xff;
            group[1] = scope;
            group[6..].copy_from_slice(&b[6..]);
            IpAddr::V6(Ipv6Addr::from(group))
        }
        _ => return None,
    };
    Some(IpoibMgid { pkey, scope, group })
}
