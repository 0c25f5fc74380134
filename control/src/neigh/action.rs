//! What the neighbour cache asks its owner to do.
//!
//! Send actions carry the message as a `Repr` and its link destination as a
//! hardware address: `HwAddr::multicast(mgid)` (QPN 0xFFFFFF) for the
//! broadcast or a solicited-node group, the neighbour's own address for a
//! unicast reply. [`Action::transmit`] turns one into the frame to post.

use super::frame::{arp_frame, nd_frame, NdMessage};
use ipoib_dataplane::wire::{ArpRepr, HwAddr};
use std::net::IpAddr;

/// Why packets were handed back unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The neighbour's queue already held `queue_len` packets.
    QueueFull,
    /// Resolution gave up after its retries.
    Failed,
    /// The cache holds `max_entries` neighbours.
    TableFull,
    /// The interface went down.
    Down,
    /// Not a unicast neighbour address (multicast, unspecified, our own).
    Unresolvable,
    /// Resolved, but no path record or address handle could be had.
    NoPath,
}

/// A frame to post: IPoIB header included, destination as a hardware address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: HwAddr,
    pub frame: Vec<u8>,
}

/// One thing for the owner of the cache to do. `T` is the datapath's packet
/// token (an mbuf): every token given to the cache comes back exactly once,
/// in `Resolved` or `Dropped`, unless it is still queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<T> {
    /// Who has `target_protocol_addr`? To the broadcast group, or unicast
    /// to re-confirm a stale entry.
    SendArpRequest { dest: HwAddr, repr: ArpRepr },
    /// Answer to a request for one of our addresses, unicast.
    SendArpReply { dest: HwAddr, repr: ArpRepr },
    /// Announces our address (interface up, address or GID change).
    SendGratuitousArp { dest: HwAddr, repr: ArpRepr },
    /// To the target's solicited-node group, or unicast to re-confirm.
    SendNeighborSolicitation { dest: HwAddr, msg: NdMessage },
    /// Solicited answer (unicast) or unsolicited announcement (all-nodes).
    SendNeighborAdvertisement { dest: HwAddr, msg: NdMessage },
    /// `ip` is at `hwaddr` (newly learned or changed); send `packets` there.
    /// Also emitted, with the packet, for a miss on an already resolved
    /// entry (the lcore had not seen the new snapshot yet).
    Resolved {
        ip: IpAddr,
        hwaddr: HwAddr,
        packets: Vec<T>,
    },
    /// `ip` no longer resolves to `hwaddr` (removed or changed): release
    /// whatever was held for it (its address handle reference).
    Forget { ip: IpAddr, hwaddr: HwAddr },
    /// These packets will not be sent; already counted in the stats.
    Dropped {
        ip: IpAddr,
        reason: DropReason,
        packets: Vec<T>,
    },
}

impl<T> Action<T> {
    /// The frame a send action asks for; `None` for the other actions.
    pub fn transmit(&self) -> Option<Transmit> {
        let (dest, frame) = match self {
            Action::SendArpRequest { dest, repr }
            | Action::SendArpReply { dest, repr }
            | Action::SendGratuitousArp { dest, repr } => (*dest, arp_frame(repr)),
            Action::SendNeighborSolicitation { dest, msg }
            | Action::SendNeighborAdvertisement { dest, msg } => (*dest, nd_frame(msg)),
            _ => return None,
        };
        frame.ok().map(|frame| Transmit { dest, frame })
    }

    /// True for the actions that put a frame on the link.
    pub fn is_send(&self) -> bool {
        matches!(
            self,
            Action::SendArpRequest { .. }
                | Action::SendArpReply { .. }
                | Action::SendGratuitousArp { .. }
                | Action::SendNeighborSolicitation { .. }
                | Action::SendNeighborAdvertisement { .. }
        )
    }
}
