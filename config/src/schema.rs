//! Allowed values of every key, in one place: validation checks against these
//! and type errors quote them, so both say the same thing.

use std::fmt;

/// An inclusive integer range, printed in hex for values that are usually written in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntRange {
    pub lo: i64,
    pub hi: i64,
    pub hex: bool,
}

impl IntRange {
    pub const fn dec(lo: i64, hi: i64) -> Self {
        IntRange { lo, hi, hex: false }
    }

    pub const fn hex(lo: i64, hi: i64) -> Self {
        IntRange { lo, hi, hex: true }
    }

    pub fn contains(&self, v: i64) -> bool {
        (self.lo..=self.hi).contains(&v)
    }

    pub fn fmt_value(&self, v: i64) -> String {
        if self.hex && v >= 10 {
            format!("0x{v:X}")
        } else {
            v.to_string()
        }
    }
}

impl fmt::Display for IntRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hi == i64::MAX {
            write!(f, ">= {}", self.fmt_value(self.lo))
        } else {
            write!(
                f,
                "{}..={}",
                self.fmt_value(self.lo),
                self.fmt_value(self.hi)
            )
        }
    }
}

/// CPU ids: glibc's `CPU_SETSIZE` is 1024.
pub(crate) const LCORE_ID: IntRange = IntRange::dec(0, 1023);
pub(crate) const BURST: IntRange = IntRange::dec(1, 256);
pub(crate) const RING_SIZE: IntRange = IntRange::dec(64, 65536);
pub(crate) const MEMPOOL_SIZE: IntRange = IntRange::dec(256, 1_048_576);
pub(crate) const MEMPOOL_CACHE: IntRange = IntRange::dec(0, 512);
pub(crate) const BUF_SIZE: IntRange = IntRange::dec(256, 16384);
pub(crate) const IB_MTUS: [i64; 5] = [256, 512, 1024, 2048, 4096];
/// Bytes of the IPoIB encapsulation header (RFC 4391) inside the IB MTU.
pub(crate) const IPOIB_HEADER: i64 = 4;
pub(crate) const PORT: IntRange = IntRange::hex(1, 0xBFFF);
pub(crate) const PKEY: IntRange = IntRange::hex(1, 0xFFFF);
pub(crate) const QKEY: IntRange = IntRange::hex(0, 0x7FFF_FFFF);
pub(crate) const MTU: IntRange = IntRange::dec(68, 4092);
/// UD queue pairs per interface.
pub(crate) const QUEUES: IntRange = IntRange::dec(1, 16);
pub(crate) const QPN: IntRange = IntRange::hex(1, 0xFF_FFFF);
pub(crate) const NAME_MAX: usize = 15;
pub(crate) const PACKET_MIN_V4: i64 = 20 + 8;
pub(crate) const PACKET_MIN_V6: i64 = 40 + 8;
pub(crate) const RATE_PPS: IntRange = IntRange::dec(0, i64::MAX);
pub(crate) const UDP_PORT: IntRange = IntRange::dec(1, 65535);
pub(crate) const JOIN_TIMEOUT_MS: IntRange = IntRange::dec(10, 60000);
pub(crate) const BACKOFF_MAX_S: IntRange = IntRange::dec(1, 300);
pub(crate) const SENDONLY_GC_S: IntRange = IntRange::dec(1, 86400);
pub(crate) const REQUEST_QUEUE: IntRange = IntRange::dec(16, 65536);
pub(crate) const NEIGH_QUEUE: IntRange = IntRange::dec(1, 64);
pub(crate) const DURATION_S: (f64, f64) = (0.0, 86400.0);
pub(crate) const STATS_INTERVAL_MS: IntRange = IntRange::dec(100, 60000);
pub(crate) const PROBABILITY: (f64, f64) = (0.0, 1.0);
pub(crate) const VERBS_PORT: IntRange = IntRange::dec(1, 255);
pub(crate) const GID_INDEX: IntRange = IntRange::dec(0, 255);
pub(crate) const PKEY_INDEX: IntRange = IntRange::dec(0, 65535);
pub(crate) const DEVICE_MAX: usize = 64;
pub(crate) const DEVICE_EXPECTED: &str =
    "a device name, a node GUID like \"0002:c903:0000:0001\", or \"netdev:IFACE\" (at most 64 printable characters)";

pub(crate) const IPV6_GROUP_RANGE_EXPECTED: &str =
    "\"\" (off) or an IPv4 network /8../24 inside 239.0.0.0/8 without 239.255.255.255, like \"239.254.0.0/16\"";

pub(crate) const U64_EXPECTED: &str =
    "an integer >= 0, or a hex string \"0x...\" for values above 0x7FFFFFFFFFFFFFFF";
pub(crate) const GUID_EXPECTED: &str =
    "a non-zero integer, or a hex string \"0x...\" for values above 0x7FFFFFFFFFFFFFFF";

/// What a key accepts, for messages about values of the wrong type. `pattern` is
/// a key path with array indices removed (`interface.neighbour.qpn`); a trailing
/// `[]` asks about one element of an array.
pub(crate) fn expected_for(pattern: &str) -> Option<String> {
    let int = |r: IntRange| Some(format!("an integer in {r}"));
    let pow2 = |r: IntRange| Some(format!("a power of two in {r}"));
    let float = |(lo, hi): (f64, f64)| Some(format!("a number in {lo:?}..={hi:?}"));
    let words = |w: &[&str]| {
        let quoted: Vec<String> = w.iter().map(|w| format!("\"{w}\"")).collect();
        Some(format!("one of {}", quoted.join(", ")))
    };
    match pattern {
        "dataplane" | "provider" | "provider.fabric" | "provider.rocev2" | "provider.verbs"
        | "control" | "run" | "log" => Some("a table".into()),
        "interface" | "traffic" | "interface.neighbour" => Some("an array of tables".into()),
        "dataplane.lcores" => Some(format!("an array of CPU core ids in {LCORE_ID}")),
        "dataplane.lcores[]" => Some(format!("a CPU core id in {LCORE_ID}")),
        "interface[]" | "traffic[]" | "interface.neighbour[]" => Some("a table".into()),
        "interface.ipv4[]" => Some("an IPv4 CIDR string like \"10.0.0.1/24\"".into()),
        "interface.ipv6[]" => Some("an IPv6 CIDR string like \"fd00::1/64\"".into()),
        "interface.groups[]" | "interface.sendonly[]" => {
            Some("a multicast address string like \"239.1.1.1\"".into())
        }
        "dataplane.burst" => int(BURST),
        "dataplane.tx_ring_size" | "dataplane.rx_ring_size" => pow2(RING_SIZE),
        "dataplane.mempool_size" => int(MEMPOOL_SIZE),
        "dataplane.mempool_cache" => Some(format!(
            "an integer in {MEMPOOL_CACHE} and at most mempool_size / 4"
        )),
        "dataplane.buf_size" => int(BUF_SIZE),
        "dataplane.hugepages" => words(&["auto", "on", "off"]),
        "provider.kind" => words(&["null", "fabric", "rocev2", "verbs"]),
        "provider.fabric.ib_mtu" => Some(ib_mtu_expected()),
        "provider.fabric.loss" | "provider.fabric.reorder" => float(PROBABILITY),
        "provider.fabric.seed" => Some(U64_EXPECTED.into()),
        "provider.rocev2.port" => int(UDP_PORT),
        "provider.rocev2.multicast_loop" | "provider.rocev2.gso" | "provider.rocev2.gro" => {
            Some("true or false".into())
        }
        "provider.rocev2.ib_mtu" => Some(ib_mtu_expected()),
        "provider.rocev2.ipv6_group_range" => Some(IPV6_GROUP_RANGE_EXPECTED.into()),
        "provider.verbs.device" => Some(DEVICE_EXPECTED.into()),
        "provider.verbs.port" => int(VERBS_PORT),
        "provider.verbs.gid_index" => int(GID_INDEX),
        "provider.verbs.pkey_index" => int(PKEY_INDEX),
        "interface.name" => Some(name_expected()),
        "interface.port" => int(PORT),
        "interface.parent" => Some("the name of a configured interface that is not a child".into()),
        "interface.lcore" => Some("an index into dataplane.lcores".into()),
        "interface.queues" => int(QUEUES),
        "interface.pkey" => Some(pkey_expected()),
        "interface.qkey" => Some(qkey_expected()),
        "interface.mtu" => int(MTU),
        "interface.guid" => Some(GUID_EXPECTED.into()),
        "interface.ipv4" => Some("an array of IPv4 CIDR strings like \"10.0.0.1/24\"".into()),
        "interface.ipv6" => Some("an array of IPv6 CIDR strings like \"fd00::1/64\"".into()),
        "interface.groups" | "interface.sendonly" => {
            Some("an array of multicast address strings like \"239.1.1.1\"".into())
        }
        "interface.neighbour.ip" | "interface.local_ip" => {
            Some("an IPv4 or IPv6 address string".into())
        }
        "interface.tun" => Some("a table like { name = \"ipoib0\" }".into()),
        "interface.tun.name" => Some(name_expected()),
        "interface.neighbour.qpn" => int(QPN),
        "interface.neighbour.gid" => Some(gid_expected()),
        "traffic.from" => Some("the name of a configured interface".into()),
        "traffic.to" => Some("an IPv4 or IPv6 address string".into()),
        "traffic.size" => Some(format!(
            "an integer in {PACKET_MIN_V4}..=mtu (IPv4) or {PACKET_MIN_V6}..=mtu (IPv6)"
        )),
        "traffic.rate_pps" => int(RATE_PPS),
        "traffic.dst_port" | "traffic.src_port" => int(UDP_PORT),
        "control.join_timeout_ms" => int(JOIN_TIMEOUT_MS),
        "control.backoff_max_s" => int(BACKOFF_MAX_S),
        "control.sendonly_gc_s" => int(SENDONLY_GC_S),
        "control.request_queue" => int(REQUEST_QUEUE),
        "control.neigh_queue" => int(NEIGH_QUEUE),
        "run.duration_s" => float(DURATION_S),
        "run.stats_interval_ms" => int(STATS_INTERVAL_MS),
        "log.level" => words(&["error", "warn", "info", "debug", "trace"]),
        _ => None,
    }
}

pub(crate) fn ib_mtu_expected() -> String {
    let values: Vec<String> = IB_MTUS.iter().map(i64::to_string).collect();
    format!("one of {}", values.join(", "))
}

pub(crate) fn name_expected() -> String {
    format!("1..={NAME_MAX} characters of [A-Za-z0-9_.-]")
}

pub(crate) fn pkey_expected() -> String {
    format!("an integer in {PKEY} with the low 15 bits non-zero")
}

pub(crate) fn qkey_expected() -> String {
    format!("an integer in {QKEY} (the high bit marks a controlled Q_Key)")
}

pub(crate) fn gid_expected() -> String {
    "a GID in IPv6 syntax like \"fe80::2:c903:0:1\"".into()
}

/// Every key the schema knows, as patterns; used to check the reference table.
#[cfg(test)]
pub(crate) const ALL_KEYS: &[&str] = &[
    "dataplane.lcores",
    "dataplane.burst",
    "dataplane.tx_ring_size",
    "dataplane.rx_ring_size",
    "dataplane.mempool_size",
    "dataplane.mempool_cache",
    "dataplane.buf_size",
    "dataplane.hugepages",
    "provider.kind",
    "provider.fabric.ib_mtu",
    "provider.fabric.loss",
    "provider.fabric.reorder",
    "provider.fabric.seed",
    "provider.rocev2.port",
    "provider.rocev2.multicast_loop",
    "provider.rocev2.gso",
    "provider.rocev2.gro",
    "provider.rocev2.ib_mtu",
    "provider.rocev2.ipv6_group_range",
    "provider.verbs.device",
    "provider.verbs.port",
    "provider.verbs.gid_index",
    "provider.verbs.pkey_index",
    "interface.name",
    "interface.port",
    "interface.parent",
    "interface.lcore",
    "interface.queues",
    "interface.pkey",
    "interface.qkey",
    "interface.mtu",
    "interface.guid",
    "interface.ipv4",
    "interface.ipv6",
    "interface.groups",
    "interface.sendonly",
    "interface.local_ip",
    "interface.tun",
    "interface.tun.name",
    "interface.neighbour.ip",
    "interface.neighbour.qpn",
    "interface.neighbour.gid",
    "traffic.from",
    "traffic.to",
    "traffic.size",
    "traffic.rate_pps",
    "traffic.dst_port",
    "traffic.src_port",
    "control.join_timeout_ms",
    "control.backoff_max_s",
    "control.sendonly_gc_s",
    "control.request_queue",
    "control.neigh_queue",
    "run.duration_s",
    "run.stats_interval_ms",
    "log.level",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_an_expectation() {
        for key in ALL_KEYS {
            assert!(expected_for(key).is_some(), "{key}");
        }
        assert_eq!(expected_for("nope"), None);
    }

    #[test]
    fn ranges_print_in_their_radix() {
        assert_eq!(PKEY.to_string(), "1..=0xFFFF");
        assert_eq!(BURST.to_string(), "1..=256");
        assert_eq!(RATE_PPS.to_string(), ">= 0");
    }

    #[test]
    fn reference_documents_every_key() {
        let reference = include_str!("../REFERENCE.md");
        for key in ALL_KEYS {
            assert!(
                reference.contains(&format!("`{key}`")),
                "REFERENCE.md lacks {key}"
            );
        }
    }
}
