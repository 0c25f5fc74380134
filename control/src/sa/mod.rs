//! Subnet administrators that answer multicast joins.

mod faults;
mod rng;
mod soft;

pub use faults::{FaultSpec, FaultSpecError};
pub use rng::SplitMix64;
pub use soft::{SaStats, SoftSa, SoftSaConfig};
