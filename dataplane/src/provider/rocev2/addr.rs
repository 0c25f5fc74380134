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
    fn other_gids_are_ipv6() {
        let v6: Ipv6Addr = "fd00::2".parse().unwrap();
        assert_eq!(ip_of(Gid::from(v6)), IpAddr::V6(v6));
    }
}
