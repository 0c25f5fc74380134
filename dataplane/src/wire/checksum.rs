//! The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers used by
//! UDP and ICMPv6. Sums are kept unfolded in a `u64` so long buffers cannot
//! overflow.

use std::net::{Ipv4Addr, Ipv6Addr};

/// IP protocol numbers used in pseudo-headers.
pub const PROTOCOL_UDP: u8 = 17;
pub const PROTOCOL_ICMPV6: u8 = 58;

#[inline]
fn sum_words(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(8);
    for chunk in &mut words {
        let w = u64::from_be_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        // Four 16-bit words at once: add the two 32-bit halves separately so
        // carries out of bit 31 are not lost.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut pairs = words.remainder().chunks_exact(2);
    for pair in &mut pairs {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

#[inline]
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's-complement sum of `data` as 16-bit big-endian words, folded but not
/// complemented. An odd trailing byte is padded with zero.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    fold(sum_words(data))
}

/// One's-complement sum of partial sums.
#[inline]
pub fn combine(parts: &[u16]) -> u16 {
    fold(parts.iter().map(|&p| u64::from(p)).sum())
}

/// The checksum to store: the complement of the folded sum.
#[inline]
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    !data(bytes)
}

/// Partial sum of the IPv4 pseudo-header (RFC 768).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let mut acc = sum_words(&src.octets()) + sum_words(&dst.octets());
    acc += u64::from(protocol) + u64::from(length);
    fold(acc)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1).
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut acc = sum_words(&src.octets()) + sum_words(&dst.octets());
    acc += u64::from(length >> 16) + u64::from(length & 0xffff) + u64::from(next_header);
    fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for (i, b) in data.iter().enumerate() {
            acc += if i % 2 == 0 {
                u32::from(*b) << 8
            } else {
                u32::from(*b)
            };
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn wide_sum_matches_bytewise_sum() {
        let buf: Vec<u8> = (0..301u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..buf.len() {
            assert_eq!(data(&buf[..len]), reference(&buf[..len]), "len {len}");
        }
        let ones = [0xffu8; 64];
        assert_eq!(data(&ones), reference(&ones));
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of these words is ddf2.
        let words = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&words), 0xddf2);
    }
}
