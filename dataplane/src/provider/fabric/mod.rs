//! An in-process soft InfiniBand fabric: several ports, one or more UD QPs
//! each (a P_Key child interface has its own QP on its parent's port),
//! delivery by LID or GID and QPN with the checks a real HCA makes (Q_Key,
//! P_Key of the receiving QP, MTU), multicast replication to every attached
//! QP (the sender's own included, as on real hardware), per-QP drop
//! counters, and seeded loss and reorder injection.
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

/// One UD QP of the fabric. Specs with the same LID (and GID) are QPs of
/// one port and differ by QPN; "port" indices below count these QPs.
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
    /// Every QP on this one's port (itself included), for messages to a
    /// QPN other than the port's first QP's.
    pub(crate) siblings: Box<[usize]>,
    pub(crate) rx: ArrayQueue<RecvCompletion>,
    pub(crate) counters: PortCountersAtomic,
}

pub struct Fabric {
    cfg: FabricConfig,
    pub(crate) ports: Vec<Port>,
    /// LID / GID → the port's first QP.
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
            let first = match (by_lid.get(&s.lid), by_gid.get(&s.gid)) {
                (None, None) => {
                    by_lid.insert(s.lid, i);
                    by_gid.insert(s.gid, i);
                    i
                }
                (Some(&a), Some(&b)) if a == b => a,
                (Some(_), _) => {
                    return Err(format!(
                        "port {i}: LID {:#x} is used twice with different GIDs",
                        s.lid
                    ))
                }
                (None, Some(_)) => return Err(format!("port {i}: GID {} is used twice", s.gid)),
            };
            if specs[first..i]
                .iter()
                .any(|o| o.lid == s.lid && o.qpn == s.qpn)
            {
                return Err(format!(
                    "port {i}: QPN {:#x} is used twice on LID {:#x}",
                    s.qpn, s.lid
                ));
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
                siblings: Box::new([]),
                rx: ArrayQueue::new(cfg.rx_depth.max(1)),
                counters: PortCountersAtomic::default(),
            });
        }
        for i in 0..ports.len() {
            let lid = ports[i].attr.lid;
            ports[i].siblings = (0..ports.len())
                .filter(|&j| ports[j].attr.lid == lid)
                .collect();
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
    /// The first QP of the port with `lid`.
    pub fn port_by_lid(&self, lid: u16) -> Option<usize> {
        self.by_lid.get(&lid).copied()
    }
    /// The first QP of the port with `gid`.
    pub fn port_by_gid(&self, gid: &Gid) -> Option<usize> {
        self.by_gid.get(gid).copied()
    }

    /// The QP numbered `qpn` on the port of QP `port`.
    pub fn qp_on_port(&self, port: usize, qpn: u32) -> Option<usize> {
        let p = self.ports.get(port)?;
        p.siblings
            .iter()
            .copied()
            .find(|&j| self.ports[j].attr.qpn == qpn)
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
