//! Slot storage shared by every ring mode: a power-of-two array of possibly
//! uninitialised items addressed by free-running indices (`index & mask`).
//!
//! Which slots hold a live item is tracked by the ring's head/tail indices,
//! not here; every method that touches items is `unsafe` and states what the
//! caller must guarantee about those indices.

use std::mem::MaybeUninit;
use std::ptr;

use super::sync::UnsafeCell;

pub(crate) struct Slots<T> {
    cells: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
}

impl<T> Slots<T> {
    /// Allocates `capacity` slots; `capacity` must be a power of two.
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!(capacity.is_power_of_two());
        let cells = (0..capacity)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        Self {
            cells,
            mask: capacity - 1,
        }
    }

    #[inline(always)]
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    #[cfg(not(loom))]
    /// Splits `n` slots starting at free-running index `start` into the run
    /// up to the end of the array and the run that wraps to its beginning.
    #[inline(always)]
    fn runs(&self, start: usize, n: usize) -> (usize, usize, usize) {
        let first = start & self.mask;
        let first_len = n.min(self.capacity() - first);
        (first, first_len, n - first_len)
    }

    /// The `n` slots starting at `start` as at most two runs of
    /// (first slot, length): up to the end of the array, then from its start.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn run_ptrs(&self, start: usize, n: usize) -> [(*mut T, usize); 2] {
        let (first, first_len, second_len) = self.runs(start, n);
        let base = self.base();
        // SAFETY: first < capacity, so the pointer is inside the slot array.
        [(unsafe { base.add(first) }, first_len), (base, second_len)]
    }

    /// Moves `n` items from `src` into the slots starting at `start`.
    ///
    /// # Safety
    /// The slots `start..start + n` must be owned by the caller and empty,
    /// `n <= capacity`, and `src` must point to `n` initialised items that the
    /// caller will not use or drop again.
    #[inline(always)]
    pub(crate) unsafe fn write_from(&self, start: usize, src: *const T, n: usize) {
        #[cfg(not(loom))]
        {
            let (first, first_len, second_len) = self.runs(start, n);
            let base = self.base();
            copy_items(src, base.add(first), first_len);
            copy_items(src.add(first_len), base, second_len);
        }
        #[cfg(loom)]
        for offset in 0..n {
            let value = ptr::read(src.add(offset));
            self.cell(start.wrapping_add(offset))
                .with_mut(|slot| (*slot).write(value));
        }
    }

    /// Moves `n` items out of the slots starting at `start` into `dst`.
    ///
    /// # Safety
    /// The slots `start..start + n` must be owned by the caller and hold
    /// initialised items, which are then considered moved out; `dst` must be
    /// valid for writing `n` items.
    #[inline(always)]
    pub(crate) unsafe fn read_into(&self, start: usize, dst: *mut T, n: usize) {
        #[cfg(not(loom))]
        {
            let (first, first_len, second_len) = self.runs(start, n);
            let base = self.base();
            copy_items(base.add(first), dst, first_len);
            copy_items(base, dst.add(first_len), second_len);
        }
        #[cfg(loom)]
        for offset in 0..n {
            let value = self
                .cell(start.wrapping_add(offset))
                .with_mut(|slot| (*slot).assume_init_read());
            ptr::write(dst.add(offset), value);
        }
    }

    /// Moves `n` items from the slots starting at `start` into the slots of
    /// `dst` starting at `dst_start`, as contiguous runs (at most three).
    ///
    /// # Safety
    /// As [`Self::read_into`] for these slots and [`Self::write_from`] for
    /// those of `dst`; the two ranges do not overlap (`dst` may be `self`).
    #[inline(always)]
    pub(crate) unsafe fn move_into(
        &self,
        start: usize,
        dst: &Slots<T>,
        dst_start: usize,
        n: usize,
    ) {
        #[cfg(not(loom))]
        {
            let (src_base, dst_base) = (self.base(), dst.base());
            let mut done = 0;
            while done < n {
                let s = start.wrapping_add(done) & self.mask;
                let d = dst_start.wrapping_add(done) & dst.mask;
                let run = (n - done).min(self.capacity() - s).min(dst.capacity() - d);
                copy_items(src_base.add(s), dst_base.add(d), run);
                done += run;
            }
        }
        #[cfg(loom)]
        for offset in 0..n {
            let value = self.read(start.wrapping_add(offset));
            dst.write(dst_start.wrapping_add(offset), value);
        }
    }

    /// Stores one item.
    ///
    /// # Safety
    /// As [`Self::write_from`] with `n == 1`.
    #[inline(always)]
    pub(crate) unsafe fn write(&self, index: usize, value: T) {
        self.cell(index).with_mut(|slot| (*slot).write(value));
    }

    /// Takes one item.
    ///
    /// # Safety
    /// As [`Self::read_into`] with `n == 1`.
    #[inline(always)]
    pub(crate) unsafe fn read(&self, index: usize) -> T {
        self.cell(index).with_mut(|slot| (*slot).assume_init_read())
    }

    /// Drops the items in the slots `start..end` (free-running indices).
    ///
    /// # Safety
    /// Those slots must hold initialised items that nobody else will read.
    pub(crate) unsafe fn drop_range(&self, start: usize, end: usize) {
        let mut index = start;
        while index != end {
            self.cell(index).with_mut(|slot| (*slot).assume_init_drop());
            index = index.wrapping_add(1);
        }
    }

    #[inline(always)]
    fn cell(&self, index: usize) -> &UnsafeCell<MaybeUninit<T>> {
        // SAFETY: masking keeps the index inside the power-of-two array.
        unsafe { self.cells.get_unchecked(index & self.mask) }
    }

    /// Base of the slot array as one buffer; the std `UnsafeCell` wrapper is
    /// `repr(transparent)`, so the cells are laid out exactly as `[T]` slots.
    #[cfg(not(loom))]
    #[inline(always)]
    fn base(&self) -> *mut T {
        self.cells.as_ptr().cast::<T>().cast_mut()
    }
}

/// Moves `n` items with one load/store per item rather than `memcpy`: for a
/// burst-sized copy, `memcpy`'s string instructions were markedly slower
/// when the other core had just written (or is about to read) the slots.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn copy_items<T>(src: *const T, dst: *mut T, n: usize) {
    for i in 0..n {
        ptr::write(dst.add(i), ptr::read(src.add(i)));
    }
}
