//! RoCEv2 addressing: a QP's GID is an IP address (IPv4-mapped
//! `::ffff:a.b.c.d` or IPv6), and a multicast GID names an IP group.

use crate::wire::Gid;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Signature of IPoIB IPv4 MGIDs (`ff1s:401b:PKEY::group`, RFC 4391).
const IPOIB_V4_SIGNATURE: u16 = 0x401b;
/// IPv4 multicast is 224.0.0.0/4: the low 28 bits name the group.
const IPV4_MCAST_PREFIX: u32 = 0xE000_0000;
const IPV4_MCAST_LOW_BITS: u32 = 0x0FFF_FFFF;

/// The GID of an IP address, as rxe and rdma_cm form it.
pub fn gid_of(ip: IpAddr) -> Gid {
    match ip {
        IpAddr::V4(v4) => Gid::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => Gid::from(v6),
    }
}

/// The IP address a GID stands for: IPv4-mapped GIDs are IPv4 (rdma_cm's
/// `::ffff:239.x.y.z` MGIDs included), IPoIB IPv4 MGIDs become their IPv4
/// group (224.0.0.0 | the low 28 bits, so the broadcast MGID is
/// 239.255.255.255), anything else is the IPv6 address itself (as rxe sends).
pub fn ip_of(gid: Gid) -> IpAddr {
    let v6 = Ipv6Addr::from(gid);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let seg = v6.segments();
    if gid.0[0] == 0xff && seg[1] == IPOIB_V4_SIGNATURE {
        let low = u32::from_be_bytes([gid.0[12], gid.0[13], gid.0[14], gid.0[15]]);
        return IpAddr::V4(Ipv4Addr::from(
            IPV4_MCAST_PREFIX | (low & IPV4_MCAST_LOW_BITS),
        ));
    }
    IpAddr::V6(v6)
}

/// Where IPv6 groups go on an IPv4 underlay: an administratively scoped
/// IPv4 network (RFC 2365). IPoIB's IPv6 MGIDs (ND's solicited-node and
/// all-nodes groups among them) are not IPv4-mapped, so no IPv4 group
/// stands for them; this range gives each one, by a hash of the MGID, so
/// hosts of this project on one IPv4 network share them. Linux rxe has no
/// such mapping: it is not wire-compatible with rxe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6GroupRange {
    net: u32,
    host_mask: u32,
}

impl V6GroupRange {
    /// The range `net/prefix`; `None` unless the prefix is 8..=24 and `net`
    /// has no host bits.
    pub fn new(net: Ipv4Addr, prefix: u8) -> Option<Self> {
        let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        let net = u32::from(net);
        ((8..=24).contains(&prefix) && net & host_mask == 0)
            .then_some(V6GroupRange { net, host_mask })
    }

    /// The IPv4 group of `mgid`: the range's network with its host bits
    /// from the 32-bit FNV-1a hash of the MGID's 16 bytes. Different groups
    /// may share one (like Ethernet multicast MACs); receivers filter by
    /// the packet's IP destination as IPoIB does.
    pub fn group_of(&self, mgid: Gid) -> Ipv4Addr {
        let mut h: u32 = 0x811C_9DC5;
        for b in mgid.0 {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        Ipv4Addr::from(self.net | (h & self.host_mask))
    }
}

/// The IP address `gid` is sent to from `local`: as [`ip_of`], except that
/// on an IPv4 underlay with a `v6_groups` range an IPv6 multicast GID
/// becomes that range's IPv4 group.
pub fn underlay_ip(gid: Gid, local: IpAddr, v6_groups: Option<V6GroupRange>) -> IpAddr {
    match (ip_of(gid), local, v6_groups) {
        (IpAddr::V6(v6), IpAddr::V4(_), Some(r)) if v6.is_multicast() => {
            IpAddr::V4(r.group_of(gid))
        }
        (ip, _, _) => ip,
    }
}

/// The socket address of `ip` at `port`.
pub fn socket_addr(ip: IpAddr, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_gids_round_trip() {
        let ip: IpAddr = Ipv4Addr::new(10, 0, 0, 3).into();
        assert_eq!(gid_of(ip).to_string(), "::ffff:10.0.0.3");
        assert_eq!(ip_of(gid_of(ip)), ip);
    }

    #[test]
    fn rdma_cm_mgid_is_the_ipv4_group() {
        let mgid = gid_of(Ipv4Addr::new(239, 1, 1, 1).into());
        assert_eq!(ip_of(mgid), IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)));
    }

    #[test]
    fn ipoib_mgids_map_to_their_ipv4_group() {
        let mgid: Ipv6Addr = "ff12:401b:ffff::103:405".parse().unwrap();
        assert_eq!(
            ip_of(Gid::from(mgid)),
            IpAddr::V4(Ipv4Addr::new(225, 3, 4, 5))
        );
        let bcast: Ipv6Addr = "ff12:401b:ffff::ffff:ffff".parse().unwrap();
        assert_eq!(
            ip_of(Gid::from(bcast)),
            IpAddr::V4(Ipv4Addr::new(239, 255, 255, 255))
        );
    }

    #[test]
    fn ipv6_groups_on_an_ipv4_underlay_take_a_group_of_the_range() {
        let range = V6GroupRange::new(Ipv4Addr::new(239, 254, 0, 0), 16).unwrap();
        let local: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let all_nodes: Ipv6Addr = "ff12:601b:ffff::1".parse().unwrap();
        let snm: Ipv6Addr = "ff12:601b:ffff::1:ff00:2".parse().unwrap();
        let (a, b) = (Gid::from(all_nodes), Gid::from(snm));
        let ga = underlay_ip(a, local, Some(range));
        let gb = underlay_ip(b, local, Some(range));
        for g in [ga, gb] {
            let IpAddr::V4(v4) = g else {
                panic!("{g} is not IPv4")
            };
            assert_eq!(v4.octets()[..2], [239, 254], "{v4} outside the range");
        }
        assert_ne!(ga, gb, "two ND groups hash to one");
        // The same MGID always maps alike (every host must agree).
        assert_eq!(underlay_ip(a, local, Some(range)), ga);
        // FNV-1a of the 16 bytes, as documented: fixed for all hosts.
        let mut h: u32 = 0x811C_9DC5;
        for byte in all_nodes.octets() {
            h = (h ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
        assert_eq!(ga, IpAddr::V4(Ipv4Addr::from(0xEFFE_0000 | (h & 0xFFFF))));
        // IPv4 groups, unicast GIDs, IPv6 underlays and no range: as ip_of.
        let v4_mgid: Ipv6Addr = "ff12:401b:ffff::103:405".parse().unwrap();
        assert_eq!(
            underlay_ip(Gid::from(v4_mgid), local, Some(range)),
            ip_of(Gid::from(v4_mgid))
        );
        let uni: Ipv6Addr = "fd00::2".parse().unwrap();
        assert_eq!(
            underlay_ip(Gid::from(uni), local, Some(range)),
            IpAddr::V6(uni)
        );
        let local6: IpAddr = "fd00::1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(underlay_ip(a, local6, Some(range)), IpAddr::V6(all_nodes));
        assert_eq!(underlay_ip(a, local, None), IpAddr::V6(all_nodes));
    }

    #[test]
    fn ranges_need_a_whole_network_of_8_to_24_bits() {
        assert!(V6GroupRange::new(Ipv4Addr::new(239, 254, 0, 0), 16).is_some());
        assert!(V6GroupRange::new(Ipv4Addr::new(239, 254, 0, 1), 16).is_none());
        assert!(V6GroupRange::new(Ipv4Addr::new(239, 0, 0, 0), 7).is_none());
        assert!(V6GroupRange::new(Ipv4Addr::new(239, 1, 2, 0), 25).is_none());
    }

    #[test]
    fn other_gids_are_ipv6() {
        let v6: Ipv6Addr = "fd00::2".parse().unwrap();
        assert_eq!(ip_of(Gid::from(v6)), IpAddr::V6(v6));
    }
}
