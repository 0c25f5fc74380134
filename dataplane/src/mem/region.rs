use std::ptr::NonNull;
use std::sync::Once;

/// Whether the region must, may, or must not come from hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugepageMode {
    /// Try hugepages; fall back to normal pages with one warning.
    #[default]
    Auto,
    /// Hugepages or an error.
    On,
    /// Normal pages (with a transparent-hugepage hint).
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("cannot map {bytes} bytes of hugepages ({errno}); reserve them with `echo N > /proc/sys/vm/nr_hugepages` (2 MiB each) or set dataplane.hugepages = \"auto\"")]
    NoHugepages { bytes: usize, errno: std::io::Error },
    #[error("cannot map {bytes} bytes of memory: {errno}")]
    Map { bytes: usize, errno: std::io::Error },
    #[error("invalid pool geometry: {0}")]
    Geometry(&'static str),
}

const HUGE_PAGE: usize = 2 << 20;

/// An anonymous, pre-faulted mapping. Pre-faulting (`MAP_POPULATE`) keeps page
/// faults — and RSS growth — out of the steady state.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    huge: bool,
}

// SAFETY: the region is plain memory; access is coordinated by the pool.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

static FALLBACK_WARNING: Once = Once::new();

impl Region {
    pub fn new(len: usize, mode: HugepageMode) -> Result<Region, MemError> {
        if len == 0 {
            return Err(MemError::Geometry("zero-sized region"));
        }
        if mode != HugepageMode::Off {
            let huge_len = len.div_ceil(HUGE_PAGE) * HUGE_PAGE;
            match map(huge_len, libc::MAP_HUGETLB) {
                Ok(ptr) => return Ok(Region { ptr, len: huge_len, huge: true }),
                Err(errno) if mode == HugepageMode::On => {
                    return Err(MemError::NoHugepages { bytes: huge_len, errno })
                }
                Err(_) => FALLBACK_WARNING.call_once(|| {
                    tracing::warn!(
                        "no hugepages reserved: using normal pages with a transparent-hugepage hint; \
                         reserve them with `echo N > /proc/sys/vm/nr_hugepages` for lower TLB pressure"
                    )
                }),
            }
        }
        let ptr = map(len, 0).map_err(|errno| MemError::Map { bytes: len, errno })?;
        // SAFETY: ptr/len is the mapping just created. The hint may be refused; that is fine.
        unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
        Ok(Region {
            ptr,
            len,
            huge: false,
        })
    }

    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn is_hugepage(&self) -> bool {
        self.huge
    }
}

fn map(len: usize, extra_flags: libc::c_int) -> Result<NonNull<u8>, std::io::Error> {
    // SAFETY: anonymous private mapping with no fixed address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | extra_flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOMEM))
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` returned.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
