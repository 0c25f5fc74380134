//! The scenario file: which hosts, which streams, which phases. One file
//! makes a benchmark reproducible. Every error is one line naming the file.

use ipoib_dataplane::pktgen::{FieldRange, Ranges};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// "fabric" or "null"; default: the hosts configuration's provider.
    pub provider: Option<String>,
    /// Hosts configuration, relative to the scenario file; default: the embedded one.
    pub config: Option<PathBuf>,
    /// Link rate that `rate_pct` refers to, in Gb/s of IP traffic.
    pub link_gbps: Option<f64>,
    #[serde(default)]
    pub fabric: FabricOverrides,
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamDef>,
    #[serde(default, rename = "phase")]
    pub phases: Vec<PhaseDef>,
}

/// Fault injection on the soft fabric for the whole run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricOverrides {
    pub loss: Option<f64>,
    pub reorder: Option<f64>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDef {
    /// Default "s<index>".
    pub name: Option<String>,
    /// Sending interface; its first address of the destination's family is the source.
    pub from: String,
    /// Unicast, multicast or send-only multicast: the datapath routes by address.
    /// Required unless `pcap` is given.
    pub to: Option<IpAddr>,
    /// Replay this capture (LINKTYPE_IPOIB 242 or raw IP) byte for byte
    /// instead of generating stamped packets; relative to the scenario file.
    pub pcap: Option<PathBuf>,
    /// Replay timing: "recorded" (default) or "fast".
    pub pcap_timing: Option<String>,
    /// Replay passes over the capture, at least 1 (default 1).
    pub loops: Option<u64>,
    /// IP packet bytes (default 64, raised to the smallest that holds a stamp).
    pub size: Option<usize>,
    /// "single" (default), "range", "random" or "sequence".
    pub mode: Option<String>,
    pub seed: Option<u64>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// At most one of the three; none = as fast as possible.
    pub rate_pps: Option<f64>,
    pub rate_bps: Option<f64>,
    pub rate_pct: Option<f64>,
    /// Packets per paced burst, 1..=32 (default 32).
    pub burst: Option<usize>,
    /// Per-stream limits; a phase's limits apply where these are absent.
    pub count: Option<u64>,
    pub duration_s: Option<f64>,
    /// "one-way" (default) or "rtt": probes reflected by the sink give
    /// round-trip times on the sender's clock.
    pub latency: Option<String>,
    /// Probes per second with `latency = "rtt"` (default 1000, at most 10000).
    pub probe_pps: Option<f64>,
    #[serde(default)]
    pub range: RangeDefs,
    #[serde(default, rename = "template")]
    pub templates: Vec<TemplateDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeDefs {
    pub src: Option<AddrRangeDef>,
    pub dst: Option<AddrRangeDef>,
    pub src_port: Option<NumRangeDef>,
    pub dst_port: Option<NumRangeDef>,
    pub size: Option<NumRangeDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrRangeDef {
    pub min: IpAddr,
    pub max: IpAddr,
    pub step: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumRangeDef {
    pub min: u64,
    pub max: u64,
    pub step: Option<u64>,
}

/// One packet of a sequence-mode stream; the source is `from`'s address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDef {
    pub to: IpAddr,
    pub size: Option<usize>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseDef {
    pub name: Option<String>,
    /// Measured seconds per stream (default 5 unless a count is given).
    pub duration_s: Option<f64>,
    /// Measured packets per stream.
    pub count: Option<u64>,
    /// Seconds sent before measurement starts, left out of the results.
    pub warmup_s: Option<f64>,
    /// Multiplies every stream's rate (default 1).
    pub rate_scale: Option<f64>,
    /// Names of the streams that run in this phase (default all).
    pub streams: Option<Vec<String>>,
}

fn addr_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl AddrRangeDef {
    pub fn to_range(&self) -> Result<FieldRange, String> {
        if self.min.is_ipv4() != self.max.is_ipv4() {
            return Err(format!(
                "range {}..{}: address families differ",
                self.min, self.max
            ));
        }
        FieldRange::new(
            addr_u128(self.min),
            addr_u128(self.max),
            u128::from(self.step.unwrap_or(1)),
        )
    }
}

impl NumRangeDef {
    pub fn to_range(&self) -> Result<FieldRange, String> {
        FieldRange::new(
            u128::from(self.min),
            u128::from(self.max),
            u128::from(self.step.unwrap_or(1)),
        )
    }
}

impl RangeDefs {
    pub fn to_ranges(&self) -> Result<Ranges, String> {
        Ok(Ranges {
            src: self.src.as_ref().map(AddrRangeDef::to_range).transpose()?,
            dst: self.dst.as_ref().map(AddrRangeDef::to_range).transpose()?,
            src_port: self
                .src_port
                .as_ref()
                .map(NumRangeDef::to_range)
                .transpose()?,
            dst_port: self
                .dst_port
                .as_ref()
                .map(NumRangeDef::to_range)
                .transpose()?,
            size: self.size.as_ref().map(NumRangeDef::to_range).transpose()?,
        })
    }
    pub fn is_empty(&self) -> bool {
        self.src.is_none()
            && self.dst.is_none()
            && self.src_port.is_none()
            && self.dst_port.is_none()
            && self.size.is_none()
    }
}

/// Parses a range given on the command line: `MIN-MAX` or `MIN-MAX/STEP`.
pub fn parse_num_range(s: &str) -> Result<NumRangeDef, String> {
    let (span, step) = match s.split_once('/') {
        Some((a, b)) => (
            a,
            Some(b.trim().parse().map_err(|_| format!("bad step in {s:?}"))?),
        ),
        None => (s, None),
    };
    let (a, b) = span
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX[/STEP], got {s:?}"))?;
    let n = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| format!("bad number in {s:?}"))
    };
    Ok(NumRangeDef {
        min: n(a)?,
        max: n(b)?,
        step,
    })
}

/// Parses an address range on the command line: `MIN,MAX` or `MIN,MAX/STEP`
/// (a comma, which no address contains).
pub fn parse_addr_range(s: &str) -> Result<AddrRangeDef, String> {
    let (span, step) = match s.split_once('/') {
        Some((a, b)) => (
            a,
            Some(b.trim().parse().map_err(|_| format!("bad step in {s:?}"))?),
        ),
        None => (s, None),
    };
    let (a, b) = span
        .split_once(',')
        .ok_or_else(|| format!("expected MIN,MAX[/STEP], got {s:?}"))?;
    let ip = |x: &str| {
        x.trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("bad address in {s:?}"))
    };
    Ok(AddrRangeDef {
        min: ip(a)?,
        max: ip(b)?,
        step,
    })
}

/// One line, with the line number where TOML reports one.
fn toml_error(e: &toml::de::Error, src: &str, file: &str) -> String {
    let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let line = src[..span.start.min(src.len())].matches('\n').count() + 1;
            format!("{file}:{line}: {msg}")
        }
        None => format!("{file}: {msg}"),
    }
}

impl Scenario {
    pub fn parse(src: &str, file: &str) -> Result<Scenario, String> {
        toml::from_str(src).map_err(|e| toml_error(&e, src, file))
    }

    /// Reads a scenario; a relative `config` path becomes relative to the file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
        let mut s = Scenario::parse(&src, &file)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(c) = &s.config {
            if c.is_relative() {
                s.config = Some(dir.join(c));
            }
        }
        for st in &mut s.streams {
            if let Some(p) = &st.pcap {
                if p.is_relative() {
                    st.pcap = Some(dir.join(p));
                }
            }
        }
        Ok(s)
    }
}
