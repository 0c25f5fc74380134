//! An in-process soft InfiniBand fabric: several ports, one UD QP each,
//! delivery by LID or GID and QPN with the checks a real HCA makes (Q_Key,
//! P_Key, MTU), multicast replication to every attached QP (the sender's own
//! included, as on real hardware), per-port drop counters, and seeded loss
//! and reorder injection.
//!
//! Messages move between ports as mbufs (zero copy); a multicast fan-out
//! shares one buffer by reference count.

mod counters;
mod inject;
mod mcast;

mod qp;

pub use counters::{DropReason, PortCounters};
pub use inject::Injection;
pub use qp::{FabricAh, FabricQp};

use crate::provider::{PortAttr, ProviderError, RecvCompletion};
use crate::wire::Gid;
use counters::PortCountersAtomic;
use crossbeam_queue::ArrayQueue;
use mcast::McastFanout;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Fabric-wide settings.
#[derive(Debug, Clone)]
pub struct FabricConfig {
    /// IB MTU in bytes (256..4096): the largest UD message.
    pub ib_mtu: u16,
    pub injection: Injection,
    /// Receive queue depth per QP (posted receive WQEs).
    pub rx_depth: usize,
}

impl Default for FabricConfig {
    fn default() -> Self {
        FabricConfig {
            ib_mtu: 2048,
            injection: Injection::default(),
            rx_depth: 4096,
        }
    }
}

/// One port of the fabric and its UD QP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub lid: u16,
    pub gid: Gid,
    pub qpn: u32,
    pub pkey: u16,
    pub qkey: u32,
}

pub(crate) struct Port {
    pub(crate) attr: PortAttr,
    pub(crate) rx: ArrayQueue<RecvCompletion>,
    pub(crate) counters: PortCountersAtomic,
}

pub struct Fabric {
    cfg: FabricConfig,
    pub(crate) ports: Vec<Port>,
    by_lid: HashMap<u16, usize>,
    by_gid: HashMap<Gid, usize>,
    pub(crate) mcast: arc_swap::ArcSwap<McastFanout>,
    /// Serialises attach/detach (control path only; senders never take it).
    attach_lock: Mutex<()>,
}

impl Fabric {
    pub fn new(cfg: FabricConfig, specs: &[PortSpec]) -> Result<Arc<Fabric>, String> {
        let mut by_lid = HashMap::new();
        let mut by_gid = HashMap::new();
        let mut ports = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            if s.lid == 0 || s.lid >= crate::provider::MLID_BASE {
                return Err(format!(
                    "port {i}: LID {:#x} is not a unicast LID (1..=0xbfff)",
                    s.lid
                ));
            }
            if by_lid.insert(s.lid, i).is_some() {
                return Err(format!("port {i}: LID {:#x} is used twice", s.lid));
            }
            if by_gid.insert(s.gid, i).is_some() {
                return Err(format!("port {i}: GID {} is used twice", s.gid));
            }
            ports.push(Port {
                attr: PortAttr {
                    lid: s.lid,
                    gid: s.gid,
                    qpn: s.qpn,
                    pkey: s.pkey,
                    qkey: s.qkey,
                    max_msg: cfg.ib_mtu,
                },
                rx: ArrayQueue::new(cfg.rx_depth.max(1)),
                counters: PortCountersAtomic::default(),
            });
        }
        Ok(Arc::new(Fabric {
            cfg,
            ports,
            by_lid,
            by_gid,
            mcast: arc_swap::ArcSwap::from_pointee(McastFanout::default()),
            attach_lock: Mutex::new(()),
        }))
    }

    pub fn config(&self) -> &FabricConfig {
        &self.cfg
    }
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }
    pub fn port_attr(&self, port: usize) -> Option<PortAttr> {
        self.ports.get(port).map(|p| p.attr)
    }
    pub fn port_by_lid(&self, lid: u16) -> Option<usize> {
        self.by_lid.get(&lid).copied()
    }
    pub fn port_by_gid(&self, gid: &Gid) -> Option<usize> {
        self.by_gid.get(gid).copied()
    }

    /// The UD QP of `port`, to be driven by one lcore.
    pub fn open(self: &Arc<Self>, port: usize) -> Result<FabricQp, ProviderError> {
        if port >= self.ports.len() {
            return Err(ProviderError::NoSuchPort(port));
        }
        Ok(FabricQp::new(self.clone(), port))
    }

    /// Attaches `port`'s QP to the multicast group `mgid` (ibv_attach_mcast).
    /// Idempotent. Returns whether it was newly attached.
    pub fn attach_mcast(&self, port: usize, mgid: Gid) -> Result<bool, ProviderError> {
        self.check_port(port)?;
        let _g = self.attach_lock.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.mcast.load();
        if cur.members(&mgid).contains(&port) {
            return Ok(false);
        }
        self.mcast.store(Arc::new(cur.with_member(mgid, port)));
        Ok(true)
    }

    /// Detaches `port`'s QP from `mgid`. Returns whether it was attached.
    pub fn detach_mcast(&self, port: usize, mgid: Gid) -> Result<bool, ProviderError> {
        self.check_port(port)?;
        let _g = self.attach_lock.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.mcast.load();
        if !cur.members(&mgid).contains(&port) {
            return Ok(false);
        }
        self.mcast.store(Arc::new(cur.without_member(mgid, port)));
        Ok(true)
    }

    /// Ports attached to `mgid`, in port order.
    pub fn mcast_members(&self, mgid: &Gid) -> Vec<usize> {
        self.mcast.load().members(mgid).to_vec()
    }

    /// A snapshot of `port`'s counters.
    pub fn counters(&self, port: usize) -> Option<PortCounters> {
        self.ports.get(port).map(|p| p.counters.snapshot())
    }

    /// Messages waiting in `port`'s receive queue (not yet polled).
    pub fn rx_pending(&self, port: usize) -> usize {
        self.ports.get(port).map_or(0, |p| p.rx.len())
    }

    fn check_port(&self, port: usize) -> Result<(), ProviderError> {
        if port < self.ports.len() {
            Ok(())
        } else {
            Err(ProviderError::NoSuchPort(port))
        }
    }
}

/// P_Key match as IBA 10.9.3: equal base (low 15 bits), and not both limited members.
pub fn pkey_matches(a: u16, b: u16) -> bool {
    (a & 0x7fff) == (b & 0x7fff) && (a & 0x7fff) != 0 && (a | b) & 0x8000 != 0
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // Return undelivered messages' mbufs to their pools.
        for p in &self.ports {
            while p.rx.pop().is_some() {}
        }
    }
}
