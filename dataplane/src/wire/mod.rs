//! Wire formats in the smoltcp style: `Packet<T: AsRef<[u8]>>` views that check
//! lengths once and never panic, plus `Repr` structs that parse and emit.
//!
//! Every `Packet::new_checked` validates the lengths its getters rely on;
//! every `Repr::parse` re-checks them, so it never panics even on a packet
//! built with `new_unchecked`. `Repr::emit` returns `Truncated` instead of
//! writing past a short buffer.

mod bytes;
mod error;
mod gid;

pub mod arp;
pub mod checksum;
pub mod grh;
pub mod hwaddr;
pub mod ipoib;
pub mod ipv4;
pub mod ipv6;
pub mod mgid;
pub mod nd;
pub mod roce;
pub mod udp;

pub use error::{Error, Result};
pub use gid::Gid;

pub use arp::{Operation as ArpOperation, Packet as ArpPacket, Repr as ArpRepr};
pub use grh::{Packet as GrhPacket, Repr as GrhRepr};
pub use hwaddr::{HwAddr, HWADDR_LEN, MULTICAST_QPN};
pub use ipoib::{EtherType, Packet as IpoibPacket, Repr as IpoibRepr};
pub use ipv4::{Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use ipv6::{Packet as Ipv6Packet, Repr as Ipv6Repr};
pub use mgid::{broadcast_mgid, decode_mgid, mgid_for_ip, multicast_hwaddr, IpoibMgid, MgidError};
pub use nd::{
    LinkLayerAddrKind, LinkLayerAddrOption, LinkLayerAddrRepr, NdOption, NeighborFlags,
    Packet as NdPacket, Repr as NdRepr,
};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};
