//! Address handles: created once per destination (control plane or an
//! lcore's multicast refresh) and kept for the device's life, so a handle
//! copied into a published table never dangles.

use crate::provider::rocev2::addr;
use crate::provider::{AhAttr, ProviderError};
use crate::wire::Gid;
use rdma_sys::{Ah, AhSpec, Pd};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Mutex;

/// What a send work request carries: the raw `ibv_ah`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerbsAh(NonNull<rdma_sys::ffi::ibv_ah>);

// SAFETY: an address handle is immutable once created and lives in its
// `AhTable` until the device is dropped.
unsafe impl Send for VerbsAh {}
unsafe impl Sync for VerbsAh {}

impl VerbsAh {
    pub fn as_ptr(self) -> *mut rdma_sys::ffi::ibv_ah {
        self.0.as_ptr()
    }
}

/// The GID a destination has on this port type. On RoCE the IPoIB MGID of
/// an IPv4 group is the group's `::ffff:a.b.c.d` (as the rocev2 provider
/// and rdma_cm map it); on InfiniBand every GID is itself.
pub fn wire_gid(roce: bool, gid: Gid) -> Gid {
    if roce {
        addr::gid_of(addr::ip_of(gid))
    } else {
        gid
    }
}

/// (DLID, GID when the handle has a GRH, SL): what makes two handles differ.
type AhKey = (u16, Option<Gid>, u8);

pub struct AhTable {
    pd: Pd,
    port: u8,
    gid_index: u8,
    roce: bool,
    ahs: Mutex<HashMap<AhKey, Ah>>,
}

impl AhTable {
    pub(super) fn new(pd: Pd, port: u8, gid_index: u8, roce: bool) -> Self {
        AhTable {
            pd,
            port,
            gid_index,
            roce,
            ahs: Mutex::new(HashMap::new()),
        }
    }

    /// The handle for `attr`, created on first use.
    pub fn get(&self, attr: &AhAttr) -> Result<VerbsAh, ProviderError> {
        let dgid = match attr.dgid {
            Some(g) => Some(wire_gid(self.roce, g)),
            None if self.roce => {
                return Err(ProviderError::InvalidAh("RoCE needs a destination GID"))
            }
            None => None,
        };
        // On InfiniBand a unicast path with a LID goes without a GRH.
        let grh = match dgid {
            Some(g) if self.roce || g.0[0] == 0xff || attr.dlid == 0 => Some(g),
            _ => None,
        };
        let dlid = if self.roce { 0 } else { attr.dlid };
        let key = (dlid, grh, attr.sl);
        let mut ahs = self.ahs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ah) = ahs.get(&key) {
            return Ok(VerbsAh(ah.handle()));
        }
        let ah = Ah::new(
            &self.pd,
            &AhSpec {
                port: self.port,
                dlid,
                sl: attr.sl,
                grh: grh.map(|g| (g.0, self.gid_index)),
            },
        )
        .map_err(|e| ProviderError::Verbs(e.to_string()))?;
        let raw = VerbsAh(ah.handle());
        ahs.insert(key, ah);
        Ok(raw)
    }

    /// Handles created so far.
    pub fn len(&self) -> usize {
        self.ahs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn roce_sends_ipoib_groups_to_their_ipv4_group() {
        let mgid: Ipv6Addr = "ff12:401b:ffff::ffff:ffff".parse().unwrap();
        let g = wire_gid(true, Gid::from(mgid));
        assert_eq!(g.to_string(), "::ffff:239.255.255.255");
        assert_eq!(wire_gid(false, Gid::from(mgid)), Gid::from(mgid));
        let peer = addr::gid_of("10.99.0.3".parse().unwrap());
        assert_eq!(wire_gid(true, peer), peer);
    }
}
