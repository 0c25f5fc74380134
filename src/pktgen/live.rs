//! The live screen: once a second, per port tx/rx rates, Gb/s, drops and
//! latency p99 (one-way, and round trip where probes come back). Redrawn in place on a terminal, plain lines otherwise.

use super::assemble::Port;
use ipoib_dataplane::provider::fabric::Fabric;
use ipoib_dataplane::stats::StatsSnapshot;
use std::fmt::Write as _;
use std::time::Duration;

pub struct LiveScreen {
    tty: bool,
    last: Vec<StatsSnapshot>,
}

impl LiveScreen {
    pub fn new(tty: bool, ports: usize) -> LiveScreen {
        LiveScreen {
            tty,
            last: vec![StatsSnapshot::default(); ports],
        }
    }

    /// The text to print for this tick.
    pub fn render(
        &mut self,
        phase: &str,
        elapsed: Duration,
        dt: Duration,
        ports: &[Port],
        fabric: Option<&Fabric>,
    ) -> String {
        let secs = dt.as_secs_f64().max(1e-9);
        let mut out = String::new();
        if self.tty {
            // Home and clear: redraw in place without scrolling.
            out.push_str("\x1b[H\x1b[2J");
            let _ = writeln!(out, "pktgen {phase}  {:6.1}s", elapsed.as_secs_f64());
            let _ = writeln!(
                out,
                "{:<8} {:>10} {:>10} {:>8} {:>8} {:>10} {:>10} {:>10}",
                "port", "tx Mpps", "rx Mpps", "tx Gb/s", "rx Gb/s", "drops", "1-way p99", "rtt p99"
            );
        }
        for (i, p) in ports.iter().enumerate() {
            let now = p.snapshot();
            let last = &self.last[i];
            let rate = |a: u64, b: u64| (a - b) as f64 / secs;
            let fabric_drops = match (fabric, p.fabric_port) {
                (Some(f), Some(k)) => f.counters(k).map_or(0, |c| c.total_drops()),
                _ => 0,
            };
            let drops = now.total_drops() + fabric_drops;
            let p99 = p.latency_p99_ns() as f64 / 1e3;
            let rtt = p.rtt_p99_ns() as f64 / 1e3;
            let (txp, rxp) = (
                rate(now.tx_packets, last.tx_packets) / 1e6,
                rate(now.rx_packets, last.rx_packets) / 1e6,
            );
            let (txg, rxg) = (
                rate(now.tx_bytes, last.tx_bytes) * 8.0 / 1e9,
                rate(now.rx_bytes, last.rx_bytes) * 8.0 / 1e9,
            );
            if self.tty {
                let _ = writeln!(
                    out,
                    "{:<8} {txp:>10.3} {rxp:>10.3} {txg:>8.2} {rxg:>8.2} {drops:>10} {p99:>10.1} {rtt:>10.1}",
                    p.name
                );
            } else {
                let _ = writeln!(
                    out,
                    "[{:6.1}s] {phase} {}: tx {txp:.3} Mpps {txg:.2} Gb/s  rx {rxp:.3} Mpps {rxg:.2} Gb/s  drops {drops}  p99 {p99:.1} us  rtt p99 {rtt:.1} us",
                    elapsed.as_secs_f64(),
                    p.name
                );
            }
            self.last[i] = now;
        }
        out
    }
}
