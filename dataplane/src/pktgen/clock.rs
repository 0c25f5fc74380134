//! One monotonic clock for the whole process, in nanoseconds, so that send
//! stamps written on one lcore compare with receive times read on another.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process clock's epoch (set on first use).
#[inline]
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64
}

/// Sets the epoch now if it is not set yet; call before any lcore starts so
/// the first stamp does not pay for it.
pub fn init() {
    let _ = EPOCH.get_or_init(Instant::now);
}
