//! Control plane: the multicast join engine of the seed "IPoIB: fix
//! MCAST_FLAG_BUSY usage", the soft fabric's SA it joins through, and a
//! runnable fault scenario.
//!
//! - [`Engine`] (in [`mcast`]): all multicast state behind one mutex; the join
//!   task ([`Engine::join_task`]) is the only place joins start; flushes
//!   ([`Engine::down`], [`Engine::flush`]) wait for BUSY groups and leave
//!   exactly the valid memberships; [`Engine::restart`] diffs the wanted
//!   groups. Joined groups reach the lcores as a published `McastTable`.
//! - [`MulticastService`]: asynchronous join/leave, implemented by [`SoftSa`]
//!   (seeded faults from a [`FaultSpec`], membership ledger, refcounts).
//! - [`run_fault_scenario`]: engine + soft SA through up / port events / SA
//!   restarts / down, summarised by a [`ScenarioSummary`].
//!
//! Time comes from a [`Clock`]; tests use [`ManualClock`] and never sleep.

pub mod clock;
pub mod igmp;
pub mod mcast;
pub mod neigh;
pub mod path;
pub mod rdmacm;
pub mod sa;
pub mod scenario;
pub mod stack;
pub mod sync;

pub use clock::{Clock, ManualClock, ScaledClock, SystemClock};
pub use mcast::{
    Backoff, Completion, Engine, EngineBuilder, EngineConfig, EngineStats, FlushLevel, FlushReport,
    GroupCounters, GroupFlags, GroupInfo, GroupStatus, GroupTemplate, GroupsTable, JoinCallback,
    JoinError, JoinParams, JoinResult, JoinState, JoinTaskReport, JoinThread, LockSite,
    McastAttach, McastRecord, Membership, MulticastService, NoProbe, Probe, ProbeEvent,
    RecordingAttach, RestartReport,
};
pub use neigh::{NeighCache, NeighConfig, Resolver};
pub use path::{AhFactory, PathCache, PathConfig, PathService, SoftPathService};
pub use sa::{FaultSpec, FaultSpecError, SaStats, SoftSa, SoftSaConfig};
pub use scenario::{run_fault_scenario, ScenarioSummary};
