//! Recovers the IPv4 ID a received ICRC was computed with.
//!
//! The ICRC covers the IPv4 identification field, which a UDP socket never
//! shows. Our senders (and plain sockets with DF) send ID 0, but Linux rxe
//! picks a fresh ID per packet. The CRC is linear over GF(2), so the
//! difference between the ICRC on the wire and the one computed with ID 0
//! is a linear function of the 16 ID bits: solving that system (16 unknowns,
//! 32 equations) tells whether some ID explains the ICRC. A corrupted packet
//! still fails, except with probability 2^-16 (the ID bits are the price).

/// The reflected CRC-32 polynomial.
const POLY: u32 = 0xEDB8_8320;
/// Bytes of ICRC input before the IPv4 ID: the 8-byte LRH stand-in and the
/// first 4 bytes of the IPv4 header.
const ID_AT: usize = 8 + 4;
/// ICRC input bytes that are not transport: LRH stand-in, IPv4, UDP.
const HEADERS: usize = 8 + 20 + 8;

/// `a * b mod P` on reflected polynomials (zlib's multmodp).
fn multmodp(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        if m == 0 {
            return p;
        }
    }
}

/// `x^(8 * bytes) mod P`: what `bytes` zero bytes do to a CRC register.
fn shift_of(bytes: usize) -> u32 {
    let mut result = 1u32 << 31; // x^0
    let mut power = 1u32 << 23; // x^8
    let mut n = bytes;
    while n != 0 {
        if n & 1 != 0 {
            result = multmodp(power, result);
        }
        power = multmodp(power, power);
        n >>= 1;
    }
    result
}

/// The register after two bytes (`id` big-endian) from a zero register.
fn register_of(id: u16) -> u32 {
    let mut reg = 0u32;
    for byte in id.to_be_bytes() {
        reg ^= u32::from(byte);
        for _ in 0..8 {
            reg = if reg & 1 != 0 {
                (reg >> 1) ^ POLY
            } else {
                reg >> 1
            };
        }
    }
    reg
}

/// The IPv4 ID that turns the ICRC computed with ID 0 into the one found,
/// given their XOR and the transport length (BTH to the ICRC, exclusive);
/// `None` when no ID does.
pub fn recover_ipv4_id(diff: u32, transport_len: usize) -> Option<u16> {
    if diff == 0 {
        return Some(0);
    }
    let after = (HEADERS + transport_len).checked_sub(ID_AT + 2)?;
    let shift = shift_of(after);
    // Gaussian elimination: each row is a 32-bit image with the ID bits
    // that produce it.
    let mut rows: [(u32, u16); 16] = [(0, 0); 16];
    let mut n = 0;
    for bit in 0..16 {
        let mut image = multmodp(shift, register_of(1 << bit));
        let mut combo = 1u16 << bit;
        for &(r, c) in &rows[..n] {
            if image & (1 << (31 - r.leading_zeros())) != 0 {
                image ^= r;
                combo ^= c;
            }
        }
        if image != 0 {
            rows[n] = (image, combo);
            n += 1;
        }
    }
    let mut rest = diff;
    let mut id = 0u16;
    for &(r, c) in &rows[..n] {
        if rest & (1 << (31 - r.leading_zeros())) != 0 {
            rest ^= r;
            id ^= c;
        }
    }
    (rest == 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::roce::icrc;

    fn ipv4_header(id: u16) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&100u16.to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6] = 0x40;
        h[9] = 17;
        h[12..16].copy_from_slice(&[10, 0, 0, 3]);
        h[16..20].copy_from_slice(&[10, 0, 0, 2]);
        h
    }

    #[test]
    fn finds_the_id_an_icrc_was_made_with() {
        let udp = [0xdf, 0x94, 0x12, 0xb7, 0, 72, 0, 0];
        let transport: Vec<u8> = (0..60u8).map(|i| i.wrapping_mul(29)).collect();
        let zero = icrc(&ipv4_header(0), &udp, &transport).unwrap();
        for id in [0u16, 1, 0x8000, 0x1234, 0xffff, 0xbeef] {
            let wire = icrc(&ipv4_header(id), &udp, &transport).unwrap();
            assert_eq!(recover_ipv4_id(wire ^ zero, transport.len()), Some(id));
        }
    }

    #[test]
    fn most_corruptions_have_no_id() {
        let udp = [0xdf, 0x94, 0x12, 0xb7, 0, 72, 0, 0];
        let mut transport: Vec<u8> = (0..60u8).map(|i| i.wrapping_mul(29)).collect();
        let wire = icrc(&ipv4_header(0x4321), &udp, &transport).unwrap();
        let mut explained = 0;
        for at in 12..transport.len() {
            transport[at] ^= 0x10;
            let zero = icrc(&ipv4_header(0), &udp, &transport).unwrap();
            explained += usize::from(recover_ipv4_id(wire ^ zero, transport.len()).is_some());
            transport[at] ^= 0x10;
        }
        assert_eq!(explained, 0);
    }

    #[test]
    fn shifting_matches_zero_bytes() {
        let mut reg = 0x1234_5678u32;
        for _ in 0..13 {
            for _ in 0..8 {
                reg = if reg & 1 != 0 {
                    (reg >> 1) ^ POLY
                } else {
                    reg >> 1
                };
            }
        }
        assert_eq!(multmodp(shift_of(13), 0x1234_5678), reg);
    }
}
