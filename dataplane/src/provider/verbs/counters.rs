//! What the verbs provider counts: per-QP, written by its lcore only.

/// Counters of one QP (xstats-style names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerbsCounters {
    pub tx_packets: u64,
    /// `ibv_post_send` refused part of a burst.
    pub tx_post_errors: u64,
    /// The send queue had no room for a burst.
    pub tx_queue_full: u64,
    pub tx_completion_errors: u64,
    pub tx_poll_errors: u64,
    pub rx_packets: u64,
    pub rx_completion_errors: u64,
    /// A message longer than the buffer's room (cannot happen with buffers
    /// larger than the MTU; counted, not trusted).
    pub rx_truncated: u64,
    pub rx_post_errors: u64,
    pub rx_poll_errors: u64,
    /// The pool had no buffer to post.
    pub rx_no_buffers: u64,
    pub rx_unknown_wr: u64,
}

impl VerbsCounters {
    /// xstats-style names and values.
    pub fn xstats(&self) -> [(&'static str, u64); 12] {
        [
            ("tx_packets", self.tx_packets),
            ("tx_post_errors", self.tx_post_errors),
            ("tx_queue_full", self.tx_queue_full),
            ("tx_completion_errors", self.tx_completion_errors),
            ("tx_poll_errors", self.tx_poll_errors),
            ("rx_packets", self.rx_packets),
            ("rx_completion_errors", self.rx_completion_errors),
            ("rx_truncated_drops", self.rx_truncated),
            ("rx_post_errors", self.rx_post_errors),
            ("rx_poll_errors", self.rx_poll_errors),
            ("rx_no_buffers", self.rx_no_buffers),
            ("rx_unknown_wr", self.rx_unknown_wr),
        ]
    }

    /// The names of `xstats`, in its order.
    pub fn names() -> [&'static str; 12] {
        VerbsCounters::default().xstats().map(|(n, _)| n)
    }
}
