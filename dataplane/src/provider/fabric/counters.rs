use std::sync::atomic::{AtomicU64, Ordering};

/// Why the fabric dropped a message. Counted at the port that noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Destination QP's Q_Key differs from the work request's (receiver).
    QkeyMismatch,
    /// P_Keys of sender and receiver do not match (receiver).
    PkeyMismatch,
    /// Message larger than the IB MTU (sender).
    Oversize,
    /// No QP with that number at the destination (receiver).
    NoSuchQp,
    /// The address handle names no port or group with members (sender).
    NoRoute,
    /// Receive queue full: no posted receive WQE (receiver).
    RxOverflow,
    /// Seeded loss injection (sender).
    InjectedLoss,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::QkeyMismatch,
        DropReason::PkeyMismatch,
        DropReason::Oversize,
        DropReason::NoSuchQp,
        DropReason::NoRoute,
        DropReason::RxOverflow,
        DropReason::InjectedLoss,
    ];
    /// xstats-style counter name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QkeyMismatch => "rx_qkey_mismatch_drops",
            DropReason::PkeyMismatch => "rx_pkey_mismatch_drops",
            DropReason::Oversize => "tx_oversize_drops",
            DropReason::NoSuchQp => "rx_no_qp_drops",
            DropReason::NoRoute => "tx_no_route_drops",
            DropReason::RxOverflow => "rx_overflow_drops",
            DropReason::InjectedLoss => "tx_injected_loss_drops",
        }
    }
}

/// A port's counters as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub tx_messages: u64,
    pub rx_messages: u64,
    /// Messages held back by reorder injection and delivered after a later one (sender).
    pub injected_reorders: u64,
    pub drops: [u64; DropReason::ALL.len()],
}

impl PortCounters {
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Shared by every sender that touches the port, so these are atomic RMWs;
/// senders add once per burst, not per message.
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct PortCountersAtomic {
    pub(crate) tx_messages: AtomicU64,
    pub(crate) rx_messages: AtomicU64,
    pub(crate) injected_reorders: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl PortCountersAtomic {
    #[inline]
    pub(crate) fn add_drop(&self, r: DropReason, n: u64) {
        if n != 0 {
            self.drops[r as usize].fetch_add(n, Ordering::Relaxed);
        }
    }
    pub(crate) fn snapshot(&self) -> PortCounters {
        let mut drops = [0; DropReason::ALL.len()];
        for (d, a) in drops.iter_mut().zip(&self.drops) {
            *d = a.load(Ordering::Relaxed);
        }
        PortCounters {
            tx_messages: self.tx_messages.load(Ordering::Relaxed),
            rx_messages: self.rx_messages.load(Ordering::Relaxed),
            injected_reorders: self.injected_reorders.load(Ordering::Relaxed),
            drops,
        }
    }
}
