//! The SA multicast service as the engine sees it (ib_sa_join_multicast).

use ipoib_dataplane::wire::Gid;
use std::fmt;

/// SA JoinState for the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinState {
    /// Full member: receives and sends.
    Full,
    /// Send-only full member: sends, never receives, no QP attach.
    SendOnly,
}

/// The group's MCMemberRecord as answered by the SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McastRecord {
    pub mgid: Gid,
    pub mlid: u16,
    pub qkey: u32,
    /// IB link MTU of the group in bytes (IPoIB MTU + 4).
    pub mtu: u16,
    pub sl: u8,
    pub rate: u8,
    pub pkey: u16,
}

/// Parameters a non-broadcast join copies from the broadcast group's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTemplate {
    pub qkey: u32,
    pub mtu: u16,
    pub sl: u8,
    pub rate: u8,
    pub pkey: u16,
}

impl From<&McastRecord> for GroupTemplate {
    fn from(r: &McastRecord) -> Self {
        GroupTemplate {
            qkey: r.qkey,
            mtu: r.mtu,
            sl: r.sl,
            rate: r.rate,
            pkey: r.pkey,
        }
    }
}

/// One join request to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinParams {
    pub mgid: Gid,
    pub port_gid: Gid,
    pub join_state: JoinState,
    /// None for the broadcast group: the SA's configuration decides.
    pub template: Option<GroupTemplate>,
}

/// Why a join did not produce a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinError {
    /// The SA refused or failed the join.
    Failed,
    /// ENETRESET-like: the SA was reset under the request; retried without penalty.
    Reset,
    /// EINVAL-like: e.g. a send-only join to a group nobody created.
    InvalidArgument,
    /// No answer in time (raised by the engine, never by a service).
    TimedOut,
    /// The service is shutting down.
    Shutdown,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinError::Failed => "failed",
            JoinError::Reset => "reset",
            JoinError::InvalidArgument => "invalid argument",
            JoinError::TimedOut => "timed out",
            JoinError::Shutdown => "shutdown",
        })
    }
}

impl std::error::Error for JoinError {}

pub type JoinResult = Result<McastRecord, JoinError>;

/// Opaque handle of one join, valid for `leave` only once its callback reported success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Membership(pub u64);

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// Called exactly once per successful `join`, from any thread, possibly
/// before `join` has returned; never called after `cancel` returned.
pub type JoinCallback = Box<dyn FnOnce(JoinResult) + Send + 'static>;

/// Asynchronous multicast join/leave, as ib_sa_join_multicast / ib_sa_free_multicast.
pub trait MulticastService: Send + Sync {
    /// Starts a join. `Err` means the request was not even sent (no callback follows).
    fn join(&self, params: JoinParams, callback: JoinCallback) -> Result<Membership, JoinError>;
    /// Leaves a membership whose callback reported success.
    fn leave(&self, membership: Membership);
    /// Abandons a join that has not answered in time. The service will not call
    /// its callback afterwards; if the join had in fact succeeded, this leaves it.
    fn cancel(&self, membership: Membership);
    /// Services whose answers the caller's thread reads (rdma_cm's event
    /// channel, read by the control thread) run the callbacks of the
    /// answers that arrived here, without blocking; returns how many.
    fn progress(&self) -> usize {
        0
    }
    /// Whether answers come only through `progress`: a flush waiting for a
    /// join then calls it while it waits, or it would wait for itself.
    fn driven(&self) -> bool {
        false
    }
}
