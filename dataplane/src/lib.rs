//! The poll-mode datapath: memory, rings, wire formats, providers and lcores.
//!
//! Nothing here knows about the control plane except two queues: join and
//! resolution requests going out, published multicast/neighbour tables coming in.

pub mod capture;
pub mod lcore;
pub mod mem;
pub mod pktgen;
pub mod provider;
pub mod ring;
pub mod stats;
pub mod tables;
pub mod tun;
pub mod wire;
