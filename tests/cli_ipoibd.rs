//! ipoibd as users run it: the embedded default, check-config, bad input.

use std::process::Command;

fn ipoibd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipoibd"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ipoibd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn embedded_default_runs_exchanges_traffic_and_leaks_nothing() {
    // Long enough for a lost ARP/ND exchange to be retried (1 s) when the
    // lcores cannot keep up on a loaded machine and the fabric drops.
    let (code, out, err) = ipoibd(&["--duration", "4"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for host in ["ib0", "ib1", "ib2"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("no row for {host}:\n{out}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        let tx: u64 = cols[1].parse().unwrap();
        let rx: u64 = cols[2].parse().unwrap();
        assert!(tx > 0 && rx > 0, "{row}");
    }
    assert!(out.contains("carrier on every interface"), "{out}");
    assert!(out.contains("unbalanced=0 violations=0"), "{out}");
    assert!(out.contains("(no leak)"), "{out}");
    // The send-only group shows up as such on the sender.
    assert!(out.contains("SENDONLY"), "{out}");
    // Hosts found each other with ARP (IPv4) and ND (IPv6): ib0's table at
    // stop holds its flows' destinations with their hardware addresses.
    let neigh = out
        .split("neighbours at stop:")
        .nth(1)
        .expect("neighbour table");
    let ib0: Vec<&str> = neigh
        .lines()
        .skip_while(|l| *l != "ib0:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    for dst in ["10.0.0.2", "fd00::3"] {
        let row = ib0
            .iter()
            .find(|l| l.split_whitespace().next() == Some(dst))
            .unwrap_or_else(|| panic!("{dst} not resolved:\n{neigh}"));
        assert!(row.contains("reachable") || row.contains("stale"), "{row}");
        assert!(
            row.contains(":fe:80:"),
            "hardware address carries the GID: {row}"
        );
    }
}

#[test]
fn sa_faults_run_reports_balanced_joins() {
    let (code, out, err) = ipoibd(&[
        "--duration",
        "0.5",
        "--sa-faults",
        "delay=0-5ms,fail=0.1,reset=0.05,noanswer=0.02,early=0.5,restart=0.01",
        "--seed",
        "3",
        "--fault-rounds",
        "50",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("sa-faults scenario:"))
        .expect("scenario summary");
    assert!(
        line.contains("unbalanced=0") && line.contains("hung_flushes=0"),
        "{line}"
    );
}

#[test]
fn bad_fault_spec_is_one_line_and_status_2() {
    let (code, _out, err) = ipoibd(&["--sa-faults", "fail=2", "--duration", "0.1"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("ipoibd: error: --sa-faults"), "{err}");
}

#[test]
fn check_config_prints_the_effective_config_that_reads_back() {
    let p = temp_file("ok.toml", "[[interface]]\nname = \"ib0\"\nport = 1\n");
    let (code, out, err) = ipoibd(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("mempool_size = 8192") && out.contains("qkey = 0x"),
        "{out}"
    );
    let again = temp_file("again.toml", &out);
    let (code2, out2, _) = ipoibd(&["check-config", again.to_str().unwrap()]);
    assert_eq!((code2, out2), (0, out));
}

#[test]
fn bad_config_exits_2_with_one_located_line_and_no_backtrace() {
    let p = temp_file(
        "bad.toml",
        "[[interface]]\nname = \"ib0\"\nport = 1\nmtu = 9000\n",
    );
    for args in [
        vec!["check-config", p.to_str().unwrap()],
        vec!["--config", p.to_str().unwrap()],
    ] {
        let (code, out, err) = ipoibd(&args);
        assert_eq!(code, 2, "{out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("bad.toml:4:7: interface[0].mtu") && err.contains("68..=4092"),
            "{err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    let (code, _, err) = ipoibd(&["--config", "/nonexistent/x.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.toml"), "{err}");
}

#[test]
fn help_and_bad_flags() {
    let (code, out, _) = ipoibd(&["--help"]);
    assert_eq!(code, 0);
    for flag in ["--duration", "--config", "--sa-faults", "check-config"] {
        assert!(out.contains(flag), "{flag} missing from help:\n{out}");
    }
    assert_eq!(ipoibd(&["--no-such-flag"]).0, 2);
    assert_eq!(ipoibd(&["--duration", "-1"]).0, 2);
}

/// Two hosts with no static neighbours and no bulk traffic: the first host's
/// IP stack resolves the other with ARP and ND and gets its echoes back.
/// Requests sent while resolution is still running may be dropped (the lcore
/// sends a few misses per address up, the resolver queues a few, as a kernel
/// does): each such loss must be a counted drop, and each target must answer.
#[test]
fn pings_resolve_and_round_trip() {
    let cfg = temp_file(
        "ping.toml",
        "[dataplane]\nlcores = [0, 1]\n\
         [[interface]]\nname = \"ib0\"\nport = 1\nlcore = 0\nipv4 = [\"10.0.0.1/24\"]\nipv6 = [\"fd00::1/64\"]\n\
         [[interface]]\nname = \"ib1\"\nport = 2\nlcore = 1\nipv4 = [\"10.0.0.2/24\"]\nipv6 = [\"fd00::2/64\"]\n",
    );
    let (code, out, err) = ipoibd(&[
        "--config",
        cfg.to_str().unwrap(),
        // Pings start 200 ms after the lcores; the run waits for late replies.
        "--duration",
        "1.5",
        "--ping",
        "10.0.0.2,fd00::2",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let mut received = 0;
    for dst in ["10.0.0.2", "fd00::2"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("ping {dst} from ib0:")))
            .unwrap_or_else(|| panic!("no ping line for {dst}:\n{out}"));
        let got: u32 = line
            .split("5 sent, ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(got >= 1 && line.contains("rtt min/avg/max = "), "{line}");
        received += got;
    }
    // Drops counted on the way: by the lcores and by the resolvers.
    let number_after = |text: &str, key: &str| -> u32 {
        text.split(key)
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .unwrap_or(0)
    };
    let mut dropped = 0;
    for host in ["ib0", "ib1"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("no row for {host}:\n{out}"));
        dropped += number_after(row, "tx_no_neighbour_drops=");
        let res = out
            .lines()
            .find(|l| l.starts_with(&format!("resolution {host}:")))
            .unwrap_or_else(|| panic!("no resolution line for {host}:\n{out}"));
        dropped += number_after(res, "dropped while resolving ");
    }
    assert!(
        received + dropped >= 10,
        "{received} replies and {dropped} counted drops of 10 requests:\n{out}"
    );
    assert!(out.contains("(no leak)"), "{out}");
}

/// Every sample configuration is valid as shipped.
#[test]
fn every_example_config_passes_check_config() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for kind in ["null", "fabric", "rocev2"] {
        assert!(
            files
                .iter()
                .any(|f| f.file_stem().is_some_and(|s| s == kind)),
            "no sample for the {kind} provider in {files:?}"
        );
    }
    for f in &files {
        let (code, out, err) = ipoibd(&["check-config", f.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {err}", f.display());
        assert!(out.contains("[dataplane]"), "{out}");
    }
}

/// The systemd unit starts the daemon with flags it has, checks the
/// configuration first and reloads with SIGHUP.
#[test]
fn systemd_unit_uses_real_flags() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/ipoibd.service"
    ))
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
    };
    let (_, help, _) = ipoibd(&["--help"]);
    let start = value("ExecStart");
    for flag in start.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "{flag} is not an ipoibd flag");
    }
    assert!(start.contains("--duration 0"), "{start}");
    assert!(value("ExecStartPre").contains("check-config"));
    assert!(value("ExecReload").contains("-HUP"));
    assert_eq!(value("KillSignal"), "SIGTERM");
}

/// `--pcap`: one interface's frames, cut at the snap length, written by the
/// time the daemon exits; a file that cannot be created is one line and
/// status 2, and the capture options need --pcap.
#[test]
fn pcap_option_captures_one_interface() {
    use ipoib_dataplane::capture::{LinkHeader, PcapReader, LINKTYPE_IPOIB};
    let file = temp_file("ib2.pcap", "");
    let (code, out, err) = ipoibd(&[
        "--no-socket",
        "--duration",
        "1",
        "--pcap",
        file.to_str().unwrap(),
        "--pcap-interface",
        "ib2",
        "--pcap-snaplen",
        "80",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("capture: "))
        .unwrap_or_else(|| panic!("no capture line:\n{out}"));
    assert!(line.contains("of ib2 written to"), "{line}");
    let written: u64 = line["capture: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let mut reader = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!((reader.linktype(), reader.snaplen()), (LINKTYPE_IPOIB, 80));
    let mut n = 0;
    for rec in reader.by_ref() {
        let rec = rec.unwrap();
        assert!(rec.data.len() <= 80, "{} bytes", rec.data.len());
        assert!(LinkHeader::split(&rec.data).is_some());
        n += 1;
    }
    assert!(n > 0 && n == written, "{n} records, {written} reported");
    let _ = std::fs::remove_file(&file);

    let (code, _, err) = ipoibd(&["--no-socket", "--pcap", "/nonexistent-dir/x.pcap"]);
    assert_eq!(code, 2);
    // One error line (after any start-up warning).
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with("ipoibd: error: --pcap: cannot create /nonexistent-dir/x.pcap"),
        "{err}"
    );
    let (code, _, err) = ipoibd(&["--pcap-interface", "ib0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--pcap"), "{err}");
}

#[test]
fn rocev2_queues_are_for_pktgen_only() {
    let cfg = temp_file(
        "rocev2_queues.toml",
        "[dataplane]\nlcores = [0, 1]\nhugepages = \"off\"\n\n[provider]\nkind = \"rocev2\"\n\n\
         [[interface]]\nname = \"ib0\"\nport = 1\nlocal_ip = \"127.0.0.1\"\nipv4 = [\"10.0.0.1/24\"]\nqueues = 2\n",
    );
    let (code, _out, err) = ipoibd(&[
        "--config",
        cfg.to_str().unwrap(),
        "--no-socket",
        "--duration",
        "0.1",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("interface ib0: queues = 2") && err.contains("only `ipoibd pktgen`"),
        "{err}"
    );
}
