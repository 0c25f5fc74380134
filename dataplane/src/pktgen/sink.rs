//! The sink: drains an interface's received packets, reads their stamps and
//! keeps exact per-stream accounting and a latency histogram. Runs on an
//! lcore; all state is allocated up front.

use super::clock;
use super::stamp::{EndReport, Stamp, FLAG_END, FLAG_WARMUP};
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
    pub latency: LatencySummary,
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
}

impl Sink {
    /// A sink for stream ids `0..streams`, each with a `window`-number reorder window.
    pub fn new(rx: spsc::Consumer<Mbuf>, streams: usize, window: usize) -> Sink {
        clock::init();
        let streams = (0..streams)
            .map(|_| StreamState {
                window: SeqWindow::new(window),
                hist: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
                    .expect("constant histogram bounds are valid"),
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
        }
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
        let now = clock::now_ns();
        let mut other = Other::default();
        for m in self.burst.iter() {
            account(&mut self.streams, &mut other, m.data(), now);
        }
        self.foreign += other.foreign;
        self.unknown_stream += other.unknown_stream;
        self.totals.1 += other.bytes;
        cache.free_burst(&mut self.burst);
        self.totals.0 += n as u64;
        if now >= self.next_publish_ns || other.ended {
            self.publish(now);
        }
        n
    }
}

/// Per-burst tallies that are not per stream.
#[derive(Default)]
struct Other {
    foreign: u64,
    unknown_stream: u64,
    bytes: u64,
    /// An end-of-stream packet arrived.
    ended: bool,
}

#[inline]
fn account(streams: &mut [StreamState], other: &mut Other, pkt: &[u8], now: u64) {
    let Some(st) = Stamp::from_ip(pkt) else {
        other.foreign += 1;
        return;
    };
    let Some(s) = streams.get_mut(usize::from(st.stream)) else {
        other.unknown_stream += 1;
        return;
    };
    if st.flags & FLAG_END != 0 {
        s.end_packets += 1;
        s.announced = Some(s.announced.map_or(st.seq, |a| a.max(st.seq)));
        if let Some(r) = EndReport::from_ip(pkt) {
            s.sender = Some(r);
        }
        other.ended = true;
        return;
    }
    if st.flags & FLAG_WARMUP != 0 {
        s.warmup_packets += 1;
        return;
    }
    s.rx_packets += 1;
    s.rx_bytes += pkt.len() as u64;
    other.bytes += pkt.len() as u64;
    match s.window.observe(st.seq) {
        Arrival::Duplicate => {
            s.duplicates += 1;
            return;
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
            latency: LatencySummary::of(&s.hist),
        })
    }

    /// The latency histogram of `stream`, to merge across sinks or plot.
    pub fn histogram(&self, stream: u16) -> Option<&Histogram<u64>> {
        self.streams.get(usize::from(stream)).map(|s| &s.hist)
    }
}
