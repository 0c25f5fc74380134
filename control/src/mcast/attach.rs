//! Attaching the UD QP to a group (ibv_attach_mcast); the provider implements it.

use crate::sync::{lock, Mutex};
use ipoib_dataplane::wire::Gid;

pub trait McastAttach: Send + Sync {
    fn attach(&self, mgid: Gid, mlid: u16) -> bool;
    fn detach(&self, mgid: Gid, mlid: u16);
}

/// Records attach/detach calls; for tests and the soft fabric until the provider lands.
#[derive(Default)]
pub struct RecordingAttach {
    log: Mutex<Vec<(bool, Gid)>>,
    attached: Mutex<std::collections::BTreeSet<Gid>>,
}

impl RecordingAttach {
    pub fn new() -> Self {
        Self::default()
    }
    /// `(attach?, mgid)` in call order.
    pub fn log(&self) -> Vec<(bool, Gid)> {
        lock(&self.log).clone()
    }
    pub fn attached(&self) -> Vec<Gid> {
        lock(&self.attached).iter().copied().collect()
    }
}

impl McastAttach for RecordingAttach {
    fn attach(&self, mgid: Gid, _mlid: u16) -> bool {
        lock(&self.log).push((true, mgid));
        lock(&self.attached).insert(mgid)
    }
    fn detach(&self, mgid: Gid, _mlid: u16) {
        lock(&self.log).push((false, mgid));
        lock(&self.attached).remove(&mgid);
    }
}
