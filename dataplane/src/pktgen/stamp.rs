//! The measurement stamp at the start of every generated UDP payload, and the
//! parser the sink uses to find it in a received IP packet.

/// "PKGN": tells pktgen packets from any other traffic.
pub const MAGIC: u32 = 0x504B_474E;
/// Bytes of the stamp: magic, stream id, flags, sequence number, send time.
pub const STAMP_LEN: usize = 24;
/// Flag: sent during warm-up; the sink counts it apart and measures nothing.
pub const FLAG_WARMUP: u16 = 1;
/// Flag: the stream has ended; `seq` is how many measured packets it sent.
/// Sent a few times over, so a sink in another process knows what it missed.
pub const FLAG_END: u16 = 2;
/// Flag: a latency probe, a data packet like any other that the sink also
/// reflects back to its sender for a round-trip time on the sender's clock.
pub const FLAG_PROBE: u16 = 4;
/// Flag: a sink's reflection of a probe, addresses and ports swapped, the
/// original send time untouched. Not a data packet.
pub const FLAG_REFLECTED: u16 = 8;
/// Flag: a reflection that carries the reflecting sink's receive time (u64,
/// big-endian, its own clock) right after the stamp.
pub const FLAG_PEER_TIME: u16 = 16;
/// "PKEN": an end packet's report follows its stamp.
pub const END_MAGIC: u32 = 0x504B_454E;
/// Bytes of the report: magic, reserved, then tx bytes, measured ns, target
/// milli-pps and warm-up packets (u64 each, big-endian).
pub const END_REPORT_LEN: usize = 40;

/// What a generator tells a sink in another process at the end of a stream,
/// besides the sent count in the stamp: enough for the sink to report the
/// sender's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndReport {
    /// Measured IP bytes sent.
    pub tx_bytes: u64,
    /// Measured sending time in ns (the configured duration, or first to last burst).
    pub duration_ns: u64,
    /// Paced rate in thousandths of a packet per second; 0 when unpaced.
    pub target_mpps: u64,
    pub warmup_packets: u64,
}

impl EndReport {
    pub fn write(&self, out: &mut [u8; END_REPORT_LEN]) {
        out[0..4].copy_from_slice(&END_MAGIC.to_be_bytes());
        out[4..8].copy_from_slice(&[0; 4]);
        for (k, v) in [
            self.tx_bytes,
            self.duration_ns,
            self.target_mpps,
            self.warmup_packets,
        ]
        .into_iter()
        .enumerate()
        {
            out[8 + 8 * k..16 + 8 * k].copy_from_slice(&v.to_be_bytes());
        }
    }

    /// The report after an end packet's stamp, if the packet carries one.
    pub fn from_ip(pkt: &[u8]) -> Option<EndReport> {
        let b = udp_payload(pkt)?.get(STAMP_LEN..STAMP_LEN + END_REPORT_LEN)?;
        if b[0..4] != END_MAGIC.to_be_bytes() {
            return None;
        }
        let at = |k: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[8 + 8 * k..16 + 8 * k]);
            u64::from_be_bytes(w)
        };
        Some(EndReport {
            tx_bytes: at(0),
            duration_ns: at(1),
            target_mpps: at(2),
            warmup_packets: at(3),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub stream: u16,
    pub flags: u16,
    pub seq: u64,
    /// Send time in ns on the process clock (`clock::now_ns`).
    pub ts_ns: u64,
}

impl Stamp {
    /// Writes the stamp (big-endian) into the first `STAMP_LEN` bytes of `out`.
    #[inline]
    pub fn write(&self, out: &mut [u8; STAMP_LEN]) {
        out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&self.stream.to_be_bytes());
        out[6..8].copy_from_slice(&self.flags.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.ts_ns.to_be_bytes());
    }

    /// Reads a stamp from the start of a UDP payload; `None` without the magic.
    #[inline]
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let b: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
        if u32::from_be_bytes([b[0], b[1], b[2], b[3]]) != MAGIC {
            return None;
        }
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(w)
        };
        Some(Stamp {
            stream: u16::from_be_bytes([b[4], b[5]]),
            flags: u16::from_be_bytes([b[6], b[7]]),
            seq: u64_at(8),
            ts_ns: u64_at(16),
        })
    }

    /// The stamp of an IPv4 or IPv6 UDP packet, if it carries one.
    #[inline]
    pub fn from_ip(pkt: &[u8]) -> Option<Stamp> {
        Stamp::read(udp_payload(pkt)?)
    }
}

/// The UDP payload of an IP packet (no IPv6 extension headers), or `None`.
#[inline]
pub fn udp_payload(pkt: &[u8]) -> Option<&[u8]> {
    let udp_at = match pkt.first()? >> 4 {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            // Fragments past the first carry no UDP header.
            let frag = u16::from_be_bytes([*pkt.get(6)?, *pkt.get(7)?]) & 0x1fff;
            if ihl < 20 || *pkt.get(9)? != 17 || frag != 0 {
                return None;
            }
            ihl
        }
        6 => {
            if *pkt.get(6)? != 17 {
                return None;
            }
            40
        }
        _ => return None,
    };
    pkt.get(udp_at + 8..)
}
