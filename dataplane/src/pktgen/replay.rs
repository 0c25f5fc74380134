//! pcap replay: the IP packets of a capture (LINKTYPE_IPOIB 242 or raw IP),
//! sent byte for byte, at their recorded spacing or as fast as possible.

use super::clock;
use super::generator::GenCounters;
use crate::capture::ipoib_link::LinkHeader;
use crate::capture::pcap::{PcapReader, LINKTYPE_IPOIB, LINKTYPE_RAW};
use crate::mem::{LcoreCache, Mbuf, HEADROOM};
use crate::provider::BURST;
use crate::ring::spsc;
use arrayvec::ArrayVec;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// LINKTYPE_IPV4 and LINKTYPE_IPV6: raw IP of one family.
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;

/// One packet of a capture: its IP bytes and when it was sent, relative to the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPacket {
    pub at_ns: u64,
    pub ip: Vec<u8>,
}

/// What a capture held.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub packets: Vec<ReplayPacket>,
    /// Records that are not IP (ARP, truncated, other link types' frames).
    pub skipped: usize,
}

/// Reads the IP packets of a pcap; records cut short by the snap length are skipped.
pub fn read_capture(input: impl Read) -> Result<Capture, String> {
    let mut r = PcapReader::new(input).map_err(|e| e.to_string())?;
    let link = r.linktype();
    if ![LINKTYPE_IPOIB, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6].contains(&link) {
        return Err(format!(
            "capture has link type {link}; replay takes IPoIB (242) or raw IP (101, 228, 229)"
        ));
    }
    let mut cap = Capture::default();
    let mut first = None;
    while let Some(rec) = r.next_record().map_err(|e| e.to_string())? {
        let ip = match link {
            LINKTYPE_IPOIB => LinkHeader::split(&rec.data).and_then(|(_, frame)| {
                let et = u16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
                (et == ETHERTYPE_IPV4 || et == ETHERTYPE_IPV6).then(|| &frame[4.min(frame.len())..])
            }),
            _ => Some(&rec.data[..]),
        };
        let whole = rec.orig_len as usize;
        let ip = ip.filter(|p| {
            let v = p.first().map(|b| b >> 4);
            (v == Some(4) && p.len() >= 20 || v == Some(6) && p.len() >= 40)
                && rec.data.len() >= whole
        });
        let Some(ip) = ip else {
            cap.skipped += 1;
            continue;
        };
        let t = u64::from(rec.timestamp.secs) * 1_000_000_000 + u64::from(rec.timestamp.nanos);
        let t0 = *first.get_or_insert(t);
        cap.packets.push(ReplayPacket {
            at_ns: t.saturating_sub(t0),
            ip: ip.to_vec(),
        });
    }
    Ok(cap)
}

/// Sends a capture's packets into an interface's TX ring.
pub struct Replay {
    packets: Vec<ReplayPacket>,
    recorded_timing: bool,
    /// Passes over the capture; 0 = until stopped.
    loops: u64,
    pass: u64,
    next: usize,
    /// A pass's length: the last packet's offset plus the mean gap.
    period_ns: u64,
    start_ns: Option<u64>,
    tx: spsc::Producer<Mbuf>,
    burst: ArrayVec<Mbuf, BURST>,
    sent: u64,
    bytes: u64,
    done: bool,
    counters: Arc<GenCounters>,
}

impl Replay {
    pub fn new(
        cap: Capture,
        recorded_timing: bool,
        loops: u64,
        tx: spsc::Producer<Mbuf>,
        buf_size: usize,
    ) -> Result<Replay, String> {
        let room = buf_size.saturating_sub(HEADROOM);
        if let Some(p) = cap.packets.iter().find(|p| p.ip.len() > room) {
            return Err(format!(
                "captured packet of {} bytes does not fit a {room}-byte buffer",
                p.ip.len()
            ));
        }
        if cap.packets.is_empty() {
            return Err("the capture holds no IP packet".into());
        }
        clock::init();
        let n = cap.packets.len() as u64;
        let last = cap.packets.last().map_or(0, |p| p.at_ns);
        Ok(Replay {
            period_ns: last + if n > 1 { last / (n - 1) } else { 0 },
            packets: cap.packets,
            recorded_timing,
            loops,
            pass: 0,
            next: 0,
            start_ns: None,
            tx,
            burst: ArrayVec::new(),
            sent: 0,
            bytes: 0,
            done: false,
            counters: Arc::new(GenCounters::default()),
        })
    }

    pub fn counters(&self) -> Arc<GenCounters> {
        self.counters.clone()
    }
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Produces up to one burst of the packets that are due. Returns packets enqueued.
    #[inline]
    pub fn produce(&mut self, cache: &mut LcoreCache) -> usize {
        if self.done {
            return 0;
        }
        let now = clock::now_ns();
        let start = *self.start_ns.get_or_insert_with(|| {
            self.counters.measure_start_ns.store(now, Ordering::Relaxed);
            now
        });
        let mut want = self.tx.free_count().min(BURST);
        if self.loops != 0 {
            let len = self.packets.len() as u64;
            let left = (self.loops - self.pass) * len - self.next as u64;
            want = want.min(left as usize);
        }
        // Count what is due without allocating: walk forward from `next`.
        if self.recorded_timing {
            let elapsed = now - start;
            let mut due = 0;
            let (mut i, mut pass) = (self.next, self.pass);
            while due < want {
                if self.packets[i].at_ns + pass * self.period_ns > elapsed {
                    break;
                }
                due += 1;
                i += 1;
                if i == self.packets.len() {
                    i = 0;
                    pass += 1;
                    if self.loops != 0 && pass >= self.loops {
                        break;
                    }
                }
            }
            want = due;
        }
        if want == 0 {
            return 0;
        }
        cache.alloc_burst(&mut self.burst, want);
        for m in self.burst.iter_mut() {
            let p = &self.packets[self.next].ip;
            if let Some(d) = m.append(p.len()) {
                d.copy_from_slice(p);
                self.bytes += p.len() as u64;
            }
            self.next += 1;
            if self.next == self.packets.len() {
                self.next = 0;
                self.pass += 1;
            }
        }
        let n = self.tx.enqueue_burst(&mut self.burst);
        cache.free_burst(&mut self.burst);
        self.sent += n as u64;
        let c = &self.counters;
        c.tx_packets.store(self.sent, Ordering::Relaxed);
        c.tx_bytes.store(self.bytes, Ordering::Relaxed);
        c.last_tx_ns.store(now, Ordering::Relaxed);
        if self.loops != 0 && self.pass >= self.loops {
            self.done = true;
            c.done.store(true, Ordering::Release);
        }
        n
    }
}
