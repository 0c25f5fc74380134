//! Every figure of a run, gathered once the lcores have stopped.

use ipoib_dataplane::pktgen::{GenSnapshot, LatencySummary, RttResult, StreamResult};
use ipoib_dataplane::provider::fabric::PortCounters;
use ipoib_dataplane::stats::StatsSnapshot;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Receiver {
    pub iface: String,
    pub result: StreamResult,
    /// `sent - unique`: exact, every sequence number counted once.
    pub lost: u64,
    /// (quantile, latency ns) along the distribution, for plots.
    pub latency_curve: Vec<(f64, u64)>,
}

/// Round trips of a stream's latency probes, on the sender's clock.
#[derive(Debug, Clone, Default)]
pub struct RttOutcome {
    /// Probes sent (measured packets flagged for reflection).
    pub probes: u64,
    /// `probes - reflections`: lost either way, or not reflected.
    pub lost: u64,
    pub result: RttResult,
    /// (quantile, round trip ns) along the distribution, for plots.
    pub curve: Vec<(f64, u64)>,
}

/// Rates summed over the ports at one moment of a phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the phase started.
    pub t: f64,
    pub tx_pps: f64,
    pub rx_pps: f64,
}

#[derive(Debug, Clone)]
pub struct StreamOutcome {
    pub id: u16,
    pub name: String,
    pub from: String,
    pub to: IpAddr,
    pub mode: &'static str,
    pub mean_size: f64,
    pub target_pps: Option<f64>,
    pub sent: GenSnapshot,
    /// Measured seconds: the configured duration, or first to last burst.
    pub seconds: f64,
    pub receivers: Vec<Receiver>,
    /// With `latency = "rtt"`: the probes' round trips.
    pub rtt: Option<RttOutcome>,
}

impl StreamOutcome {
    pub fn achieved_pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent.tx_packets as f64 / self.seconds
        } else {
            0.0
        }
    }
    pub fn achieved_gbps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent.tx_bytes as f64 * 8.0 / self.seconds / 1e9
        } else {
            0.0
        }
    }
    pub fn rate_accuracy(&self) -> Option<f64> {
        self.target_pps.map(|t| self.achieved_pps() / t)
    }
}

#[derive(Debug, Clone)]
pub struct PortOutcome {
    pub iface: String,
    /// Every queue's counters added up.
    pub stats: StatsSnapshot,
    pub fabric: Option<PortCounters>,
    /// Per queue (queue 0 first): its lcore index and counters.
    pub queues: Vec<(usize, StatsSnapshot)>,
}

#[derive(Debug, Clone)]
pub struct PhaseOutcome {
    pub name: String,
    pub seconds: f64,
    pub interrupted: bool,
    /// Rates every 100 ms.
    pub timeline: Vec<Sample>,
    pub streams: Vec<StreamOutcome>,
    pub ports: Vec<PortOutcome>,
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub provider: &'static str,
    pub lcores: usize,
    pub phases: Vec<PhaseOutcome>,
    pub pool_capacity: usize,
    pub pool_free_after: usize,
}

impl RunOutcome {
    pub fn leaked(&self) -> usize {
        self.pool_capacity - self.pool_free_after
    }
}

pub fn latency_us(l: &LatencySummary) -> [f64; 6] {
    [l.min, l.p50, l.p90, l.p99, l.p999, l.max].map(|v| v as f64 / 1e3)
}
