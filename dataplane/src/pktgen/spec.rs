//! What a stream sends: addresses, ports and sizes, how they vary from packet
//! to packet (single, range, random, sequence), how fast and for how long.

use super::stamp::STAMP_LEN;
use std::net::IpAddr;
use std::time::Duration;

/// `min..=max` by `step`; after `max` the next value wraps to `min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRange {
    pub min: u128,
    pub max: u128,
    pub step: u128,
}

impl FieldRange {
    pub fn new(min: u128, max: u128, step: u128) -> Result<Self, String> {
        if min > max {
            return Err(format!("range {min}..{max}: min is above max"));
        }
        if step == 0 {
            return Err("range step must be at least 1".into());
        }
        Ok(FieldRange { min, max, step })
    }
    /// How many distinct values the range takes.
    pub fn count(&self) -> u128 {
        (self.max - self.min) / self.step + 1
    }
    /// The value after `v`, wrapping around.
    #[inline]
    pub fn next(&self, v: u128) -> u128 {
        match v.checked_add(self.step) {
            Some(n) if n <= self.max => n,
            _ => self.min,
        }
    }
    /// The `i`-th value (modulo the count).
    #[inline]
    pub fn nth(&self, i: u128) -> u128 {
        self.min + (i % self.count()) * self.step
    }
}

/// Which fields vary in range and random modes; `None` keeps the base value.
/// Address ranges are numeric (IPv4 as u32, IPv6 as u128) and must stay in
/// the family of the stream's base address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges {
    pub src: Option<FieldRange>,
    pub dst: Option<FieldRange>,
    pub src_port: Option<FieldRange>,
    pub dst_port: Option<FieldRange>,
    pub size: Option<FieldRange>,
}

/// One packet's variable fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Whole IP packet in bytes.
    pub size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every packet is the base template.
    Single,
    /// Every ranged field steps by its own step per packet, wrapping around.
    Range(Ranges),
    /// Every ranged field takes a seeded pseudo-random value on its step grid.
    Random { seed: u64, ranges: Ranges },
    /// The templates in turn, over and over.
    Sequence(Vec<Template>),
}

/// How fast a stream sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as the TX ring takes packets.
    Unlimited,
    Pps(f64),
    /// IP bits per second (headers and payload, not the IPoIB/IB framing).
    Bps(f64),
    /// Percent of a link of `link_bps` IP bits per second.
    LinkPercent {
        pct: f64,
        link_bps: f64,
    },
}

#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Carried in every stamp; the sink keeps one record per id.
    pub id: u16,
    /// The base template (and the only one in single mode).
    pub base: Template,
    pub mode: Mode,
    pub rate: Rate,
    /// Measured packets to send (after warm-up); `None` = no count limit.
    pub count: Option<u64>,
    /// Measured time to send for (after warm-up); `None` = no time limit.
    pub duration: Option<Duration>,
    /// Sent before measurement starts, flagged so the sink leaves them out.
    pub warmup: Duration,
    /// Packets per paced burst (1..=32).
    pub burst: usize,
    /// Copies of the end-of-stream packet (stamp flag END, carrying the
    /// measured count) sent after the last one, for sinks in another
    /// process; 0 when the sinks read the generator's counters directly.
    pub announce_end: u32,
    /// IP bytes of each end-of-stream copy; 0 = the base size. With room for
    /// the stamp and an `EndReport` the copies carry the sender's figures.
    pub end_size: usize,
    /// Latency probes per second (stamp flag PROBE on one packet of a burst
    /// when one is due, measured packets only): the sink reflects each back
    /// for a round-trip time on this host's clock. `None`: no probes.
    pub probe_pps: Option<f64>,
}

/// Probes per second when round-trip latency is asked for without a rate.
pub const DEFAULT_PROBE_PPS: f64 = 1000.0;
/// At most this many probes per second: reflections load the return path.
pub const MAX_PROBE_PPS: f64 = 10_000.0;

impl StreamSpec {
    /// A single-mode stream of `size`-byte packets, unlimited rate, no limits.
    pub fn single(id: u16, src: IpAddr, dst: IpAddr, size: usize) -> StreamSpec {
        StreamSpec {
            id,
            base: Template {
                src,
                dst,
                src_port: 9000,
                dst_port: 9000,
                size,
            },
            mode: Mode::Single,
            rate: Rate::Unlimited,
            count: None,
            duration: None,
            warmup: Duration::ZERO,
            burst: crate::provider::BURST,
            announce_end: 0,
            end_size: 0,
            probe_pps: None,
        }
    }

    /// Checks that every packet the stream can produce is well formed.
    pub fn validate(&self, max_size: usize) -> Result<(), String> {
        let id = self.id;
        if self.burst == 0 || self.burst > crate::provider::BURST {
            return Err(format!(
                "stream {id}: burst {} out of 1..={}",
                self.burst,
                crate::provider::BURST
            ));
        }
        let check =
            |t: &Template| check_template(t, max_size).map_err(|e| format!("stream {id}: {e}"));
        check(&self.base)?;
        if self.end_size != 0 {
            check(&Template {
                size: self.end_size,
                ..self.base
            })?;
        }
        let ranges = match &self.mode {
            Mode::Single => None,
            Mode::Range(r) | Mode::Random { ranges: r, .. } => Some(r),
            Mode::Sequence(ts) => {
                if ts.is_empty() {
                    return Err(format!(
                        "stream {id}: sequence mode needs at least one template"
                    ));
                }
                ts.iter().try_for_each(check)?;
                None
            }
        };
        if let Some(r) = ranges {
            let v4 = self.base.src.is_ipv4();
            let addr_max = if v4 { u32::MAX as u128 } else { u128::MAX };
            for (name, f, max) in [
                ("src", r.src, addr_max),
                ("dst", r.dst, addr_max),
                ("src_port", r.src_port, 65535),
                ("dst_port", r.dst_port, 65535),
            ] {
                if f.is_some_and(|f| f.max > max) {
                    return Err(format!(
                        "stream {id}: {name} range goes past the field's maximum"
                    ));
                }
            }
            if let Some(s) = r.size {
                let lo = Template {
                    size: s.min as usize,
                    ..self.base
                };
                let hi = Template {
                    size: s.max as usize,
                    ..self.base
                };
                check(&lo)?;
                check(&hi)?;
            }
        }
        if let Some(p) = self.probe_pps {
            if !(p > 0.0 && p <= MAX_PROBE_PPS) {
                return Err(format!(
                    "stream {id}: probe rate {p} out of (0, {MAX_PROBE_PPS}] per second"
                ));
            }
        }
        match self.rate {
            Rate::Pps(x) | Rate::Bps(x) if !(x.is_finite() && x > 0.0) => {
                Err(format!("stream {id}: rate must be a positive number"))
            }
            Rate::LinkPercent { pct, link_bps }
                if !(pct > 0.0 && pct <= 100.0 && link_bps.is_finite() && link_bps > 0.0) =>
            {
                Err(format!("stream {id}: link percentage must be in (0, 100]"))
            }
            _ => Ok(()),
        }
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Single => "single",
            Mode::Range(_) => "range",
            Mode::Random { .. } => "random",
            Mode::Sequence(_) => "sequence",
        }
    }

    /// Mean IP packet size over what the stream produces (for bit rates).
    pub fn mean_size(&self) -> f64 {
        match &self.mode {
            Mode::Single => self.base.size as f64,
            Mode::Range(r) | Mode::Random { ranges: r, .. } => match r.size {
                Some(s) => {
                    let n = s.count();
                    (s.min as f64) + (n - 1) as f64 * s.step as f64 / 2.0
                }
                None => self.base.size as f64,
            },
            Mode::Sequence(ts) => ts.iter().map(|t| t.size as f64).sum::<f64>() / ts.len() as f64,
        }
    }

    /// The target in packets per second; `None` for unlimited.
    pub fn target_pps(&self) -> Option<f64> {
        let bits = self.mean_size() * 8.0;
        match self.rate {
            Rate::Unlimited => None,
            Rate::Pps(p) => Some(p),
            Rate::Bps(b) => Some(b / bits),
            Rate::LinkPercent { pct, link_bps } => Some(link_bps * pct / 100.0 / bits),
        }
    }
}

/// End-of-stream copies of `size` bytes carry an `EndReport` after the stamp.
pub fn end_report_fits(v4: bool, size: usize) -> bool {
    size >= min_size(v4) + super::stamp::END_REPORT_LEN
}

/// Smallest IP packet that holds the headers and the stamp.
pub fn min_size(v4: bool) -> usize {
    (if v4 { 20 } else { 40 }) + 8 + STAMP_LEN
}

fn check_template(t: &Template, max_size: usize) -> Result<(), String> {
    if t.src.is_ipv4() != t.dst.is_ipv4() {
        return Err(format!("{} -> {}: address families differ", t.src, t.dst));
    }
    let min = min_size(t.src.is_ipv4());
    let max = max_size.min(u16::MAX as usize);
    if t.size < min || t.size > max {
        return Err(format!("packet size {} out of {min}..={max}", t.size));
    }
    Ok(())
}
