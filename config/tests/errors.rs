//! Bad input: every error names the file, the line:column of the offending key or
//! value, the key path and what is allowed, on one line.

use ipoib_config::{from_str, load_file, ConfigError, ErrorKind};

const FILE: &str = "config.toml";
const IFACE: &str = "[[interface]]\nname = \"ib0\"\nport = 1\n";

/// 1-based line and character column of the `nth` occurrence of `needle`, found by
/// plain text search — independent of the parser's spans.
fn position_of(source: &str, needle: &str, nth: usize) -> (usize, usize) {
    let (offset, _) = source
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} not in source"));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn error_of(source: &str) -> ConfigError {
    match from_str(source, FILE) {
        Ok(config) => panic!("accepted invalid config:\n{source}\n=> {config:?}"),
        Err(e) => e,
    }
}

/// Checks the error points at the `nth` occurrence of `at`, names `path`, and
/// its one-line message contains each of `says`.
fn check(source: &str, kind: ErrorKind, at: &str, nth: usize, path: &str, says: &[&str]) {
    let err = error_of(source);
    let text = err.to_string();
    let (line, column) = position_of(source, at, nth);
    let prefix = format!("{FILE}:{line}:{column}: {path}: ");
    assert!(
        text.starts_with(&prefix),
        "want prefix {prefix:?}\n got {text:?}"
    );
    assert!(!text.contains('\n'), "not one line: {text:?}");
    for s in says {
        assert!(text.contains(s), "want {s:?} in {text:?}");
    }
    assert_eq!(err.kind(), kind, "{text}");
    assert_eq!(err.line(), Some(line));
    assert_eq!(err.column(), Some(column));
    assert_eq!(err.key_path(), Some(path));
    assert_eq!(err.file(), FILE);
}

#[test]
fn unknown_key_at_top_level() {
    let src = format!("{IFACE}\n[dataplanes]\nburst = 1\n");
    // `[dataplanes]` is a new top-level table: the error points at its name.
    check(
        &src,
        ErrorKind::Schema,
        "dataplanes",
        0,
        "dataplanes",
        &["unknown key", "`dataplane`", "`interface`"],
    );
}

#[test]
fn unknown_key_nested() {
    let src = format!("[dataplane]\nburst = 4\nbrust = 4\n{IFACE}");
    check(
        &src,
        ErrorKind::Schema,
        "brust",
        0,
        "dataplane.brust",
        &["unknown key", "`burst`", "`lcores`"],
    );

    let src = format!(
        "{IFACE}\n[[interface.neighbour]]\nip = \"10.0.0.2\"\nqpn = 1\ngid = \"::1\"\nlid = 3\n"
    );
    check(
        &src,
        ErrorKind::Schema,
        "lid",
        0,
        "interface[0].neighbour[0].lid",
        &["unknown key", "`qpn`", "`gid`"],
    );
}

#[test]
fn wrong_type_names_the_allowed_range() {
    let src = format!("[dataplane]\nburst = \"lots\"\n{IFACE}");
    check(
        &src,
        ErrorKind::Schema,
        "\"lots\"",
        0,
        "dataplane.burst",
        &["expected an integer in 1..=256", "got \"lots\""],
    );

    let src = format!("[dataplane]\nhugepages = true\n{IFACE}");
    check(
        &src,
        ErrorKind::Schema,
        "true",
        0,
        "dataplane.hugepages",
        &["\"auto\", \"on\", \"off\"", "got true"],
    );

    let src = format!("{IFACE}ipv4 = \"10.0.0.1/24\"\n");
    check(
        &src,
        ErrorKind::Schema,
        "\"10.0.0.1/24\"",
        0,
        "interface[0].ipv4",
        &["an array of IPv4 CIDR strings"],
    );

    let src = format!("[dataplane]\nlcores = [0, \"one\"]\n{IFACE}");
    check(
        &src,
        ErrorKind::Schema,
        "\"one\"",
        0,
        "dataplane.lcores[1]",
        &["a CPU core id in 0..=1023"],
    );
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let src = format!("[provider]\nkind = \"ib\"\n{IFACE}");
    check(
        &src,
        ErrorKind::Schema,
        "\"ib\"",
        0,
        "provider.kind",
        &["\"null\", \"fabric\", \"rocev2\", \"verbs\"", "got \"ib\""],
    );

    let src = format!("{IFACE}[log]\nlevel = \"loud\"\n");
    check(
        &src,
        ErrorKind::Schema,
        "\"loud\"",
        0,
        "log.level",
        &["\"error\"", "\"trace\""],
    );
}

#[test]
fn out_of_range_integers() {
    let src = format!("[dataplane]\nburst = 300\n{IFACE}");
    check(
        &src,
        ErrorKind::Invalid,
        "300",
        0,
        "dataplane.burst",
        &["expected an integer in 1..=256, got 300"],
    );

    let src = format!("[dataplane]\nmempool_size = 100\n{IFACE}");
    check(
        &src,
        ErrorKind::Invalid,
        "100",
        0,
        "dataplane.mempool_size",
        &["256..=1048576", "got 100"],
    );

    let src = format!("{IFACE}[control]\nneigh_queue = 0\n");
    check(
        &src,
        ErrorKind::Invalid,
        "0\n",
        0,
        "control.neigh_queue",
        &["1..=64", "got 0"],
    );

    let src = format!("{IFACE}[run]\nstats_interval_ms = 99\n");
    check(
        &src,
        ErrorKind::Invalid,
        "99",
        0,
        "run.stats_interval_ms",
        &["100..=60000"],
    );

    let src = "[[interface]]\nname = \"ib0\"\nport = 0xC000\n";
    check(
        src,
        ErrorKind::Invalid,
        "0xC000",
        0,
        "interface[0].port",
        &["1..=0xBFFF", "got 0xC000"],
    );

    let src = format!(
        "{IFACE}[[interface.neighbour]]\nip = \"10.0.0.2\"\nqpn = 0x1000000\ngid = \"::1\"\n"
    );
    // The neighbour's family check passes only with an IPv4 address configured.
    let src = src.replace("port = 1\n", "port = 1\nipv4 = [\"10.0.0.1/24\"]\n");
    check(
        &src,
        ErrorKind::Invalid,
        "0x1000000",
        0,
        "interface[0].neighbour[0].qpn",
        &["1..=0xFFFFFF"],
    );
}

#[test]
fn out_of_range_numbers() {
    let src = format!("[provider.fabric]\nloss = 1.5\n{IFACE}");
    check(
        &src,
        ErrorKind::Invalid,
        "1.5",
        0,
        "provider.fabric.loss",
        &["0.0..=1.0", "got 1.5"],
    );

    let src = format!("{IFACE}[run]\nduration_s = nan\n");
    check(
        &src,
        ErrorKind::Invalid,
        "nan",
        0,
        "run.duration_s",
        &["0.0..=86400.0"],
    );
}

#[test]
fn ring_size_must_be_a_power_of_two() {
    let src = format!("[dataplane]\nrx_ring_size = 1000\n{IFACE}");
    check(
        &src,
        ErrorKind::Invalid,
        "1000",
        0,
        "dataplane.rx_ring_size",
        &["a power of two in 64..=65536", "got 1000"],
    );
}

#[test]
fn mempool_cache_is_bounded_by_the_pool() {
    let src = format!("[dataplane]\nmempool_size = 256\nmempool_cache = 65\n{IFACE}");
    check(
        &src,
        ErrorKind::Invalid,
        "65",
        0,
        "dataplane.mempool_cache",
        &["0..=512", "mempool_size / 4 = 64", "got 65"],
    );
}

#[test]
fn duplicate_lcores() {
    let src = format!("[dataplane]\nlcores = [2, 3, 2]\n{IFACE}");
    check(
        &src,
        ErrorKind::Invalid,
        "2]",
        0,
        "dataplane.lcores[2]",
        &["distinct", "dataplane.lcores[0]"],
    );
}

#[test]
fn duplicate_interface_name_and_port() {
    let src = format!("{IFACE}\n[[interface]]\nname = \"ib0\"\nport = 2\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"ib0\"",
        1,
        "interface[1].name",
        &["unique name", "interface[0]"],
    );

    let src = format!("{IFACE}\n[[interface]]\nname = \"ib1\"\nport = 1\n");
    check(
        &src,
        ErrorKind::Invalid,
        "1\n",
        1,
        "interface[1].port",
        &["unique port", "interface[0]"],
    );
}

#[test]
fn bad_interface_name() {
    let src = "[[interface]]\nname = \"ib0/with-slash\"\nport = 1\n";
    check(
        src,
        ErrorKind::Invalid,
        "\"ib0/",
        0,
        "interface[0].name",
        &["1..=15 characters of [A-Za-z0-9_.-]"],
    );
}

#[test]
fn unicast_group() {
    let src = format!("{IFACE}groups = [\"239.1.1.1\", \"10.1.1.1\"]\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"10.1.1.1\"",
        0,
        "interface[0].groups[1]",
        &["multicast", "224.0.0.0/4", "ff00::/8", "unicast"],
    );
}

#[test]
fn sendonly_group_may_not_also_be_full() {
    let src = format!("{IFACE}groups = [\"239.1.1.1\"]\nsendonly = [\"239.1.1.1\"]\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"239.1.1.1\"",
        1,
        "interface[0].sendonly[0]",
        &["full member"],
    );
}

#[test]
fn bad_cidr() {
    let src = format!("{IFACE}ipv4 = [\"10.0.0.1/33\"]\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"10.0.0.1/33\"",
        0,
        "interface[0].ipv4[0]",
        &["prefix 0..=32", "got \"10.0.0.1/33\""],
    );

    let src = format!("{IFACE}ipv6 = [\"fd00::1\"]\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"fd00::1\"",
        0,
        "interface[0].ipv6[0]",
        &["prefix 0..=128"],
    );
}

#[test]
fn lcore_index_out_of_range() {
    let src = "[dataplane]\nlcores = [4, 5]\n[[interface]]\nname = \"ib0\"\nport = 1\nlcore = 2\n";
    check(
        src,
        ErrorKind::Invalid,
        "2\n",
        0,
        "interface[0].lcore",
        &["index into dataplane.lcores in 0..=1", "got 2"],
    );
}

#[test]
fn mtu_above_ib_mtu_minus_header() {
    let src = "[provider.fabric]\nib_mtu = 1024\n\n[[interface]]\nname = \"ib0\"\nport = 1\n  mtu = 1021\n";
    check(
        src,
        ErrorKind::Invalid,
        "1021",
        0,
        "interface[0].mtu",
        &["68..=1020", "ib_mtu 1024", "got 1021"],
    );

    // The absolute range applies to every provider.
    let src = "[provider]\nkind = \"null\"\n[[interface]]\nname = \"ib0\"\nport = 1\nmtu = 9000\n";
    check(
        src,
        ErrorKind::Invalid,
        "9000",
        0,
        "interface[0].mtu",
        &["expected an integer in 68..=4092, got 9000"],
    );
}

#[test]
fn ib_mtu_must_be_an_ib_size() {
    let src = format!("provider.fabric.ib_mtu = 1500\n{IFACE}");
    check(
        &src,
        ErrorKind::Invalid,
        "1500",
        0,
        "provider.fabric.ib_mtu",
        &["256, 512, 1024, 2048, 4096"],
    );
}

#[test]
fn qkey_high_bit_and_pkey_low_bits() {
    let src = format!("{IFACE}qkey = 0x80000000\n");
    check(
        &src,
        ErrorKind::Invalid,
        "0x80000000",
        0,
        "interface[0].qkey",
        &["0..=0x7FFFFFFF", "controlled Q_Key", "got 0x80000000"],
    );

    let src = format!("{IFACE}pkey = 0x8000\n");
    check(
        &src,
        ErrorKind::Invalid,
        "0x8000",
        0,
        "interface[0].pkey",
        &["1..=0xFFFF", "low 15 bits"],
    );
}

#[test]
fn neighbour_needs_a_family_the_interface_has() {
    let src = format!("{IFACE}ipv4 = [\"10.0.0.1/24\"]\n[[interface.neighbour]]\nip = \"fd00::2\"\nqpn = 1\ngid = \"::1\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"fd00::2\"",
        0,
        "interface[0].neighbour[0].ip",
        &["(IPv4)", "IPv6 address fd00::2"],
    );
}

#[test]
fn bad_gid() {
    let src = format!("{IFACE}ipv4 = [\"10.0.0.1/24\"]\n[[interface.neighbour]]\nip = \"10.0.0.2\"\nqpn = 1\ngid = \"fe80::zz\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"fe80::zz\"",
        0,
        "interface[0].neighbour[0].gid",
        &["IPv6 syntax"],
    );
}

#[test]
fn traffic_cross_references() {
    let with_addr = format!("{IFACE}ipv4 = [\"10.0.0.1/24\"]\n");

    let src = format!("{with_addr}[[traffic]]\nfrom = \"ib7\"\nto = \"10.0.0.2\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"ib7\"",
        0,
        "traffic[0].from",
        &["configured interface (ib0)"],
    );

    let src = format!(
        "{with_addr}mtu = 1500\n[[traffic]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\nsize = 1501\n"
    );
    check(
        &src,
        ErrorKind::Invalid,
        "1501",
        0,
        "traffic[0].size",
        &["28..=1500", "mtu of ib0"],
    );

    let src = format!("{with_addr}[[traffic]]\nfrom = \"ib0\"\nto = \"fd00::9\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"fd00::9\"",
        0,
        "traffic[0].to",
        &["family ib0 has (IPv4)"],
    );
}

#[test]
fn missing_required_keys() {
    let src = "[dataplane]\nburst = 8\n\n[[interface]]\nname = \"ib0\"\n";
    check(
        src,
        ErrorKind::Schema,
        "[[interface]]",
        0,
        "interface[0].port",
        &["missing required key", "1..=0xBFFF"],
    );
}

#[test]
fn missing_interface() {
    for src in ["", "[dataplane]\nburst = 8\n", "interface = []\n"] {
        let err = error_of(src);
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(err.key_path(), Some("interface"));
        assert_eq!(err.line(), None);
        assert_eq!(
            err.to_string(),
            "config.toml: interface: expected at least one [[interface]] table, got none"
        );
    }
}

#[test]
fn syntax_errors_have_positions() {
    let src = format!("{IFACE}mtu = = 3\n");
    let err = error_of(&src);
    assert_eq!(err.kind(), ErrorKind::Syntax);
    assert_eq!(err.line(), Some(4), "{err}");
    assert!(err.to_string().starts_with("config.toml:4:"), "{err}");
    assert!(!err.to_string().contains('\n'));

    let src = format!("{IFACE}port = 2\n");
    let err = error_of(&src);
    assert_eq!(err.kind(), ErrorKind::Syntax);
    assert_eq!(err.line(), Some(4), "{err}");
    assert!(err.to_string().contains("duplicate key"), "{err}");
}

#[test]
fn columns_count_characters_and_survive_crlf() {
    // A multi-byte character before the value on the same line.
    let src = format!("{IFACE}ipv4 = [\"é\", \"bad\"]\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"é\"",
        0,
        "interface[0].ipv4[0]",
        &["IPv4 address"],
    );

    let src = format!("{IFACE}mtu = 9000\n").replace('\n', "\r\n");
    check(
        &src,
        ErrorKind::Invalid,
        "9000",
        0,
        "interface[0].mtu",
        &["got 9000"],
    );
}

#[test]
fn load_file_names_the_path() {
    let dir = std::env::temp_dir().join(format!("ipoib-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("missing.toml");
    let err = load_file(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string().starts_with(&missing.display().to_string()),
        "{err}"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, format!("{IFACE}mtu = 9000\n")).unwrap();
    let err = load_file(&bad).unwrap_err();
    let want = format!(
        "{}:4:7: interface[0].mtu: expected an integer in 68..=4092, got 9000",
        bad.display()
    );
    assert_eq!(err.to_string(), want);

    let good = dir.join("good.toml");
    std::fs::write(&good, IFACE).unwrap();
    assert_eq!(load_file(&good).unwrap().interfaces[0].name, "ib0");

    std::fs::remove_dir_all(&dir).unwrap();
}

const ROCE: &str = "[provider]\nkind = \"rocev2\"\n";

#[test]
fn rocev2_needs_a_local_ip() {
    // No span of its own: the error points at the interface's name.
    let src = format!("{ROCE}{IFACE}");
    check(
        &src,
        ErrorKind::Invalid,
        "\"ib0\"",
        0,
        "interface[0].local_ip",
        &["missing required key", "rocev2", "IPv4 or IPv6 address"],
    );

    let src = format!("{ROCE}{IFACE}local_ip = \"10.0.0.300\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"10.0.0.300\"",
        0,
        "interface[0].local_ip",
        &["an IPv4 or IPv6 address", "got \"10.0.0.300\""],
    );

    let src = format!("{ROCE}{IFACE}local_ip = \"239.1.1.1\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"239.1.1.1\"",
        0,
        "interface[0].local_ip",
        &["unicast"],
    );

    let src = format!("{ROCE}{IFACE}local_ip = 7\n");
    check(
        &src,
        ErrorKind::Schema,
        "7",
        0,
        "interface[0].local_ip",
        &["an IPv4 or IPv6 address string"],
    );
}

#[test]
fn rocev2_provider_keys() {
    let src = format!("{ROCE}[provider.rocev2]\nport = 0\n{IFACE}local_ip = \"10.0.0.1\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "0\n",
        0,
        "provider.rocev2.port",
        &["1..=65535", "got 0"],
    );

    let src = format!("{ROCE}[provider.rocev2]\ngso = \"yes\"\n{IFACE}local_ip = \"10.0.0.1\"\n");
    check(
        &src,
        ErrorKind::Schema,
        "\"yes\"",
        0,
        "provider.rocev2.gso",
        &["true or false"],
    );

    let src = format!("{ROCE}[provider.rocev2]\ngro = 1\n{IFACE}local_ip = \"10.0.0.1\"\n");
    check(
        &src,
        ErrorKind::Schema,
        "1",
        0,
        "provider.rocev2.gro",
        &["true or false"],
    );

    let src = format!("{ROCE}[provider.rocev2]\nib_mtu = 1500\n{IFACE}local_ip = \"10.0.0.1\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "1500",
        0,
        "provider.rocev2.ib_mtu",
        &["256, 512, 1024, 2048, 4096"],
    );
}

#[test]
fn rocev2_mtu_fits_its_ib_mtu() {
    // The default RoCE path MTU is 1024, so the default IPoIB MTU does not fit.
    let src = format!("{ROCE}{IFACE}local_ip = \"10.0.0.1\"\nmtu = 2044\n");
    check(
        &src,
        ErrorKind::Invalid,
        "2044",
        0,
        "interface[0].mtu",
        &["68..=1020", "provider.rocev2.ib_mtu 1024", "got 2044"],
    );
}

#[test]
fn tun_section() {
    // Accepted both ways; the name defaults to the interface's.
    let c = from_str(&format!("{IFACE}tun = {{ name = \"ipoib0\" }}\n"), FILE).unwrap();
    assert_eq!(
        c.interfaces[0].tun.as_ref().map(|t| t.name.as_str()),
        Some("ipoib0")
    );
    let c = from_str(&format!("{IFACE}[interface.tun]\n"), FILE).unwrap();
    assert_eq!(
        c.interfaces[0].tun.as_ref().map(|t| t.name.as_str()),
        Some("ib0")
    );
    assert!(from_str(IFACE, FILE).unwrap().interfaces[0].tun.is_none());
    // check-config prints it back.
    let printed = from_str(&format!("{IFACE}tun = {{ name = \"t0\" }}\n"), FILE)
        .unwrap()
        .to_toml();
    assert!(printed.contains("tun = { name = \"t0\" }"), "{printed}");

    let src = format!("{IFACE}tun = {{ name = \"no/slash\" }}\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"no/slash\"",
        0,
        "interface[0].tun.name",
        &["1..=15 characters", "got \"no/slash\""],
    );

    let src = format!("{IFACE}[interface.tun]\nname = \"a\"\nqueues = 2\n");
    check(
        &src,
        ErrorKind::Schema,
        "queues",
        0,
        "interface[0].tun.queues",
        &["unknown key", "`name`"],
    );

    let src = format!("{IFACE}tun = \"ipoib0\"\n");
    check(
        &src,
        ErrorKind::Schema,
        "\"ipoib0\"",
        0,
        "interface[0].tun",
        &["a table like { name = \"ipoib0\" }"],
    );

    // One kernel device per interface: a default name can clash too.
    let src = format!(
        "{IFACE}tun = {{ name = \"ib1\" }}\n[[interface]]\nname = \"ib1\"\nport = 2\ntun = {{}}\n"
    );
    check(
        &src,
        ErrorKind::Invalid,
        "\"ib1\"",
        1,
        "interface[1].tun.name",
        &["unique TUN device name", "interface[0]"],
    );
}

#[test]
fn metrics_listen_needs_an_address_and_port() {
    let src = format!("{IFACE}[metrics]\nlisten = \"localhost\"\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"localhost\"",
        0,
        "metrics.listen",
        &["IP address and port", "got \"localhost\""],
    );
    let ok = from_str(
        &format!("{IFACE}[metrics]\nlisten = \"[::1]:9464\"\n"),
        FILE,
    )
    .unwrap();
    assert_eq!(ok.metrics.listen, Some("[::1]:9464".parse().unwrap()));
    // Printed by check-config and read back.
    let again = from_str(&ok.to_toml(), FILE).unwrap();
    assert_eq!(again, ok);
}

#[test]
fn verbs_keys_are_checked() {
    let head = "[provider]\nkind = \"verbs\"\n[provider.verbs]\n";
    check(
        &format!("{head}port = 0\n{IFACE}"),
        ErrorKind::Invalid,
        "0",
        0,
        "provider.verbs.port",
        &["1..=255"],
    );
    check(
        &format!("{head}gid_index = 300\n{IFACE}"),
        ErrorKind::Invalid,
        "300",
        0,
        "provider.verbs.gid_index",
        &["0..=255"],
    );
    check(
        &format!("{head}device = \"rxe 0\"\n{IFACE}"),
        ErrorKind::Invalid,
        "\"rxe 0\"",
        0,
        "provider.verbs.device",
        &["netdev:IFACE"],
    );
    let ok = from_str(
        &format!("{head}device = \"netdev:eth0\"\ngid_index = 1\n{IFACE}"),
        FILE,
    )
    .expect("valid verbs section");
    assert_eq!(
        (
            ok.provider.verbs.device.as_str(),
            ok.provider.verbs.gid_index
        ),
        ("netdev:eth0", 1)
    );
}

#[test]
fn queues_need_an_lcore_each_and_the_verbs_or_rocev2_provider() {
    let verbs = "[provider]\nkind = \"verbs\"\n";
    let src = format!("[dataplane]\nlcores = [0, 1]\n{verbs}{IFACE}queues = 3\n");
    check(
        &src,
        ErrorKind::Invalid,
        "3",
        0,
        "interface[0].queues",
        &["1..=2", "dataplane.lcores has 2", "got 3"],
    );
    let src = format!("[dataplane]\nlcores = [0, 1]\n{IFACE}queues = 2\n");
    check(
        &src,
        ErrorKind::Invalid,
        "2",
        0,
        "interface[0].queues",
        &["provider.kind = \"verbs\" or \"rocev2\""],
    );
    let ok = format!("[dataplane]\nlcores = [0, 1]\n{verbs}{IFACE}queues = 2\n");
    let c = ipoib_config::from_str(&ok, "q.toml").unwrap();
    assert_eq!(c.interfaces[0].queues, 2);
    let rocev2 = "[provider]\nkind = \"rocev2\"\n";
    let ok = format!(
        "[dataplane]\nlcores = [0, 1]\n{rocev2}{IFACE}local_ip = \"10.9.0.1\"\nqueues = 2\n"
    );
    let c = ipoib_config::from_str(&ok, "q.toml").unwrap();
    assert_eq!(c.interfaces[0].queues, 2);
}

#[test]
fn ipv6_group_range_must_be_an_admin_scoped_network_without_the_broadcast_group() {
    for bad in [
        "239.255.0.0/16",
        "10.0.0.0/8",
        "239.254.0.1/16",
        "239.1.2.0/25",
        "239.0.0.0/7",
        "239.254.0.0",
        "yes",
    ] {
        let src = format!(
            "{ROCE}[provider.rocev2]\nipv6_group_range = \"{bad}\"\n{IFACE}local_ip = \"10.0.0.1\"\n"
        );
        check(
            &src,
            ErrorKind::Invalid,
            &format!("\"{bad}\""),
            0,
            "provider.rocev2.ipv6_group_range",
            &["239.0.0.0/8", "239.255.255.255", "\"\" (off)"],
        );
    }
    let ok = format!(
        "{ROCE}[provider.rocev2]\nipv6_group_range = \"239.7.0.0/24\"\n{IFACE}local_ip = \"10.0.0.1\"\nipv6 = [\"fd00::1/64\"]\n"
    );
    let c = ipoib_config::from_str(&ok, FILE).unwrap();
    let r = c.provider.rocev2.ipv6_group_range.unwrap();
    assert_eq!(
        (r.addr.to_string(), r.prefix),
        ("239.7.0.0".to_string(), 24)
    );
}

#[test]
fn ipv6_on_an_ipv4_underlay_needs_the_group_range() {
    let off = format!("{ROCE}[provider.rocev2]\nipv6_group_range = \"\"\n");
    let src = format!("{off}{IFACE}local_ip = \"10.0.0.1\"\nipv6 = [\"fd00::1/64\"]\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"fd00::1/64\"",
        0,
        "interface[0].ipv6[0]",
        &[
            "IPv4 underlay",
            "provider.rocev2.ipv6_group_range",
            "IPv6 address",
        ],
    );
    let src =
        format!("{off}{IFACE}local_ip = \"10.0.0.1\"\ngroups = [\"239.1.1.1\", \"ff12::9\"]\n");
    check(
        &src,
        ErrorKind::Invalid,
        "\"ff12::9\"",
        0,
        "interface[0].groups[1]",
        &["IPv4 underlay"],
    );
    // An IPv6 underlay, or no IPv6 at all, needs no range.
    let v6 = format!("{off}{IFACE}local_ip = \"fd01::1\"\nipv6 = [\"fd00::1/64\"]\n");
    assert!(ipoib_config::from_str(&v6, FILE).is_ok());
    let v4 = format!("{off}{IFACE}local_ip = \"10.0.0.1\"\nipv4 = [\"10.1.0.1/24\"]\n");
    assert!(ipoib_config::from_str(&v4, FILE).is_ok());
}

#[test]
fn ipv4_groups_may_not_lie_in_the_ipv6_group_range() {
    let src = format!(
        "{ROCE}{IFACE}local_ip = \"10.0.0.1\"\ngroups = [\"239.1.1.1\"]\nsendonly = [\"239.254.3.4\"]\n"
    );
    check(
        &src,
        ErrorKind::Invalid,
        "\"239.254.3.4\"",
        0,
        "interface[0].sendonly[0]",
        &[
            "outside provider.rocev2.ipv6_group_range 239.254.0.0/16",
            "got 239.254.3.4",
        ],
    );
}
