//! `ibv_attach_mcast` of an interface's QPs, for the join engine.

use crate::mcast::McastAttach;
use ipoib_dataplane::provider::verbs::VerbsMcastHandle;
use ipoib_dataplane::wire::Gid;

/// Attaches an interface's QPs to a group: the daemon gives it only the
/// first queue's (the QPN of the hardware address), so a group's packets
/// arrive once, as Linux IPoIB attaches only its main QP.
pub struct VerbsAttach {
    qps: Vec<VerbsMcastHandle>,
}

impl VerbsAttach {
    pub fn new(qps: Vec<VerbsMcastHandle>) -> Self {
        VerbsAttach { qps }
    }
}

impl McastAttach for VerbsAttach {
    fn attach(&self, mgid: Gid, mlid: u16) -> bool {
        for (i, qp) in self.qps.iter().enumerate() {
            if let Err(e) = qp.attach(mgid, mlid) {
                tracing::warn!(%mgid, error = %e, "multicast attach");
                for q in &self.qps[..i] {
                    let _ = q.detach(mgid, mlid);
                }
                return false;
            }
        }
        true
    }

    fn detach(&self, mgid: Gid, mlid: u16) {
        for qp in &self.qps {
            if let Err(e) = qp.detach(mgid, mlid) {
                tracing::warn!(%mgid, error = %e, "multicast detach");
            }
        }
    }
}
