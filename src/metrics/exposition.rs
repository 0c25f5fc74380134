//! The Prometheus text exposition format (version 0.0.4) from the daemon's
//! `stats` and `status` answers: the same counters `ipoibctl stats` prints,
//! named by Prometheus conventions (`ipoib_` prefix, `_total` on counters,
//! base units, drop reasons as a label rather than one name each).

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its type, help text and samples (labels, value).
struct Family {
    kind: Kind,
    help: String,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

#[derive(Default)]
struct Families(BTreeMap<String, Family>);

impl Families {
    fn add(
        &mut self,
        name: String,
        kind: Kind,
        help: impl FnOnce() -> String,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) {
        self.0
            .entry(name)
            .or_insert_with(|| Family {
                kind,
                help: help(),
                samples: Vec::new(),
            })
            .samples
            .push((labels, value));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.0 {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in &f.samples {
                out.push_str(name);
                if !labels.is_empty() {
                    let l: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                        .collect();
                    let _ = write!(out, "{{{}}}", l.join(","));
                }
                let _ = writeln!(out, " {v}");
            }
        }
        out
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// An xstats name as a Prometheus metric: `rx_good_packets` →
/// `ipoib_rx_packets_total`; `rx_no_neighbour_drops` →
/// `ipoib_drops_total{reason="rx_no_neighbour"}`; `fabric_*` under
/// `ipoib_fabric_`, `rocev2_*` and `verbs_*` under `ipoib_rocev2_` and
/// `ipoib_verbs_`. `scope` goes after the
/// prefix (`lcore_`).
pub fn metric_name(xstat: &str, scope: &str) -> (String, Option<String>) {
    let (prefix, inner) = if let Some(rest) = xstat.strip_prefix("fabric_") {
        ("ipoib_fabric_", rest)
    } else if let Some(rest) = xstat.strip_prefix("rocev2_") {
        ("ipoib_rocev2_", rest)
    } else if let Some(rest) = xstat.strip_prefix("verbs_") {
        ("ipoib_verbs_", rest)
    } else {
        ("ipoib_", xstat)
    };
    let clean: String = inner
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    match clean.strip_suffix("_drops") {
        Some(reason) => (format!("{prefix}{scope}drops_total"), Some(reason.into())),
        None => (
            format!("{prefix}{scope}{}_total", clean.replace("_good", "")),
            None,
        ),
    }
}

fn help_for(xstat: &str, drops: bool) -> String {
    if drops {
        "Packets dropped, by reason (the *_drops counters of ipoibctl stats).".into()
    } else {
        format!("The {xstat} counter of ipoibctl stats.")
    }
}

/// Counters of one `xstats` list, labelled with `label`.
fn xstats(f: &mut Families, list: &Value, scope: &str, label: (&'static str, String)) {
    for pair in list.as_array().map_or(&[][..], Vec::as_slice) {
        let (Some(name), Some(v)) = (pair[0].as_str(), pair[1].as_u64()) else {
            continue;
        };
        let (metric, reason) = metric_name(name, scope);
        let mut labels = vec![label.clone()];
        let drops = reason.is_some();
        if let Some(r) = reason {
            labels.push(("reason", r));
        }
        f.add(
            metric,
            Kind::Counter,
            || help_for(name, drops),
            labels,
            v as f64,
        );
    }
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// The whole page from `stats`, `status` and (with a control plane) `groups`.
pub fn render(stats: &Value, status: &Value, groups: Option<&Value>) -> String {
    let mut f = Families::default();
    for i in items(&stats["interfaces"]) {
        let name = i["interface"].as_str().unwrap_or("-").to_owned();
        xstats(&mut f, &i["xstats"], "", ("interface", name));
    }
    for l in items(&stats["lcores"]) {
        let id = l["lcore"].to_string();
        xstats(&mut f, &l["xstats"], "lcore_", ("lcore", id));
    }
    if let Some(up) = status["uptime_s"].as_f64() {
        f.add(
            "ipoib_uptime_seconds".into(),
            Kind::Gauge,
            || "Seconds since the daemon started.".into(),
            vec![],
            up,
        );
    }
    let pool = &status["mempool"];
    for (key, metric, help) in [
        (
            "available",
            "ipoib_mempool_free_buffers",
            "Mempool buffers free (not held by rings, lcores or queues).",
        ),
        (
            "capacity",
            "ipoib_mempool_capacity_buffers",
            "Mempool buffers in all.",
        ),
    ] {
        if let Some(v) = pool[key].as_u64() {
            f.add(metric.into(), Kind::Gauge, || help.into(), vec![], v as f64);
        }
    }
    for i in items(&status["interfaces"]) {
        let name = i["name"].as_str().unwrap_or("-").to_owned();
        if let Some(c) = i["carrier"].as_bool() {
            f.add(
                "ipoib_carrier".into(),
                Kind::Gauge,
                || "1 when the interface has carrier (broadcast group joined).".into(),
                vec![("interface", name)],
                if c { 1.0 } else { 0.0 },
            );
        }
    }
    for i in groups.map_or(&[][..], |g| items(&g["interfaces"])) {
        let name = i["interface"].as_str().unwrap_or("-").to_owned();
        let list = items(&i["groups"]);
        let joined = list.iter().filter(|g| g["status"] == "joined").count();
        f.add(
            "ipoib_mcast_groups".into(),
            Kind::Gauge,
            || "Multicast groups the interface knows, by state (joined or not yet).".into(),
            vec![("interface", name.clone()), ("state", "joined".into())],
            joined as f64,
        );
        f.add(
            "ipoib_mcast_groups".into(),
            Kind::Gauge,
            String::new,
            vec![("interface", name), ("state", "other".into())],
            (list.len() - joined) as f64,
        );
    }
    f.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_prometheus_conventions() {
        assert_eq!(
            metric_name("rx_good_packets", ""),
            ("ipoib_rx_packets_total".into(), None)
        );
        assert_eq!(
            metric_name("rx_no_neighbour_drops", ""),
            ("ipoib_drops_total".into(), Some("rx_no_neighbour".into()))
        );
        assert_eq!(
            metric_name("fabric_rx_overflow_drops", ""),
            (
                "ipoib_fabric_drops_total".into(),
                Some("rx_overflow".into())
            )
        );
        assert_eq!(
            metric_name("rocev2_rx_bad_icrc_drops", ""),
            (
                "ipoib_rocev2_drops_total".into(),
                Some("rx_bad_icrc".into())
            )
        );
        assert_eq!(
            metric_name("verbs_rx_truncated_drops", ""),
            (
                "ipoib_verbs_drops_total".into(),
                Some("rx_truncated".into())
            )
        );
        assert_eq!(
            metric_name("rocev2_tx_gso_sends", ""),
            ("ipoib_rocev2_tx_gso_sends_total".into(), None)
        );
        assert_eq!(
            metric_name("tx_good_bytes", "lcore_"),
            ("ipoib_lcore_tx_bytes_total".into(), None)
        );
        assert_eq!(
            metric_name("mcast_joins_ok", ""),
            ("ipoib_mcast_joins_ok_total".into(), None)
        );
    }

    #[test]
    fn one_help_and_type_per_family_samples_together() {
        let stats = json!({"interfaces": [
            {"interface": "ib0", "xstats": [["rx_good_packets", 5], ["rx_a_drops", 1], ["rx_b_drops", 2]]},
            {"interface": "i\"b1", "xstats": [["rx_good_packets", 7]]},
        ]});
        let status = json!({"uptime_s": 1.5, "mempool": {"available": 10, "capacity": 12},
                            "interfaces": [{"name": "ib0", "carrier": true}]});
        let page = render(&stats, &status, None);
        let lines: Vec<&str> = page.lines().collect();
        let at = |l: &str| {
            lines
                .iter()
                .position(|x| *x == l)
                .unwrap_or_else(|| panic!("{l}\n{page}"))
        };
        let t = at("# TYPE ipoib_rx_packets_total counter");
        assert_eq!(lines[t + 1], "ipoib_rx_packets_total{interface=\"ib0\"} 5");
        assert_eq!(
            lines[t + 2],
            "ipoib_rx_packets_total{interface=\"i\\\"b1\"} 7"
        );
        let d = at("# TYPE ipoib_drops_total counter");
        assert_eq!(
            lines[d + 1],
            "ipoib_drops_total{interface=\"ib0\",reason=\"rx_a\"} 1"
        );
        assert_eq!(
            lines[d + 2],
            "ipoib_drops_total{interface=\"ib0\",reason=\"rx_b\"} 2"
        );
        at("ipoib_carrier{interface=\"ib0\"} 1");
        at("ipoib_mempool_free_buffers 10");
        assert_eq!(page.matches("# TYPE ipoib_rx_packets_total").count(), 1);
        for l in &lines {
            if !l.starts_with('#') {
                let value = l.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{l}");
            }
        }
        // Partial or odd answers never panic.
        for v in [
            json!(null),
            json!({"interfaces": 3}),
            json!({"interfaces": [{"xstats": [[1]]}]}),
        ] {
            let _ = render(&v, &v, Some(&v));
        }
    }
}
