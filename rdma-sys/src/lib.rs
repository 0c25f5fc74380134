//! Thin FFI to libibverbs and librdmacm, loaded at run time.
//!
//! - [`bindings`]: bindgen output from rdma-core's headers, checked in.
//! - [`load`]: the libraries are opened with `libloading` on first use, so
//!   building and running without RDMA packages works; a missing library is
//!   one error naming the Debian package to install.
//! - [`ops`]: the static-inline hot-path verbs (`ibv_post_send`,
//!   `ibv_post_recv`, `ibv_poll_cq`) through the context's ops table, with
//!   compile-time layout checks in [`layout`].
//! - Safe RAII wrappers: [`Context`], [`Pd`], [`Mr`], [`Cq`], [`CompChannel`],
//!   [`Qp`], [`Ah`], async events, and rdma_cm ([`cm`]). Errors carry the
//!   verb's name and errno.

pub mod bindings;
pub mod cm;
mod device;
mod error;
mod event;
mod layout;
pub mod load;
pub mod ops;
mod resources;

pub use bindings::types as ffi;
pub use cm::{CmAddr, CmError, CmEvent, CmEventKind, CmId, CmPath, EventChannel};
pub use device::{
    devices, find_device, format_guid, mtu_bytes, netdevs_of, Context, DeviceInfo, DeviceSelector,
    Gid, OpenError, PortInfo, LINK_LAYER_ETHERNET, LINK_LAYER_INFINIBAND,
};
pub use error::{LoadError, VerbsError};
pub use event::{AsyncEvent, AsyncEventKind};
pub use resources::{Ah, AhSpec, CompChannel, Cq, Mr, Pd, Qp, UdQpSpec};
