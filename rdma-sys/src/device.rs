//! Devices and their opened contexts: listing, selection by name, GUID or
//! netdev, and port / GID / P_Key queries.

use crate::bindings::verbs::Verbs;
use crate::ffi::*;
use crate::{load, LoadError, VerbsError};
use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

pub const LINK_LAYER_INFINIBAND: u8 = IBV_LINK_LAYER_INFINIBAND as u8;
pub const LINK_LAYER_ETHERNET: u8 = IBV_LINK_LAYER_ETHERNET as u8;

/// A 16-byte GID in network order.
pub type Gid = [u8; 16];

/// What `ibv_get_device_list` tells about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    /// Node GUID in host order.
    pub guid: u64,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (GUID {})", self.name, format_guid(self.guid))
    }
}

/// `0002:c903:0000:0001`, as ibv_devices prints it.
pub fn format_guid(guid: u64) -> String {
    let b = guid.to_be_bytes();
    format!(
        "{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// How the user names a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    /// The first device.
    Any,
    Name(String),
    Guid(u64),
    /// The device whose port carries this network interface (RoCE).
    Netdev(String),
}

impl DeviceSelector {
    /// `""` = any; `0x...` or `xxxx:xxxx:xxxx:xxxx` = GUID; `netdev:IFACE`;
    /// otherwise a device name.
    pub fn parse(s: &str) -> DeviceSelector {
        let s = s.trim();
        if s.is_empty() {
            return DeviceSelector::Any;
        }
        if let Some(ifname) = s.strip_prefix("netdev:") {
            return DeviceSelector::Netdev(ifname.to_string());
        }
        if let Some(hex) = s.strip_prefix("0x") {
            if let Ok(g) = u64::from_str_radix(hex, 16) {
                return DeviceSelector::Guid(g);
            }
        }
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() == 4 && parts.iter().all(|p| p.len() == 4) {
            if let Ok(g) = u64::from_str_radix(&parts.concat(), 16) {
                return DeviceSelector::Guid(g);
            }
        }
        DeviceSelector::Name(s.to_string())
    }

    fn matches(&self, d: &DeviceInfo) -> bool {
        match self {
            DeviceSelector::Any => true,
            DeviceSelector::Name(n) => *n == d.name,
            DeviceSelector::Guid(g) => *g == d.guid,
            DeviceSelector::Netdev(ifname) => netdevs_of(&d.name).iter().any(|n| n == ifname),
        }
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSelector::Any => f.write_str("any device"),
            DeviceSelector::Name(n) => write!(f, "device {n}"),
            DeviceSelector::Guid(g) => write!(f, "device with GUID {}", format_guid(*g)),
            DeviceSelector::Netdev(n) => write!(f, "device on netdev {n}"),
        }
    }
}

/// The network interfaces a device's ports carry (RoCE), from sysfs.
pub fn netdevs_of(device: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ports = format!("/sys/class/infiniband/{device}/ports");
    let Ok(entries) = std::fs::read_dir(&ports) else {
        return out;
    };
    for port in entries.flatten() {
        let ndevs = port.path().join("gid_attrs/ndevs");
        let Ok(gids) = std::fs::read_dir(ndevs) else {
            continue;
        };
        for g in gids.flatten() {
            if let Ok(name) = std::fs::read_to_string(g.path()) {
                let name = name.trim().to_string();
                if !name.is_empty() && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// The raw device list; freed on drop.
struct DeviceList {
    verbs: &'static Verbs,
    list: *mut *mut ibv_device,
    len: usize,
}

impl DeviceList {
    fn get(verbs: &'static Verbs) -> Result<DeviceList, OpenError> {
        let mut n: libc::c_int = 0;
        // SAFETY: n is a valid out-pointer.
        let list = unsafe { (verbs.ibv_get_device_list)(&mut n) };
        if list.is_null() {
            let e = VerbsError::last("ibv_get_device_list");
            // ENOSYS: the kernel has no RDMA devices (no uverbs in sysfs).
            return Err(if e.errno == libc::ENOSYS {
                OpenError::NoDevice
            } else {
                OpenError::Verbs(e)
            });
        }
        Ok(DeviceList {
            verbs,
            list,
            len: n.max(0) as usize,
        })
    }

    fn raw(&self) -> impl Iterator<Item = *mut ibv_device> + '_ {
        // SAFETY: the list holds `len` device pointers.
        (0..self.len).map(move |i| unsafe { *self.list.add(i) })
    }

    fn info(&self, dev: *mut ibv_device) -> DeviceInfo {
        // SAFETY: dev comes from this list, which is alive.
        unsafe {
            let name = (self.verbs.ibv_get_device_name)(dev);
            let name = if name.is_null() {
                String::new()
            } else {
                CStr::from_ptr(name).to_string_lossy().into_owned()
            };
            let guid = u64::from_be((self.verbs.ibv_get_device_guid)(dev));
            DeviceInfo { name, guid }
        }
    }
}

impl Drop for DeviceList {
    fn drop(&mut self) {
        // SAFETY: from ibv_get_device_list, freed once.
        unsafe { (self.verbs.ibv_free_device_list)(self.list) }
    }
}

/// Why no context could be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Load(LoadError),
    Verbs(VerbsError),
    /// No RDMA device at all.
    NoDevice,
    /// Devices exist, none matches.
    NotFound {
        wanted: DeviceSelector,
        present: Vec<DeviceInfo>,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Load(e) => e.fmt(f),
            OpenError::Verbs(e) => e.fmt(f),
            OpenError::NoDevice => f.write_str(
                "no RDMA device: create a soft-RoCE device with `rdma link add rxe0 type rxe netdev IFACE` \
                 (needs the rdma_rxe kernel module and the ibverbs-providers package)",
            ),
            OpenError::NotFound { wanted, present } => {
                let names: Vec<String> = present.iter().map(|d| d.to_string()).collect();
                write!(f, "no {wanted}; present: {}", names.join(", "))
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// Every device libibverbs sees.
pub fn devices() -> Result<Vec<DeviceInfo>, OpenError> {
    let verbs = load::verbs().map_err(OpenError::Load)?;
    let list = match DeviceList::get(verbs) {
        Ok(l) => l,
        Err(OpenError::NoDevice) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(list.raw().map(|d| list.info(d)).collect())
}

/// Opens the device `sel` names.
pub fn find_device(sel: &DeviceSelector) -> Result<Context, OpenError> {
    let verbs = load::verbs().map_err(OpenError::Load)?;
    let list = DeviceList::get(verbs)?;
    if list.len == 0 {
        return Err(OpenError::NoDevice);
    }
    let found = list.raw().find(|d| sel.matches(&list.info(*d)));
    let Some(dev) = found else {
        return Err(OpenError::NotFound {
            wanted: sel.clone(),
            present: list.raw().map(|d| list.info(d)).collect(),
        });
    };
    let info = list.info(dev);
    // SAFETY: dev is from the live list; the context outlives it by design.
    let ctx = unsafe { (verbs.ibv_open_device)(dev) };
    let ctx =
        NonNull::new(ctx).ok_or_else(|| OpenError::Verbs(VerbsError::last("ibv_open_device")))?;
    Ok(Context(Arc::new(ContextInner { verbs, ctx, info })))
}

pub(crate) struct ContextInner {
    pub(crate) verbs: &'static Verbs,
    pub(crate) ctx: NonNull<ibv_context>,
    info: DeviceInfo,
}

// SAFETY: libibverbs contexts may be used from any thread.
unsafe impl Send for ContextInner {}
unsafe impl Sync for ContextInner {}

impl Drop for ContextInner {
    fn drop(&mut self) {
        // SAFETY: every child holds a Context clone, so none is alive now.
        unsafe { (self.verbs.ibv_close_device)(self.ctx.as_ptr()) };
    }
}

/// An opened device (`ibv_open_device`), shared by everything made from it.
#[derive(Clone)]
pub struct Context(pub(crate) Arc<ContextInner>);

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Context({})", self.0.info)
    }
}

/// What `ibv_query_port` tells, in plain terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    pub active: bool,
    pub state: u32,
    /// Active MTU in bytes.
    pub mtu: u16,
    pub lid: u16,
    pub sm_lid: u16,
    pub sm_sl: u8,
    pub link_layer: u8,
    pub gid_tbl_len: u32,
    pub pkey_tbl_len: u16,
}

impl PortInfo {
    pub fn is_ethernet(&self) -> bool {
        self.link_layer == LINK_LAYER_ETHERNET
    }
}

/// Bytes of an `ibv_mtu`.
pub fn mtu_bytes(m: ibv_mtu) -> u16 {
    match m {
        IBV_MTU_256 => 256,
        IBV_MTU_512 => 512,
        IBV_MTU_1024 => 1024,
        IBV_MTU_2048 => 2048,
        IBV_MTU_4096 => 4096,
        _ => 0,
    }
}

impl Context {
    pub fn info(&self) -> &DeviceInfo {
        &self.0.info
    }

    pub(crate) fn verbs(&self) -> &'static Verbs {
        self.0.verbs
    }

    pub fn as_ptr(&self) -> *mut ibv_context {
        self.0.ctx.as_ptr()
    }

    /// Number of physical ports.
    pub fn port_count(&self) -> Result<u8, VerbsError> {
        let mut attr = ibv_device_attr::default();
        // SAFETY: live context, valid out-pointer.
        let rc = unsafe { (self.verbs().ibv_query_device)(self.as_ptr(), &mut attr) };
        VerbsError::check("ibv_query_device", rc)?;
        Ok(attr.phys_port_cnt)
    }

    pub fn query_port(&self, port: u8) -> Result<PortInfo, VerbsError> {
        let mut attr = ibv_port_attr::default();
        // SAFETY: the exported ibv_query_port fills the compat prefix of
        // the full structure, which is what the zeroed rest defaults to.
        let rc = unsafe {
            (self.verbs().ibv_query_port)(
                self.as_ptr(),
                port,
                &mut attr as *mut ibv_port_attr as *mut _compat_ibv_port_attr,
            )
        };
        VerbsError::check("ibv_query_port", rc)?;
        Ok(PortInfo {
            active: attr.state == IBV_PORT_ACTIVE,
            state: attr.state,
            mtu: mtu_bytes(attr.active_mtu),
            lid: attr.lid,
            sm_lid: attr.sm_lid,
            sm_sl: attr.sm_sl,
            link_layer: attr.link_layer,
            gid_tbl_len: attr.gid_tbl_len.max(0) as u32,
            pkey_tbl_len: attr.pkey_tbl_len,
        })
    }

    pub fn query_gid(&self, port: u8, index: u32) -> Result<Gid, VerbsError> {
        let mut gid = ibv_gid::default();
        // SAFETY: live context, valid out-pointer.
        let rc = unsafe {
            (self.verbs().ibv_query_gid)(self.as_ptr(), port, index as libc::c_int, &mut gid)
        };
        VerbsError::check("ibv_query_gid", rc)?;
        // SAFETY: every bit pattern of the union is a valid byte array.
        Ok(unsafe { gid.raw })
    }

    /// The P_Key at `index`, in host order.
    pub fn query_pkey(&self, port: u8, index: u16) -> Result<u16, VerbsError> {
        let mut pkey: u16 = 0;
        // SAFETY: live context, valid out-pointer.
        let rc = unsafe {
            (self.verbs().ibv_query_pkey)(self.as_ptr(), port, index as libc::c_int, &mut pkey)
        };
        VerbsError::check("ibv_query_pkey", rc)?;
        Ok(u16::from_be(pkey))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_names_guids_and_netdevs() {
        assert_eq!(DeviceSelector::parse(""), DeviceSelector::Any);
        assert_eq!(
            DeviceSelector::parse("rxe0"),
            DeviceSelector::Name("rxe0".into())
        );
        assert_eq!(
            DeviceSelector::parse("0002:c903:0000:0001"),
            DeviceSelector::Guid(0x0002_c903_0000_0001)
        );
        assert_eq!(
            DeviceSelector::parse("0x505400fffe630002"),
            DeviceSelector::Guid(0x5054_00ff_fe63_0002)
        );
        assert_eq!(
            DeviceSelector::parse("netdev:eth0"),
            DeviceSelector::Netdev("eth0".into())
        );
        assert_eq!(format_guid(0x0002_c903_0000_0001), "0002:c903:0000:0001");
    }

    #[test]
    fn the_no_device_error_says_how_to_make_one() {
        let s = OpenError::NoDevice.to_string();
        assert!(
            s.contains("rdma link add rxe0 type rxe netdev IFACE"),
            "{s}"
        );
        let s = OpenError::NotFound {
            wanted: DeviceSelector::Name("mlx5_0".into()),
            present: vec![DeviceInfo {
                name: "rxe0".into(),
                guid: 1,
            }],
        }
        .to_string();
        assert!(s.contains("no device mlx5_0; present: rxe0"), "{s}");
    }
}
