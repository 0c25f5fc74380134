//! What the rdma_cm service needs of rdma_cm: ids bound to the interface's
//! address, joins and leaves on them, and the events that answer, read
//! without blocking. [`RdmaCmBackend`] is librdmacm's; tests drive the
//! service with a fake one, so the bookkeeping runs without RDMA.

use rdma_sys::cm::{CmAddr, CmError, CmEvent, CmId, EventChannel};
use rdma_sys::VerbsError;
use std::os::fd::RawFd;
use std::sync::Arc;

pub trait CmBackend: Send + Sync + 'static {
    /// One rdma_cm id; dropping it destroys it.
    type Id: Send + Sync + 'static;
    /// A new id bound to the local address.
    fn create_id(&self) -> Result<Self::Id, VerbsError>;
    /// The identity events name `id` by (`CmEvent::id`).
    fn id_addr(&self, id: &Self::Id) -> usize;
    /// Starts a join of `group`; `context` comes back in its event.
    fn join(
        &self,
        id: &Self::Id,
        group: CmAddr,
        send_only: bool,
        context: u64,
    ) -> Result<(), VerbsError>;
    fn leave(&self, id: &Self::Id, group: CmAddr) -> Result<(), VerbsError>;
    /// The next pending event, already acknowledged; `None` when there is
    /// none. Never blocks.
    fn next_event(&self) -> Result<Option<CmEvent>, VerbsError>;
    /// A descriptor readable while an event is pending, for the control
    /// thread's poll.
    fn fd(&self) -> Option<RawFd>;
}

/// librdmacm: one non-blocking event channel, ids bound to `local`.
pub struct RdmaCmBackend {
    channel: Arc<EventChannel>,
    local: CmAddr,
}

impl RdmaCmBackend {
    /// Binds one id up front, so a wrong address is reported now rather
    /// than at the first join.
    pub fn new(local: CmAddr) -> Result<Self, CmError> {
        let channel = EventChannel::new()?;
        drop(CmId::bound(&channel, local)?);
        Ok(RdmaCmBackend { channel, local })
    }

    pub fn local(&self) -> CmAddr {
        self.local
    }
}

impl CmBackend for RdmaCmBackend {
    type Id = CmId;
    fn create_id(&self) -> Result<CmId, VerbsError> {
        CmId::bound(&self.channel, self.local)
    }
    fn id_addr(&self, id: &CmId) -> usize {
        id.raw_addr()
    }
    fn join(
        &self,
        id: &CmId,
        group: CmAddr,
        send_only: bool,
        context: u64,
    ) -> Result<(), VerbsError> {
        id.join(group, send_only, context)
    }
    fn leave(&self, id: &CmId, group: CmAddr) -> Result<(), VerbsError> {
        id.leave(group)
    }
    fn next_event(&self) -> Result<Option<CmEvent>, VerbsError> {
        self.channel.next_event()
    }
    fn fd(&self) -> Option<RawFd> {
        Some(self.channel.fd())
    }
}
