//! Human tables from the daemon's JSON answers. Missing fields print as
//! `-`: an older or newer daemon never makes the client fail.

use serde_json::Value;
use std::fmt::Write as _;

/// A scalar as text: strings bare, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn carrier(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "up",
        Some(false) => "down",
        None => "-",
    }
}

fn words(v: &Value, sep: &str) -> String {
    let w: Vec<String> = list(v).iter().map(text).collect();
    if w.is_empty() {
        "-".into()
    } else {
        w.join(sep)
    }
}

pub fn status(d: &Value) -> String {
    let mut out = String::new();
    let pool = &d["mempool"];
    let _ = writeln!(
        out,
        "ipoibd pid {}, up {:.1} s, provider {}, mempool {}/{} buffers free",
        text(&d["pid"]),
        d["uptime_s"].as_f64().unwrap_or(0.0),
        text(&d["provider"]),
        text(&pool["available"]),
        text(&pool["capacity"]),
    );
    let lcores: Vec<String> = list(&d["lcores"])
        .iter()
        .map(|l| {
            format!(
                "{} (core {}): {}",
                text(&l["id"]),
                text(&l["core"]),
                words(&l["interfaces"], " ")
            )
        })
        .collect();
    let _ = writeln!(out, "lcores: {}", lcores.join("; "));
    let _ = writeln!(
        out,
        "{:<15} {:<7} {:>5} {:<7} {:>5} {:>8} {:>5}  ADDRESSES",
        "IFACE", "CARRIER", "MTU", "PKEY", "PORT", "QPN", "LCORE"
    );
    for i in list(&d["interfaces"]) {
        let _ = writeln!(
            out,
            "{:<15} {:<7} {:>5} {:<7} {:>5} {:>8} {:>5}  {}",
            text(&i["name"]),
            carrier(&i["carrier"]),
            text(&i["mtu"]),
            text(&i["pkey"]),
            text(&i["port"]),
            text(&i["qpn"]),
            text(&i["lcore"]),
            words(&i["addresses"], " ")
        );
    }
    let c = &d["capture"];
    if c.is_object() {
        let _ = writeln!(
            out,
            "capture: {} ({}), {} written, {} dropped",
            text(&c["file"]),
            words(&c["interfaces"], " "),
            text(&c["written"]),
            text(&c["drops"]),
        );
    }
    out
}

/// One row per counter, one column per interface; then the same per lcore.
pub fn stats(d: &Value) -> String {
    let mut out = counters(list(&d["interfaces"]), |i| text(&i["interface"]));
    let lcores = list(&d["lcores"]);
    if !lcores.is_empty() {
        out.push('\n');
        out.push_str(&counters(lcores, |l| format!("lcore{}", text(&l["lcore"]))));
    }
    out
}

fn counters(ifaces: &[Value], label: impl Fn(&Value) -> String) -> String {
    let mut names: Vec<String> = Vec::new();
    for i in ifaces {
        for pair in list(&i["xstats"]) {
            let n = text(&pair[0]);
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let value = |i: &Value, name: &str| {
        list(&i["xstats"])
            .iter()
            .find(|p| p[0].as_str() == Some(name))
            .map_or_else(|| "-".to_string(), |p| text(&p[1]))
    };
    let mut out = String::new();
    let _ = write!(out, "{:<32}", "COUNTER");
    for i in ifaces {
        let _ = write!(out, " {:>16}", label(i));
    }
    out.push('\n');
    for n in &names {
        let _ = write!(out, "{n:<32}");
        for i in ifaces {
            let _ = write!(out, " {:>16}", value(i, n));
        }
        out.push('\n');
    }
    out
}

pub fn groups(d: &Value) -> String {
    let mut out = String::new();
    for i in list(&d["interfaces"]) {
        let _ = writeln!(
            out,
            "{} (carrier {}):",
            text(&i["interface"]),
            carrier(&i["carrier"])
        );
        let _ = writeln!(
            out,
            "  {:<40} {:<16} {:<22} {:<8} {:>7} {:>5} {:>6} {:>6}",
            "MGID", "GROUP", "FLAGS", "STATE", "BACKOFF", "MTU", "JOINS", "FAILS"
        );
        for g in list(&i["groups"]) {
            let mut mgid = text(&g["mgid"]);
            if g["broadcast"].as_bool() == Some(true) {
                mgid.push_str(" (bcast)");
            }
            let _ = writeln!(
                out,
                "  {:<40} {:<16} {:<22} {:<8} {:>6}s {:>5} {:>6} {:>6}",
                mgid,
                text(&g["address"]),
                words(&g["flags"], "|"),
                text(&g["status"]),
                g["backoff_s"].as_f64().unwrap_or(0.0),
                text(&g["mtu"]),
                text(&g["joins_started"]),
                text(&g["joins_failed"])
            );
        }
    }
    out
}

pub fn neigh(d: &Value) -> String {
    let mut out = String::new();
    for i in list(&d["interfaces"]) {
        let _ = writeln!(out, "{}:", text(&i["interface"]));
        let entries = list(&i["neighbours"]);
        if entries.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for n in entries {
            let _ = writeln!(
                out,
                "  {:<24} {:<11} {:>3} {}",
                text(&n["ip"]),
                text(&n["state"]),
                text(&n["queued"]),
                text(&n["hwaddr"])
            );
        }
    }
    out
}

pub fn flush(d: &Value) -> String {
    let mut out = String::new();
    for i in list(&d["interfaces"]) {
        let _ = writeln!(
            out,
            "{}: flush {}: {} group(s) removed, {} left, {} waited for, {} timed out; rejoining",
            text(&i["interface"]),
            text(&d["level"]),
            text(&i["removed"]),
            text(&i["left"]),
            text(&i["waited"]),
            text(&i["timed_out"])
        );
    }
    out
}

pub fn membership(d: &Value, join: bool) -> String {
    let (iface, group, mgid) = (text(&d["interface"]), text(&d["group"]), text(&d["mgid"]));
    if d["changed"].as_bool() == Some(false) {
        return format!("{iface}: already a full member of {group} ({mgid})\n");
    }
    if join {
        format!("{iface}: joining {group} ({mgid}) as a full member\n")
    } else {
        format!("{iface}: left {group} ({mgid})\n")
    }
}

pub fn paths(d: &Value) -> String {
    let mut out = String::new();
    for i in list(&d["interfaces"]) {
        let st = &i["stats"];
        let _ = writeln!(
            out,
            "{}: {} queries, {} answers, {} timeouts, {} failures",
            text(&i["interface"]),
            text(&st["queries"]),
            text(&st["answers"]),
            text(&st["timeouts"]),
            text(&st["failures"])
        );
        let entries = list(&i["paths"]);
        if entries.is_empty() {
            let _ = writeln!(out, "  (none)");
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<40} {:>6} {:>2} {:>5} {:>4} {:<8} {:>8}  USERS",
            "DGID", "DLID", "SL", "MTU", "RATE", "STATE", "EXPIRES"
        );
        for p in entries {
            let state = match (p["ah"].as_bool(), p["querying"].as_bool()) {
                (Some(true), _) => "ready",
                (_, Some(true)) => "querying",
                (Some(false), _) => "failed",
                _ => "-",
            };
            let dlid = p["dlid"]
                .as_u64()
                .map_or_else(|| "-".to_string(), |l| format!("{l:#x}"));
            let _ = writeln!(
                out,
                "  {:<40} {:>6} {:>2} {:>5} {:>4} {:<8} {:>7.0}s  {}",
                text(&p["dgid"]),
                dlid,
                text(&p["sl"]),
                text(&p["mtu"]),
                text(&p["rate"]),
                state,
                p["expires_in_s"].as_f64().unwrap_or(0.0),
                words(&p["users"], " ")
            );
        }
    }
    out
}

pub fn reload(d: &Value) -> String {
    let mut out = String::new();
    let applied = words(&d["applied"], ", ");
    let refused = list(&d["refused"]);
    if applied == "-" && refused.is_empty() {
        return "configuration unchanged\n".into();
    }
    let _ = writeln!(out, "applied: {applied}");
    for r in refused {
        let _ = writeln!(out, "refused: {} ({})", text(&r["key"]), text(&r["reason"]));
    }
    out
}

/// `pcap start` (`started`) and `pcap stop`.
pub fn pcap(d: &Value, started: bool) -> String {
    let (file, ifaces) = (text(&d["file"]), words(&d["interfaces"], " "));
    if started {
        return format!(
            "capturing {ifaces} to {file} (snap length {})\n",
            text(&d["snaplen"])
        );
    }
    let mut out = format!(
        "capture of {ifaces} to {file} stopped: {} written, {} dropped\n",
        text(&d["written"]),
        text(&d["drops"])
    );
    if !d["error"].is_null() {
        let _ = writeln!(out, "the capture ended early: {}", text(&d["error"]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_from_partial_answers_never_fail() {
        for v in [json!(null), json!({}), json!({"interfaces": 3}), json!([1])] {
            let _ = (status(&v), stats(&v), groups(&v), neigh(&v), flush(&v));
            let _ = (paths(&v), reload(&v));
            let _ = membership(&v, true);
            let _ = (pcap(&v, true), pcap(&v, false));
        }
    }

    #[test]
    fn stats_rows_are_counters() {
        let d = json!({"interfaces": [
            {"interface": "ib0", "xstats": [["rx_good_packets", 5], ["tx_good_packets", 7]]},
            {"interface": "ib1", "xstats": [["rx_good_packets", 9]]},
        ]});
        let t = stats(&d);
        assert!(!t.contains("lcore"), "{t}");
        let rx = t
            .lines()
            .find(|l| l.starts_with("rx_good_packets"))
            .unwrap();
        assert_eq!(
            rx.split_whitespace().collect::<Vec<_>>(),
            ["rx_good_packets", "5", "9"]
        );
        let tx = t
            .lines()
            .find(|l| l.starts_with("tx_good_packets"))
            .unwrap();
        assert_eq!(
            tx.split_whitespace().collect::<Vec<_>>(),
            ["tx_good_packets", "7", "-"]
        );
    }
}
