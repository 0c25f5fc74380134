//! Opening the device port every interface's QP lives on, with errors a
//! user can act on: what to install, how to create a device, what exists.

use super::ah::AhTable;
use crate::mem::Mempool;
use crate::wire::Gid;
use rdma_sys::{Context, DeviceSelector, Mr, OpenError, Pd, PortInfo, VerbsError};
use std::fmt;
use std::sync::Arc;

/// `[provider.verbs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerbsConfig {
    /// A name, a node GUID, `netdev:IFACE`, or empty for the first device.
    pub device: String,
    pub port: u8,
    pub gid_index: u8,
    pub pkey_index: u16,
}

/// Why the device could not be used; each displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerbsSetupError {
    /// No libibverbs, no device, or no such device.
    Open(OpenError),
    NoPort {
        device: String,
        port: u8,
        count: u8,
    },
    NoGid {
        device: String,
        port: u8,
        index: u8,
        present: Vec<(u32, Gid)>,
    },
    NoPkey {
        device: String,
        port: u8,
        index: u16,
        present: Vec<(u16, u16)>,
    },
    /// A P_Key child interface's P_Key is in no entry of the port's table.
    PkeyNotInTable {
        interface: String,
        device: String,
        port: u8,
        pkey: u16,
        present: Vec<(u16, u16)>,
    },
    Verbs(VerbsError),
}

impl fmt::Display for VerbsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerbsSetupError::Open(e) => write!(f, "verbs: {e}"),
            VerbsSetupError::NoPort {
                device,
                port,
                count,
            } => write!(
                f,
                "verbs: provider.verbs.port {port}: {device} has port(s) 1..={count}"
            ),
            VerbsSetupError::NoGid {
                device,
                port,
                index,
                present,
            } => {
                let list: Vec<String> = present.iter().map(|(i, g)| format!("{i} ({g})")).collect();
                write!(
                    f,
                    "verbs: provider.verbs.gid_index {index}: {device} port {port} has GID indices {}",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                )
            }
            VerbsSetupError::NoPkey {
                device,
                port,
                index,
                present,
            } => {
                let list: Vec<String> = present
                    .iter()
                    .map(|(i, k)| format!("{i} ({k:#06x})"))
                    .collect();
                write!(
                    f,
                    "verbs: provider.verbs.pkey_index {index}: {device} port {port} has P_Key indices {}",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                )
            }
            VerbsSetupError::PkeyNotInTable {
                interface,
                device,
                port,
                pkey,
                present,
            } => {
                let list: Vec<String> = present
                    .iter()
                    .map(|(i, k)| format!("{k:#06x} (index {i})"))
                    .collect();
                write!(
                    f,
                    "verbs: interface {interface}: pkey {pkey:#06x} is not in the P_Key table of {device} port {port}, which has {}",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                )
            }
            VerbsSetupError::Verbs(e) => write!(f, "verbs: {e}"),
        }
    }
}

impl std::error::Error for VerbsSetupError {}

impl From<VerbsError> for VerbsSetupError {
    fn from(e: VerbsError) -> Self {
        VerbsSetupError::Verbs(e)
    }
}

/// One device port, shared by every interface's QP on it: the context,
/// the PD, the whole mempool region registered once, the port's facts and
/// the address handles.
pub struct VerbsDevice {
    pub(super) cfg: VerbsConfig,
    pub(super) ctx: Context,
    pub(super) pd: Pd,
    pub(super) mr: Mr,
    pub(super) port: PortInfo,
    pub(super) gid: Gid,
    pub(super) pkey: u16,
    pub(super) ahs: Arc<AhTable>,
}

/// How many GID / P_Key entries an error message looks at.
const LIST_MAX: u32 = 16;

impl VerbsDevice {
    /// Checks that `cfg` names a usable device, port, GID and P_Key without
    /// keeping anything open: callers run it before allocating memory, so
    /// a machine without RDMA gets its one-line error first.
    pub fn probe(cfg: &VerbsConfig) -> Result<(), VerbsSetupError> {
        Self::checked(cfg).map(drop)
    }

    /// Opens the device and checks port, GID index and P_Key index; then
    /// registers `pool`'s region.
    pub fn open(
        cfg: &VerbsConfig,
        pool: &'static Mempool,
    ) -> Result<Arc<VerbsDevice>, VerbsSetupError> {
        let (ctx, port, gid, pkey) = Self::checked(cfg)?;
        let pd = Pd::new(&ctx)?;
        let (base, len) = pool.region();
        // SAFETY: the pool's region lives for the process.
        let mr = unsafe { Mr::register(&pd, base, len)? };
        let ahs = Arc::new(AhTable::new(
            pd.clone(),
            cfg.port,
            cfg.gid_index,
            port.is_ethernet(),
        ));
        Ok(Arc::new(VerbsDevice {
            cfg: cfg.clone(),
            ctx,
            pd,
            mr,
            port,
            gid,
            pkey,
            ahs,
        }))
    }

    fn checked(cfg: &VerbsConfig) -> Result<(Context, PortInfo, Gid, u16), VerbsSetupError> {
        let ctx = rdma_sys::find_device(&DeviceSelector::parse(&cfg.device))
            .map_err(VerbsSetupError::Open)?;
        let name = ctx.info().name.clone();
        let count = ctx.port_count()?;
        if cfg.port == 0 || cfg.port > count {
            return Err(VerbsSetupError::NoPort {
                device: name,
                port: cfg.port,
                count,
            });
        }
        let port = ctx.query_port(cfg.port)?;
        let gid = match ctx.query_gid(cfg.port, u32::from(cfg.gid_index)) {
            Ok(g) if g != [0; 16] => Gid(g),
            _ => {
                let n = port.gid_tbl_len.min(LIST_MAX);
                let present = (0..n)
                    .filter_map(|i| match ctx.query_gid(cfg.port, i) {
                        Ok(g) if g != [0; 16] => Some((i, Gid(g))),
                        _ => None,
                    })
                    .collect();
                return Err(VerbsSetupError::NoGid {
                    device: name,
                    port: cfg.port,
                    index: cfg.gid_index,
                    present,
                });
            }
        };
        let pkey = match ctx.query_pkey(cfg.port, cfg.pkey_index) {
            Ok(k) if k & 0x7FFF != 0 && cfg.pkey_index < port.pkey_tbl_len => k,
            _ => {
                let n = u32::from(port.pkey_tbl_len).min(LIST_MAX) as u16;
                let present = (0..n)
                    .filter_map(|i| match ctx.query_pkey(cfg.port, i) {
                        Ok(k) if k & 0x7FFF != 0 => Some((i, k)),
                        _ => None,
                    })
                    .collect();
                return Err(VerbsSetupError::NoPkey {
                    device: name,
                    port: cfg.port,
                    index: cfg.pkey_index,
                    present,
                });
            }
        };
        Ok((ctx, port, gid, pkey))
    }

    pub fn name(&self) -> &str {
        &self.ctx.info().name
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub fn config(&self) -> &VerbsConfig {
        &self.cfg
    }

    /// The port as it was when opened.
    pub fn port_info(&self) -> PortInfo {
        self.port
    }

    /// RoCE (Ethernet link layer): no LIDs, every address handle has a GRH
    /// and a GID names an IP address.
    pub fn is_roce(&self) -> bool {
        self.port.is_ethernet()
    }

    /// The source GID (at `gid_index`).
    pub fn gid(&self) -> Gid {
        self.gid
    }

    /// The P_Key at `pkey_index`.
    pub fn pkey(&self) -> u16 {
        self.pkey
    }

    /// The valid entries of the port's P_Key table, as (index, P_Key).
    pub fn pkey_table(&self) -> Vec<(u16, u16)> {
        (0..self.port.pkey_tbl_len)
            .filter_map(|i| match self.ctx.query_pkey(self.cfg.port, i) {
                Ok(k) if k & 0x7FFF != 0 => Some((i, k)),
                _ => None,
            })
            .collect()
    }

    /// The index of `pkey` in the port's P_Key table, for a P_Key child
    /// interface's QP: the entry of the same partition, a full member's
    /// first (a limited member cannot reach other limited members).
    pub fn pkey_index_of(&self, interface: &str, pkey: u16) -> Result<(u16, u16), VerbsSetupError> {
        let table = self.pkey_table();
        find_pkey(&table, pkey).ok_or_else(|| VerbsSetupError::PkeyNotInTable {
            interface: interface.to_string(),
            device: self.name().to_string(),
            port: self.cfg.port,
            pkey,
            present: table.into_iter().take(LIST_MAX as usize).collect(),
        })
    }

    /// Largest UD message: the port's active MTU.
    pub fn max_msg(&self) -> u16 {
        self.port.mtu
    }

    /// Address handles on this port, shared with the control plane.
    pub fn ah_table(&self) -> Arc<AhTable> {
        self.ahs.clone()
    }
}

/// The (index, P_Key) entry of `table` in `pkey`'s partition: the exact
/// entry, else the full member's, else the limited one.
pub(crate) fn find_pkey(table: &[(u16, u16)], pkey: u16) -> Option<(u16, u16)> {
    let same = |k: u16| k & 0x7FFF == pkey & 0x7FFF;
    table
        .iter()
        .find(|(_, k)| *k == pkey)
        .or_else(|| table.iter().find(|(_, k)| same(*k) && k & 0x8000 != 0))
        .or_else(|| table.iter().find(|(_, k)| same(*k)))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_pkey_is_found_in_its_partition() {
        let table = [(0, 0xFFFF), (1, 0x0002), (2, 0x8001), (5, 0x8002)];
        assert_eq!(find_pkey(&table, 0x8001), Some((2, 0x8001)));
        assert_eq!(find_pkey(&table, 0x0001), Some((2, 0x8001)));
        assert_eq!(find_pkey(&table, 0x0002), Some((1, 0x0002)));
        assert_eq!(find_pkey(&table, 0x8002), Some((5, 0x8002)));
        assert_eq!(find_pkey(&table, 0x7FFF), Some((0, 0xFFFF)));
        assert_eq!(find_pkey(&table, 0x8003), None);
        let e = VerbsSetupError::PkeyNotInTable {
            interface: "ib0.8003".into(),
            device: "rxe0".into(),
            port: 1,
            pkey: 0x8003,
            present: vec![(0, 0xFFFF), (2, 0x8001)],
        };
        assert_eq!(
            e.to_string(),
            "verbs: interface ib0.8003: pkey 0x8003 is not in the P_Key table of rxe0 port 1, \
             which has 0xffff (index 0), 0x8001 (index 2)"
        );
    }

    #[test]
    fn index_errors_name_what_exists() {
        let g: Gid = Gid(std::net::Ipv4Addr::new(10, 99, 0, 2)
            .to_ipv6_mapped()
            .octets());
        let e = VerbsSetupError::NoGid {
            device: "rxe0".into(),
            port: 1,
            index: 3,
            present: vec![(1, g)],
        };
        assert_eq!(
            e.to_string(),
            "verbs: provider.verbs.gid_index 3: rxe0 port 1 has GID indices 1 (::ffff:10.99.0.2)"
        );
        let e = VerbsSetupError::NoPkey {
            device: "rxe0".into(),
            port: 1,
            index: 2,
            present: vec![(0, 0xFFFF)],
        };
        assert!(
            e.to_string().ends_with("has P_Key indices 0 (0xffff)"),
            "{e}"
        );
        let e = VerbsSetupError::NoPort {
            device: "mlx5_0".into(),
            port: 2,
            count: 1,
        };
        assert_eq!(
            e.to_string(),
            "verbs: provider.verbs.port 2: mlx5_0 has port(s) 1..=1"
        );
    }
}
