//! One monotonic clock for pktgen, in nanoseconds: CLOCK_MONOTONIC itself,
//! so send stamps written on one lcore compare with receive times read on
//! another, and with those of another process on the same machine (network
//! namespaces share it; another machine's clock is offset).

/// Nanoseconds of CLOCK_MONOTONIC (a vDSO read, no system call).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; CLOCK_MONOTONIC
    // always exists on Linux, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Kept for callers that warmed the former process epoch: nothing to set up.
pub fn init() {}
