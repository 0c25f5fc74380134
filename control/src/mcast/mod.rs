//! The multicast join engine (the kernel's ipoib_multicast.c, after the
//! "fix MCAST_FLAG_BUSY usage" rules).

mod attach;
mod completion;
mod engine;
mod flush;
mod group;
mod join_task;
mod probe;
mod publish;
mod restart;
mod runner;
mod service;
mod table;

pub use attach::{McastAttach, RecordingAttach};
pub use completion::Completion;
pub use engine::{Engine, EngineBuilder, EngineConfig, EngineStats};
pub use flush::{FlushLevel, FlushReport};
pub use group::{Backoff, GroupCounters, GroupFlags, GroupInfo, GroupStatus};
pub use join_task::JoinTaskReport;
pub use probe::{LockSite, NoProbe, Probe, ProbeEvent};
pub use restart::RestartReport;
pub use runner::JoinThread;
pub use service::{
    GroupTemplate, JoinCallback, JoinError, JoinParams, JoinResult, JoinState, McastRecord,
    Membership, MulticastService,
};
pub use table::GroupsTable;
