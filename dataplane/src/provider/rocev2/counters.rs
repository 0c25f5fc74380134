//! Per-provider counters: what went out, what came in, and every drop by reason.

/// Why a received datagram was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    BadIcrc,
    QkeyMismatch,
    PkeyMismatch,
    WrongQpn,
    Truncated,
    UnsupportedOpcode,
}

/// Plain counters: the provider is driven by one lcore, readers copy them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rocev2Counters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Messages the kernel refused (unreachable, too big): dropped.
    pub tx_errors: u64,
    /// Shared or headroom-less mbufs copied before the headers went in.
    pub tx_copies: u64,
    /// `post_send` calls that left requests because the socket was full.
    pub tx_full: u64,
    /// UDP GSO sends (each carried several messages).
    pub tx_gso_sends: u64,
    /// Messages sent as SEND_ONLY_WITH_IMMEDIATE.
    pub tx_immediate: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_multicast: u64,
    /// Delivered messages whose ICRC was made with a non-zero IPv4 ID (rxe's).
    pub rx_nonzero_ip_id: u64,
    /// Delivered SEND_ONLY_WITH_IMMEDIATE messages.
    pub rx_immediate: u64,
    pub rx_bad_icrc: u64,
    pub rx_qkey_mismatch: u64,
    pub rx_pkey_mismatch: u64,
    pub rx_wrong_qpn: u64,
    pub rx_truncated: u64,
    pub rx_unsupported_opcode: u64,
    /// `recvmmsg` failures other than "nothing to read".
    pub rx_errors: u64,
    /// Receive slots that could not be refilled (pool empty).
    pub rx_no_mbuf: u64,
    /// Buffers that held several datagrams (UDP GRO).
    pub rx_gro_buffers: u64,
}

impl Rocev2Counters {
    pub(super) fn drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::BadIcrc => self.rx_bad_icrc += 1,
            DropReason::QkeyMismatch => self.rx_qkey_mismatch += 1,
            DropReason::PkeyMismatch => self.rx_pkey_mismatch += 1,
            DropReason::WrongQpn => self.rx_wrong_qpn += 1,
            DropReason::Truncated => self.rx_truncated += 1,
            DropReason::UnsupportedOpcode => self.rx_unsupported_opcode += 1,
        }
    }

    /// All receive drops.
    pub fn rx_drops(&self) -> u64 {
        self.rx_bad_icrc
            + self.rx_qkey_mismatch
            + self.rx_pkey_mismatch
            + self.rx_wrong_qpn
            + self.rx_truncated
            + self.rx_unsupported_opcode
    }

    /// The names of `xstats`, in its order.
    pub fn names() -> [&'static str; 21] {
        Rocev2Counters::default().xstats().map(|(n, _)| n)
    }

    /// xstats-style names and values.
    pub fn xstats(&self) -> [(&'static str, u64); 21] {
        [
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("tx_errors", self.tx_errors),
            ("tx_copies", self.tx_copies),
            ("tx_full", self.tx_full),
            ("tx_gso_sends", self.tx_gso_sends),
            ("tx_immediate_packets", self.tx_immediate),
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("rx_multicast_packets", self.rx_multicast),
            ("rx_nonzero_ip_id_packets", self.rx_nonzero_ip_id),
            ("rx_immediate_packets", self.rx_immediate),
            ("rx_bad_icrc_drops", self.rx_bad_icrc),
            ("rx_qkey_mismatch_drops", self.rx_qkey_mismatch),
            ("rx_pkey_mismatch_drops", self.rx_pkey_mismatch),
            ("rx_wrong_qpn_drops", self.rx_wrong_qpn),
            ("rx_truncated_drops", self.rx_truncated),
            ("rx_unsupported_opcode_drops", self.rx_unsupported_opcode),
            ("rx_errors", self.rx_errors),
            ("rx_no_mbuf", self.rx_no_mbuf),
            ("rx_gro_buffers", self.rx_gro_buffers),
        ]
    }
}
