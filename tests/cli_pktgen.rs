//! `ipoibd pktgen` end to end: JSON output validates against the documented
//! schema, loss equals the fabric's injected drops, CSV carries the same
//! figures, shipped scenarios are valid, and bad input fails in one line.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ipoibd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipoibd"))
        .arg("pktgen")
        .args(args)
        .output()
        .expect("ipoibd runs")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cli_pktgen_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        _ => false,
    }
}

/// The subset of JSON Schema that `src/pktgen/schema.json` uses.
fn validate(v: &Value, s: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(v, t),
            Value::Array(ts) => ts.iter().any(|t| type_ok(v, t.as_str().unwrap_or(""))),
            _ => false,
        };
        if !ok {
            errors.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = s.get("const") {
        if v != c {
            errors.push(format!("{path}: {v} is not {c}"));
        }
    }
    if let Some(Value::Array(e)) = s.get("enum") {
        if !e.contains(v) {
            errors.push(format!("{path}: {v} is not one of {e:?}"));
        }
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            errors.push(format!("{path}: {x} < {min}"));
        }
    }
    if let Value::Object(obj) = v {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = r.as_str().unwrap_or("");
            if !obj.contains_key(k) {
                errors.push(format!("{path}: missing {k}"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, item) in obj {
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(ps), _) => validate(item, ps, &format!("{path}.{k}"), errors),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{path}: unexpected key {k}"))
                }
                (None, Some(extra @ Value::Object(_))) => {
                    validate(item, extra, &format!("{path}.{k}"), errors)
                }
                _ => {}
            }
        }
    }
    if let (Value::Array(items), Some(is)) = (v, s.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item, is, &format!("{path}[{i}]"), errors);
        }
    }
}

/// The `--json` report at `path`, checked against the documented schema.
fn valid_report(path: &std::path::Path) -> Value {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut errors = Vec::new();
    validate(&doc, &schema(), "$", &mut errors);
    assert!(
        errors.is_empty(),
        "schema violations:\n{}",
        errors.join("\n")
    );
    doc
}

fn schema() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/pktgen/schema.json"),
    )
    .unwrap();
    serde_json::from_str(&text).expect("schema.json is JSON")
}

#[test]
fn the_validator_rejects_what_breaks_the_schema() {
    let s = schema();
    let mut errors = Vec::new();
    validate(
        &serde_json::json!({"schema": "ipoib-pktgen/1", "provider": "tcp", "lcores": 0}),
        &s,
        "$",
        &mut errors,
    );
    let all = errors.join("\n");
    assert!(
        all.contains("missing phases") && all.contains("not one of") && all.contains("0 < 1"),
        "{all}"
    );
}

#[test]
fn json_and_csv_carry_exact_loss_on_the_fabric() {
    let (json, csv, svg) = (tmp("run.json"), tmp("run.csv"), tmp("run.svg"));
    let out = ipoibd(&[
        "-q",
        "--count",
        "20000",
        "--rate-pps",
        "200000",
        "--loss",
        "0.02",
        "--fabric-seed",
        "5",
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(no leak)"), "{stdout}");

    let doc = valid_report(&json);

    let phase = &doc["phases"][0];
    let stream = &phase["streams"][0];
    assert_eq!(stream["tx_packets"], 20000);
    let rx = &stream["receivers"][0];
    assert_eq!(rx["iface"], "ib1");
    let ib0 = phase["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["iface"] == "ib0")
        .unwrap();
    let injected = &ib0["fabric"]["drops"]["tx_injected_loss_drops"];
    assert!(injected.as_u64().unwrap() > 0);
    let other: u64 = phase["ports"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["fabric"]["drops"].as_object().unwrap().iter())
        .filter(|(k, _)| *k != "tx_injected_loss_drops")
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    if other == 0 {
        assert_eq!(&rx["lost"], injected, "loss is the fabric's injected loss");
    }
    assert_eq!(rx["duplicates"], 0);

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("<polyline")
            && svg.contains("latency distribution")
    );
    let out = ipoibd(&["--dry-run", "--plot", "x.gif"]);
    assert_eq!(out.status.code(), Some(2), "SVG or PNG plots only");

    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("phase,kind,stream,iface,metric,value\n"));
    let lost_row = format!("phase1,receiver,s0,ib1,lost,{}", rx["lost"]);
    assert!(csv.lines().any(|l| l == lost_row), "{lost_row} not in CSV");
    assert!(csv
        .lines()
        .any(|l| l.starts_with("phase1,fabric,,ib0,tx_injected_loss_drops,")));
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = ipoibd(&["--scenario", p.to_str().unwrap(), "--dry-run"]);
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 3, "at least three shipped scenarios");
}

#[test]
fn a_scenario_with_modes_runs_its_exact_counts() {
    let json = tmp("modes.json");
    let sc = tmp("modes.toml");
    std::fs::write(
        &sc,
        r#"
[[stream]]
name = "r"
from = "ib0"
to = "fd00::2"
mode = "range"
rate_pps = 100000
count = 3000
[stream.range]
size = { min = 80, max = 200, step = 8 }

[[stream]]
name = "q"
from = "ib1"
to = "10.0.0.1"
mode = "sequence"
rate_pps = 100000
count = 3001
[[stream.template]]
to = "10.0.0.1"
size = 100
[[stream.template]]
to = "fd00::1"
size = 300
"#,
    )
    .unwrap();
    let out = ipoibd(&[
        "-q",
        "--scenario",
        sc.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let streams = doc["phases"][0]["streams"].as_array().unwrap();
    assert_eq!(streams[0]["tx_packets"], 3000);
    assert_eq!(streams[1]["tx_packets"], 3001);
    // Range sizes 80..=200 by 8 cycle exactly: 3000 = 187 full cycles of 16 + 8.
    let cycle: u64 = (0..16).map(|i| 80 + 8 * i).sum();
    let first8: u64 = (0..8).map(|i| 80 + 8 * i).sum();
    assert_eq!(streams[0]["tx_bytes"], 187 * cycle + first8);
    assert_eq!(streams[1]["tx_bytes"], 1501 * 100 + 1500 * 300);
    for s in streams {
        let unique: u64 = s["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["unique"].as_u64().unwrap())
            .sum();
        let lost: u64 = s["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["lost"].as_u64().unwrap())
            .sum();
        assert_eq!(unique + lost, s["tx_packets"].as_u64().unwrap());
    }
}

#[test]
fn bad_scenarios_fail_in_one_line_with_status_2() {
    let cases = [
        (
            "unknown.toml",
            "[[stream]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\nspeed = 3\n",
            "unknown field",
        ),
        (
            "mode.toml",
            "[[stream]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\nmode = \"zigzag\"\n",
            "zigzag",
        ),
        (
            "iface.toml",
            "[[stream]]\nfrom = \"ib9\"\nto = \"10.0.0.2\"\n",
            "ib9",
        ),
        (
            "size.toml",
            "[[stream]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\nsize = 20\n",
            "size",
        ),
        (
            "rates.toml",
            "[[stream]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\nrate_pps = 1\nrate_bps = 1\n",
            "at most one",
        ),
        ("empty.toml", "provider = \"null\"\n", "no [[stream]]"),
        ("syntax.toml", "[[stream]\n", "syntax.toml:1"),
    ];
    for (name, text, want) in cases {
        let p = tmp(name);
        std::fs::write(&p, text).unwrap();
        let out = ipoibd(&["--scenario", p.to_str().unwrap(), "--dry-run"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
        assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
    }
    let out = ipoibd(&["--scenario", "/nonexistent/x.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_pcap_replays_every_pass_to_its_destination() {
    use ipoib_dataplane::capture::pcap::{PcapWriter, Timestamp, LINKTYPE_RAW};
    use ipoib_dataplane::lcore::{build_udp_packet, FlowSpec};
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_RAW).unwrap();
    for i in 0..25u16 {
        let p = build_udp_packet(&FlowSpec {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            src_port: i,
            dst_port: 9,
            size: 100 + usize::from(i),
            rate_pps: 0,
        })
        .unwrap();
        w.write_record(Timestamp::from_micros(1, u32::from(i) * 10), &p)
            .unwrap();
    }
    let (pcap, json) = (tmp("replay.pcap"), tmp("replay.json"));
    std::fs::write(&pcap, w.into_inner()).unwrap();
    let out = ipoibd(&[
        "-q",
        "--pcap",
        pcap.to_str().unwrap(),
        "--loops",
        "4",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = valid_report(&json);
    let phase = &doc["phases"][0];
    let s = &phase["streams"][0];
    assert_eq!(
        (s["mode"].as_str(), s["tx_packets"].as_u64()),
        (Some("replay"), Some(100))
    );
    let bytes: u64 = (0..25u64).map(|i| 100 + i).sum::<u64>() * 4;
    assert_eq!(s["tx_bytes"], bytes);
    let ib1 = phase["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["iface"] == "ib1")
        .unwrap();
    assert_eq!(ib1["xstats"]["rx_good_packets"], 100);
    assert_eq!(ib1["xstats"]["rx_good_bytes"], bytes);
}

#[test]
fn the_live_screen_is_plain_lines_when_stdout_is_not_a_terminal() {
    let out = ipoibd(&["--duration", "1.3", "--rate-pps", "100000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('\x1b'), "no escape sequences in a pipe");
    let live: Vec<_> = stdout
        .lines()
        .filter(|l| l.starts_with("[   1.0s] phase1 "))
        .collect();
    assert_eq!(live.len(), 3, "one line per port: {stdout}");
    assert!(
        live[0].contains("ib0: tx 0.") && live[0].contains(" Mpps"),
        "{}",
        live[0]
    );
    assert!(live
        .iter()
        .all(|l| l.contains("drops") && l.contains("p99")));
}

#[test]
fn multicast_and_send_only_streams_reach_every_full_member() {
    let json = tmp("mcast.json");
    let out = ipoibd(&[
        "-q",
        "--from",
        "ib1",
        "--to",
        "239.1.1.1",
        "--to",
        "ff12::1:2",
        "--count",
        "3000",
        "--rate-pps",
        "100000",
        "--json",
        json.to_str().unwrap(),
    ]);
    // ff12::1:2 has no full member in the embedded configuration: sent, received by none.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let streams = doc["phases"][0]["streams"].as_array().unwrap();
    let group = &streams[0];
    assert_eq!(group["tx_packets"], 3000);
    let rx: Vec<&str> = group["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["iface"].as_str().unwrap())
        .collect();
    assert_eq!(rx, ["ib0", "ib2"], "the other full members of 239.1.1.1");
    for r in group["receivers"].as_array().unwrap() {
        assert_eq!(
            r["unique"].as_u64().unwrap() + r["lost"].as_u64().unwrap(),
            3000
        );
        assert_eq!(r["duplicates"], 0);
    }
    assert_eq!(streams[1]["tx_packets"], 3000);
    assert!(streams[1]["receivers"].as_array().unwrap().is_empty());

    let json = tmp("sendonly.json");
    let out = ipoibd(&[
        "-q",
        "--from",
        "ib0",
        "--to",
        "239.2.2.2",
        "--count",
        "2000",
        "--rate-pps",
        "100000",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rx: Vec<&str> = doc["phases"][0]["streams"][0]["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["iface"].as_str().unwrap())
        .collect();
    assert_eq!(
        rx,
        ["ib1", "ib2"],
        "a send-only sender reaches the group's full members"
    );
}

/// The fabric's counters of port `iface` in a phase's JSON.
fn fabric_of<'a>(phase: &'a Value, iface: &str) -> &'a Value {
    &phase["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["iface"] == iface)
        .unwrap()["fabric"]
}

/// Under seeded loss and reorder, every figure of the receiver follows from
/// the fabric's own injection counters: lost is the injected loss, reordered
/// the messages delivered after a later one, nothing is duplicated. A message
/// still held back when the generator stops must count as received, in order.
#[test]
fn loss_and_reorder_match_the_fabrics_injection_counters_exactly() {
    for seed in 1..=8u64 {
        let json = tmp(&format!("reorder{seed}.json"));
        let out = ipoibd(&[
            "-q",
            "--count",
            "3000",
            "--rate-pps",
            "300000",
            "--loss",
            "0.05",
            "--reorder",
            "0.4",
            "--fabric-seed",
            &seed.to_string(),
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let phase = &doc["phases"][0];
        let stream = &phase["streams"][0];
        let rx = &stream["receivers"][0];
        let fab = fabric_of(phase, "ib0");
        let n = |v: &Value| v.as_u64().unwrap();
        let (sent, injected_loss, injected_reorders) = (
            n(&stream["tx_packets"]),
            n(&fab["drops"]["tx_injected_loss_drops"]),
            n(&fab["injected_reorders"]),
        );
        let other_drops: u64 = phase["ports"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["fabric"]["drops"].as_object().unwrap().iter())
            .filter(|(k, _)| *k != "tx_injected_loss_drops")
            .map(|(_, v)| n(v))
            .sum();
        assert_eq!(other_drops, 0, "seed {seed}: only injected faults");
        assert_eq!(sent, 3000);
        assert!(injected_loss > 0 && injected_reorders > 0, "seed {seed}");
        let figures = |r: &Value| {
            [
                n(&r["unique"]),
                n(&r["rx_packets"]),
                n(&r["lost"]),
                n(&r["reordered"]),
                n(&r["duplicates"]),
            ]
        };
        let want = [
            sent - injected_loss,
            sent - injected_loss,
            injected_loss,
            injected_reorders,
            0,
        ];
        assert_eq!(
            figures(rx),
            want,
            "seed {seed}: [unique, rx, lost, reordered, dup]"
        );
        let _ = std::fs::remove_file(&json);
    }
}

/// Two rocev2 interfaces of one process on loopback addresses, on a RoCEv2
/// port of their own: `ipoibd pktgen` sends from one to the other through
/// real UDP sockets and the sink counts every packet.
fn rocev2_loopback_config(port: u16) -> PathBuf {
    let text = format!(
        "[dataplane]\nlcores = [0]\nmempool_size = 4096\nhugepages = \"off\"\n\n\
         [provider]\nkind = \"rocev2\"\n\n[provider.rocev2]\nport = {port}\nib_mtu = 1024\n\n\
         [[interface]]\nname = \"ib0\"\nport = 1\nmtu = 1020\nlocal_ip = \"127.0.0.1\"\nipv4 = [\"10.0.0.1/24\"]\n\n\
         [[interface]]\nname = \"ib1\"\nport = 2\nmtu = 1020\nlocal_ip = \"127.0.0.2\"\nipv4 = [\"10.0.0.2/24\"]\n"
    );
    let p = tmp("rocev2.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn rocev2_generator_and_sink_in_one_process_over_loopback() {
    let cfg = rocev2_loopback_config(20_000 + (std::process::id() % 20_000) as u16);
    let json = tmp("rocev2.json");
    let out = ipoibd(&[
        "-q",
        "--config",
        cfg.to_str().unwrap(),
        "--to",
        "10.0.0.2",
        "--count",
        "5000",
        "--rate-pps",
        "50000",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = valid_report(&json);
    assert_eq!(doc["provider"], "rocev2");
    let stream = &doc["phases"][0]["streams"][0];
    assert_eq!(stream["tx_packets"], 5000);
    assert_eq!(stream["end_packets"], 8, "end copies for remote sinks");
    let rx = &stream["receivers"][0];
    assert_eq!(rx["iface"], "ib1");
    assert_eq!(
        [
            &rx["unique"],
            &rx["lost"],
            &rx["announced"],
            &rx["end_packets"]
        ],
        [5000, 0, 5000, 8].map(Value::from).each_ref(),
    );
}

/// `queues = 2` on rocev2: the two streams of ib0 leave through its two
/// queues (one on each lcore), ib1's queues share its QPN and address and
/// the kernel hands each sender to one of them; every stream is counted
/// exactly once, whichever queue received it.
#[test]
fn rocev2_queues_spread_streams_over_lcores_and_count_each_exactly() {
    let port = 20_000 + (std::process::id() % 20_000) as u16 + 1;
    let text = std::fs::read_to_string(rocev2_loopback_config(port))
        .unwrap()
        .replace("lcores = [0]", "lcores = [0, 1]")
        .replace("mtu = 1020\n", "mtu = 1020\nqueues = 2\n");
    let cfg = tmp("rocev2_queues.toml");
    std::fs::write(&cfg, text).unwrap();
    let json = tmp("rocev2_queues.json");
    let out = ipoibd(&[
        "-q",
        "--config",
        cfg.to_str().unwrap(),
        "--to",
        "10.0.0.2",
        "--to",
        "10.0.0.2",
        "--count",
        "3000",
        "--rate-pps",
        "30000",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = valid_report(&json);
    let phase = &doc["phases"][0];
    for stream in phase["streams"].as_array().unwrap() {
        assert_eq!(stream["tx_packets"], 3000);
        let rx = &stream["receivers"][0];
        assert_eq!(rx["iface"], "ib1");
        assert_eq!(
            [
                &rx["unique"],
                &rx["lost"],
                &rx["duplicates"],
                &rx["announced"]
            ],
            [3000, 0, 0, 3000].map(Value::from).each_ref(),
            "{stream}"
        );
    }
    let ports = phase["ports"].as_array().unwrap();
    let queues = |i: usize| ports[i]["queues"].as_array().unwrap().clone();
    let (q0, q1) = (queues(0), queues(1));
    assert_eq!(q0.len(), 2);
    assert_eq!(
        (&q0[0]["lcore"], &q0[1]["lcore"]),
        (&Value::from(0), &Value::from(1))
    );
    // Each stream and its end copies left through its own queue.
    for q in &q0 {
        assert_eq!(q["tx_packets"], 3000 + 8, "{q}");
    }
    let rx: u64 = q1.iter().map(|q| q["rx_packets"].as_u64().unwrap()).sum();
    assert_eq!(rx, ports[1]["xstats"]["rx_good_packets"].as_u64().unwrap());
    assert_eq!(rx, 2 * (3000 + 8));
}

#[test]
fn rocev2_and_sink_role_reject_what_they_cannot_do() {
    let cfg = rocev2_loopback_config(4791);
    let cfg = cfg.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--sink", "--dry-run"],
            "needs the rocev2 or verbs provider",
        ),
        (
            vec!["--config", cfg, "--loss", "0.1", "--dry-run"],
            "injected by the fabric",
        ),
        (vec!["--provider", "rocev2", "--dry-run"], "needs local_ip"),
    ] {
        let out = ipoibd(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
    }
    // Queues share their QPN: a steering program by QPN cannot serve them.
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace("lcores = [0]", "lcores = [0, 1]")
        .replace("mtu = 1020\n", "mtu = 1020\nqueues = 2\n")
        .replace("127.0.0.2", "127.0.0.1");
    let shared = tmp("rocev2_shared.toml");
    std::fs::write(&shared, text).unwrap();
    let out = ipoibd(&["-q", "--config", shared.to_str().unwrap(), "--count", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs a local_ip of its own"), "{err}");
    let out = ipoibd(&["--config", cfg, "--sink", "--dry-run"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sink role: stream ids 0..16"));
}

/// `--plot FILE.png`: a real PNG of the configured size, with the rate lines
/// (blue tx, red rx) and text drawn from the embedded font.
#[test]
fn the_png_plot_is_a_picture_with_lines_and_text() {
    let png_path = tmp("run.png");
    let out = ipoibd(&[
        "-q",
        "--count",
        "100000",
        "--rate-pps",
        "400000",
        "--plot",
        png_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png_path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a valid PNG header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("decodable image data");
    assert_eq!((info.width, info.height), (1100, 900));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let px = |x: u32, y: u32| {
        let i = (y * info.width + x) as usize * 3;
        (buf[i], buf[i + 1], buf[i + 2])
    };
    // The rate chart is the top 430 rows, the latency chart below.
    let rows = |top: u32, bottom: u32| (top..bottom).flat_map(|y| (0..1100).map(move |x| (x, y)));
    let count_in = |top: u32, bottom: u32, f: &dyn Fn((u8, u8, u8)) -> bool| {
        rows(top, bottom).filter(|&(x, y)| f(px(x, y))).count()
    };
    let count = |f: &dyn Fn((u8, u8, u8)) -> bool| count_in(0, 430, f);
    let white = count_in(0, 900, &|p| p == (255, 255, 255));
    let total = (info.width * info.height) as usize;
    assert!(
        white < total && white > total / 2,
        "a white page with a drawing: {white}/{total}"
    );
    // rx is drawn over tx (they coincide when nothing is lost): the blue
    // line shows at least in the legend.
    assert!(
        count(&|(r, g, b)| b > 200 && r < 100 && g < 100) >= 15,
        "the blue tx line"
    );
    assert!(
        count(&|(r, g, b)| r > 200 && g < 100 && b < 100) > 200,
        "the red rx line"
    );
    // The rate chart's caption is text at the top centre.
    let caption_ink = (0..30)
        .flat_map(|y| (300..800).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let (r, g, b) = px(x, y);
            r < 128 && g < 128 && b < 128
        })
        .count();
    assert!(
        caption_ink > 50,
        "the caption is drawn: {caption_ink} dark pixels"
    );
}

/// A percentage of the link rate becomes packets per second from the mean
/// packet size; warm-up packets reach the sink flagged and stay out of
/// every measured figure.
#[test]
fn link_percentage_paces_and_warmup_stays_out_of_the_results() {
    let json = tmp("pct.json");
    // 10% of 0.1 Gb/s in 125-byte packets: 10,000 pps.
    let out = ipoibd(&[
        "-q",
        "--rate-pct",
        "10",
        "--link-gbps",
        "0.1",
        "--size",
        "125",
        "--count",
        "2000",
        "--warmup",
        "0.02",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let s = &doc["phases"][0]["streams"][0];
    assert_eq!(s["target_pps"].as_f64(), Some(10_000.0));
    assert_eq!(s["tx_packets"], 2000);
    assert_eq!(s["tx_bytes"], 2000 * 125);
    // 20 ms of warm-up at 10 kpps: about 200 packets, never measured.
    let warm = s["warmup_packets"].as_u64().unwrap();
    assert!(warm > 0, "warm-up packets were sent");
    // The pacer never runs ahead: 2000 packets take at least 1999 intervals.
    assert!(s["seconds"].as_f64().unwrap() >= 0.1999, "{}", s["seconds"]);
    let rx = &s["receivers"][0];
    assert_eq!(rx["warmup_packets"].as_u64(), Some(warm));
    assert_eq!(
        [&rx["rx_packets"], &rx["unique"], &rx["lost"]],
        [2000, 2000, 0].map(Value::from).each_ref()
    );
    assert_eq!(rx["latency_ns"]["count"], 2000, "warm-up has no latency");
}

/// The sink role in another process: a generator on 127.0.0.1 and
/// `--sink` on 127.0.0.2 (rocev2, one RoCEv2 port of their own). The sink
/// learns the sent count from the stream's end packets, and the
/// generator's bytes, time and rate from their report; its JSON validates.
#[test]
fn a_sink_in_another_process_counts_a_rocev2_stream_exactly() {
    use std::io::BufRead;
    let port = 20_000 + ((std::process::id() + 7) % 20_000) as u16;
    let host = |me: u8, peer: Option<u8>| {
        let mut text = format!(
            "[dataplane]\nlcores = [0]\nmempool_size = 4096\nhugepages = \"off\"\n\n\
             [provider]\nkind = \"rocev2\"\n\n[provider.rocev2]\nport = {port}\nib_mtu = 1024\n\n\
             [[interface]]\nname = \"ib0\"\nport = {me}\nmtu = 1020\nlocal_ip = \"127.0.0.{me}\"\nipv4 = [\"10.0.0.{me}/24\"]\n"
        );
        if let Some(p) = peer {
            text += &format!(
                "\n[[interface.neighbour]]\nip = \"10.0.0.{p}\"\nqpn = 0x10{p}\ngid = \"::ffff:127.0.0.{p}\"\n"
            );
        }
        let path = tmp(&format!("host{me}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let (gen_cfg, sink_cfg) = (host(1, Some(2)), host(2, None));
    let (gen_json, sink_json) = (tmp("gen.json"), tmp("sink.json"));
    let mut sink = Command::new(env!("CARGO_BIN_EXE_ipoibd"))
        .args(["pktgen", "-q", "--sink", "--duration", "60", "--config"])
        .arg(&sink_cfg)
        .arg("--json")
        .arg(&sink_json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ipoibd runs");
    // The sink says when its sockets are bound; EOF means it exited.
    let mut lines = std::io::BufReader::new(sink.stderr.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("sink: ready"));
    assert!(ready, "the sink never got ready");
    let out = ipoibd(&[
        "-q",
        "--config",
        gen_cfg.to_str().unwrap(),
        "--to",
        "10.0.0.2",
        "--count",
        "3000",
        "--rate-pps",
        "50000",
        "--json",
        gen_json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sink.wait().unwrap().success(), "the sink exits 0");
    let doc = valid_report(&sink_json);
    let streams = doc["phases"][0]["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1);
    let (s, rx) = (&streams[0], &streams[0]["receivers"][0]);
    assert_eq!(
        (&s["mode"], &s["tx_packets"]),
        (&Value::from("remote"), &Value::from(3000))
    );
    assert_eq!(
        [
            &rx["announced"],
            &rx["unique"],
            &rx["lost"],
            &rx["duplicates"]
        ],
        [3000, 3000, 0, 0].map(Value::from).each_ref()
    );
    assert!(rx["end_packets"].as_u64().unwrap() >= 1);
    assert_eq!(rx["latency_ns"]["count"], 3000);
    // The generator's tx figures, from the report its end packets carry.
    let gen: Value = serde_json::from_str(&std::fs::read_to_string(&gen_json).unwrap()).unwrap();
    let g = &gen["phases"][0]["streams"][0];
    let f = |v: &Value| v.as_f64().unwrap();
    assert_eq!(
        (&s["tx_bytes"], &s["target_pps"]),
        (&g["tx_bytes"], &g["target_pps"])
    );
    assert_eq!(s["tx_bytes"], 3000 * 64);
    assert!(f(&s["seconds"]) > 0.0);
    for k in ["seconds", "achieved_pps", "achieved_gbps", "rate_accuracy"] {
        assert!(
            (f(&s[k]) - f(&g[k])).abs() <= 1e-6 * f(&g[k]),
            "{k}: sink {} generator {}",
            s[k],
            g[k]
        );
    }
}

/// `--latency rtt` on the fabric with seeded loss: probes are data like any
/// other (the receiver's loss is still the fabric's injected loss on the
/// way there), each probe that arrives is reflected, and the probes that do
/// not come back are exactly those lost either way (the receiving port's
/// injected loss is only reflections). Round trips are on one clock, so the
/// peer's estimated offset is within a round trip of zero.
#[test]
fn round_trips_of_reflected_probes_account_for_loss_both_ways() {
    let (json, csv, svg) = (tmp("rtt.json"), tmp("rtt.csv"), tmp("rtt.svg"));
    let out = ipoibd(&[
        "-q",
        "--count",
        "20000",
        "--rate-pps",
        "100000",
        "--latency",
        "rtt",
        "--probe-pps",
        "5000",
        "--loss",
        "0.05",
        "--fabric-seed",
        "7",
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("round trip: probes"), "{stdout}");
    assert!(stdout.contains("1-way p50"), "{stdout}");
    let doc = valid_report(&json);
    let n = |v: &Value| v.as_u64().unwrap();
    let phase = &doc["phases"][0];
    let stream = &phase["streams"][0];
    let (rx, rtt) = (&stream["receivers"][0], &stream["rtt"]);
    assert_eq!(rx["iface"], "ib1");
    let injected = |iface: &str| n(&fabric_of(phase, iface)["drops"]["tx_injected_loss_drops"]);
    let (sent, probes) = (n(&stream["tx_packets"]), n(&rtt["probes"]));
    assert_eq!(sent, 20000);
    // 5000 a second from the first burst to the last, at most.
    let seconds = stream["seconds"].as_f64().unwrap();
    assert!(
        probes >= 100 && probes as f64 <= seconds * 5000.0 + 1.0,
        "{probes} probes in {seconds} s"
    );
    assert_eq!(n(&rx["lost"]), injected("ib0"), "probes leave loss exact");
    assert_eq!(n(&rx["unique"]) + n(&rx["lost"]), sent);
    let (arrived, back) = (n(&rx["probes"]), n(&rtt["reflections"]));
    assert_eq!(n(&rx["reflect_drops"]), 0);
    assert!(arrived <= probes && back > 0);
    assert_eq!(
        n(&rtt["lost"]),
        (probes - arrived) + injected("ib1"),
        "lost reflections: probes lost on the way there, reflections on the way back"
    );
    assert_eq!(back + n(&rtt["lost"]), probes);
    let l = &rtt["latency_ns"];
    assert_eq!(n(&l["count"]), back);
    assert!(n(&l["min"]) > 0 && n(&l["min"]) <= n(&l["p50"]) && n(&l["p50"]) <= n(&l["max"]));
    let offset = rtt["clock_offset_ns"].as_i64().expect("an offset estimate");
    assert!(
        offset.unsigned_abs() <= n(&l["min"]),
        "one clock: offset {offset} ns, min round trip {} ns",
        n(&l["min"])
    );
    let csv = std::fs::read_to_string(&csv).unwrap();
    let row = format!("phase1,stream,s0,,rtt_reflections,{back}");
    assert!(csv.lines().any(|l| l == row), "{row} not in CSV");
    assert!(csv
        .lines()
        .any(|l| l.starts_with("phase1,stream,s0,,rtt_p99_ns,")));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("round trip"), "the plot draws the round trips");

    // Without --latency rtt: no probes, no rtt figures.
    let out = ipoibd(&["-q", "--count", "1000", "--json", json.to_str().unwrap()]);
    assert!(out.status.success());
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stream = &doc["phases"][0]["streams"][0];
    assert!(stream["rtt"].is_null());
    assert_eq!(stream["receivers"][0]["probes"], 0);

    for (args, msg) in [
        (&["--probe-pps", "100"][..], "needs latency"),
        (
            &["--latency", "rtt", "--probe-pps", "1e6"][..],
            "probe rate",
        ),
        (&["--latency", "rtt", "--to", "239.1.1.1"][..], "multicast"),
    ] {
        let mut a = vec!["--dry-run"];
        a.extend_from_slice(args);
        let out = ipoibd(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(msg) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
