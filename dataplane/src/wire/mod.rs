//! Wire formats in the smoltcp style: `Packet<T: AsRef<[u8]>>` views that check
//! lengths once and never panic, plus `Repr` structs that parse and emit.

mod error;
mod gid;

pub use error::{Error, Result};
pub use gid::Gid;
