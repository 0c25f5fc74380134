//! A paced generator of one stream, run by an lcore like any traffic source:
//! each call produces at most one burst into the interface's TX ring.

use super::build::{PacketWriter, Prepared};
use super::clock;
use super::fields::FieldGen;
use super::spec::{end_report_fits, Mode, StreamSpec, Template};
use super::stamp::{EndReport, Stamp, END_REPORT_LEN, FLAG_END, FLAG_PROBE, FLAG_WARMUP};
use crate::mem::{LcoreCache, Mbuf, HEADROOM};
use crate::provider::BURST;
use crate::ring::spsc;
use arrayvec::ArrayVec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What a generator has done, published once per burst for readers on other threads.
#[derive(Default, Debug)]
pub struct GenCounters {
    /// Measured packets and IP bytes (warm-up excluded).
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub warmup_packets: AtomicU64,
    /// End-of-stream copies sent (see `StreamSpec::announce_end`).
    pub end_packets: AtomicU64,
    /// Measured packets sent as latency probes (counted in `tx_packets` too).
    pub probes: AtomicU64,
    /// Process-clock ns when measurement started, and of the last measured burst.
    pub measure_start_ns: AtomicU64,
    pub last_tx_ns: AtomicU64,
    /// Set once the count or duration limit is reached.
    pub done: AtomicBool,
}

/// A plain copy of `GenCounters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenSnapshot {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub warmup_packets: u64,
    pub end_packets: u64,
    pub probes: u64,
    pub measure_start_ns: u64,
    pub last_tx_ns: u64,
    pub done: bool,
}

impl GenCounters {
    pub fn snapshot(&self) -> GenSnapshot {
        GenSnapshot {
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            warmup_packets: self.warmup_packets.load(Ordering::Relaxed),
            end_packets: self.end_packets.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
            measure_start_ns: self.measure_start_ns.load(Ordering::Relaxed),
            last_tx_ns: self.last_tx_ns.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Acquire),
        }
    }
}

/// Probes owed after a gap that may still follow one a burst.
const PROBE_BACKLOG: u64 = 8;

/// Packets due since `start` at a constant rate: bursts leave exactly when
/// the monotonic clock says they are owed, so long-run error stays below one packet.
#[derive(Debug, Clone, Copy)]
struct Pacer {
    pps: Option<f64>,
}

impl Pacer {
    #[inline]
    fn due(&self, elapsed_ns: u64) -> u64 {
        match self.pps {
            None => u64::MAX,
            Some(p) => (elapsed_ns as f64 * p / 1e9) as u64,
        }
    }
}

pub struct Generator {
    stream: u16,
    fields: FieldGen,
    writer: PacketWriter,
    /// Single mode: the one packet, built once.
    prepared: Option<Prepared>,
    /// The base packet at the end size, for end-of-stream announcements,
    /// and whether it has room for the report.
    end_packet: Option<Prepared>,
    end_report: bool,
    end_left: u64,
    target_pps: Option<f64>,
    tx: spsc::Producer<Mbuf>,
    pacer: Pacer,
    burst_len: usize,
    burst: ArrayVec<Mbuf, BURST>,
    warmup_ns: u64,
    duration_ns: Option<u64>,
    count: Option<u64>,
    start_ns: Option<u64>,
    warm_seq: u64,
    seq: u64,
    bytes: u64,
    /// Nanoseconds between latency probes (`u64::MAX`: none), when the next
    /// is due, and how many were sent.
    probe_every_ns: u64,
    next_probe_ns: u64,
    probes: u64,
    done: bool,
    counters: Arc<GenCounters>,
}

impl Generator {
    /// `max_size` is the largest packet the pool's buffers take after headroom.
    pub fn new(
        spec: &StreamSpec,
        tx: spsc::Producer<Mbuf>,
        buf_size: usize,
    ) -> Result<Generator, String> {
        let max_size = buf_size.saturating_sub(HEADROOM);
        spec.validate(max_size)?;
        clock::init();
        let writer = PacketWriter::new(max_size.min(u16::MAX as usize));
        let prepared = matches!(spec.mode, Mode::Single).then(|| writer.prepare(&spec.base));
        let end = Template {
            size: if spec.end_size == 0 {
                spec.base.size
            } else {
                spec.end_size
            },
            ..spec.base
        };
        let end_packet = (spec.announce_end > 0).then(|| writer.prepare(&end));
        Ok(Generator {
            prepared,
            end_packet,
            end_report: end_report_fits(end.src.is_ipv4(), end.size),
            target_pps: spec.target_pps(),
            end_left: u64::from(spec.announce_end),
            stream: spec.id,
            fields: FieldGen::new(spec.base, &spec.mode),
            writer,
            tx,
            pacer: Pacer {
                pps: spec.target_pps(),
            },
            burst_len: spec.burst,
            burst: ArrayVec::new(),
            warmup_ns: spec.warmup.as_nanos() as u64,
            duration_ns: spec.duration.map(|d| d.as_nanos() as u64),
            count: spec.count,
            start_ns: None,
            warm_seq: 0,
            seq: 0,
            bytes: 0,
            probe_every_ns: spec
                .probe_pps
                .map_or(u64::MAX, |p| (1e9 / p).max(1.0) as u64),
            next_probe_ns: if spec.probe_pps.is_some() {
                0
            } else {
                u64::MAX
            },
            probes: 0,
            done: false,
            counters: Arc::new(GenCounters::default()),
        })
    }

    pub fn stream(&self) -> u16 {
        self.stream
    }
    pub fn counters(&self) -> Arc<GenCounters> {
        self.counters.clone()
    }
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Sends what is left of the end-of-stream copies, then marks the
    /// generator done.
    fn finish(&mut self, cache: &mut LcoreCache, now: u64) -> usize {
        let n = self.announce_end(cache, now);
        if self.end_left == 0 {
            self.done = true;
            self.counters.done.store(true, Ordering::Release);
        }
        n
    }

    fn announce_end(&mut self, cache: &mut LcoreCache, now: u64) -> usize {
        let Some(p) = &self.end_packet else {
            self.end_left = 0;
            return 0;
        };
        let want = self.end_left.min(self.tx.free_count().min(BURST) as u64);
        if want == 0 {
            return 0;
        }
        cache.alloc_burst(&mut self.burst, want as usize);
        let stamp = Stamp {
            stream: self.stream,
            flags: FLAG_END,
            seq: self.seq,
            ts_ns: now,
        };
        let mut report = [0u8; END_REPORT_LEN];
        let extra: &[u8] = if self.end_report {
            self.report().write(&mut report);
            &report
        } else {
            &[]
        };
        for m in self.burst.iter_mut() {
            if let Some(d) = m.append(p.len()) {
                self.writer.write_prepared_with(d, p, &stamp, extra);
            }
        }
        let n = self.tx.enqueue_burst(&mut self.burst);
        cache.free_burst(&mut self.burst);
        self.end_left -= n as u64;
        self.counters
            .end_packets
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// The sender's figures an end packet carries: measured time is the
    /// configured duration when the stream ran its full duration, else
    /// first to last burst (as the local report computes it).
    fn report(&self) -> EndReport {
        let c = &self.counters;
        let start = c.measure_start_ns.load(Ordering::Relaxed);
        let last = c.last_tx_ns.load(Ordering::Relaxed);
        let by_count = self.count.is_some_and(|n| self.seq >= n);
        let duration_ns = match self.duration_ns {
            Some(d) if !by_count => d,
            _ => last.saturating_sub(start),
        };
        EndReport {
            tx_bytes: self.bytes,
            duration_ns,
            target_mpps: self.target_pps.map_or(0, |p| (p * 1000.0).round() as u64),
            warmup_packets: self.warm_seq,
        }
    }

    /// Produces up to one burst. Returns packets enqueued.
    #[inline]
    pub fn produce(&mut self, cache: &mut LcoreCache) -> usize {
        if self.done {
            return 0;
        }
        let now = clock::now_ns();
        let start = match self.start_ns {
            Some(s) => s,
            None => {
                self.start_ns = Some(now);
                self.counters
                    .measure_start_ns
                    .store(now + self.warmup_ns, Ordering::Relaxed);
                now
            }
        };
        let elapsed = now - start;
        let warm = elapsed < self.warmup_ns;
        let mut want = self.tx.free_count().min(self.burst_len) as u64;
        if !warm {
            if self
                .duration_ns
                .is_some_and(|d| elapsed - self.warmup_ns >= d)
            {
                return self.finish(cache, now);
            }
            if let Some(c) = self.count {
                if self.seq >= c {
                    return self.finish(cache, now);
                }
                want = want.min(c - self.seq);
            }
        }
        // Measurement is paced from its own start: packets the warm-up fell
        // behind on are forgiven, not sent in a catch-up burst that would
        // raise the measured rate.
        let (since, sent) = if warm {
            (elapsed, self.warm_seq)
        } else {
            (elapsed - self.warmup_ns, self.seq)
        };
        want = want.min(self.pacer.due(since).saturating_sub(sent));
        if want == 0 {
            return 0;
        }
        cache.alloc_burst(&mut self.burst, want as usize);
        let mut bytes = 0u64;
        let seq = if warm {
            &mut self.warm_seq
        } else {
            &mut self.seq
        };
        let flags = if warm { FLAG_WARMUP } else { 0 };
        // At most one probe a burst, its first packet, once one is due.
        let probe = !warm && now >= self.next_probe_ns && !self.burst.is_empty();
        if probe {
            // On schedule from the first: after a gap (the lcore lost its
            // core) the probes owed follow one a burst, as the data catches
            // up, but never more than a few.
            let from = if self.probes == 0 {
                now
            } else {
                self.next_probe_ns
            };
            let backlog = PROBE_BACKLOG.saturating_mul(self.probe_every_ns);
            self.next_probe_ns = from
                .saturating_add(self.probe_every_ns)
                .max(now.saturating_sub(backlog));
            self.probes += 1;
        }
        let mut stamp = Stamp {
            stream: self.stream,
            flags: flags | if probe { FLAG_PROBE } else { 0 },
            seq: *seq,
            ts_ns: now,
        };
        // Sizes were validated against the buffers' tailroom: append succeeds.
        if let Some(p) = &self.prepared {
            for m in self.burst.iter_mut() {
                if let Some(d) = m.append(p.len()) {
                    PacketWriter::write_prepared(d, p, &stamp);
                    stamp.seq += 1;
                    stamp.flags = flags;
                    bytes += p.len() as u64;
                }
            }
        } else {
            for m in self.burst.iter_mut() {
                let t = self.fields.next_template();
                if let Some(d) = m.append(t.size) {
                    self.writer.write(d, &t, &stamp);
                    stamp.seq += 1;
                    stamp.flags = flags;
                    bytes += t.size as u64;
                }
            }
        }
        *seq = stamp.seq;
        let n = self.tx.enqueue_burst(&mut self.burst);
        // Nothing is left over (at most free_count was allocated); free defensively.
        cache.free_burst(&mut self.burst);
        let c = &self.counters;
        if warm {
            c.warmup_packets.store(self.warm_seq, Ordering::Relaxed);
        } else {
            self.bytes += bytes;
            c.tx_packets.store(self.seq, Ordering::Relaxed);
            c.tx_bytes.store(self.bytes, Ordering::Relaxed);
            c.probes.store(self.probes, Ordering::Relaxed);
            c.last_tx_ns.store(now, Ordering::Relaxed);
        }
        n
    }
}
