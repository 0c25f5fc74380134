//! From flags and/or a scenario file to a checked plan: the hosts, the
//! streams as `StreamSpec`s, and the phases to run one after the other.

use super::args::PktgenArgs;
use super::scenario::{
    parse_addr_range, parse_num_range, PhaseDef, RangeDefs, Scenario, StreamDef,
};
use ipoib_config::{Config, Interface, ProviderKind};
use ipoib_dataplane::pktgen::stamp::END_REPORT_LEN;
use ipoib_dataplane::pktgen::{
    min_size, read_capture, Capture, Mode, Rate, StreamSpec, Template, DEFAULT_PROBE_PPS,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_SIZE: usize = 64;
const DEFAULT_PORT: u16 = 9000;
const DEFAULT_SECONDS: f64 = 5.0;
const DEFAULT_LINK_GBPS: f64 = 100.0;
/// Copies of the end-of-stream packet when packets leave the process.
const END_COPIES: u32 = 8;
const DEFAULT_SINK_STREAMS: u16 = 16;

/// A sink-role run: no generator, sinks on every interface.
#[derive(Debug, Clone, Copy)]
pub struct SinkRole {
    /// Stream ids `0..streams` are measured.
    pub streams: u16,
    /// Longest run; `None`: until every stream ended or a signal.
    pub max_seconds: Option<f64>,
}

pub struct Plan {
    pub provider: ProviderKind,
    pub cfg: Config,
    pub link_bps: f64,
    pub streams: Vec<StreamDef>,
    pub phases: Vec<PhaseDef>,
    pub sink: Option<SinkRole>,
    /// Per stream: the capture it replays, read once.
    captures: Vec<Option<Arc<Capture>>>,
}

/// A stream that replays a capture instead of generating.
pub struct ReplayPlan {
    pub capture: Arc<Capture>,
    pub recorded_timing: bool,
    pub loops: u64,
}

/// One stream as a phase runs it.
pub struct PlannedStream {
    pub name: String,
    /// Index of the sending interface in `cfg.interfaces`.
    pub iface: usize,
    pub spec: StreamSpec,
    /// What the destination is, for the report: unicast or multicast
    /// (a replay's first packet's destination).
    pub to: IpAddr,
    pub replay: Option<ReplayPlan>,
}

fn check_fraction(what: &str, v: Option<f64>) -> Result<(), String> {
    match v {
        Some(x) if !(0.0..=1.0).contains(&x) => Err(format!("{what}: expected 0.0..=1.0, got {x}")),
        _ => Ok(()),
    }
}

fn check_seconds(what: &str, v: Option<f64>, zero_ok: bool) -> Result<(), String> {
    match v {
        Some(x) if !(x.is_finite() && (x > 0.0 || zero_ok && x == 0.0) && x <= 86_400.0) => {
            Err(format!(
                "{what}: expected seconds in {}..=86400, got {x}",
                if zero_ok { "0" } else { "(0" }
            ))
        }
        _ => Ok(()),
    }
}

/// The stream the flags describe (one per `--to`).
fn streams_from_flags(a: &PktgenArgs, cfg: &Config) -> Result<Vec<StreamDef>, String> {
    let from = match &a.from {
        Some(f) => f.clone(),
        None => cfg
            .interfaces
            .first()
            .map(|i| i.name.clone())
            .ok_or("the configuration has no interface")?,
    };
    let iface = cfg
        .interface(&from)
        .ok_or_else(|| format!("--from: no interface named {from:?}"))?;
    if let Some(pcap) = &a.pcap {
        return Ok(vec![StreamDef {
            name: Some("replay".into()),
            from,
            to: None,
            pcap: Some(pcap.clone()),
            pcap_timing: Some(if a.pcap_fast { "fast" } else { "recorded" }.into()),
            loops: a.loops,
            size: None,
            mode: None,
            seed: None,
            src_port: None,
            dst_port: None,
            rate_pps: None,
            rate_bps: None,
            rate_pct: None,
            burst: None,
            count: None,
            duration_s: None,
            latency: None,
            probe_pps: None,
            range: RangeDefs::default(),
            templates: Vec::new(),
        }]);
    }
    let to = if a.to.is_empty() {
        // The next host's first address of a family the sender has.
        let peer = cfg
            .interfaces
            .iter()
            .filter(|i| i.name != from)
            .flat_map(|i| {
                let v4 = i
                    .ipv4
                    .first()
                    .map(|c| IpAddr::V4(c.addr))
                    .filter(|_| !iface.ipv4.is_empty());
                let v6 = i
                    .ipv6
                    .first()
                    .map(|c| IpAddr::V6(c.addr))
                    .filter(|_| !iface.ipv6.is_empty());
                v4.or(v6)
            })
            .next()
            .ok_or_else(|| format!("no other host to send to from {from}: give --to"))?;
        vec![peer]
    } else {
        a.to.clone()
    };
    let range = RangeDefs {
        src: None,
        dst: a
            .dst_range
            .as_deref()
            .map(parse_addr_range)
            .transpose()
            .map_err(|e| format!("--dst-range: {e}"))?,
        src_port: a
            .src_port_range
            .as_deref()
            .map(parse_num_range)
            .transpose()
            .map_err(|e| format!("--src-port-range: {e}"))?,
        dst_port: a
            .dst_port_range
            .as_deref()
            .map(parse_num_range)
            .transpose()
            .map_err(|e| format!("--dst-port-range: {e}"))?,
        size: a
            .size_range
            .as_deref()
            .map(parse_num_range)
            .transpose()
            .map_err(|e| format!("--size-range: {e}"))?,
    };
    let mode = match (&a.mode, range.is_empty()) {
        (Some(m), _) => Some(m.clone()),
        (None, false) => Some("range".to_string()),
        (None, true) => None,
    };
    Ok(to
        .into_iter()
        .map(|to| StreamDef {
            from: from.clone(),
            to: Some(to),
            pcap: None,
            pcap_timing: None,
            loops: None,
            size: a.size,
            mode: mode.clone(),
            seed: a.seed,
            rate_pps: a.rate_pps,
            rate_bps: a.rate_bps,
            rate_pct: a.rate_pct,
            burst: a.burst,
            latency: a.latency.clone(),
            probe_pps: a.probe_pps,
            range: range.clone(),
            name: None,
            src_port: None,
            dst_port: None,
            count: None,
            duration_s: None,
            templates: Vec::new(),
        })
        .collect())
}

/// A stream's probe rate: `None` for one-way latency only.
fn probes(d: &StreamDef, to: IpAddr) -> Result<Option<f64>, String> {
    match d.latency.as_deref().unwrap_or("one-way") {
        "one-way" if d.probe_pps.is_some() => Err("probe_pps needs latency = \"rtt\"".into()),
        "one-way" => Ok(None),
        "rtt" if to.is_multicast() => Err(format!(
            "latency rtt: {to} is multicast; probes are reflected to unicast senders only"
        )),
        "rtt" => Ok(Some(d.probe_pps.unwrap_or(DEFAULT_PROBE_PPS))),
        l => Err(format!("latency {l:?}: expected one-way or rtt")),
    }
}

pub fn plan(a: &PktgenArgs) -> Result<Plan, String> {
    let scenario = match &a.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::default(),
    };
    let cfg_path = a.config.clone().or(scenario.config.clone());
    let mut cfg = match &cfg_path {
        Some(p) => ipoib_config::load_file(p).map_err(|e| e.to_string())?,
        None => ipoib_config::embedded_default(),
    };
    // Plain flows of the configuration are not pktgen streams.
    cfg.traffic.clear();
    let provider = match a.provider.as_deref().or(scenario.provider.as_deref()) {
        None => cfg.provider.kind,
        Some("fabric") => ProviderKind::Fabric,
        Some("null") => ProviderKind::Null,
        Some("rocev2") => ProviderKind::Rocev2,
        Some("verbs") => ProviderKind::Verbs,
        Some(other) => {
            return Err(format!(
                "provider {other:?}: expected \"fabric\", \"null\", \"rocev2\" or \"verbs\""
            ))
        }
    };
    cfg.provider.kind = provider;
    let networked = matches!(provider, ProviderKind::Rocev2 | ProviderKind::Verbs);
    if a.sink && !networked {
        return Err(
            "--sink measures traffic from other processes: it needs the rocev2 or verbs provider"
                .into(),
        );
    }
    let f = &scenario.fabric;
    let (loss, reorder) = (a.loss.or(f.loss), a.reorder.or(f.reorder));
    if networked && (loss.is_some() || reorder.is_some()) {
        return Err(format!(
            "loss and reorder are injected by the fabric provider; on {} drop on the network (nft, tc)",
            provider.as_str()
        ));
    }
    if provider == ProviderKind::Rocev2 {
        if let Some(i) = cfg.interfaces.iter().find(|i| i.local_ip.is_none()) {
            return Err(format!(
                "interface {}: the rocev2 provider needs local_ip",
                i.name
            ));
        }
    }
    check_fraction("loss", loss)?;
    check_fraction("reorder", reorder)?;
    let fc = &mut cfg.provider.fabric;
    fc.loss = loss.unwrap_or(fc.loss);
    fc.reorder = reorder.unwrap_or(fc.reorder);
    fc.seed = a.fabric_seed.or(f.seed).unwrap_or(fc.seed);
    let link_gbps = a
        .link_gbps
        .or(scenario.link_gbps)
        .unwrap_or(DEFAULT_LINK_GBPS);
    if !(link_gbps.is_finite() && link_gbps > 0.0) {
        return Err(format!(
            "link rate: expected a positive number of Gb/s, got {link_gbps}"
        ));
    }
    let sink = a.sink.then(|| SinkRole {
        streams: a.sink_streams.unwrap_or(DEFAULT_SINK_STREAMS).max(1),
        max_seconds: a.duration,
    });
    if let Some(s) = &sink {
        check_seconds("--duration", s.max_seconds, false)?;
    }
    let streams = if a.scenario.is_some() {
        scenario.streams.clone()
    } else if sink.is_some() {
        Vec::new()
    } else {
        streams_from_flags(a, &cfg)?
    };
    if streams.is_empty() && sink.is_none() {
        return Err("the scenario has no [[stream]]".into());
    }
    if streams.len() > usize::from(u16::MAX) {
        return Err("too many streams".into());
    }
    let mut phases = scenario.phases.clone();
    if phases.is_empty() {
        phases.push(PhaseDef::default());
    }
    // Flags set the limits of a scenario's implicit phase, or of a flags-only run.
    if scenario.phases.is_empty() {
        let p = &mut phases[0];
        p.duration_s = a.duration.or(p.duration_s);
        p.count = a.count.or(p.count);
        p.warmup_s = a.warmup.or(p.warmup_s);
    }
    let captures = streams
        .iter()
        .enumerate()
        .map(|(id, d)| {
            let Some(path) = &d.pcap else { return Ok(None) };
            let name = d.name.clone().unwrap_or_else(|| format!("s{id}"));
            let file = std::fs::File::open(path)
                .map_err(|e| format!("stream {name}: {}: {e}", path.display()))?;
            let cap = read_capture(std::io::BufReader::new(file))
                .map_err(|e| format!("stream {name}: {}: {e}", path.display()))?;
            if cap.packets.is_empty() {
                return Err(format!(
                    "stream {name}: {}: no IP packet in the capture",
                    path.display()
                ));
            }
            Ok(Some(Arc::new(cap)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let plan = Plan {
        provider,
        cfg,
        link_bps: link_gbps * 1e9,
        streams,
        phases,
        sink,
        captures,
    };
    // Check every phase now, so a bad file fails before anything runs.
    for i in (0..plan.phases.len()).filter(|_| plan.sink.is_none()) {
        plan.phase_streams(i)?;
    }
    Ok(plan)
}

fn source_for(iface: &Interface, to: IpAddr) -> Result<IpAddr, String> {
    let v4 = iface.ipv4.first().map(|c| IpAddr::V4(c.addr));
    let v6 = iface.ipv6.first().map(|c| IpAddr::V6(c.addr));
    if to.is_ipv4() { v4 } else { v6 }.ok_or_else(|| {
        format!(
            "interface {} has no {} address to send to {to} from",
            iface.name,
            if to.is_ipv4() { "IPv4" } else { "IPv6" }
        )
    })
}

fn default_size(to: IpAddr) -> usize {
    DEFAULT_SIZE.max(min_size(to.is_ipv4()))
}

impl Plan {
    fn replay_stream(
        &self,
        id: usize,
        name: String,
        iface: usize,
        d: &StreamDef,
        capture: Arc<Capture>,
    ) -> Result<PlannedStream, String> {
        let recorded_timing = match d.pcap_timing.as_deref().unwrap_or("recorded") {
            "recorded" => true,
            "fast" => false,
            t => {
                return Err(format!(
                    "stream {name}: pcap_timing {t:?}: expected recorded or fast"
                ))
            }
        };
        let loops = d.loops.unwrap_or(1);
        if loops == 0 {
            return Err(format!("stream {name}: loops must be at least 1"));
        }
        let first = &capture.packets[0].ip;
        // read_capture keeps only IPv4 packets of 20+ bytes and IPv6 of 40+.
        let to = if first[0] >> 4 == 4 {
            IpAddr::from([first[16], first[17], first[18], first[19]])
        } else {
            let b: [u8; 16] = first[24..40].try_into().unwrap_or([0; 16]);
            IpAddr::from(b)
        };
        let mut spec = StreamSpec::single(id as u16, to, to, min_size(to.is_ipv4()));
        spec.duration = None;
        Ok(PlannedStream {
            name,
            iface,
            spec,
            to,
            replay: Some(ReplayPlan {
                capture,
                recorded_timing,
                loops,
            }),
        })
    }

    /// What would run, one line per phase and stream.
    pub fn describe(&self) -> String {
        if let Some(s) = &self.sink {
            return format!(
                "provider {}, {} interface(s), {} lcore(s), sink role: stream ids 0..{}, at most {}\n",
                self.provider.as_str(),
                self.cfg.interfaces.len(),
                self.cfg.dataplane.lcores.len(),
                s.streams,
                s.max_seconds
                    .map_or("until every stream ended".into(), |d| format!("{d} s")),
            );
        }
        let mut out = format!(
            "provider {}, {} interface(s), {} lcore(s), fabric loss {} reorder {} seed {}\n",
            self.provider.as_str(),
            self.cfg.interfaces.len(),
            self.cfg.dataplane.lcores.len(),
            self.cfg.provider.fabric.loss,
            self.cfg.provider.fabric.reorder,
            self.cfg.provider.fabric.seed,
        );
        for i in 0..self.phases.len() {
            out += &format!("phase {}\n", self.phase_name(i));
            for s in self.phase_streams(i).unwrap_or_default() {
                let rate = s
                    .spec
                    .target_pps()
                    .map_or("unpaced".to_string(), |p| format!("{p:.0} pps"));
                let latency = s.spec.probe_pps.map_or("one-way latency".to_string(), |p| {
                    format!("rtt probes {p:.0}/s")
                });
                out += &format!(
                    "  stream {} (id {}): {} -> {} {} mode, mean {:.0} B, {rate}, count {:?}, duration {:?}, warm-up {:?}, {latency}\n",
                    s.name,
                    s.spec.id,
                    self.cfg.interfaces[s.iface].name,
                    s.to,
                    if s.replay.is_some() { "replay" } else { s.spec.mode_name() },
                    s.spec.mean_size(),
                    s.spec.count,
                    s.spec.duration,
                    s.spec.warmup
                );
            }
        }
        out
    }

    /// Whether packets leave the process (to sinks that need end packets).
    fn sends_out_of_process(&self) -> bool {
        matches!(self.provider, ProviderKind::Rocev2 | ProviderKind::Verbs)
    }

    pub fn phase_name(&self, i: usize) -> String {
        self.phases[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("phase{}", i + 1))
    }

    pub fn stream_name(&self, id: usize) -> String {
        self.streams[id]
            .name
            .clone()
            .unwrap_or_else(|| format!("s{id}"))
    }

    /// The streams phase `i` runs, with its limits, warm-up and rate scale applied.
    pub fn phase_streams(&self, i: usize) -> Result<Vec<PlannedStream>, String> {
        let p = &self.phases[i];
        let pname = self.phase_name(i);
        check_seconds(&format!("phase {pname}: duration_s"), p.duration_s, false)?;
        check_seconds(&format!("phase {pname}: warmup_s"), p.warmup_s, true)?;
        let scale = p.rate_scale.unwrap_or(1.0);
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!("phase {pname}: rate_scale must be positive"));
        }
        if let Some(names) = &p.streams {
            for n in names {
                if !(0..self.streams.len()).any(|id| &self.stream_name(id) == n) {
                    return Err(format!("phase {pname}: no stream named {n:?}"));
                }
            }
        }
        let buf = self.cfg.dataplane.buf_size as usize - ipoib_dataplane::mem::HEADROOM;
        let mut out = Vec::new();
        for (id, d) in self.streams.iter().enumerate() {
            let name = self.stream_name(id);
            if p.streams
                .as_ref()
                .is_some_and(|names| !names.contains(&name))
            {
                continue;
            }
            let err = |e: String| format!("stream {name}: {e}");
            let iface_idx = self
                .cfg
                .interfaces
                .iter()
                .position(|i| i.name == d.from)
                .ok_or_else(|| err(format!("no interface named {:?}", d.from)))?;
            let iface = &self.cfg.interfaces[iface_idx];
            if let Some(cap) = &self.captures[id] {
                out.push(self.replay_stream(id, name, iface_idx, d, cap.clone())?);
                continue;
            }
            let to = d.to.ok_or_else(|| err("give `to` (or `pcap`)".into()))?;
            let mut spec = StreamSpec::single(
                id as u16,
                source_for(iface, to).map_err(err)?,
                to,
                d.size.unwrap_or(default_size(to)),
            );
            spec.base.src_port = d.src_port.unwrap_or(DEFAULT_PORT);
            spec.base.dst_port = d.dst_port.unwrap_or(DEFAULT_PORT);
            spec.mode = match d.mode.as_deref().unwrap_or("single") {
                "single" => Mode::Single,
                "range" => Mode::Range(d.range.to_ranges().map_err(err)?),
                "random" => Mode::Random {
                    seed: d.seed.unwrap_or(1),
                    ranges: d.range.to_ranges().map_err(err)?,
                },
                "sequence" => Mode::Sequence(
                    d.templates
                        .iter()
                        .map(|t| {
                            Ok(Template {
                                src: source_for(iface, t.to)?,
                                dst: t.to,
                                src_port: t.src_port.unwrap_or(spec.base.src_port),
                                dst_port: t.dst_port.unwrap_or(spec.base.dst_port),
                                size: t.size.unwrap_or(default_size(t.to)),
                            })
                        })
                        .collect::<Result<_, String>>()
                        .map_err(err)?,
                ),
                m => {
                    return Err(err(format!(
                        "mode {m:?}: expected single, range, random or sequence"
                    )))
                }
            };
            spec.rate = match (d.rate_pps, d.rate_bps, d.rate_pct) {
                (None, None, None) => Rate::Unlimited,
                (Some(p), None, None) => Rate::Pps(p * scale),
                (None, Some(b), None) => Rate::Bps(b * scale),
                (None, None, Some(pct)) => Rate::LinkPercent {
                    pct: pct * scale,
                    link_bps: self.link_bps,
                },
                _ => {
                    return Err(err(
                        "give at most one of rate_pps, rate_bps, rate_pct".into()
                    ))
                }
            };
            if let Some(b) = d.burst {
                spec.burst = b;
            }
            check_seconds(&format!("stream {name}: duration_s"), d.duration_s, false)?;
            spec.count = d.count.or(p.count);
            let secs = d.duration_s.or(p.duration_s).or(if spec.count.is_none() {
                Some(DEFAULT_SECONDS)
            } else {
                None
            });
            spec.duration = secs.map(Duration::from_secs_f64);
            spec.warmup = Duration::from_secs_f64(p.warmup_s.unwrap_or(0.0));
            spec.probe_pps = probes(d, to).map_err(err)?;
            // Sinks in other processes learn what was sent, and at what
            // rate, from the stream's end packets (with room for the report).
            if self.sends_out_of_process() {
                spec.announce_end = END_COPIES;
                let report = min_size(to.is_ipv4()) + END_REPORT_LEN;
                spec.end_size = spec
                    .base
                    .size
                    .max(report)
                    .min(buf.min(usize::from(iface.mtu)));
            }
            spec.validate(buf.min(usize::from(iface.mtu)))
                .map_err(|e| format!("{e} (stream {name})"))?;
            out.push(PlannedStream {
                name,
                iface: iface_idx,
                spec,
                to,
                replay: None,
            });
        }
        if out.is_empty() {
            return Err(format!("phase {pname} runs no stream"));
        }
        Ok(out)
    }
}
