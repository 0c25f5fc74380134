use super::counters::DropReason;
use super::inject::Dice;
use super::{pkey_matches, Fabric, Port};
use crate::provider::{
    put_grh, AhAttr, PortAttr, Provider, ProviderError, RecvCompletion, SendWr, MCAST_QPN,
    MLID_BASE,
};
use crate::wire::Gid;
use arrayvec::ArrayVec;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A fabric address handle: the destination resolved once, at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FabricAh {
    Unicast { port: u32 },
    Multicast { mgid: Gid },
}

/// The UD QP of one fabric port. Owned by one lcore.
pub struct FabricQp {
    fabric: Arc<Fabric>,
    port: usize,
    attr: PortAttr,
    dice: Option<Dice>,
    /// A message held back by reorder injection, sent after the next one.
    held: Option<SendWr<FabricAh>>,
}

impl FabricQp {
    pub(super) fn new(fabric: Arc<Fabric>, port: usize) -> FabricQp {
        let attr = fabric.ports[port].attr;
        let inj = fabric.config().injection;
        let dice = inj.is_active().then(|| Dice::new(&inj, port as u64 + 1));
        FabricQp {
            fabric,
            port,
            attr,
            dice,
            held: None,
        }
    }

    pub fn port_index(&self) -> usize {
        self.port
    }

    pub fn fabric(&self) -> &Arc<Fabric> {
        &self.fabric
    }

    /// Sends the message held back by reorder injection, if any, in order
    /// (nothing overtook it): otherwise it waits for the QP's next send.
    pub fn release_held(&mut self) {
        if let Some(h) = self.held.take() {
            let fanout = self.fabric.mcast.load();
            self.deliver(h, &fanout);
        }
    }

    /// Hands one message to the wire. Returns false if it was dropped.
    #[inline]
    fn deliver(&self, mut wr: SendWr<FabricAh>, fanout: &super::mcast::McastFanout) {
        let me = &self.fabric.ports[self.port];
        if wr.mbuf.len() > self.attr.max_msg as usize {
            me.counters.add_drop(DropReason::Oversize, 1);
            return;
        }
        // A Q_Key with the high bit set means "use the QP's own" (IBA 10.2.5).
        let qkey = if wr.remote_qkey & 0x8000_0000 != 0 {
            self.attr.qkey
        } else {
            wr.remote_qkey
        };
        match wr.ah {
            FabricAh::Unicast { port } => {
                let Some(dst) = self.fabric.ports.get(port as usize) else {
                    me.counters.add_drop(DropReason::NoRoute, 1);
                    return;
                };
                // The port's first QP is the common case; a child's QP is
                // found among its siblings.
                let dst = if wr.remote_qpn == dst.attr.qpn {
                    dst
                } else {
                    match self.sibling(dst, wr.remote_qpn) {
                        Some(d) => d,
                        None => {
                            dst.counters.add_drop(DropReason::NoSuchQp, 1);
                            return;
                        }
                    }
                };
                let grh = put_grh(&mut wr.mbuf, self.attr.gid, dst.attr.gid);
                self.enqueue(dst, qkey, wr.mbuf, grh, false);
            }
            FabricAh::Multicast { mgid } => {
                let members = fanout.members(&mgid);
                if wr.remote_qpn != MCAST_QPN || members.is_empty() {
                    me.counters.add_drop(DropReason::NoRoute, 1);
                    return;
                }
                let (last, rest) = members.split_last().expect("non-empty");
                // Written once, before the fan-out shares the buffer.
                let grh = put_grh(&mut wr.mbuf, self.attr.gid, mgid);
                for &p in rest {
                    self.enqueue(&self.fabric.ports[p], qkey, wr.mbuf.share(), grh, true);
                }
                self.enqueue(&self.fabric.ports[*last], qkey, wr.mbuf, grh, true);
            }
        }
    }

    #[cold]
    fn sibling(&self, first: &Port, qpn: u32) -> Option<&Port> {
        first
            .siblings
            .iter()
            .map(|&j| &self.fabric.ports[j])
            .find(|p| p.attr.qpn == qpn)
    }

    #[inline]
    fn enqueue(&self, dst: &Port, qkey: u32, mbuf: crate::mem::Mbuf, grh: bool, multicast: bool) {
        if !pkey_matches(self.attr.pkey, dst.attr.pkey) {
            dst.counters.add_drop(DropReason::PkeyMismatch, 1);
            return;
        }
        if qkey != dst.attr.qkey {
            dst.counters.add_drop(DropReason::QkeyMismatch, 1);
            return;
        }
        let c = RecvCompletion {
            mbuf,
            src_qpn: self.attr.qpn,
            slid: self.attr.lid,
            multicast,
            has_grh: grh,
        };
        if dst.rx.push(c).is_err() {
            dst.counters.add_drop(DropReason::RxOverflow, 1);
        }
    }
}

impl Provider for FabricQp {
    type Ah = FabricAh;

    fn port(&self) -> PortAttr {
        self.attr
    }

    fn create_ah(&mut self, attr: &AhAttr) -> Result<FabricAh, ProviderError> {
        let multicast = attr.dlid >= MLID_BASE || attr.dgid.is_some_and(|g| g.is_multicast());
        if multicast {
            return match attr.dgid {
                Some(mgid) if mgid.is_multicast() => Ok(FabricAh::Multicast { mgid }),
                _ => Err(ProviderError::InvalidAh(
                    "a multicast address handle needs the MGID",
                )),
            };
        }
        let port = match attr.dgid {
            Some(gid) => self
                .fabric
                .port_by_gid(&gid)
                .ok_or(ProviderError::NoSuchGid(gid))?,
            None => self
                .fabric
                .port_by_lid(attr.dlid)
                .ok_or(ProviderError::NoSuchLid(attr.dlid))?,
        };
        Ok(FabricAh::Unicast { port: port as u32 })
    }

    fn ah_dgid(&self, ah: &FabricAh) -> Option<Gid> {
        match *ah {
            FabricAh::Unicast { port } => self.fabric.ports.get(port as usize).map(|p| p.attr.gid),
            FabricAh::Multicast { mgid } => Some(mgid),
        }
    }

    #[inline]
    fn post_send<const N: usize>(&mut self, wrs: &mut ArrayVec<SendWr<FabricAh>, N>) -> usize {
        let n = wrs.len();
        if n == 0 {
            return 0;
        }
        let fanout = self.fabric.mcast.load();
        let me = &self.fabric.ports[self.port];
        me.counters
            .tx_messages
            .fetch_add(n as u64, Ordering::Relaxed);
        for wr in wrs.drain(..) {
            if let Some(dice) = self.dice.as_mut() {
                if dice.lose() {
                    me.counters.add_drop(DropReason::InjectedLoss, 1);
                    continue;
                }
                if self.held.is_none() && dice.reorder() {
                    self.held = Some(wr);
                    continue;
                }
            }
            self.deliver(wr, &fanout);
            if let Some(h) = self.held.take() {
                me.counters
                    .injected_reorders
                    .fetch_add(1, Ordering::Relaxed);
                self.deliver(h, &fanout);
            }
        }
        n
    }

    #[inline]
    fn poll_recv<const N: usize>(&mut self, out: &mut ArrayVec<RecvCompletion, N>) -> usize {
        let me = &self.fabric.ports[self.port];
        let mut n = 0;
        while !out.is_full() {
            match me.rx.pop() {
                Some(c) => {
                    out.push(c);
                    n += 1;
                }
                None => break,
            }
        }
        if n != 0 {
            me.counters
                .rx_messages
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }
}

impl Drop for FabricQp {
    fn drop(&mut self) {
        // A message held back by reorder injection still goes out.
        self.release_held();
    }
}
