//! The final summary table, and every figure as JSON (schema in
//! `SCHEMA.md` / `schema.json`) and as CSV (long format: one figure a row).

use super::outcome::{latency_us, PhaseOutcome, Receiver, RttOutcome, RunOutcome, StreamOutcome};
use ipoib_dataplane::pktgen::LatencySummary;
use ipoib_dataplane::provider::fabric::DropReason;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

pub const SCHEMA_ID: &str = "ipoib-pktgen/1";

fn latency_json(l: &LatencySummary) -> Value {
    json!({
        "count": l.count, "min": l.min, "p50": l.p50, "p90": l.p90,
        "p99": l.p99, "p999": l.p999, "max": l.max, "mean": l.mean,
    })
}

fn rtt_json(r: &RttOutcome) -> Value {
    json!({
        "probes": r.probes,
        "reflections": r.result.reflections,
        "lost": r.lost,
        "latency_ns": latency_json(&r.result.latency),
        "clock_offset_ns": r.result.clock_offset_ns,
    })
}

fn receiver_json(r: &Receiver, sent: u64) -> Value {
    let s = &r.result;
    json!({
        "iface": r.iface,
        "rx_packets": s.rx_packets,
        "rx_bytes": s.rx_bytes,
        "unique": s.unique,
        "lost": r.lost,
        "loss_ratio": if sent == 0 { 0.0 } else { r.lost as f64 / sent as f64 },
        "duplicates": s.duplicates,
        "reordered": s.reordered,
        "late": s.late,
        "warmup_packets": s.warmup_packets,
        "announced": s.announced,
        "end_packets": s.end_packets,
        "probes": s.probes,
        "reflect_drops": s.reflect_drops,
        "latency_ns": latency_json(&s.latency),
    })
}

fn stream_json(s: &StreamOutcome) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "from": s.from,
        "to": s.to.to_string(),
        "mode": s.mode,
        "mean_size": s.mean_size,
        "target_pps": s.target_pps,
        "tx_packets": s.sent.tx_packets,
        "tx_bytes": s.sent.tx_bytes,
        "warmup_packets": s.sent.warmup_packets,
        "end_packets": s.sent.end_packets,
        "seconds": s.seconds,
        "achieved_pps": s.achieved_pps(),
        "achieved_gbps": s.achieved_gbps(),
        "rate_accuracy": s.rate_accuracy(),
        "rtt": s.rtt.as_ref().map(rtt_json),
        "receivers": s.receivers.iter().map(|r| receiver_json(r, s.sent.tx_packets)).collect::<Vec<_>>(),
    })
}

fn phase_json(p: &PhaseOutcome) -> Value {
    let ports: Vec<Value> = p
        .ports
        .iter()
        .map(|port| {
            let xstats: Map<String, Value> = port
                .stats
                .xstats()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            let fabric = port.fabric.map(|c| {
                let drops: Map<String, Value> = DropReason::ALL
                    .iter()
                    .map(|r| (r.name().to_string(), json!(c.drop_count(*r))))
                    .collect();
                json!({
                    "tx_messages": c.tx_messages,
                    "rx_messages": c.rx_messages,
                    "injected_reorders": c.injected_reorders,
                    "drops": drops,
                })
            });
            let queues: Vec<Value> = port
                .queues
                .iter()
                .map(|(lcore, q)| {
                    json!({
                        "lcore": lcore,
                        "tx_packets": q.tx_packets,
                        "tx_bytes": q.tx_bytes,
                        "rx_packets": q.rx_packets,
                        "rx_bytes": q.rx_bytes,
                    })
                })
                .collect();
            json!({"iface": port.iface, "xstats": xstats, "fabric": fabric, "queues": queues})
        })
        .collect();
    json!({
        "name": p.name,
        "seconds": p.seconds,
        "interrupted": p.interrupted,
        "timeline": p.timeline.iter().map(|s| json!({"t": s.t, "tx_pps": s.tx_pps, "rx_pps": s.rx_pps})).collect::<Vec<_>>(),
        "streams": p.streams.iter().map(stream_json).collect::<Vec<_>>(),
        "ports": ports,
    })
}

pub fn to_json(r: &RunOutcome) -> Value {
    json!({
        "schema": SCHEMA_ID,
        "provider": r.provider,
        "lcores": r.lcores,
        "mempool": {"capacity": r.pool_capacity, "free_after_stop": r.pool_free_after},
        "phases": r.phases.iter().map(phase_json).collect::<Vec<_>>(),
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => csv_field(s),
        other => other.to_string(),
    }
}

/// Long format: `phase,kind,stream,iface,metric,value`, one figure a row,
/// flattened from the JSON so both always carry the same figures.
pub fn to_csv(r: &RunOutcome) -> String {
    let mut out = String::from("phase,kind,stream,iface,metric,value\n");
    let mut row = |phase: &str, kind: &str, stream: &str, iface: &str, metric: &str, v: &Value| {
        let _ = writeln!(
            out,
            "{},{kind},{},{},{},{}",
            csv_field(phase),
            csv_field(stream),
            csv_field(iface),
            csv_field(metric),
            csv_value(v)
        );
    };
    let j = to_json(r);
    for (k, v) in [("provider", &j["provider"]), ("lcores", &j["lcores"])] {
        row("", "run", "", "", k, v);
    }
    for (k, v) in j["mempool"].as_object().into_iter().flatten() {
        row("", "run", "", "", &format!("mempool_{k}"), v);
    }
    for p in j["phases"].as_array().into_iter().flatten() {
        let phase = p["name"].as_str().unwrap_or("");
        row(phase, "phase", "", "", "seconds", &p["seconds"]);
        row(phase, "phase", "", "", "interrupted", &p["interrupted"]);
        for s in p["timeline"].as_array().into_iter().flatten() {
            let t = s["t"].as_f64().unwrap_or(0.0);
            for k in ["tx_pps", "rx_pps"] {
                row(phase, "timeline", "", "", &format!("{k}_at_{t:.3}s"), &s[k]);
            }
        }
        for s in p["streams"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or("");
            for (k, v) in s.as_object().into_iter().flatten() {
                match (k.as_str(), v) {
                    ("receivers" | "name", _) => {}
                    ("rtt", Value::Object(m)) => {
                        for (rk, rv) in m {
                            match rv {
                                Value::Object(l) => {
                                    for (lk, lv) in l {
                                        let metric = format!("rtt_{lk}_ns");
                                        row(phase, "stream", name, "", &metric, lv);
                                    }
                                }
                                _ => row(phase, "stream", name, "", &format!("rtt_{rk}"), rv),
                            }
                        }
                    }
                    _ => row(phase, "stream", name, "", k, v),
                }
            }
            for rc in s["receivers"].as_array().into_iter().flatten() {
                let iface = rc["iface"].as_str().unwrap_or("");
                for (k, v) in rc.as_object().into_iter().flatten() {
                    match (k.as_str(), v) {
                        ("iface", _) => {}
                        ("latency_ns", Value::Object(m)) => {
                            for (lk, lv) in m {
                                row(
                                    phase,
                                    "receiver",
                                    name,
                                    iface,
                                    &format!("latency_{lk}_ns"),
                                    lv,
                                );
                            }
                        }
                        _ => row(phase, "receiver", name, iface, k, v),
                    }
                }
            }
        }
        for port in p["ports"].as_array().into_iter().flatten() {
            let iface = port["iface"].as_str().unwrap_or("");
            for (k, v) in port["xstats"].as_object().into_iter().flatten() {
                row(phase, "port", "", iface, k, v);
            }
            for (q, qv) in port["queues"].as_array().into_iter().flatten().enumerate() {
                for (k, v) in qv.as_object().into_iter().flatten() {
                    row(phase, "queue", "", iface, &format!("q{q}_{k}"), v);
                }
            }
            if let Some(f) = port["fabric"].as_object() {
                for (k, v) in f {
                    match v {
                        Value::Object(drops) => {
                            for (dk, dv) in drops {
                                row(phase, "fabric", "", iface, dk, dv);
                            }
                        }
                        _ => row(phase, "fabric", "", iface, k, v),
                    }
                }
            }
        }
    }
    out
}

/// A stream's round trips, under its rows; with no receiver in this process
/// (the sink is on another host) they are the latency to trust.
fn rtt_line(r: &RttOutcome, remote: bool) -> String {
    let [min, p50, p90, p99, p999, max] = latency_us(&r.result.latency);
    let offset = r.result.clock_offset_ns.map_or(String::new(), |o| {
        format!(", peer clock {:+.1} us", o as f64 / 1e3)
    });
    let trust = if remote {
        " (one clock: the latency to trust across hosts)"
    } else {
        ""
    };
    format!(
        "  round trip{trust}: probes {}, back {}, lost {}; \
         min {min:.1} p50 {p50:.1} p90 {p90:.1} p99 {p99:.1} p99.9 {p999:.1} max {max:.1} us{offset}\n",
        r.probes, r.result.reflections, r.lost
    )
}

/// The table printed at the end of a run.
pub fn summary(r: &RunOutcome) -> String {
    let mut out = String::new();
    for p in &r.phases {
        let _ = writeln!(
            out,
            "\n{} on the {} provider: {:.2} s{}",
            p.name,
            r.provider,
            p.seconds,
            if p.interrupted { " (interrupted)" } else { "" }
        );
        let _ = writeln!(
            out,
            "{:<10} {:<6} {:<22} {:<6} {:>11} {:>11} {:>9} {:>6} {:>7} {:>9} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "stream", "from", "to", "rx on", "tx", "rx", "lost", "dup", "reord", "Mpps", "Gb/s", "rate", "1-way min", "1-way p50", "1-way p99", "1-way max"
        );
        for s in &p.streams {
            let acc = s
                .rate_accuracy()
                .map_or("-".to_string(), |a| format!("{a:.4}"));
            let head = format!(
                "{:<10} {:<6} {:<22}",
                s.name,
                s.from,
                format!("{} ({})", s.to, s.mode)
            );
            if s.receivers.is_empty() {
                let _ = writeln!(
                    out,
                    "{head} {:<6} {:>11} {:>11} {:>9} {:>6} {:>7} {:>9.3} {:>7.2} {:>8}",
                    "-",
                    s.sent.tx_packets,
                    "-",
                    "-",
                    "-",
                    "-",
                    s.achieved_pps() / 1e6,
                    s.achieved_gbps(),
                    acc
                );
            }
            for rc in &s.receivers {
                let res = &rc.result;
                let [min, p50, _, p99, _, max] = latency_us(&res.latency);
                let _ = writeln!(
                    out,
                    "{head} {:<6} {:>11} {:>11} {:>9} {:>6} {:>7} {:>9.3} {:>7.2} {:>8} {min:>9.1} {p50:>9.1} {p99:>9.1} {max:>9.1}",
                    rc.iface,
                    s.sent.tx_packets,
                    res.rx_packets,
                    rc.lost,
                    res.duplicates,
                    res.reordered,
                    s.achieved_pps() / 1e6,
                    s.achieved_gbps(),
                    acc
                );
            }
            if let Some(rtt) = &s.rtt {
                out += &rtt_line(rtt, s.receivers.is_empty());
            }
        }
        if p.streams.iter().any(|s| s.mode == "remote") {
            out += "one-way latency here is this host's clock against the sender's: \
                    meaningful only when both run on one machine (the generator's \
                    --latency rtt gives round trips on one clock)\n";
        }
        let injected: u64 = p
            .ports
            .iter()
            .filter_map(|x| x.fabric)
            .map(|c| c.drop_count(DropReason::InjectedLoss))
            .sum();
        let dp_drops: u64 = p.ports.iter().map(|x| x.stats.total_drops()).sum();
        let fabric_drops: u64 = p
            .ports
            .iter()
            .filter_map(|x| x.fabric)
            .map(|c| c.total_drops())
            .sum();
        let _ = writeln!(
            out,
            "drops: datapath {dp_drops}, fabric {fabric_drops} (injected loss {injected})"
        );
    }
    let _ = writeln!(
        out,
        "mempool: {}/{} buffers free after stop{}",
        r.pool_free_after,
        r.pool_capacity,
        if r.leaked() == 0 {
            " (no leak)"
        } else {
            " — LEAK"
        }
    );
    out
}
