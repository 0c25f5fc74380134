//! The local IP stack of a host on the IPoIB link: smoltcp with the IP
//! medium over in-memory packet queues. smoltcp does neighbour resolution
//! only for Ethernet; on IPoIB the link layer below (`neigh`) does ARP/ND,
//! so the stack exchanges bare IP packets.

mod device;
mod host;

pub use device::QueueDevice;
pub use host::{EchoReply, IpStack, StackConfig, StackError};
