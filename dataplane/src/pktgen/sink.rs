//! The sink: drains an interface's received packets, reads their stamps and
//! keeps exact per-stream accounting and a latency histogram. Runs on an
//! lcore; all state is allocated up front.

use super::clock;
use super::reflect::{peer_time, reflect};
use super::stamp::{
    udp_payload, EndReport, Stamp, FLAG_END, FLAG_PEER_TIME, FLAG_PROBE, FLAG_REFLECTED,
    FLAG_WARMUP,
};
use super::window::{Arrival, SeqWindow};
use crate::mem::{LcoreCache, Mbuf};
use crate::provider::BURST;
use crate::ring::spsc;
use arrayvec::ArrayVec;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Latencies above this are recorded as this (ns).
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// Default reorder/duplicate window (sequence numbers) per stream.
pub const DEFAULT_WINDOW: usize = 1 << 16;

/// Latency figures in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// What the sink knows of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamResult {
    pub stream: u16,
    /// Measured packets received, duplicates included.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    pub duplicates: u64,
    /// New packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Arrivals older than the window (counted in unique and reordered).
    pub late: u64,
    pub warmup_packets: u64,
    /// Highest sequence number seen.
    pub max_seq: Option<u64>,
    /// Measured packets the generator says it sent (its end-of-stream
    /// packet), when one arrived.
    pub announced: Option<u64>,
    /// End-of-stream copies received.
    pub end_packets: u64,
    /// The generator's own figures, from an end packet that carried them.
    pub sender: Option<EndReport>,
    /// Latency probes among the measured packets (each reflected to its
    /// sender when the sink has a return ring).
    pub probes: u64,
    /// Probes not reflected: the return ring full, the buffer shared, or
    /// not unicast both ways.
    pub reflect_drops: u64,
    pub latency: LatencySummary,
}

/// Round trips of one stream's probes, on the clock of the host that sent
/// them (the sink on the sending interface keeps these).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RttResult {
    /// Reflections received (each a probe that came back).
    pub reflections: u64,
    pub latency: LatencySummary,
    /// Estimated offset of the reflecting host's clock from this one's (ns,
    /// theirs minus ours), NTP-style from the probe with the smallest round
    /// trip; `None` when no reflection carried the peer's time.
    pub clock_offset_ns: Option<i64>,
}

impl StreamResult {
    /// Lost packets given how many the generator sent: exact, since each
    /// sequence number is counted once in `unique`.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.unique)
    }
    /// Lost packets as the sink alone knows them: exact once the
    /// generator's end-of-stream packet arrived, else up to the highest
    /// number seen (a lost tail is missed).
    pub fn lost_so_far(&self) -> u64 {
        if let Some(sent) = self.announced {
            return self.lost(sent);
        }
        self.max_seq
            .map_or(0, |m| (m + 1).saturating_sub(self.unique))
    }
}

impl StreamState {
    fn seen(&self) -> bool {
        self.rx_packets + self.warmup_packets + self.end_packets != 0
    }
}

struct StreamState {
    window: SeqWindow,
    hist: Histogram<u64>,
    rx_packets: u64,
    rx_bytes: u64,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    late: u64,
    warmup_packets: u64,
    announced: Option<u64>,
    end_packets: u64,
    sender: Option<EndReport>,
    probes: u64,
    reflect_drops: u64,
    rtt: Histogram<u64>,
    reflections: u64,
    /// Smallest round trip that carried the peer's time, and the offset it gives.
    best_rtt: u64,
    clock_offset_ns: Option<i64>,
}

/// Totals over a sink's streams, published for live readers.
#[derive(Default, Debug)]
pub struct SinkLive {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub lost_so_far: AtomicU64,
    /// Latency p99 (ns) over everything received so far, refreshed about once a second.
    pub latency_p99_ns: AtomicU64,
    /// Streams that sent anything here, and those whose end-of-stream packet
    /// arrived; refreshed at once when one does.
    pub streams_seen: AtomicU64,
    pub streams_ended: AtomicU64,
    /// Reflections of this host's probes received, at once; their round-trip
    /// p99 (ns, about once a second) and maximum (at once).
    pub reflections: AtomicU64,
    pub rtt_p99_ns: AtomicU64,
    pub rtt_max_ns: AtomicU64,
}

pub struct Sink {
    rx: spsc::Consumer<Mbuf>,
    streams: Vec<StreamState>,
    burst: ArrayVec<Mbuf, BURST>,
    /// Packets without a stamp, and stamps naming a stream not configured.
    foreign: u64,
    unknown_stream: u64,
    live: Arc<SinkLive>,
    next_publish_ns: u64,
    totals: (u64, u64),
    /// Where reflections of probes go (a TX ring of the interface); `None`:
    /// probes are only counted.
    reflect_tx: Option<spsc::Producer<Mbuf>>,
    reflect: ArrayVec<Mbuf, BURST>,
    reflect_drops: u64,
    reflections: u64,
}

impl Sink {
    /// A sink for stream ids `0..streams`, each with a `window`-number reorder window.
    pub fn new(rx: spsc::Consumer<Mbuf>, streams: usize, window: usize) -> Sink {
        clock::init();
        let streams = (0..streams)
            .map(|_| StreamState {
                window: SeqWindow::new(window),
                hist: histogram(),
                rx_packets: 0,
                rx_bytes: 0,
                unique: 0,
                duplicates: 0,
                reordered: 0,
                late: 0,
                warmup_packets: 0,
                announced: None,
                end_packets: 0,
                sender: None,
                probes: 0,
                reflect_drops: 0,
                rtt: histogram(),
                reflections: 0,
                best_rtt: u64::MAX,
                clock_offset_ns: None,
            })
            .collect();
        Sink {
            rx,
            streams,
            burst: ArrayVec::new(),
            foreign: 0,
            unknown_stream: 0,
            live: Arc::new(SinkLive::default()),
            next_publish_ns: 0,
            totals: (0, 0),
            reflect_tx: None,
            reflect: ArrayVec::new(),
            reflect_drops: 0,
            reflections: 0,
        }
    }

    /// Reflects the probes that arrive into `tx`, a TX ring of the interface
    /// this sink drains: the datapath routes them back to their senders.
    pub fn reflect_to(&mut self, tx: spsc::Producer<Mbuf>) {
        self.reflect_tx = Some(tx);
    }

    /// Probes that could not be reflected: the return ring was full, the
    /// buffer shared, or the probe not unicast both ways.
    pub fn reflect_drops(&self) -> u64 {
        self.reflect_drops
    }

    pub fn live(&self) -> Arc<SinkLive> {
        self.live.clone()
    }
    pub fn foreign(&self) -> u64 {
        self.foreign
    }
    pub fn unknown_stream(&self) -> u64 {
        self.unknown_stream
    }

    /// Drains one burst of received packets. Returns packets consumed.
    #[inline]
    pub fn poll(&mut self, cache: &mut LcoreCache) -> usize {
        let n = self.rx.dequeue_burst(&mut self.burst);
        if n == 0 {
            return 0;
        }
        self.account_burst(cache, n, clock::now_ns());
        n
    }

    /// `poll` with the receive time given (tests drive a fake clock).
    pub fn poll_at(&mut self, cache: &mut LcoreCache, now: u64) -> usize {
        let n = self.rx.dequeue_burst(&mut self.burst);
        if n != 0 {
            self.account_burst(cache, n, now);
        }
        n
    }

    #[inline]
    fn account_burst(&mut self, cache: &mut LcoreCache, n: usize, now: u64) {
        let mut other = Other::default();
        // Probes to reflect, by position in the burst (BURST <= 64).
        let mut probes = 0u64;
        for (i, m) in self.burst.iter().enumerate() {
            if account(&mut self.streams, &mut other, m.data(), now) {
                probes |= 1 << i;
            }
        }
        if probes != 0 {
            self.reflect_probes(probes, cache, now);
        }
        if other.reflections != 0 {
            self.reflections += other.reflections;
            self.live
                .reflections
                .store(self.reflections, Ordering::Relaxed);
            let max = self.streams.iter().map(|s| s.rtt.max()).max().unwrap_or(0);
            self.live.rtt_max_ns.store(max, Ordering::Relaxed);
        }
        self.foreign += other.foreign;
        self.unknown_stream += other.unknown_stream;
        self.totals.1 += other.bytes;
        cache.free_burst(&mut self.burst);
        self.totals.0 += n as u64;
        if now >= self.next_publish_ns || other.ended {
            self.publish(now);
        }
    }

    /// Takes the probes (bit `i` of `mask`: position `i`) out of the burst,
    /// turns each into its reflection in place and sends them back; what
    /// cannot go is freed and counted.
    #[cold]
    #[inline(never)]
    fn reflect_probes(&mut self, mut mask: u64, cache: &mut LcoreCache, now: u64) {
        let Some(tx) = self.reflect_tx.as_mut() else {
            return;
        };
        // Highest first: what swap_remove moves down was already taken.
        while mask != 0 {
            let i = 63 - mask.leading_zeros() as usize;
            mask &= !(1 << i);
            let ok = self.burst[i].data_mut().is_some_and(|d| reflect(d, now));
            if ok {
                self.reflect.push(self.burst.swap_remove(i));
            } else {
                unreflected(&mut self.streams, self.burst[i].data());
                self.reflect_drops += 1;
            }
        }
        tx.enqueue_burst(&mut self.reflect);
        for m in self.reflect.iter() {
            unreflected(&mut self.streams, m.data());
        }
        self.reflect_drops += self.reflect.len() as u64;
        cache.free_burst(&mut self.reflect);
    }
}

/// Counts a probe (or its reflection: the stamp keeps the stream) that did
/// not go back against its stream.
fn unreflected(streams: &mut [StreamState], pkt: &[u8]) {
    if let Some(s) = Stamp::from_ip(pkt).and_then(|st| streams.get_mut(usize::from(st.stream))) {
        s.reflect_drops += 1;
    }
}

const _: () = assert!(BURST <= 64, "probe positions are bits of a u64");

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("constant histogram bounds are valid")
}

/// Per-burst tallies that are not per stream.
#[derive(Default)]
struct Other {
    foreign: u64,
    unknown_stream: u64,
    bytes: u64,
    /// An end-of-stream packet arrived.
    ended: bool,
    reflections: u64,
}

/// Counts one packet; `true` for a measured probe to reflect.
#[inline]
fn account(streams: &mut [StreamState], other: &mut Other, pkt: &[u8], now: u64) -> bool {
    let Some(st) = Stamp::from_ip(pkt) else {
        other.foreign += 1;
        return false;
    };
    let Some(s) = streams.get_mut(usize::from(st.stream)) else {
        other.unknown_stream += 1;
        return false;
    };
    if st.flags & FLAG_REFLECTED != 0 {
        record_round_trip(s, &st, pkt, now);
        other.reflections += 1;
        return false;
    }
    if st.flags & FLAG_END != 0 {
        s.end_packets += 1;
        s.announced = Some(s.announced.map_or(st.seq, |a| a.max(st.seq)));
        if let Some(r) = EndReport::from_ip(pkt) {
            s.sender = Some(r);
        }
        other.ended = true;
        return false;
    }
    if st.flags & FLAG_WARMUP != 0 {
        s.warmup_packets += 1;
        return false;
    }
    s.rx_packets += 1;
    s.rx_bytes += pkt.len() as u64;
    other.bytes += pkt.len() as u64;
    match s.window.observe(st.seq) {
        Arrival::Duplicate => {
            s.duplicates += 1;
            return false;
        }
        Arrival::InOrder => {}
        Arrival::Reordered => s.reordered += 1,
        Arrival::Late => {
            s.late += 1;
            s.reordered += 1;
        }
    }
    s.unique += 1;
    s.hist
        .saturating_record(now.saturating_sub(st.ts_ns).min(LATENCY_MAX_NS));
    let probe = st.flags & FLAG_PROBE != 0;
    s.probes += u64::from(probe);
    probe
}

/// A reflection of this host's probe: the round trip is on one clock. With
/// the peer's receive time t2 (reflected at once, so t3 = t2), the offset
/// is t2 - (t1 + t4) / 2, trusted from the smallest round trip only (the
/// one least skewed by queueing either way).
#[cold]
fn record_round_trip(s: &mut StreamState, st: &Stamp, pkt: &[u8], now: u64) {
    s.reflections += 1;
    let rtt = now.saturating_sub(st.ts_ns).min(LATENCY_MAX_NS);
    s.rtt.saturating_record(rtt);
    if st.flags & FLAG_PEER_TIME != 0 && rtt < s.best_rtt {
        if let Some(t2) = udp_payload(pkt).and_then(peer_time) {
            s.best_rtt = rtt;
            let mid = i128::from(st.ts_ns) + i128::from(rtt) / 2;
            s.clock_offset_ns = i64::try_from(i128::from(t2) - mid).ok();
        }
    }
}

impl Sink {
    /// Publishes live totals; the p99 is the costly part, hence once a second.
    fn publish(&mut self, now: u64) {
        self.next_publish_ns = now + 1_000_000_000;
        let l = &self.live;
        l.rx_packets.store(self.totals.0, Ordering::Relaxed);
        l.rx_bytes.store(self.totals.1, Ordering::Relaxed);
        let lost: u64 = self.results().iter().map(|r| r.lost_so_far()).sum();
        l.lost_so_far.store(lost, Ordering::Relaxed);
        let p99 = self
            .streams
            .iter()
            .filter(|s| !s.hist.is_empty())
            .map(|s| s.hist.value_at_quantile(0.99))
            .max()
            .unwrap_or(0);
        l.latency_p99_ns.store(p99, Ordering::Relaxed);
        let seen = self.streams.iter().filter(|s| s.seen());
        let (seen, ended) = seen.fold((0, 0), |(n, e), s| {
            (n + 1, e + u64::from(s.announced.is_some()))
        });
        l.streams_seen.store(seen, Ordering::Relaxed);
        l.streams_ended.store(ended, Ordering::Relaxed);
        let rtt_p99 = self
            .streams
            .iter()
            .filter(|s| !s.rtt.is_empty())
            .map(|s| s.rtt.value_at_quantile(0.99))
            .max()
            .unwrap_or(0);
        l.rtt_p99_ns.store(rtt_p99, Ordering::Relaxed);
        l.reflections.store(self.reflections, Ordering::Relaxed);
    }

    /// Publishes the final totals (call once the lcore has stopped).
    pub fn publish_now(&mut self) {
        self.publish(clock::now_ns());
    }

    /// Per-stream results, for streams that received anything.
    pub fn results(&self) -> Vec<StreamResult> {
        (0..self.streams.len() as u16)
            .filter_map(|i| self.result(i))
            .filter(|r| r.rx_packets + r.warmup_packets + r.end_packets != 0)
            .collect()
    }

    /// The result of one stream, zeros included; `None` for an id out of range.
    pub fn result(&self, stream: u16) -> Option<StreamResult> {
        self.streams.get(usize::from(stream)).map(|s| StreamResult {
            stream,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            unique: s.unique,
            duplicates: s.duplicates,
            reordered: s.reordered,
            late: s.late,
            warmup_packets: s.warmup_packets,
            max_seq: s.window.top(),
            announced: s.announced,
            end_packets: s.end_packets,
            sender: s.sender,
            probes: s.probes,
            reflect_drops: s.reflect_drops,
            latency: LatencySummary::of(&s.hist),
        })
    }

    /// Round trips of `stream`'s probes sent from this interface; `None`
    /// when none came back (or the id is out of range).
    pub fn rtt(&self, stream: u16) -> Option<RttResult> {
        let s = self.streams.get(usize::from(stream))?;
        (s.reflections != 0).then(|| RttResult {
            reflections: s.reflections,
            latency: LatencySummary::of(&s.rtt),
            clock_offset_ns: s.clock_offset_ns,
        })
    }

    /// The round-trip histogram of `stream`, to plot.
    pub fn rtt_histogram(&self, stream: u16) -> Option<&Histogram<u64>> {
        self.streams.get(usize::from(stream)).map(|s| &s.rtt)
    }

    /// The latency histogram of `stream`, to merge across sinks or plot.
    pub fn histogram(&self, stream: u16) -> Option<&Histogram<u64>> {
        self.streams.get(usize::from(stream)).map(|s| &s.hist)
    }
}
