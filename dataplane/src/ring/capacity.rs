//! Capacity rule shared by all ring modes.

use thiserror::Error;

/// Why a ring could not be created with the requested capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CapacityError {
    #[error("ring capacity must be at least 1")]
    Zero,
    #[error("ring capacity {0} cannot be rounded up to a power of two")]
    TooLarge(usize),
}

/// Rounds a requested capacity up to the power of two the ring will use.
///
/// Rounding up (rather than rejecting) keeps configuration simple: asking for
/// 1000 slots gives 1024, and [`capacity()`](super::spsc::Producer::capacity)
/// always reports the real size.
pub fn ring_capacity(requested: usize) -> Result<usize, CapacityError> {
    if requested == 0 {
        return Err(CapacityError::Zero);
    }
    requested
        .checked_next_power_of_two()
        .ok_or(CapacityError::TooLarge(requested))
}
