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

/// The address vector for `attr` on a port: on RoCE always a GRH to the
/// destination's RoCE GID and no LID; on InfiniBand a GRH for multicast
/// (MGID and MLID from the join) and for a path without a LID, else
/// LID-routed with the DLID and SL of the SA's path record.
pub fn ah_spec(
    roce: bool,
    port: u8,
    gid_index: u8,
    attr: &AhAttr,
) -> Result<AhSpec, ProviderError> {
    let dgid = match attr.dgid {
        Some(g) => Some(wire_gid(roce, g)),
        None if roce => return Err(ProviderError::InvalidAh("RoCE needs a destination GID")),
        None if attr.dlid == 0 => {
            return Err(ProviderError::InvalidAh("no destination LID or GID"))
        }
        None => None,
    };
    let grh = match dgid {
        Some(g) if roce || g.0[0] == 0xff || attr.dlid == 0 => Some(g),
        _ => None,
    };
    Ok(AhSpec {
        port,
        dlid: if roce { 0 } else { attr.dlid },
        sl: attr.sl,
        grh: grh.map(|g| (g.0, gid_index)),
    })
}

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
        let spec = ah_spec(self.roce, self.port, self.gid_index, attr)?;
        let key = (spec.dlid, spec.grh.map(|(g, _)| Gid(g)), spec.sl);
        let mut ahs = self.ahs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ah) = ahs.get(&key) {
            return Ok(VerbsAh(ah.handle()));
        }
        let ah = Ah::new(&self.pd, &spec).map_err(|e| ProviderError::Verbs(e.to_string()))?;
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

    #[test]
    fn infiniband_paths_are_lid_routed_roce_ones_always_global() {
        let peer: Gid = Gid::from("fe80::2:c903:0:7".parse::<Ipv6Addr>().unwrap());
        let path = AhAttr {
            dlid: 0x0007,
            dgid: Some(peer),
            sl: 2,
        };
        // InfiniBand, a path record with a LID: DLID and SL, no GRH.
        let s = ah_spec(false, 1, 0, &path).unwrap();
        assert_eq!((s.dlid, s.sl, s.grh), (7, 2, None));
        // A path without a LID is routed by GID.
        let routed = AhAttr { dlid: 0, ..path };
        assert_eq!(
            ah_spec(false, 1, 0, &routed).unwrap().grh,
            Some((peer.0, 0))
        );
        // Multicast: the MLID with a GRH to the MGID, as the join answered.
        let mgid: Gid = Gid::from("ff12:401b:ffff::f01:203".parse::<Ipv6Addr>().unwrap());
        let group = AhAttr {
            dlid: 0xC012,
            dgid: Some(mgid),
            sl: 3,
        };
        let s = ah_spec(false, 1, 0, &group).unwrap();
        assert_eq!((s.dlid, s.sl, s.grh), (0xC012, 3, Some((mgid.0, 0))));
        // RoCE: no LIDs, always a GRH, the group's RoCE GID, the GID index.
        let s = ah_spec(true, 1, 3, &group).unwrap();
        let v4 = addr::gid_of("239.1.2.3".parse().unwrap());
        assert_eq!((s.dlid, s.grh), (0, Some((v4.0, 3))));
        let s = ah_spec(true, 1, 3, &path).unwrap();
        assert_eq!((s.dlid, s.sl, s.grh), (0, 2, Some((peer.0, 3))));
        // Nothing to route by is an error, not a handle.
        let none = AhAttr {
            dlid: 0,
            dgid: None,
            sl: 0,
        };
        assert!(ah_spec(false, 1, 0, &none).is_err());
        assert!(ah_spec(true, 1, 0, &AhAttr { dlid: 5, ..none }).is_err());
        assert_eq!(
            ah_spec(false, 1, 0, &AhAttr { dlid: 5, ..none })
                .unwrap()
                .dlid,
            5
        );
    }
}
