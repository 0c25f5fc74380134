//! Opening libibverbs and librdmacm at run time. Each is opened once per
//! process, on first use; every symbol the crate calls is resolved then, so
//! a library without one fails here, never later.
//!
//! `RDMA_SYS_LIBIBVERBS` / `RDMA_SYS_LIBRDMACM` name another file to open
//! (tests use them to show the missing-library message on any machine).

use crate::bindings::{cm::RdmaCm, verbs::Verbs};
use crate::LoadError;
use std::sync::OnceLock;

pub const LIBIBVERBS: &str = "libibverbs.so.1";
pub const LIBRDMACM: &str = "librdmacm.so.1";
/// The Debian packages that provide them (ibverbs-providers: the drivers,
/// without which libibverbs lists no device).
pub const LIBIBVERBS_PACKAGE: &str = "libibverbs1 (and ibverbs-providers for the device drivers)";
pub const LIBRDMACM_PACKAGE: &str = "librdmacm1";

static VERBS: OnceLock<Result<Verbs, LoadError>> = OnceLock::new();
static RDMACM: OnceLock<Result<RdmaCm, LoadError>> = OnceLock::new();

fn file_name(env: &str, default: &str) -> String {
    std::env::var(env)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Opens `file` and resolves every symbol with `from_library`.
fn open<T>(
    file: &str,
    package: &'static str,
    from_library: impl FnOnce(libloading::Library) -> Result<T, libloading::Error>,
) -> Result<T, LoadError> {
    // SAFETY: loading the system's libibverbs/librdmacm runs their
    // initialisers, which have no preconditions.
    let lib = unsafe { libloading::Library::new(file) }.map_err(|e| LoadError::Missing {
        file: file.to_string(),
        package,
        detail: short(&e),
    })?;
    from_library(lib).map_err(|e| LoadError::TooOld {
        file: file.to_string(),
        package,
        detail: short(&e),
    })
}

/// libloading's message without its repetition of the file name.
fn short(e: &libloading::Error) -> String {
    let s = e.to_string();
    match s.rsplit_once(": ") {
        Some((_, tail)) if !tail.is_empty() => tail.to_string(),
        _ => s,
    }
}

/// Loads libibverbs from `file` (not cached: for tests and diagnostics).
pub fn load_verbs_from(file: &str) -> Result<Verbs, LoadError> {
    // SAFETY: the bindings' signatures were generated from this library's headers.
    open(file, LIBIBVERBS_PACKAGE, |l| unsafe {
        Verbs::from_library(l)
    })
}

/// Loads librdmacm from `file` (not cached).
pub fn load_rdmacm_from(file: &str) -> Result<RdmaCm, LoadError> {
    // SAFETY: as above.
    open(file, LIBRDMACM_PACKAGE, |l| unsafe {
        RdmaCm::from_library(l)
    })
}

/// libibverbs, opened on first use.
pub fn verbs() -> Result<&'static Verbs, LoadError> {
    VERBS
        .get_or_init(|| load_verbs_from(&file_name("RDMA_SYS_LIBIBVERBS", LIBIBVERBS)))
        .as_ref()
        .map_err(Clone::clone)
}

/// librdmacm, opened on first use.
pub fn rdmacm() -> Result<&'static RdmaCm, LoadError> {
    RDMACM
        .get_or_init(|| load_rdmacm_from(&file_name("RDMA_SYS_LIBRDMACM", LIBRDMACM)))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_libibverbs_names_the_package() {
        let err = load_verbs_from("/nonexistent/libibverbs.so.1")
            .err()
            .expect("a nonexistent file cannot load");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libibverbs.so.1"), "{msg}");
        assert!(
            msg.contains("install the Debian package libibverbs1"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn a_missing_librdmacm_names_the_package() {
        let msg = load_rdmacm_from("/nonexistent/librdmacm.so.1")
            .err()
            .expect("a nonexistent file cannot load")
            .to_string();
        assert!(msg.contains("librdmacm1"), "{msg}");
    }

    #[test]
    fn a_library_without_the_verbs_is_too_old() {
        // libc is always there and has none of the verbs.
        let msg = load_verbs_from("libc.so.6")
            .err()
            .expect("libc has no verbs")
            .to_string();
        assert!(msg.contains("too old"), "{msg}");
        assert!(msg.contains("ibv_"), "names the missing symbol: {msg}");
    }
}
