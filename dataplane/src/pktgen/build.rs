//! Writes a stamped IPv4/IPv6 UDP packet in place: headers, a fixed payload
//! pattern, the stamp, and both checksums. Checksums are computed from the
//! field values and a per-length table of the pattern's sum — never by
//! reading back the freshly written buffer, which would stall on store
//! forwarding. A `Prepared` packet (single mode) costs one copy, the stamp
//! and one fold.

use super::spec::Template;
use super::stamp::{Stamp, MAGIC, STAMP_LEN};
use std::net::IpAddr;

pub struct PacketWriter {
    /// Payload bytes after the stamp, for the largest packet.
    pattern: Vec<u8>,
    /// `word_sums[k]`: unfolded one's-complement sum of the pattern's first `k` 16-bit words.
    word_sums: Vec<u64>,
}

/// A template turned into bytes once: everything but the stamp and the UDP checksum.
pub struct Prepared {
    image: Vec<u8>,
    /// UDP checksum sum without the stamp.
    base: u64,
    stamp_at: usize,
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
fn sum_u64(x: u64) -> u64 {
    (x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48)
}

#[inline]
fn stamp_sum(s: &Stamp) -> u64 {
    sum_u64(u64::from(MAGIC))
        + u64::from(s.stream)
        + u64::from(s.flags)
        + sum_u64(s.seq)
        + sum_u64(s.ts_ns)
}

/// One's-complement fold of a 64-bit sum: a fixed four steps, no loop.
#[inline]
fn fold(s: u64) -> u16 {
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// `dst.copy_from_slice(src)` in 32-byte blocks: for the small packets a
/// generator's ceiling is measured with, fixed-size moves inline where a
/// `memmove` call would cost as much as the copy.
#[inline]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    if dst.len() != src.len() {
        return;
    }
    let mut d = dst.chunks_exact_mut(32);
    let mut s = src.chunks_exact(32);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[u8; 32] = s.try_into().unwrap_or(&[0; 32]);
        d.copy_from_slice(s);
    }
    d.into_remainder().copy_from_slice(s.remainder());
}

#[inline]
fn stamp_bytes(s: &Stamp) -> [u8; STAMP_LEN] {
    let mut b = [0u8; STAMP_LEN];
    s.write(&mut b);
    b
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

    #[inline]
    fn pattern_sum(&self, n: usize) -> u64 {
        let mut s = self.word_sums[n / 2];
        if n % 2 == 1 {
            s += u64::from(self.pattern[n - 1]) << 8;
        }
        s
    }

    /// Writes headers and pattern (not the stamp, not the UDP checksum) and
    /// returns the UDP checksum sum without the stamp.
    #[inline]
    fn write_headers(&self, buf: &mut [u8], t: &Template) -> u64 {
        let ip_len = if t.src.is_ipv4() { 20 } else { 40 };
        let udp_len = (t.size - ip_len) as u16;
        let plen = t.size - ip_len - 8 - STAMP_LEN;
        let (hdrs, rest) = buf.split_at_mut(ip_len + 8);
        rest[STAMP_LEN..].copy_from_slice(&self.pattern[..plen]);
        let (ip, udp) = hdrs.split_at_mut(ip_len);
        let mut sum = u64::from(udp_len) * 2 + 17 + self.pattern_sum(plen);
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let (s, d) = (s.octets(), d.octets());
                let addrs = sum_words(&s) + sum_words(&d);
                let size = t.size as u16;
                // 0x4500 version/IHL, 0x4000 DF, 0x4011 TTL 64 / UDP.
                let c = !fold(0x4500 + u64::from(size) + 0x4000 + 0x4011 + addrs);
                let [l0, l1] = size.to_be_bytes();
                let [c0, c1] = c.to_be_bytes();
                ip[..12].copy_from_slice(&[0x45, 0, l0, l1, 0, 0, 0x40, 0, 64, 17, c0, c1]);
                ip[12..16].copy_from_slice(&s);
                ip[16..20].copy_from_slice(&d);
                sum += addrs;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let (s, d) = (s.octets(), d.octets());
                let [l0, l1] = udp_len.to_be_bytes();
                ip[..8].copy_from_slice(&[0x60, 0, 0, 0, l0, l1, 17, 64]);
                ip[8..24].copy_from_slice(&s);
                ip[24..40].copy_from_slice(&d);
                sum += sum_words(&s) + sum_words(&d);
            }
            // Mixed families are rejected by validation.
            _ => return 0,
        }
        let [s0, s1] = t.src_port.to_be_bytes();
        let [d0, d1] = t.dst_port.to_be_bytes();
        let [l0, l1] = udp_len.to_be_bytes();
        udp.copy_from_slice(&[s0, s1, d0, d1, l0, l1, 0, 0]);
        sum + u64::from(t.src_port) + u64::from(t.dst_port)
    }

    #[inline]
    fn finish(buf: &mut [u8], ip_len: usize, sum: u64, stamp: &Stamp) {
        let mut c = !fold(sum + stamp_sum(stamp));
        if c == 0 {
            c = 0xffff; // 0 means "no checksum" in UDP
        }
        buf[ip_len + 6..ip_len + 8].copy_from_slice(&c.to_be_bytes());
        buf[ip_len + 8..ip_len + 8 + STAMP_LEN].copy_from_slice(&stamp_bytes(stamp));
    }

    /// Fills `buf` (exactly `t.size` bytes, validated beforehand) with the packet.
    #[inline]
    pub fn write(&self, buf: &mut [u8], t: &Template, stamp: &Stamp) {
        let sum = self.write_headers(buf, t);
        Self::finish(buf, if t.src.is_ipv4() { 20 } else { 40 }, sum, stamp);
    }

    /// Builds a template's bytes once, for `write_prepared`.
    pub fn prepare(&self, t: &Template) -> Prepared {
        let mut image = vec![0u8; t.size];
        let base = self.write_headers(&mut image, t);
        Prepared {
            image,
            base,
            stamp_at: if t.src.is_ipv4() { 20 } else { 40 },
        }
    }

    /// Fills `buf` (exactly the prepared size) with the prepared packet,
    /// `stamp`, and `extra` (an even number of bytes) in place of the
    /// pattern right after the stamp, the UDP checksum covering it. Without
    /// room for `extra`, the packet is written without it.
    pub fn write_prepared_with(&self, buf: &mut [u8], p: &Prepared, stamp: &Stamp, extra: &[u8]) {
        let at = p.stamp_at + 8 + STAMP_LEN;
        let pattern = self.word_sums.get(extra.len() / 2).copied();
        let base = pattern.and_then(|w| p.base.checked_sub(w));
        match base {
            Some(base) if extra.len().is_multiple_of(2) && p.image.len() >= at + extra.len() => {
                copy_small(buf, &p.image);
                if let Some(d) = buf.get_mut(at..at + extra.len()) {
                    d.copy_from_slice(extra);
                }
                Self::finish(buf, p.stamp_at, base + sum_words(extra), stamp);
            }
            _ => Self::write_prepared(buf, p, stamp),
        }
    }

    /// Fills `buf` (exactly the prepared size) with the prepared packet and `stamp`.
    #[inline]
    pub fn write_prepared(buf: &mut [u8], p: &Prepared, stamp: &Stamp) {
        copy_small(buf, &p.image);
        Self::finish(buf, p.stamp_at, p.base, stamp);
    }
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.image.len()
    }
    pub fn is_empty(&self) -> bool {
        self.image.is_empty()
    }
}
