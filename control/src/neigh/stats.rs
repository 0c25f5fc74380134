//! Counters of the neighbour cache: every dropped packet is counted once,
//! under the reason it was dropped for.

/// Cumulative counters of one neighbour cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeighStats {
    /// Misses that queued their packet.
    pub queued: u64,
    /// Packets handed back for sending once their neighbour resolved.
    pub released: u64,
    /// Packets dropped because the neighbour's queue was full.
    pub drop_queue_full: u64,
    /// Packets dropped because resolution failed.
    pub drop_failed: u64,
    /// Packets dropped because the cache was full.
    pub drop_table_full: u64,
    /// Packets dropped by interface down.
    pub drop_down: u64,
    /// Packets dropped because the destination cannot be resolved
    /// (multicast, unspecified, our own address).
    pub drop_unresolvable: u64,
    pub arp_requests_sent: u64,
    pub arp_replies_sent: u64,
    pub gratuitous_sent: u64,
    pub ns_sent: u64,
    pub na_sent: u64,
    /// Entries that resolved (incomplete → reachable).
    pub resolved: u64,
    /// Entries that gave up (incomplete → failed).
    pub failed: u64,
    /// Entries removed by garbage collection.
    pub gc_removed: u64,
    /// Entries removed by flushes.
    pub flushed: u64,
    /// Our own multicast frames seen again (the fabric loops them back).
    pub ignored_own: u64,
    /// Someone else claims one of our addresses.
    pub conflicts: u64,
    /// Frames that were not valid ARP/ND.
    pub invalid: u64,
}

impl NeighStats {
    /// Every packet dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.drop_queue_full
            + self.drop_failed
            + self.drop_table_full
            + self.drop_down
            + self.drop_unresolvable
    }
}
