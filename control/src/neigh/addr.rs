//! Addresses of the IPoIB link itself: the interface's hardware address, its
//! IPv6 link-local address (RFC 4391 §8) and the multicast groups that ARP
//! and ND send to.

use ipoib_dataplane::wire::{broadcast_mgid, mgid_for_ip, HwAddr};
use std::net::{IpAddr, Ipv6Addr};

/// The universal/local bit of a modified EUI-64 interface identifier.
const EUI64_UL_BIT: u64 = 0x0200_0000_0000_0000;

/// The IPv6 interface identifier of a port: its GUID (already an EUI-64)
/// with the universal/local bit inverted (RFC 4391 §8, RFC 4291 App. A).
pub const fn interface_id(port_guid: u64) -> u64 {
    port_guid ^ EUI64_UL_BIT
}

/// The IPv6 link-local address `fe80::/64` + interface identifier.
pub fn link_local_from_guid(port_guid: u64) -> Ipv6Addr {
    Ipv6Addr::from((0xfe80u128 << 112) | u128::from(interface_id(port_guid)))
}

/// The solicited-node multicast address `ff02::1:ffXX:XXXX` of `addr`.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let low24 = u128::from(addr) & 0x00ff_ffff;
    Ipv6Addr::from(0xff02_0000_0000_0000_0000_0001_ff00_0000u128 | low24)
}

/// All-nodes link-local multicast, where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// What the neighbour cache needs to know about its own link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLink {
    /// Our hardware address: flags, UD QPN and port GID.
    pub hwaddr: HwAddr,
    /// The partition (P_Key) the interface belongs to.
    pub pkey: u16,
    /// The MGID scope of the link (2 = link-local).
    pub scope: u8,
}

impl LocalLink {
    /// The broadcast group's hardware address, where ARP requests go.
    pub fn broadcast(&self) -> HwAddr {
        HwAddr::multicast(broadcast_mgid(self.pkey, self.scope))
    }

    /// The multicast hardware address of an IPv6 group; `None` for a scope
    /// out of range (a configuration the interface would have refused).
    pub fn ipv6_group(&self, group: Ipv6Addr) -> Option<HwAddr> {
        mgid_for_ip(IpAddr::V6(group), self.pkey, self.scope)
            .ok()
            .map(HwAddr::multicast)
    }

    /// Our IPv6 link-local address, from the port GUID in our GID.
    pub fn link_local(&self) -> Ipv6Addr {
        link_local_from_guid(self.hwaddr.gid.interface_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_id_flips_the_universal_local_bit() {
        // RFC 4391 §8: GUID 00:02:c9:03:00:01:02:03 → IID 0202:c903:0001:0203.
        assert_eq!(interface_id(0x0002_c903_0001_0203), 0x0202_c903_0001_0203);
        assert_eq!(
            link_local_from_guid(0x0002_c903_0001_0203),
            "fe80::202:c903:1:203".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn solicited_node_keeps_the_low_24_bits() {
        let addr: Ipv6Addr = "2001:db8::1234:5678".parse().unwrap();
        assert_eq!(
            solicited_node(addr),
            "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap()
        );
    }
}
