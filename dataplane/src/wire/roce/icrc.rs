//! The RoCEv2 invariant CRC (IBA Annex A17): CRC-32 over a stand-in LRH of
//! eight `0xff` bytes, the IP, UDP and transport headers with their variant
//! fields set to all ones, and the rest of the transport packet. Routers may
//! change the masked fields (TTL, ECN, UDP checksum, FECN/BECN) without
//! breaking it.
//!
//! The CRC is the zlib one (reflected 0xEDB88320, init and final XOR all
//! ones), computed with carry-less multiplication where the CPU has it and
//! slicing-by-8 tables otherwise; it travels least-significant byte first.

use super::super::{Error, Result};
use super::{bth, clmul};
use std::mem::MaybeUninit;

pub const ICRC_LEN: usize = 4;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV4_MAX_HEADER_LEN: usize = 60;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
const POLY: u32 = 0xEDB8_8320;
/// Headers plus the first transport bytes, a multiple of 16 (the fold's step).
const STAGE_LEN: usize = 256;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                POLY ^ (crc >> 1)
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut slice = 1;
        while slice < 8 {
            let prev = tables[slice - 1][i];
            tables[slice][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            slice += 1;
        }
        i += 1;
    }
    tables
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// Bytes of masked IPv4 (no options) and UDP headers behind the low byte
/// of the IPv4 identification.
pub(super) const BEHIND_IPV4_ID: usize = IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN - 6;

/// What a byte of the IPv4 identification adds to the register after the
/// headers (a CRC is linear): `[0]` for the high byte, `[1]` for the low
/// one, each followed by the rest of a 20-byte IPv4 and the UDP header.
static ID_TABLES: [[u32; 256]; 2] = [byte_effect(BEHIND_IPV4_ID + 1), byte_effect(BEHIND_IPV4_ID)];

/// What a byte XOR-ed in adds to the register when `behind` bytes follow it.
pub(super) const fn byte_effect(behind: usize) -> [u32; 256] {
    let t = make_tables();
    let mut out = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        let mut crc = t[0][b];
        let mut zeros = 0;
        while zeros < behind {
            crc = (crc >> 8) ^ t[0][(crc & 0xff) as usize];
            zeros += 1;
        }
        out[b] = crc;
        b += 1;
    }
    out
}

/// The BTH byte an ICRC masks, as a mask on the transport's first 16 bytes.
pub(super) const VARIANT_MASK: u128 = 0xff << (8 * bth::VARIANT_BYTE);
/// Transports up to this long fold in one lane (no set-up); longer ones in
/// four (more bytes per cycle).
pub(super) const ONE_LANE_MAX: usize = 256;

/// The register after the eight `0xff` bytes that stand in for the LRH
/// (Linux rxe seeds its CRC register with this value, 0xdebb20e3).
const AFTER_LRH: u32 = {
    let table = make_tables();
    let mut crc = 0xFFFF_FFFFu32;
    let mut i = 0;
    while i < 8 {
        crc = (crc >> 8) ^ table[0][((crc ^ 0xff) & 0xff) as usize];
        i += 1;
    }
    crc
};

/// An incremental zlib-compatible CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32 {
    register: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    pub const fn new() -> Self {
        Crc32 {
            register: 0xFFFF_FFFF,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        let (register, rest) = clmul::update(self.register, data);
        self.register = register;
        self.update_tables(rest);
    }

    /// `update` with the tables only (short inputs: no set-up).
    pub(super) fn update_tables(&mut self, data: &[u8]) {
        let t = &TABLES;
        let mut crc = self.register;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
            let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &byte in chunks.remainder() {
            crc = (crc >> 8) ^ t[0][((crc ^ u32::from(byte)) & 0xff) as usize];
        }
        self.register = crc;
    }

    pub const fn finish(&self) -> u32 {
        !self.register
    }

    /// Goes on from `register` (a CRC part-way through its input).
    pub(super) const fn resume(register: u32) -> Self {
        Crc32 { register }
    }

    /// The register, before the final inversion.
    pub(super) const fn register(&self) -> u32 {
        self.register
    }
}

/// The zlib CRC-32 of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(data);
    crc.finish()
}

/// The ICRC of a RoCEv2 packet given its IP header (IPv4 with options, or
/// the 40-byte IPv6 header; told apart by the version nibble), its UDP
/// header and the transport packet from the BTH up to, not including, the
/// ICRC. `Truncated`/`Malformed` when a part has the wrong size.
pub fn icrc(ip_header: &[u8], udp_header: &[u8], transport: &[u8]) -> Result<u32> {
    IcrcHeaders::new(ip_header, udp_header)?.icrc(transport)
}

/// The IP and UDP headers an ICRC covers, with their variant fields masked:
/// built once for the packets of a flow (one size, one peer), each packet's
/// ICRC then takes one pass over the headers and the packet without
/// copying the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcrcHeaders {
    /// The headers (`len` bytes), then zeros: at least `HEAD_LEN` bytes,
    /// copied as one block.
    bytes: [u8; IPV4_MAX_HEADER_LEN + UDP_HEADER_LEN],
    len: usize,
    /// The register after the LRH stand-in and the headers as built.
    prefix: u32,
    /// The IPv4 identification the prefix was computed with, and the one set.
    built_id: u16,
    id: u16,
    /// The CPU has the carry-less multiply the short path uses.
    clmul: bool,
}

impl IcrcHeaders {
    /// `Truncated`/`Malformed` as `icrc`.
    pub fn new(ip_header: &[u8], udp_header: &[u8]) -> Result<Self> {
        if udp_header.len() != UDP_HEADER_LEN {
            return Err(Error::Malformed);
        }
        let mut h = IcrcHeaders {
            bytes: [0; IPV4_MAX_HEADER_LEN + UDP_HEADER_LEN],
            len: 0,
            prefix: 0,
            built_id: 0,
            id: 0,
            clmul: clmul::available(),
        };
        let ip_len = ip_header.len();
        let stage = &mut h.bytes;
        match ip_header.first().map(|b| b >> 4) {
            Some(4) if (IPV4_MIN_HEADER_LEN..=IPV4_MAX_HEADER_LEN).contains(&ip_len) => {
                stage[..ip_len].copy_from_slice(ip_header);
                // TOS, TTL and header checksum.
                for at in [1, 8, 10, 11] {
                    stage[at] = 0xff;
                }
            }
            Some(6) if ip_len == IPV6_HEADER_LEN => {
                stage[..ip_len].copy_from_slice(ip_header);
                // Traffic class and flow label (all but the version nibble), hop limit.
                stage[0] |= 0x0f;
                for at in [1, 2, 3, 7] {
                    stage[at] = 0xff;
                }
            }
            None => return Err(Error::Truncated),
            Some(_) => return Err(Error::Malformed),
        }
        stage[ip_len..ip_len + UDP_HEADER_LEN].copy_from_slice(udp_header);
        // The UDP checksum.
        stage[ip_len + 6] = 0xff;
        stage[ip_len + 7] = 0xff;
        h.len = ip_len + UDP_HEADER_LEN;
        if h.bytes[0] >> 4 == 4 {
            h.built_id = u16::from_be_bytes([h.bytes[4], h.bytes[5]]);
            h.id = h.built_id;
        }
        let mut crc = Crc32 {
            register: AFTER_LRH,
        };
        crc.update_tables(&h.bytes[..h.len]);
        h.prefix = crc.register;
        Ok(h)
    }

    /// The register after the LRH stand-in and the headers with the IPv4
    /// identification set; `None` where the identification moved in a
    /// header with options (the tables assume none).
    fn register(&self) -> Option<u32> {
        self.register_with(self.id)
    }

    /// What a run of messages behind these headers starts from: the
    /// register with the identification set, that identification, and
    /// whether later ones change the register (IPv4). `None` without
    /// carry-less multiply, or for an IPv4 header with options (the
    /// identification's tables assume none).
    pub(super) fn run_start(&self) -> Option<(u32, u16, bool)> {
        let ipv4 = self.bytes[0] >> 4 == 4;
        if !self.clmul || (ipv4 && self.len != IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN) {
            return None;
        }
        Some((self.register()?, self.id, ipv4))
    }

    /// As `register`, with IPv4 identification `id` (ignored for IPv6).
    #[inline]
    fn register_with(&self, id: u16) -> Option<u32> {
        let delta = if self.bytes[0] >> 4 == 4 {
            id ^ self.built_id
        } else {
            0
        };
        if delta == 0 {
            Some(self.prefix)
        } else if self.len == IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN {
            let [hi, lo] = delta.to_be_bytes();
            Some(self.prefix ^ ID_TABLES[0][usize::from(hi)] ^ ID_TABLES[1][usize::from(lo)])
        } else {
            None
        }
    }

    /// Sets the IPv4 identification (IPv4 headers only; the kernel numbers
    /// the segments of one UDP GSO send 0, 1, 2, ...).
    pub fn set_ipv4_id(&mut self, id: u16) {
        if self.bytes[0] >> 4 == 4 {
            self.bytes[4..6].copy_from_slice(&id.to_be_bytes());
            self.id = id;
        }
    }

    /// The ICRC of `transport` (BTH up to, not including, the ICRC) behind
    /// these headers. `Truncated` when shorter than a BTH.
    #[inline]
    pub fn icrc(&self, transport: &[u8]) -> Result<u32> {
        self.icrc_with_ipv4_id(transport, self.id)
    }

    /// As `icrc` with the IPv4 identification `id` instead of the one set
    /// (ignored for IPv6): the segments of one GSO send without a write
    /// per segment.
    #[inline]
    pub fn icrc_with_ipv4_id(&self, transport: &[u8], id: u16) -> Result<u32> {
        if transport.len() < bth::HEADER_LEN {
            return Err(Error::Truncated);
        }
        // Short packets: the headers' register comes precomputed and the
        // packet is folded where it lies, its masked bits set on the way in.
        #[cfg(target_arch = "x86_64")]
        if self.clmul && (16..=ONE_LANE_MAX).contains(&transport.len()) {
            if let Some(register) = self.register_with(id) {
                // SAFETY: the CPU has the instructions (checked when the
                // headers were built) and the transport has 16 bytes.
                return Ok(!unsafe { clmul::fold_short(register, transport, VARIANT_MASK) });
            }
        }
        let mut h = *self;
        h.set_ipv4_id(id);
        Ok(h.icrc_long(transport))
    }

    /// `icrc` for long transports (and without carry-less multiply).
    #[inline(never)]
    fn icrc_long(&self, transport: &[u8]) -> u32 {
        if let Some(register) = self.register().filter(|_| transport.len() >= HEAD_LEN) {
            let mut head = [0u8; HEAD_LEN];
            head.copy_from_slice(&transport[..HEAD_LEN]);
            head[bth::VARIANT_BYTE] = 0xff;
            if let Some((register, tail)) =
                clmul::update_after(register, &head, &transport[HEAD_LEN..])
            {
                let mut crc = Crc32 { register };
                crc.update_tables(tail);
                return crc.finish();
            }
        }
        let n = self.len;
        let mut crc = Crc32 {
            register: AFTER_LRH,
        };
        // Headers and the first transport bytes as one 64-byte block (two
        // fixed-size copies), the rest of the packet read where it is.
        if n <= HEAD_LEN && transport.len() >= HEAD_LEN {
            let mut block = MaybeUninit::<[u8; 2 * HEAD_LEN]>::uninit();
            let b = block.as_mut_ptr().cast::<u8>();
            // SAFETY: two 64-byte copies inside the 128-byte block (n <= 64)
            // from 64 readable bytes each; they leave the first 64 bytes
            // written (0..n from the headers, n..64 from the transport),
            // and only those are read.
            let head = unsafe {
                std::ptr::copy_nonoverlapping(self.bytes.as_ptr(), b, HEAD_LEN);
                std::ptr::copy_nonoverlapping(transport.as_ptr(), b.add(n), HEAD_LEN);
                *b.add(n + bth::VARIANT_BYTE) = 0xff;
                &*b.cast::<[u8; HEAD_LEN]>()
            };
            let rest = &transport[HEAD_LEN - n..];
            if let Some((register, tail)) = clmul::update_after(crc.register, head, rest) {
                crc.register = register;
                crc.update_tables(tail);
                return crc.finish();
            }
        }
        // Short packets (and CPUs without carry-less multiply): the masked
        // headers and the start of the transport go through one staging
        // buffer, so they take a single pass.
        let mut stage = [0u8; STAGE_LEN];
        stage[..n].copy_from_slice(&self.bytes[..n]);
        let take = transport.len().min(STAGE_LEN - n);
        stage[n..n + take].copy_from_slice(&transport[..take]);
        stage[n + bth::VARIANT_BYTE] = 0xff;
        crc.update(&stage[..n + take]);
        crc.update(&transport[take..]);
        crc.finish()
    }
}

/// What the one-pass ICRC folds first: headers, then transport bytes.
const HEAD_LEN: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_zlib_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn incremental_equals_one_shot_at_every_split() {
        let data: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        let whole = crc32(&data);
        for split in 0..data.len() {
            let mut crc = Crc32::new();
            crc.update(&data[..split]);
            crc.update(&data[split..]);
            assert_eq!(crc.finish(), whole, "split at {split}");
        }
    }

    /// The table-only CRC, to check the carry-less path against.
    fn crc32_tables(data: &[u8]) -> u32 {
        let mut crc = Crc32::new();
        crc.update_tables(data);
        crc.finish()
    }

    #[test]
    fn carry_less_path_matches_the_tables() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..300).chain([1023, 1024, 1025, 4096, 4099, 5000]) {
            for start in [0, 1, 7] {
                let slice = &data[start.min(len)..len];
                assert_eq!(crc32(slice), crc32_tables(slice), "len {len} start {start}");
            }
        }
        // Mid-stream register values exercise the initial fold.
        let mut crc = Crc32::new();
        crc.update(&data[..13]);
        crc.update(&data[13..4000]);
        assert_eq!(crc.finish(), crc32_tables(&data[..4000]));
    }

    /// Annex A17 spelled out: one CRC over the LRH stand-in and the
    /// masked copies of every header, then the rest of the transport.
    fn icrc_by_definition(ip: &[u8], udp: &[u8], transport: &[u8]) -> u32 {
        let mut all = vec![0xffu8; 8];
        let mut ip = ip.to_vec();
        if ip[0] >> 4 == 4 {
            for at in [1, 8, 10, 11] {
                ip[at] = 0xff;
            }
        } else {
            ip[0] |= 0x0f;
            for at in [1, 2, 3, 7] {
                ip[at] = 0xff;
            }
        }
        all.extend_from_slice(&ip);
        all.extend_from_slice(&udp[..6]);
        all.extend_from_slice(&[0xff, 0xff]);
        let mut t = transport.to_vec();
        t[bth::VARIANT_BYTE] = 0xff;
        all.extend_from_slice(&t);
        crc32_tables(&all)
    }

    #[test]
    fn staged_icrc_matches_the_definition_at_every_length() {
        let data: Vec<u8> = (0..2000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let v4 = &data[100..120];
        let mut v4 = v4.to_vec();
        v4[0] = 0x45;
        let mut v4_options = data[200..224].to_vec();
        v4_options[0] = 0x46;
        let mut v6 = data[300..340].to_vec();
        v6[0] = 0x60;
        let udp = &data[400..408];
        for ip in [&v4[..], &v4_options[..], &v6[..]] {
            for len in (12..300).chain([511, 512, 1024, 1428, 2000]) {
                let transport = &data[..len];
                assert_eq!(
                    icrc(ip, udp, transport).unwrap(),
                    icrc_by_definition(ip, udp, transport),
                    "IP header {} bytes, transport {len}",
                    ip.len()
                );
            }
        }
    }

    #[test]
    fn headers_reused_with_another_ipv4_id_match_fresh_ones() {
        let data: Vec<u8> = (0..600u32).map(|i| (i * 7 + 3) as u8).collect();
        // Without options (the identification's tables) and with (the
        // staged path), built with an identification other than 0.
        for ip_len in [20, 24] {
            let mut ip = data[..ip_len].to_vec();
            ip[0] = 0x40 | (ip_len / 4) as u8;
            let udp = &data[40..48];
            let mut reused = IcrcHeaders::new(&ip, udp).unwrap();
            let built = reused;
            for id in [0u16, 1, 0x1234, 0xffff, 0x0807] {
                ip[4..6].copy_from_slice(&id.to_be_bytes());
                reused.set_ipv4_id(id);
                for len in [12, 15, 16, 17, 40, 100, 256, 257, 600] {
                    let transport = &data[..len];
                    let want = icrc_by_definition(&ip, udp, transport);
                    let what = format!("IP header {ip_len} bytes, ID {id:#x}, transport {len}");
                    assert_eq!(reused.icrc(transport).unwrap(), want, "{what}");
                    // Without setting it, from headers built with another ID.
                    assert_eq!(
                        built.icrc_with_ipv4_id(transport, id).unwrap(),
                        want,
                        "{what}"
                    );
                }
            }
            assert_eq!(reused.icrc(&data[..11]), Err(Error::Truncated));
        }
    }

    #[test]
    fn lrh_stand_in_is_the_rxe_seed() {
        assert_eq!(AFTER_LRH, 0xdebb_20e3);
        let mut crc = Crc32::new();
        crc.update(&[0xff; 8]);
        assert_eq!(crc.register, AFTER_LRH);
    }
}
