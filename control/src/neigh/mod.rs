//! Address resolution for one IPoIB interface: IPoIB ARP (IPv4) and
//! Neighbour Discovery with the IPoIB link-layer option (IPv6), as a sans-IO
//! state machine ([`NeighCache`]), and the [`Resolver`] that joins it to
//! path records and address handles and publishes the lcores' table.
//!
//! Flow: an lcore misses in the published `NeighTable`, keeps nothing and
//! pushes (ip, packet) to control; control calls `on_tx_miss`, sends the
//! request the returned actions carry, feeds received ARP/ND frames to
//! `on_frame`, and `on_timer` at `poll_timeout`. Every packet token comes
//! back exactly once, to be sent (`Resolved`) or freed (`Dropped`).

mod action;
mod addr;
mod cache;
mod config;
mod entry;
mod frame;
mod learn;
mod resolver;
mod stats;

pub use action::{Action, DropReason, Transmit};
pub use addr::{interface_id, link_local_from_guid, solicited_node, LocalLink, ALL_NODES};
pub use cache::NeighCache;
pub use config::NeighConfig;
pub use entry::{NeighInfo, NeighState};
pub use frame::{arp_frame, nd_frame, parse_frame, FrameError, Inbound, NdMessage, ND_HOP_LIMIT};
pub use resolver::{Output, Resolver, ResolverStats};
pub use stats::NeighStats;
