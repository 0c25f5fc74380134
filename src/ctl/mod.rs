//! The daemon's control socket: a Unix stream socket, mode 0600, one JSON
//! request per line and one JSON response per line (see `protocol`).
//! `ipoibd` serves it (`server`, answers from `daemon`), `ipoibctl` asks
//! (`client`, tables from `render`).

pub mod client;
pub mod daemon;
pub mod protocol;
pub mod render;
pub mod server;
pub(crate) mod sys;

use std::path::PathBuf;

/// Where the daemon listens unless told otherwise: `/run/ipoibd.sock` for
/// root, else `$XDG_RUNTIME_DIR/ipoibd.sock`, else `/tmp/ipoibd-UID.sock`.
pub fn default_socket_path() -> PathBuf {
    let uid = sys::euid();
    if uid == 0 {
        return PathBuf::from("/run/ipoibd.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("ipoibd.sock"),
        _ => PathBuf::from(format!("/tmp/ipoibd-{uid}.sock")),
    }
}
