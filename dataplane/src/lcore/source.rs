//! A simple traffic source: fixed IPv4/IPv6 UDP packets from a template,
//! optionally paced, pushed into an interface's TX ring like any producer.

use crate::mem::{LcoreCache, Mbuf, HEADROOM};
use crate::provider::BURST;
use crate::ring::spsc;
use crate::wire::{checksum, UdpPacket};
use arrayvec::ArrayVec;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What to send.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Whole IP packet size in bytes.
    pub size: usize,
    /// Packets per second; 0 = as fast as the ring takes them.
    pub rate_pps: u64,
}

pub struct TrafficSource {
    template: Vec<u8>,
    tx: spsc::Producer<Mbuf>,
    /// The rate in force; `rate` is what the control side last asked for.
    rate_pps: u64,
    rate: RateControl,
    start: Option<Instant>,
    /// `sent` when the pacing (re)started: a new rate paces from there.
    sent_at_start: u64,
    sent: u64,
    burst: ArrayVec<Mbuf, BURST>,
}

/// Changes a running flow's rate (configuration reload): one relaxed atomic
/// read per burst on the lcore, no lock.
#[derive(Debug, Clone)]
pub struct RateControl(Arc<AtomicU64>);

impl RateControl {
    /// Packets per second; 0 = as fast as the ring takes them.
    pub fn set(&self, pps: u64) {
        self.0.store(pps, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Builds the IP+UDP bytes of a flow (checksums filled).
pub fn build_udp_packet(f: &FlowSpec) -> Result<Vec<u8>, String> {
    let (ip_len, min) = match (f.src, f.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (20, 28),
        (IpAddr::V6(_), IpAddr::V6(_)) => (40, 48),
        _ => {
            return Err(format!(
                "flow {} -> {}: address families differ",
                f.src, f.dst
            ))
        }
    };
    if f.size < min || f.size > u16::MAX as usize {
        return Err(format!("flow size {} out of range {}..=65535", f.size, min));
    }
    let mut p = vec![0u8; f.size];
    let udp_len = (f.size - ip_len) as u16;
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(f.size as u16).to_be_bytes());
            p[6] = 0x40; // DF
            p[8] = 64;
            p[9] = 17;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            let c = checksum::internet_checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&udp_len.to_be_bytes());
            p[6] = 17;
            p[7] = 64;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
        }
        _ => unreachable!("families checked above"),
    }
    let u = ip_len;
    p[u..u + 2].copy_from_slice(&f.src_port.to_be_bytes());
    p[u + 2..u + 4].copy_from_slice(&f.dst_port.to_be_bytes());
    p[u + 4..u + 6].copy_from_slice(&udp_len.to_be_bytes());
    for (i, b) in p[u + 8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut udp = UdpPacket::new_checked(&mut p[u..]).map_err(|e| e.to_string())?;
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => udp.fill_checksum_v4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => udp.fill_checksum_v6(s, d),
        _ => unreachable!("families checked above"),
    }
    Ok(p)
}

/// Anything an lcore runs before its interfaces: an enum rather than a trait
/// object, so the per-burst call is a match, never dynamic dispatch.
// Built once at start-up and kept in a Vec: boxing the large variant would
// only add a pointer chase per burst.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    Flow(TrafficSource),
    Pktgen(crate::pktgen::Generator),
    Replay(crate::pktgen::Replay),
}

impl Source {
    #[inline]
    pub fn produce(&mut self, cache: &mut LcoreCache) -> usize {
        match self {
            Source::Flow(s) => s.produce(cache),
            Source::Pktgen(g) => g.produce(cache),
            Source::Replay(r) => r.produce(cache),
        }
    }
}

impl From<TrafficSource> for Source {
    fn from(s: TrafficSource) -> Source {
        Source::Flow(s)
    }
}

impl From<crate::pktgen::Generator> for Source {
    fn from(g: crate::pktgen::Generator) -> Source {
        Source::Pktgen(g)
    }
}

impl TrafficSource {
    pub fn new(flow: &FlowSpec, tx: spsc::Producer<Mbuf>) -> Result<Self, String> {
        Ok(TrafficSource {
            template: build_udp_packet(flow)?,
            tx,
            rate_pps: flow.rate_pps,
            rate: RateControl(Arc::new(AtomicU64::new(flow.rate_pps))),
            start: None,
            sent_at_start: 0,
            sent: 0,
            burst: ArrayVec::new(),
        })
    }

    /// Packets this source has handed to the ring.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// A handle that changes this flow's rate while it runs.
    pub fn rate_control(&self) -> RateControl {
        self.rate.clone()
    }

    /// Produces up to one burst. Returns packets enqueued.
    #[inline]
    pub fn produce(&mut self, cache: &mut LcoreCache) -> usize {
        let mut want = self.tx.free_count().min(BURST);
        let rate = self.rate.get();
        if rate != self.rate_pps {
            self.rate_pps = rate;
            self.start = None;
        }
        if self.rate_pps != 0 {
            let start = match self.start {
                Some(s) => s,
                None => {
                    self.sent_at_start = self.sent;
                    *self.start.insert(Instant::now())
                }
            };
            let due =
                (start.elapsed().as_nanos() as u64).saturating_mul(self.rate_pps) / 1_000_000_000;
            want = want.min(due.saturating_sub(self.sent - self.sent_at_start) as usize);
        }
        if want == 0 {
            return 0;
        }
        // A template larger than a fresh buffer's tailroom never fits: nothing to send.
        if self.template.len() > cache.pool().buf_size() - HEADROOM {
            return 0;
        }
        cache.alloc_burst(&mut self.burst, want);
        let t = self.template.as_slice();
        for m in self.burst.iter_mut() {
            // Fresh, unshared buffers with the whole tailroom: append cannot fail.
            if let Some(d) = m.append(t.len()) {
                d.copy_from_slice(t);
            }
        }
        let n = self.tx.enqueue_burst(&mut self.burst);
        cache.free_burst(&mut self.burst);
        self.sent += n as u64;
        n
    }
}

impl From<crate::pktgen::Replay> for Source {
    fn from(r: crate::pktgen::Replay) -> Source {
        Source::Replay(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{HugepageMode, Mempool, MempoolConfig};
    use std::net::Ipv4Addr;

    /// A new rate takes effect on the next burst and paces from that moment.
    #[test]
    fn rate_changes_while_running() {
        let pool = Mempool::new(MempoolConfig {
            name: "rate".into(),
            count: 1024,
            buf_size: 2176,
            hugepages: HugepageMode::Off,
        })
        .unwrap();
        let mut cache = pool.cache(64);
        let (prod, mut cons) = spsc::channel::<Mbuf>(256);
        let flow = FlowSpec {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 9,
            dst_port: 9,
            size: 64,
            rate_pps: 0,
        };
        let mut src = TrafficSource::new(&flow, prod).unwrap();
        let rate = src.rate_control();
        let drain = |cons: &mut spsc::Consumer<Mbuf>| {
            let mut n = 0;
            while let Some(m) = cons.pop() {
                drop(m);
                n += 1;
            }
            n
        };
        assert_eq!(src.produce(&mut cache), BURST, "unpaced: a full burst");
        assert_eq!(drain(&mut cons), BURST);
        // One packet a second: nothing is due yet.
        rate.set(1);
        assert_eq!(rate.get(), 1);
        assert_eq!(src.produce(&mut cache), 0);
        rate.set(0);
        assert_eq!(src.produce(&mut cache), BURST);
        assert_eq!(drain(&mut cons), BURST);
        assert_eq!(src.sent(), 2 * BURST as u64);
    }
}
