//! Writes a stamped IPv4/IPv6 UDP packet in place: headers, a fixed payload
//! pattern, the stamp, and both checksums. The pattern's checksum is
//! precomputed per length, so a packet costs a copy and a few additions.

use super::spec::Template;
use super::stamp::{Stamp, STAMP_LEN};
use std::net::IpAddr;

pub struct PacketWriter {
    /// Payload bytes after the stamp, for the largest packet.
    pattern: Vec<u8>,
    /// `word_sums[k]`: one's-complement partial sum (unfolded) of the
    /// pattern's first `k` 16-bit words.
    word_sums: Vec<u64>,
}

#[inline]
fn sum_words(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut c = b.chunks_exact(2);
    for w in &mut c {
        s += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = c.remainder() {
        s += u64::from(*last) << 8;
    }
    s
}

#[inline]
fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

impl PacketWriter {
    /// For packets of up to `max_size` IP bytes.
    pub fn new(max_size: usize) -> PacketWriter {
        // Same byte pattern as a plain flow's payload (index within the UDP payload).
        let pattern: Vec<u8> = (STAMP_LEN..max_size.max(STAMP_LEN))
            .map(|i| i as u8)
            .collect();
        let mut word_sums = Vec::with_capacity(pattern.len() / 2 + 1);
        let mut acc = 0u64;
        word_sums.push(0);
        for w in pattern.chunks_exact(2) {
            acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
            word_sums.push(acc);
        }
        PacketWriter { pattern, word_sums }
    }

    fn pattern_sum(&self, n: usize) -> u64 {
        let mut s = self.word_sums[n / 2];
        if n % 2 == 1 {
            s += u64::from(self.pattern[n - 1]) << 8;
        }
        s
    }

    /// Fills `buf` (exactly `t.size` bytes, validated beforehand) with the packet.
    #[inline]
    pub fn write(&self, buf: &mut [u8], t: &Template, stamp: &Stamp) {
        let ip_len = if t.src.is_ipv4() { 20 } else { 40 };
        let udp_len = (t.size - ip_len) as u16;
        let plen = t.size - ip_len - 8 - STAMP_LEN;
        let (hdrs, rest) = buf.split_at_mut(ip_len + 8);
        let (st, pay) = rest.split_at_mut(STAMP_LEN);
        pay.copy_from_slice(&self.pattern[..plen]);
        let st: &mut [u8; STAMP_LEN] = st.try_into().expect("split at STAMP_LEN");
        stamp.write(st);
        let (ip, udp) = hdrs.split_at_mut(ip_len);
        let mut sum = u64::from(udp_len) * 2 + 17 + sum_words(st) + self.pattern_sum(plen);
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ip[0] = 0x45;
                ip[1] = 0;
                ip[2..4].copy_from_slice(&(t.size as u16).to_be_bytes());
                ip[4..6].fill(0);
                ip[6] = 0x40; // DF
                ip[7] = 0;
                ip[8] = 64;
                ip[9] = 17;
                ip[10..12].fill(0);
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let c = !fold(sum_words(ip));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                sum += sum_words(&ip[12..20]);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
                ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
                ip[6] = 17;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                sum += sum_words(&ip[8..40]);
            }
            // Mixed families are rejected by validation; write nothing sensible.
            _ => return,
        }
        udp[0..2].copy_from_slice(&t.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&t.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        sum += u64::from(t.src_port) + u64::from(t.dst_port);
        let mut c = !fold(sum);
        if c == 0 {
            c = 0xffff; // 0 means "no checksum" in UDP
        }
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    }
}
