//! Neighbour cache settings.

use std::time::Duration;

/// Timers and bounds of one interface's neighbour cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighConfig {
    /// Packets held per unresolved neighbour; the next one is dropped.
    pub queue_len: usize,
    /// Retransmissions after the first request before the entry fails.
    pub retries: u32,
    /// Wait after the first request; each retransmission doubles it.
    pub retry_base: Duration,
    /// A confirmed entry turns stale this long after its last confirmation.
    pub reachable_time: Duration,
    /// A resolved or failed entry unused for this long is removed.
    pub gc_idle: Duration,
    /// Most entries the cache holds; a miss beyond it is dropped and counted.
    pub max_entries: usize,
}

impl Default for NeighConfig {
    fn default() -> Self {
        NeighConfig {
            queue_len: 3,
            retries: 3,
            retry_base: Duration::from_secs(1),
            reachable_time: Duration::from_secs(30),
            gc_idle: Duration::from_secs(60),
            max_entries: 4096,
        }
    }
}
