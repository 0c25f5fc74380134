//! Moving items between rings and `ArrayVec` burst buffers without
//! per-item bookkeeping: items are copied as raw memory and the vector's
//! length is fixed up once.

use std::ptr;

use arrayvec::ArrayVec;

/// Hands the first `n` items of `src` to `sink` as a pointer, then closes the
/// gap so the items that did not move stay at the front in order.
///
/// # Safety
/// `n <= src.len()`, and `sink` must take ownership of exactly those `n`
/// items (move them out bitwise) without panicking.
#[inline(always)]
pub(crate) unsafe fn take_front<T, const N: usize>(
    src: &mut ArrayVec<T, N>,
    n: usize,
    sink: impl FnOnce(*const T),
) {
    let len = src.len();
    debug_assert!(n <= len);
    let base = src.as_mut_ptr();
    sink(base);
    if n < len {
        ptr::copy(base.add(n), base, len - n);
    }
    src.set_len(len - n);
}

/// Lets `source` write `n` items after the current end of `dst` through a
/// pointer, then extends `dst` over them.
///
/// # Safety
/// `n <= dst.remaining_capacity()`, and `source` must initialise exactly
/// `n` items without panicking.
#[inline(always)]
pub(crate) unsafe fn append<T, const N: usize>(
    dst: &mut ArrayVec<T, N>,
    n: usize,
    source: impl FnOnce(*mut T),
) {
    let len = dst.len();
    debug_assert!(n <= N - len);
    source(dst.as_mut_ptr().add(len));
    dst.set_len(len + n);
}
