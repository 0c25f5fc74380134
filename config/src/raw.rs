//! The TOML as written: serde structs that reject unknown keys and keep the byte
//! span of every value that validation may complain about.
//!
//! Integers are read as `i64` (TOML's integer type) so that range errors are ours
//! to word; `validate` turns these into the typed `model`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::model::{Hugepages, LogLevel, ProviderKind};

pub(crate) type Int = Spanned<i64>;
pub(crate) type Float = Spanned<f64>;
pub(crate) type Str = Spanned<String>;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub dataplane: RawDataplane,
    pub provider: RawProvider,
    /// Spanned so that a missing `port` can point at the table.
    pub interface: Vec<Spanned<RawInterface>>,
    pub traffic: Vec<RawTraffic>,
    pub control: RawControl,
    pub run: RawRun,
    pub log: RawLog,
    pub metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawDataplane {
    pub lcores: Option<Spanned<Vec<Int>>>,
    pub burst: Option<Int>,
    pub tx_ring_size: Option<Int>,
    pub rx_ring_size: Option<Int>,
    pub mempool_size: Option<Int>,
    pub mempool_cache: Option<Int>,
    pub buf_size: Option<Int>,
    pub hugepages: Option<Hugepages>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub kind: Option<ProviderKind>,
    pub fabric: RawFabric,
    pub rocev2: RawRocev2,
    pub verbs: RawVerbs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawVerbs {
    pub device: Option<Str>,
    pub port: Option<Int>,
    pub gid_index: Option<Int>,
    pub pkey_index: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRocev2 {
    pub port: Option<Int>,
    pub multicast_loop: Option<bool>,
    pub gso: Option<bool>,
    pub gro: Option<bool>,
    pub ipv6_group_range: Option<Str>,
    pub ib_mtu: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawFabric {
    pub ib_mtu: Option<Int>,
    pub loss: Option<Float>,
    pub reorder: Option<Float>,
    pub seed: Option<Spanned<U64Literal>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInterface {
    pub name: Str,
    /// Required unless `parent` is set (a child shares its parent's port).
    #[serde(default)]
    pub port: Option<Int>,
    #[serde(default)]
    pub parent: Option<Str>,
    #[serde(default)]
    pub lcore: Option<Int>,
    #[serde(default)]
    pub queues: Option<Int>,
    #[serde(default)]
    pub pkey: Option<Int>,
    #[serde(default)]
    pub qkey: Option<Int>,
    #[serde(default)]
    pub mtu: Option<Int>,
    #[serde(default)]
    pub guid: Option<Spanned<U64Literal>>,
    #[serde(default)]
    pub ipv4: Vec<Str>,
    #[serde(default)]
    pub ipv6: Vec<Str>,
    #[serde(default)]
    pub groups: Vec<Str>,
    #[serde(default)]
    pub sendonly: Vec<Str>,
    #[serde(default)]
    pub neighbour: Vec<RawNeighbour>,
    #[serde(default)]
    pub local_ip: Option<Str>,
    #[serde(default)]
    pub tun: Option<RawTun>,
}

/// `[interface.tun]` (or `tun = { ... }`): a kernel TUN device for the interface.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTun {
    pub name: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNeighbour {
    pub ip: Str,
    pub qpn: Int,
    pub gid: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTraffic {
    pub from: Str,
    pub to: Str,
    #[serde(default)]
    pub size: Option<Int>,
    #[serde(default)]
    pub rate_pps: Option<Int>,
    #[serde(default)]
    pub dst_port: Option<Int>,
    #[serde(default)]
    pub src_port: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawControl {
    pub join_timeout_ms: Option<Int>,
    pub backoff_max_s: Option<Int>,
    pub sendonly_gc_s: Option<Int>,
    pub request_queue: Option<Int>,
    pub neigh_queue: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRun {
    pub duration_s: Option<Float>,
    pub stats_interval_ms: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub listen: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Option<LogLevel>,
}

/// A full-range `u64` as TOML can carry it: an integer (which TOML caps at
/// `i64::MAX`) or, for larger values, a `"0x..."` hex string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum U64Literal {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for U64Literal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LiteralVisitor;

        impl Visitor<'_> for LiteralVisitor {
            type Value = U64Literal;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a \"0x...\" hex string")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64Literal, E> {
                Ok(U64Literal::Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<U64Literal, E> {
                i64::try_from(v)
                    .map(U64Literal::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<U64Literal, E> {
                Ok(U64Literal::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(LiteralVisitor)
    }
}
