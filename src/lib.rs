//! Wiring shared by the binaries: builds hosts from a configuration, runs
//! them, and reports. The logic lives in the `dataplane` and `control` crates.

pub mod control_plane;
pub mod ctl;
pub mod logging;
pub mod metrics;
pub mod pktgen;
pub mod reload;
pub mod report;
pub mod resolution;
pub mod service;
pub mod wiring;
