//! What users see: one line per interval while running, a table at the end.

use crate::wiring::HostInfo;
use ipoib_dataplane::provider::fabric::{DropReason, Fabric, PortCounters};
use ipoib_dataplane::stats::{DpDrop, StatsSnapshot};
use std::fmt::Write as _;
use std::time::Duration;

pub fn host_stats(h: &HostInfo) -> StatsSnapshot {
    let mut s = StatsSnapshot::default();
    for b in &h.stats {
        s += b.snapshot();
    }
    s
}

pub fn total_stats(hosts: &[HostInfo]) -> StatsSnapshot {
    let mut s = StatsSnapshot::default();
    for h in hosts {
        s += host_stats(h);
    }
    s
}

fn fabric_counters(fabric: Option<&Fabric>, h: &HostInfo) -> PortCounters {
    match (fabric, h.fabric_port) {
        (Some(f), Some(p)) => f.counters(p).unwrap_or_default(),
        _ => PortCounters::default(),
    }
}

/// Tracks totals between two live lines.
#[derive(Default)]
pub struct Live {
    last: StatsSnapshot,
    last_drops: u64,
}

impl Live {
    pub fn line(
        &mut self,
        elapsed: Duration,
        interval: Duration,
        hosts: &[HostInfo],
        fabric: Option<&Fabric>,
    ) -> String {
        let now = total_stats(hosts);
        let fabric_drops: u64 = hosts
            .iter()
            .map(|h| fabric_counters(fabric, h).total_drops())
            .sum();
        let drops = now.total_drops() + fabric_drops;
        let secs = interval.as_secs_f64().max(1e-9);
        let tx = (now.tx_packets - self.last.tx_packets) as f64 / secs;
        let rx = (now.rx_packets - self.last.rx_packets) as f64 / secs;
        let gbps = (now.rx_bytes - self.last.rx_bytes) as f64 * 8.0 / secs / 1e9;
        let line = format!(
            "[{:6.1}s] tx {:7.3} Mpps  rx {:7.3} Mpps  {:6.2} Gb/s  drops +{}",
            elapsed.as_secs_f64(),
            tx / 1e6,
            rx / 1e6,
            gbps,
            drops - self.last_drops
        );
        self.last = now;
        self.last_drops = drops;
        line
    }
}

/// The per-host table printed at the end.
pub fn summary(hosts: &[HostInfo], fabric: Option<&Fabric>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>12} {:>12} {:>14} {:>14} {:>8} {:>8} {:>8}  drops",
        "host", "tx_pkts", "rx_pkts", "tx_bytes", "rx_bytes", "tx_Mpps", "rx_Mpps", "rx_Gb/s"
    );
    for h in hosts {
        let s = host_stats(h);
        let f = fabric_counters(fabric, h);
        let mut drops: Vec<String> = DpDrop::ALL
            .iter()
            .filter(|r| s.drop_count(**r) != 0)
            .map(|r| format!("{}={}", r.name(), s.drop_count(*r)))
            .collect();
        drops.extend(
            DropReason::ALL
                .iter()
                .filter(|r| f.drop_count(**r) != 0)
                .map(|r| format!("fabric_{}={}", r.name(), f.drop_count(*r))),
        );
        let _ = writeln!(
            out,
            "{:<8} {:>12} {:>12} {:>14} {:>14} {:>8.3} {:>8.3} {:>8.2}  {}",
            h.name,
            s.tx_packets,
            s.rx_packets,
            s.tx_bytes,
            s.rx_bytes,
            s.tx_packets as f64 / secs / 1e6,
            s.rx_packets as f64 / secs / 1e6,
            s.rx_bytes as f64 * 8.0 / secs / 1e9,
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(" ")
            }
        );
    }
    out
}

/// The neighbour tables the resolvers hold, one block per interface.
pub fn neighbours(tables: &[(String, Vec<ipoib_control::neigh::NeighInfo>)]) -> String {
    let mut out = String::new();
    for (name, entries) in tables {
        let _ = writeln!(out, "{name}:");
        if entries.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for e in entries {
            let hw = e.hwaddr.map_or_else(|| "-".to_string(), |h| h.to_string());
            let _ = writeln!(
                out,
                "  {:<24} {:<11} {}",
                e.ip.to_string(),
                format!("{:?}", e.state).to_lowercase(),
                hw
            );
        }
    }
    out
}

/// `ping 10.0.0.2 from ib0: 5 sent, 5 received, rtt min/avg/max = a/b/c ms`
pub fn ping_line(p: &crate::resolution::PingSummary) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match p.min_avg_max() {
        Some((min, avg, max)) => format!(
            "ping {} from {}: {} sent, {} received, rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            p.to,
            p.from,
            p.sent,
            p.rtts.len(),
            ms(min),
            ms(avg),
            ms(max)
        ),
        None => format!("ping {} from {}: {} sent, 0 received", p.to, p.from, p.sent),
    }
}

/// One line per TUN device: packets and bytes each way, and any drops.
/// `tun ipoib0 (ib0): from host 12 pkts 1008 B, to host 12 pkts 1008 B, drops none`
pub fn tun_lines(hosts: &[HostInfo]) -> String {
    use ipoib_dataplane::lcore::TunCounter as C;
    let mut out = String::new();
    for h in hosts {
        let Some((name, t)) = &h.tun else { continue };
        let drops: Vec<String> = t
            .xstats()
            .skip(4)
            .filter(|(_, v)| *v != 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "tun {name} ({}): from host {} pkts {} B, to host {} pkts {} B, drops {}",
            h.name,
            t.get(C::RxPackets),
            t.get(C::RxBytes),
            t.get(C::TxPackets),
            t.get(C::TxBytes),
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(" ")
            }
        );
    }
    out
}
