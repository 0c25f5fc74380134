//! Runs one phase: start the lcores, show the live screen, stop when every
//! generator has reached its limit (or on a signal), deliver what is in
//! flight, and gather the figures.

use super::assemble::{PktgenProvider, Port, Rig};
use super::live::LiveScreen;
use super::outcome::{PhaseOutcome, PortOutcome, Receiver, RttOutcome, Sample, StreamOutcome};
use super::plan::{PlannedStream, SinkRole};
use ipoib_dataplane::lcore::{spawn_lcores, Lcore, Pinning};
use ipoib_dataplane::pktgen::{GenCounters, GenSnapshot, RttResult, Sink, StreamResult};
use ipoib_dataplane::provider::Provider;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time left for the last packets to reach the sinks after the generators stop.
const SETTLE: Duration = Duration::from_millis(20);
const TICK: Duration = Duration::from_secs(1);
const SAMPLE: Duration = Duration::from_millis(100);
/// Sink role: how long the interfaces stay quiet after every stream ended
/// before the run stops (stragglers overtaken by an end packet still count).
const QUIET: Duration = Duration::from_millis(300);
/// Longest wait for the last probes' reflections: a few round trips once
/// some came back, capped; this long when none ever did.
const REFLECT_WAIT_MAX: Duration = Duration::from_secs(2);
const REFLECT_WAIT_NONE: Duration = Duration::from_millis(500);
/// Quantiles a latency curve is drawn through.
const CURVE: [f64; 12] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

pub struct PhaseRun<'a> {
    pub name: &'a str,
    pub cores: &'a [usize],
    pub streams: &'a [PlannedStream],
    /// `None`: no live screen; `Some(tty)`: redraw in place when on a terminal.
    pub live: Option<bool>,
    pub stop: &'a AtomicBool,
    /// Whether destinations' owners should be listed as receivers even when
    /// nothing arrived (not on the null provider, which delivers nothing).
    pub expect_receivers: bool,
    /// Measure streams from other processes instead of generating.
    pub sink_role: Option<SinkRole>,
}

/// Sink role: every stream seen has announced its end, on every interface.
fn all_ended(ports: &[Port]) -> bool {
    let (seen, ended) = ports.iter().fold((0, 0), |(s, e), p| {
        let (ps, pe) = p.streams_seen_ended();
        (s + ps, e + pe)
    });
    seen > 0 && ended == seen
}

/// Waits (polling, with a deadline) until every probe sent has come back,
/// so the last reflections still on the wire are not counted lost.
fn await_reflections(
    streams: &[PlannedStream],
    gens: &[Arc<GenCounters>],
    ports: &[Port],
    stop: &AtomicBool,
) {
    let probes: u64 = streams
        .iter()
        .zip(gens)
        .filter(|(s, _)| s.spec.probe_pps.is_some())
        .map(|(_, g)| g.probes.load(Ordering::Relaxed))
        .sum();
    let start = Instant::now();
    while probes > 0 && !stop.load(Ordering::Relaxed) {
        let back: u64 = ports.iter().map(|p| p.reflections()).sum();
        let max_rtt = ports.iter().map(|p| p.rtt_max_ns()).max().unwrap_or(0);
        let limit = match back {
            0 => REFLECT_WAIT_NONE,
            _ => (Duration::from_nanos(max_rtt) * 3 + SETTLE).min(REFLECT_WAIT_MAX),
        };
        if back >= probes || start.elapsed() >= limit {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The round trips of one stream's probes, over the sinks of its
/// interface's queues (a reflection comes back to whichever queue the
/// peer reaches): reflections added, histograms merged, the clock offset
/// of the queue that saw the smallest round trip (as within one queue).
fn merged_rtt(sinks: &[&Sink], id: u16) -> (RttResult, Vec<(f64, u64)>) {
    let mut held = sinks
        .iter()
        .filter_map(|s| Some((s.rtt(id)?, s.rtt_histogram(id)?)));
    let Some((mut res, first)) = held.next() else {
        return (RttResult::default(), Vec::new());
    };
    let mut hist = first.clone();
    let mut best = res.latency.min;
    for (r, h) in held {
        if r.clock_offset_ns.is_some() && (r.latency.min < best || res.clock_offset_ns.is_none()) {
            (best, res.clock_offset_ns) = (r.latency.min, r.clock_offset_ns);
        }
        res.reflections += r.reflections;
        let _ = hist.add(h);
    }
    res.latency = ipoib_dataplane::pktgen::LatencySummary::of(&hist);
    let curve = CURVE
        .iter()
        .filter(|_| !hist.is_empty())
        .map(|&q| (q, hist.value_at_quantile(q)))
        .collect();
    (res, curve)
}

/// One stream's records in the sinks of an interface's queues, as one: a
/// stream is sent by one queue and each sender reaches one queue, so one
/// sink holds it and its figures are exact. Should it arrive on several,
/// the counts are added (a packet received on two queues then counts
/// twice as unique) and a warning says so.
fn merged(port: &str, sinks: &[&Sink], id: u16) -> Option<(StreamResult, Vec<(f64, u64)>)> {
    let mut held = sinks
        .iter()
        .filter_map(|s| Some((s.result(id)?, s.histogram(id)?)));
    let (mut res, first) = held.next()?;
    let mut hist = first.clone();
    let mut queues = usize::from(res.rx_packets + res.warmup_packets + res.end_packets > 0);
    for (r, h) in held {
        if r.rx_packets + r.warmup_packets + r.end_packets == 0 {
            continue;
        }
        if queues == 0 {
            (res, hist) = (r, h.clone());
            queues = 1;
            continue;
        }
        queues += 1;
        res.rx_packets += r.rx_packets;
        res.rx_bytes += r.rx_bytes;
        res.unique += r.unique;
        res.duplicates += r.duplicates;
        res.reordered += r.reordered;
        res.late += r.late;
        res.warmup_packets += r.warmup_packets;
        res.end_packets += r.end_packets;
        res.probes += r.probes;
        res.reflect_drops += r.reflect_drops;
        res.max_seq = res.max_seq.max(r.max_seq);
        res.announced = res.announced.or(r.announced);
        res.sender = res.sender.or(r.sender);
        let _ = hist.add(h);
    }
    if queues > 1 {
        tracing::warn!(
            "stream {id} arrived on {queues} queues of {port}: packets received on two queues \
             are not seen as duplicates, nor reordering between the queues"
        );
        res.latency = ipoib_dataplane::pktgen::LatencySummary::of(&hist);
    }
    let curve = CURVE
        .iter()
        .filter(|_| !hist.is_empty())
        .map(|&q| (q, hist.value_at_quantile(q)))
        .collect();
    Some((res, curve))
}

/// Polls every lcore in turn until a few passes in a row move nothing, so
/// packets sent by one lcore to another's interface are counted too.
fn settle<P: Provider>(lcores: &mut [Lcore<P>]) {
    let mut idle = 0;
    while idle < 4 {
        let work: usize = lcores.iter_mut().map(|l| l.poll_once()).sum();
        idle = if work == 0 { idle + 1 } else { 0 };
    }
}

pub fn run_phase<P: PktgenProvider>(r: &PhaseRun<'_>, rig: Rig<P>) -> Result<PhaseOutcome, String> {
    let Rig {
        lcores,
        ports,
        gens,
        fabric,
        joins,
    } = rig;
    let lcore_stop = Arc::new(AtomicBool::new(false));
    let (handles, pinning) = spawn_lcores(lcores, r.cores, lcore_stop.clone())
        .map_err(|e| format!("cannot start lcores: {e}"))?;
    match pinning {
        Pinning::Shared { cores, lcores } => {
            tracing::warn!(
                "{lcores} lcores share {cores} core(s): expect lower rates than with one core each"
            )
        }
        Pinning::Unpinned => tracing::warn!("cannot pin lcores to cores here; they run unpinned"),
        Pinning::Dedicated => {}
    }
    let start = Instant::now();
    let mut screen = r.live.map(|tty| LiveScreen::new(tty, ports.len()));
    let mut next = start + TICK;
    let mut last_tick = start;
    let mut interrupted = false;
    let mut timeline = Vec::new();
    let totals = || {
        ports.iter().fold((0u64, 0u64), |(t, r), p| {
            let s = p.snapshot();
            (t + s.tx_packets, r + s.rx_packets)
        })
    };
    let (mut last_sample, mut last_totals) = (start, (0u64, 0u64));
    let (mut last_rx, mut rx_moved) = (0u64, start);
    loop {
        let finished = match r.sink_role {
            None => gens.iter().all(|g| g.done.load(Ordering::Acquire)),
            Some(role) => {
                let rx = totals().1;
                if rx != last_rx {
                    (last_rx, rx_moved) = (rx, Instant::now());
                }
                role.max_seconds
                    .is_some_and(|m| start.elapsed().as_secs_f64() >= m)
                    || (all_ended(&ports) && rx_moved.elapsed() >= QUIET)
            }
        };
        if finished {
            break;
        }
        if r.stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let now = Instant::now();
        if now - last_sample >= SAMPLE {
            let t = totals();
            let dt = (now - last_sample).as_secs_f64();
            timeline.push(Sample {
                t: (now - start).as_secs_f64(),
                tx_pps: (t.0 - last_totals.0) as f64 / dt,
                rx_pps: (t.1 - last_totals.1) as f64 / dt,
            });
            (last_sample, last_totals) = (now, t);
        }
        if now >= next {
            if let Some(s) = &mut screen {
                let text = s.render(
                    r.name,
                    now - start,
                    now - last_tick,
                    &ports,
                    fabric.as_deref(),
                );
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            last_tick = now;
            next += TICK;
        }
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(10)),
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    // The null provider delivers nothing: no reflection will come.
    if r.sink_role.is_none() && r.expect_receivers {
        await_reflections(r.streams, &gens, &ports, r.stop);
    }
    std::thread::sleep(SETTLE);
    lcore_stop.store(true, Ordering::Relaxed);
    let mut lcores = Vec::new();
    for h in handles {
        lcores.push(h.join().map_err(|_| "an lcore panicked".to_string())?);
    }
    settle(&mut lcores);
    // A message the provider still holds (the fabric's reorder injection)
    // was sent: deliver it now rather than count it lost. A device's send
    // queue drains, so what an interface held back for it is posted in the
    // next round (and drained in turn).
    for _ in 0..2 {
        for l in &mut lcores {
            for i in l.ifaces_mut() {
                i.provider_mut().release_held();
            }
        }
        settle(&mut lcores);
    }

    let sinks: Vec<_> = lcores.iter().flat_map(|l| l.sinks()).collect();
    // Sinks were added one per interface queue; match them to ports
    // through their live counters.
    let sinks_of = |port: usize| -> Vec<&Sink> {
        ports[port]
            .queues
            .iter()
            .filter_map(|q| {
                sinks
                    .iter()
                    .find(|s| Arc::ptr_eq(&s.live(), &q.sink))
                    .copied()
            })
            .collect()
    };
    let mut streams = Vec::new();
    if let Some(role) = r.sink_role {
        streams = remote_streams(role, &ports, &sinks_of);
    }
    for (k, s) in r.streams.iter().enumerate() {
        let sent = gens[k].snapshot();
        let seconds = match s.spec.duration {
            Some(d) if sent.done && !matches!(s.spec.count, Some(c) if sent.tx_packets >= c) => {
                d.as_secs_f64()
            }
            _ => sent.last_tx_ns.saturating_sub(sent.measure_start_ns) as f64 / 1e9,
        };
        let mut receivers = Vec::new();
        // Replayed packets carry no stamp of this run: nothing to measure.
        let measured = s.replay.is_none();
        for (pi, p) in ports.iter().enumerate().filter(|_| measured) {
            let Some((res, latency_curve)) = merged(&p.name, &sinks_of(pi), s.spec.id) else {
                continue;
            };
            // Expected receivers appear even when nothing arrived: the
            // destination's owner, or a full member of the group.
            let expected = r.expect_receivers
                && (p.addrs.contains(&s.to) || (p.groups.contains(&s.to) && pi != s.iface));
            if res.rx_packets + res.warmup_packets == 0 && !expected {
                continue;
            }
            receivers.push(Receiver {
                latency_curve,
                iface: p.name.clone(),
                lost: res.lost(sent.tx_packets),
                result: res,
            });
        }
        let rtt = s.spec.probe_pps.map(|_| {
            let (result, curve) = merged_rtt(&sinks_of(s.iface), s.spec.id);
            RttOutcome {
                probes: sent.probes,
                lost: sent.probes.saturating_sub(result.reflections),
                result,
                curve,
            }
        });
        streams.push(StreamOutcome {
            rtt,
            id: s.spec.id,
            name: s.name.clone(),
            from: ports[s.iface].name.clone(),
            to: s.to,
            mode: if measured {
                s.spec.mode_name()
            } else {
                "replay"
            },
            mean_size: match &s.replay {
                Some(r) => {
                    let p = &r.capture.packets;
                    p.iter().map(|x| x.ip.len() as f64).sum::<f64>() / p.len().max(1) as f64
                }
                None => s.spec.mean_size(),
            },
            target_pps: s.spec.target_pps(),
            sent,
            seconds,
            receivers,
        });
    }
    // Every membership is left (and the QPs detached) while the QPs exist.
    let left = joins.map_or(Ok(()), |j| j.leave());
    for l in &mut lcores {
        l.drain();
    }
    let ports_out = ports
        .iter()
        .map(|p| PortOutcome {
            iface: p.name.clone(),
            stats: p.snapshot(),
            fabric: match (&fabric, p.fabric_port) {
                (Some(f), Some(k)) => f.counters(k),
                _ => None,
            },
            queues: p
                .queues
                .iter()
                .map(|q| (q.lcore, q.stats.snapshot()))
                .collect(),
        })
        .collect();
    drop(lcores);
    drop(fabric);
    left?;
    Ok(PhaseOutcome {
        name: r.name.to_string(),
        seconds,
        interrupted,
        timeline,
        streams,
        ports: ports_out,
    })
}

/// Sink role: one outcome per stream id that reached any interface, with
/// what its generator announced as sent (0 while no end packet arrived) and
/// its bytes, measured time and paced rate when the end packet carried them.
fn remote_streams<'s>(
    role: SinkRole,
    ports: &[Port],
    sinks_of: &dyn Fn(usize) -> Vec<&'s Sink>,
) -> Vec<StreamOutcome> {
    let mut out = Vec::new();
    for id in 0..role.streams {
        let mut receivers = Vec::new();
        for (pi, p) in ports.iter().enumerate() {
            let Some((res, latency_curve)) = merged(&p.name, &sinks_of(pi), id) else {
                continue;
            };
            if res.rx_packets + res.warmup_packets + res.end_packets == 0 {
                continue;
            }
            receivers.push(Receiver {
                latency_curve,
                iface: p.name.clone(),
                lost: res.lost_so_far(),
                result: res,
            });
        }
        let Some(first) = receivers.first() else {
            continue;
        };
        let res = &first.result;
        // The sender's own figures, when its end packet carried them.
        let report = receivers.iter().find_map(|r| r.result.sender);
        let to = ports
            .iter()
            .find(|p| p.name == first.iface)
            .and_then(|p| p.addrs.first().copied())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        out.push(StreamOutcome {
            id,
            name: format!("s{id}"),
            from: String::new(),
            to,
            mode: "remote",
            mean_size: match report {
                Some(r) if res.announced.is_some_and(|n| n > 0) => {
                    r.tx_bytes as f64 / res.announced.unwrap_or(1) as f64
                }
                _ => res.rx_bytes as f64 / res.rx_packets.max(1) as f64,
            },
            target_pps: report
                .filter(|r| r.target_mpps > 0)
                .map(|r| r.target_mpps as f64 / 1000.0),
            sent: GenSnapshot {
                tx_packets: res.announced.unwrap_or(0),
                tx_bytes: report.map_or(0, |r| r.tx_bytes),
                warmup_packets: report.map_or(0, |r| r.warmup_packets),
                done: res.announced.is_some(),
                ..GenSnapshot::default()
            },
            seconds: report.map_or(0.0, |r| r.duration_ns as f64 / 1e9),
            receivers,
            rtt: None,
        });
    }
    out
}
