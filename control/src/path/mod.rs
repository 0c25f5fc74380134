//! Path records and address handles: a sans-IO path cache over a path query
//! service, creating one address handle per destination GID and sharing it
//! among every neighbour on that path.

mod ah;
mod cache;
mod record;
mod service;

pub use ah::{AhError, AhFactory, ProviderAhFactory, RecordedAh, RecordingAhFactory};
pub use cache::{Acquire, PathCache, PathConfig, PathEvent, PathInfo, PathStats};
pub use record::{PathError, PathRecord, PathResult, QueryId};
pub use service::{PathService, SoftPathConfig, SoftPathService, SoftPathStats};
