//! Control plane: multicast join engine, neighbour/path cache, port events.

pub mod clock;
pub mod mcast;
pub mod sa;
pub mod scenario;
pub mod sync;

pub use clock::{Clock, ManualClock, ScaledClock, SystemClock};
pub use mcast::{
    Engine, EngineBuilder, EngineConfig, EngineStats, FlushLevel, FlushReport, GroupFlags,
    GroupInfo, GroupStatus, GroupsTable, JoinError, JoinParams, JoinResult, JoinState,
    JoinTaskReport, McastAttach, McastRecord, Membership, MulticastService, Probe, ProbeEvent,
    RecordingAttach,
};
pub use sa::{FaultSpec, FaultSpecError, SaStats, SoftSa, SoftSaConfig};
pub use scenario::{run_fault_scenario, ScenarioSummary};
